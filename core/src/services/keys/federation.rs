//! Keys and to-device messages across servers: other servers' users' keys asked of their
//! servers (never cached: a device list update only tells local clients to ask again), this
//! server's users' keys answered to other servers, to-device messages both ways, and device
//! list updates both ways.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{json, Map, Value};

use super::Keys;
use crate::{
    ports::{FederationEdus, RemoteKeys},
    Error, Result,
};

/// What `Keys` needs to reach other servers.
pub struct KeysFederation {
    pub own: OwnedServerName,
    pub remote: Arc<dyn RemoteKeys>,
    pub edus: Arc<dyn FederationEdus>,
}

/// Entries of a per-user request split by server.
type ByServer<T> = BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>;

impl Keys {
    /// `wanted` split into this server's users and, by server, other servers' users.
    pub(super) fn split<T: Clone>(
        &self,
        wanted: &BTreeMap<OwnedUserId, T>,
    ) -> (BTreeMap<OwnedUserId, T>, ByServer<T>) {
        let Some(f) = &self.federation else {
            return (wanted.clone(), BTreeMap::new());
        };
        let mut local = BTreeMap::new();
        let mut remote: ByServer<T> = BTreeMap::new();
        for (user, v) in wanted {
            if user.server_name() == f.own {
                local.insert(user.clone(), v.clone());
            } else {
                remote
                    .entry(user.server_name().to_owned())
                    .or_default()
                    .insert(user.clone(), v.clone());
            }
        }
        (local, remote)
    }

    /// Adds other servers' answers to a `/keys/query` body; a server that fails is named in
    /// `failures`.
    pub(super) async fn query_remote(&self, remote: ByServer<Vec<String>>, body: &mut Value) {
        let Some(f) = &self.federation else { return };
        for (server, wanted) in remote {
            match f.remote.query(&server, &wanted).await {
                Ok(answer) => {
                    for section in ["device_keys", "master_keys", "self_signing_keys"] {
                        merge_section(body, &answer, section);
                    }
                }
                Err(e) => failure(body, &server, e),
            }
        }
    }

    /// Adds other servers' one-time keys to a `/keys/claim` body.
    pub(super) async fn claim_remote(
        &self,
        remote: ByServer<BTreeMap<String, String>>,
        body: &mut Value,
    ) {
        let Some(f) = &self.federation else { return };
        for (server, wanted) in remote {
            match f.remote.claim(&server, &wanted).await {
                Ok(answer) => {
                    let wrapped = json!({ "one_time_keys": answer });
                    merge_section(body, &wrapped, "one_time_keys");
                }
                Err(e) => failure(body, &server, e),
            }
        }
    }

    /// Hands to-device messages for other servers' users to their servers, one EDU each:
    /// `Ok` once they are kept for sending.
    pub(super) async fn to_device_remote(
        &self,
        sender: &UserId,
        kind: &str,
        txn_id: &str,
        remote: ByServer<BTreeMap<String, Value>>,
    ) -> Result<()> {
        let Some(f) = &self.federation else {
            return Ok(());
        };
        for (server, messages) in remote {
            f.edus
                .to_device(
                    &server,
                    json!({
                        "sender": sender,
                        "type": kind,
                        "message_id": format!("{txn_id}.{}", crate::now_ms()),
                        "messages": messages,
                    }),
                )
                .await?;
        }
        Ok(())
    }

    /// The keys of this server's users, for another server (`/user/keys/query`).
    pub async fn query_for_server(
        &self,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value> {
        let (local, _) = self.split(wanted);
        self.query_local(None, &local).await
    }

    /// One-time keys of this server's users' devices, for another server
    /// (`/user/keys/claim`).
    pub async fn claim_for_server(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value> {
        let (local, _) = self.split(wanted);
        let body = self.claim_local(&local).await?;
        Ok(body
            .get("one_time_keys")
            .cloned()
            .unwrap_or_else(|| json!({})))
    }

    /// A user's devices with their keys and display names, and the user's master and
    /// self-signing keys, for another server (`/user/devices/{userId}`).
    pub async fn devices_for_server(
        &self,
        user_id: &UserId,
    ) -> Result<(
        Vec<(String, Value, Option<String>)>,
        Option<Value>,
        Option<Value>,
    )> {
        if self
            .split(&BTreeMap::from([(user_id.to_owned(), ())]))
            .0
            .is_empty()
        {
            return Err(Error::not_found(format!("{user_id} is not a user here")));
        }
        let names: BTreeMap<String, Option<String>> = self
            .users
            .devices(user_id)
            .await?
            .into_iter()
            .map(|d| (d.device_id, d.display_name))
            .collect();
        let devices = self
            .keys
            .device_keys(user_id)
            .await?
            .into_iter()
            .map(|(id, keys)| {
                let name = names.get(&id).cloned().flatten();
                (id, keys, name)
            })
            .collect();
        let mut master = None;
        let mut self_signing = None;
        for (kind, key) in self.keys.cross_signing_keys(user_id).await? {
            match kind.as_str() {
                "master" => master = Some(key),
                "self_signing" => self_signing = Some(key),
                _ => {}
            }
        }
        Ok((devices, master, self_signing))
    }

    /// To-device messages a user of `origin` sent to this server's users (an
    /// `m.direct_to_device` EDU): queued for their devices.
    pub async fn remote_to_device(
        &self,
        origin: &ServerName,
        sender: &UserId,
        kind: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<()> {
        crate::services::federation::check_user_of(origin, sender)?;
        let (local, _) = self.split(messages);
        self.deliver(sender, kind, &local).await?;
        self.notifier.notify();
        Ok(())
    }

    /// A device of a user of `origin` changed (an `m.device_list_update` EDU): the users here
    /// who share a room with that user see it in `device_lists.changed` and ask again.
    pub async fn remote_device_change(
        &self,
        origin: &ServerName,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<()> {
        crate::services::federation::check_user_of(origin, user_id)?;
        // Recorded as a key change only: `/keys/query` for the user goes to its server.
        self.keys
            .set_device_keys(user_id, device_id, &json!({}))
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// The master or self-signing key of a user of `origin` changed (an
    /// `m.signing_key_update` EDU): as for a device change, the users here who share a room
    /// with that user see it in `device_lists.changed` and ask again.
    pub async fn remote_signing_key_change(
        &self,
        origin: &ServerName,
        user_id: &UserId,
    ) -> Result<()> {
        crate::services::federation::check_user_of(origin, user_id)?;
        self.keys
            .set_cross_signing_key(user_id, "master", &json!({}))
            .await?;
        self.notifier.notify();
        Ok(())
    }
}

/// Merges the `section` map of `answer` into that of `body`, user by user.
fn merge_section(body: &mut Value, answer: &Value, section: &str) {
    let Some(from) = answer.get(section).and_then(Value::as_object) else {
        return;
    };
    if !body.get(section).is_some_and(Value::is_object) {
        body[section] = Value::Object(Map::new());
    }
    if let Some(into) = body[section].as_object_mut() {
        for (user, v) in from {
            into.insert(user.clone(), v.clone());
        }
    }
}

/// Names a server that could not answer in the body's `failures`.
fn failure(body: &mut Value, server: &ServerName, e: Error) {
    tracing::info!(%server, error = %e, "another server's keys could not be read");
    if !body.get("failures").is_some_and(Value::is_object) {
        body["failures"] = Value::Object(Map::new());
    }
    body["failures"][server.as_str()] = json!({ "status": 503, "message": e.to_string() });
}
