//! End-to-end encryption plumbing: device and cross-signing keys, one-time key claims, and
//! to-device messages. The server stores and relays; it never sees plaintext. What crosses
//! to other servers — their users' keys and to-device messages, this server's users' device
//! changes — is in `federation.rs`.

mod federation;
pub use federation::KeysFederation;

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedUserId, UserId};
use serde_json::{json, Map, Value};

use crate::{
    notifier::Notifier,
    ports::{EduSink, KeyStore, RoomStore, ToDevice, UserStore},
    services::Session,
    Error, Result,
};

pub struct Keys {
    keys: Arc<dyn KeyStore>,
    users: Arc<dyn UserStore>,
    rooms: Arc<dyn RoomStore>,
    notifier: Notifier,
    /// `(user, device, txn id)` of to-device sends already accepted.
    seen_txns: std::sync::Mutex<std::collections::HashSet<(OwnedUserId, String, String)>>,
    edus: Option<Arc<dyn EduSink>>,
    /// Other servers: none when this server does not federate (every user is then treated
    /// as this server's).
    federation: Option<KeysFederation>,
}

impl Keys {
    pub fn new(
        keys: Arc<dyn KeyStore>,
        users: Arc<dyn UserStore>,
        rooms: Arc<dyn RoomStore>,
        notifier: Notifier,
    ) -> Self {
        Keys {
            keys,
            users,
            rooms,
            notifier,
            seen_txns: Default::default(),
            edus: None,
            federation: None,
        }
    }

    /// Reaches other servers' users' keys and devices through `federation`.
    pub fn with_federation(mut self, federation: KeysFederation) -> Self {
        self.federation = Some(federation);
        self
    }

    /// Also hands to-device messages to `sink` as they are queued.
    pub fn with_edu_sink(mut self, sink: Arc<dyn EduSink>) -> Self {
        self.edus = Some(sink);
        self
    }

    /// `GET /keys/changes`: users sharing a room with `user_id` whose keys changed.
    pub async fn changes(&self, user_id: &UserId, from: i64, to: i64) -> Result<Vec<OwnedUserId>> {
        shared_key_changes(self.keys.as_ref(), self.rooms.as_ref(), user_id, from, to).await
    }

    /// `POST /keys/upload`: returns the unclaimed one-time key counts.
    pub async fn upload(
        &self,
        session: &Session,
        device_keys: Option<Value>,
        one_time: Vec<(String, Value)>,
        fallback: Vec<(String, Value)>,
    ) -> Result<BTreeMap<String, u64>> {
        let device_keys_changed = device_keys.is_some();
        if let Some(keys) = device_keys {
            if keys.get("user_id").and_then(Value::as_str) != Some(session.user_id.as_str())
                || keys.get("device_id").and_then(Value::as_str) != Some(session.device_id.as_str())
            {
                return Err(Error::invalid_param(
                    "device_keys must name your user and device",
                ));
            }
            self.keys
                .set_device_keys(&session.user_id, &session.device_id, &keys)
                .await?;
            if let Some(f) = &self.federation {
                f.edus
                    .device_list_update(&session.user_id, &session.device_id, Some(keys))
                    .await?;
            }
        }
        if !one_time.is_empty() {
            self.keys
                .add_one_time_keys(&session.user_id, &session.device_id, &one_time, false)
                .await?;
        }
        if !fallback.is_empty() {
            self.keys
                .add_one_time_keys(&session.user_id, &session.device_id, &fallback, true)
                .await?;
        }
        if device_keys_changed || !one_time.is_empty() || !fallback.is_empty() {
            // Waiting syncs report the new keys and the device's new counts.
            self.notifier.notify();
        }
        self.counts(&session.user_id, &session.device_id).await
    }

    pub async fn counts(&self, user_id: &UserId, device_id: &str) -> Result<BTreeMap<String, u64>> {
        Ok(self
            .keys
            .one_time_key_counts(user_id, device_id)
            .await?
            .into_iter()
            .collect())
    }

    pub async fn unused_fallback_algorithms(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<String>> {
        self.keys
            .unused_fallback_algorithms(user_id, device_id)
            .await
    }

    /// `POST /keys/query`: the response body. Users of other servers are asked of their
    /// servers.
    pub async fn query(
        &self,
        requester: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value> {
        let (local, remote) = self.split(wanted);
        let mut body = self.query_local(Some(requester), &local).await?;
        self.query_remote(remote, &mut body).await;
        Ok(body)
    }

    /// The keys of this server's users of `wanted`; cross-signing keys that sign others'
    /// keys only for the requester itself (`None`: another server).
    pub(super) async fn query_local(
        &self,
        requester: Option<&UserId>,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value> {
        let mut device_keys = Map::new();
        let mut master = Map::new();
        let mut self_signing = Map::new();
        let mut user_signing = Map::new();
        for (user, devices) in wanted {
            let mut found = Map::new();
            for (device, keys) in self.keys.device_keys(user).await? {
                if devices.is_empty() || devices.contains(&device) {
                    found.insert(device, keys);
                }
            }
            device_keys.insert(user.to_string(), Value::Object(found));
            for (kind, key) in self.keys.cross_signing_keys(user).await? {
                match kind.as_str() {
                    "master" => {
                        master.insert(user.to_string(), key);
                    }
                    "self_signing" => {
                        self_signing.insert(user.to_string(), key);
                    }
                    "user_signing" if Some(&**user) == requester => {
                        user_signing.insert(user.to_string(), key);
                    }
                    _ => {}
                }
            }
        }
        Ok(json!({
            "failures": {},
            "device_keys": device_keys,
            "master_keys": master,
            "self_signing_keys": self_signing,
            "user_signing_keys": user_signing,
        }))
    }

    /// `POST /keys/claim`: the response body. Keys of users of other servers are claimed
    /// from their servers.
    pub async fn claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value> {
        let (local, remote) = self.split(wanted);
        let mut body = self.claim_local(&local).await?;
        self.claim_remote(remote, &mut body).await;
        Ok(body)
    }

    /// One-time keys of this server's users' devices.
    pub(super) async fn claim_local(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value> {
        let mut out = Map::new();
        for (user, devices) in wanted {
            let mut per_device = Map::new();
            for (device, algorithm) in devices {
                if let Some((id, key)) = self.keys.claim_key(user, device, algorithm).await? {
                    per_device.insert(device.clone(), json!({ id: key }));
                }
            }
            if !per_device.is_empty() {
                out.insert(user.to_string(), Value::Object(per_device));
            }
        }
        if !out.is_empty() {
            // The claimed devices' `/sync` reports their lower counts.
            self.notifier.notify();
        }
        Ok(json!({ "failures": {}, "one_time_keys": out }))
    }

    /// Whether uploading `master` would replace a different master key the user already has:
    /// only then does the upload need user-interactive authentication (spec 1.11).
    pub async fn replaces_master_key(
        &self,
        user_id: &UserId,
        master: Option<&Value>,
    ) -> Result<bool> {
        let Some(new) = master else {
            return Ok(false);
        };
        Ok(self
            .keys
            .cross_signing_keys(user_id)
            .await?
            .iter()
            .any(|(kind, old)| kind == "master" && old.get("keys") != new.get("keys")))
    }

    /// `POST /keys/device_signing/upload`: each key must be the uploader's and carry its own
    /// usage.
    pub async fn upload_cross_signing(
        &self,
        session: &Session,
        keys: &[(&str, Option<Value>)],
    ) -> Result<()> {
        for (kind, key) in keys {
            let Some(k) = key else { continue };
            if k.get("user_id").and_then(Value::as_str) != Some(session.user_id.as_str()) {
                return Err(Error::invalid_param(format!(
                    "the {kind} key must name your user id"
                )));
            }
            let usage_ok = k
                .get("usage")
                .and_then(Value::as_array)
                .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(kind)));
            if !usage_ok {
                return Err(Error::invalid_param(format!(
                    "the {kind} key must list \"{kind}\" in its usage"
                )));
            }
            let one_key = k.get("keys").and_then(Value::as_object).map(|m| m.len()) == Some(1);
            if !one_key {
                return Err(Error::invalid_param(format!(
                    "the {kind} key must hold exactly one public key"
                )));
            }
        }
        for (kind, key) in keys {
            if let Some(k) = key {
                self.keys
                    .set_cross_signing_key(&session.user_id, kind, k)
                    .await?;
            }
        }
        if let Some(f) = &self.federation {
            // The user-signing key stays private to the user's own server.
            let of = |name: &str| {
                keys.iter()
                    .find(|(k, _)| *k == name)
                    .and_then(|(_, v)| v.clone())
            };
            let (master, self_signing) = (of("master"), of("self_signing"));
            if master.is_some() || self_signing.is_some() {
                f.edus
                    .signing_key_update(&session.user_id, master, self_signing)
                    .await?;
            }
        }
        self.notifier.notify();
        Ok(())
    }

    /// `POST /keys/signatures/upload`: merges signatures into the stored keys.
    pub async fn upload_signatures(
        &self,
        session: &Session,
        signed: &Map<String, Value>,
    ) -> Result<()> {
        for (user, keys) in signed {
            let Ok(user_id) = UserId::parse(user) else {
                continue;
            };
            let Some(keys) = keys.as_object() else {
                continue;
            };
            let devices = self.keys.device_keys(&user_id).await?;
            let cross = self.keys.cross_signing_keys(&user_id).await?;
            for (key_id, signed_key) in keys {
                let sigs = signed_key
                    .get("signatures")
                    .and_then(|s| s.get(session.user_id.as_str()))
                    .cloned();
                let Some(Value::Object(sigs)) = sigs else {
                    continue;
                };
                if let Some((device, mut stored)) =
                    devices.iter().find(|(d, _)| d == key_id).cloned()
                {
                    merge_signatures(&mut stored, session.user_id.as_str(), &sigs);
                    self.keys
                        .set_device_keys(&user_id, &device, &stored)
                        .await?;
                    if let Some(f) = self
                        .federation
                        .as_ref()
                        .filter(|_| user_id == session.user_id)
                    {
                        f.edus
                            .device_list_update(&user_id, &device, Some(stored))
                            .await?;
                    }
                } else if let Some((kind, mut stored)) = cross
                    .iter()
                    .find(|(_, k)| {
                        k.get("keys")
                            .and_then(|k| k.as_object())
                            .is_some_and(|m| m.keys().any(|id| id.ends_with(key_id.as_str())))
                    })
                    .cloned()
                {
                    merge_signatures(&mut stored, session.user_id.as_str(), &sigs);
                    self.keys
                        .set_cross_signing_key(&user_id, &kind, &stored)
                        .await?;
                    let public = kind == "master" || kind == "self_signing";
                    if let Some(f) = self
                        .federation
                        .as_ref()
                        .filter(|_| public && user_id == session.user_id)
                    {
                        let (master, self_signing) = if kind == "master" {
                            (Some(stored), None)
                        } else {
                            (None, Some(stored))
                        };
                        f.edus
                            .signing_key_update(&user_id, master, self_signing)
                            .await?;
                    }
                }
            }
        }
        self.notifier.notify();
        Ok(())
    }

    /// `PUT /sendToDevice/{type}/{txnId}`; `*` addresses every device of a user.
    pub async fn send_to_device(
        &self,
        session: &Session,
        kind: &str,
        txn_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<()> {
        let key = (
            session.user_id.clone(),
            session.device_id.clone(),
            txn_id.to_owned(),
        );
        if self
            .seen_txns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let (local, remote) = self.split(messages);
        self.to_device_remote(&session.user_id, kind, txn_id, remote)
            .await?;
        self.deliver(&session.user_id, kind, &local).await?;
        self.seen_txns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        self.notifier.notify();
        Ok(())
    }

    /// Queues to-device messages of `sender` for this server's users' devices (`*`: every
    /// device of the user), and hands them to the application services.
    async fn deliver(
        &self,
        sender: &UserId,
        kind: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<String, Value>>,
    ) -> Result<()> {
        let mut out = Vec::new();
        for (user, devices) in messages {
            for (device, content) in devices {
                let event = json!({ "sender": sender, "type": kind, "content": content });
                if device == "*" {
                    for d in self.users.devices(user).await? {
                        out.push(ToDevice {
                            user_id: user.clone(),
                            device_id: d.device_id,
                            event: event.clone(),
                        });
                    }
                } else {
                    out.push(ToDevice {
                        user_id: user.clone(),
                        device_id: device.clone(),
                        event,
                    });
                }
            }
        }
        self.keys.add_to_device(&out).await?;
        if let Some(sink) = &self.edus {
            sink.to_device(&out);
        }
        Ok(())
    }
}

fn merge_signatures(stored: &mut Value, signer: &str, sigs: &Map<String, Value>) {
    if !stored.get("signatures").is_some_and(Value::is_object) {
        stored["signatures"] = json!({});
    }
    let entry = &mut stored["signatures"][signer];
    if !entry.is_object() {
        *entry = json!({});
    }
    for (k, v) in sigs {
        entry[k] = v.clone();
    }
}

/// The users whose keys changed in `(from, to]` who share a joined room with `user_id` (or are
/// `user_id`): what `/keys/changes` and `/sync`'s `device_lists.changed` tell.
pub(crate) async fn shared_key_changes(
    keys: &dyn KeyStore,
    rooms: &dyn RoomStore,
    user_id: &UserId,
    from: i64,
    to: i64,
) -> Result<Vec<OwnedUserId>> {
    let changed = keys.key_changes(from, to).await?;
    let sharing = rooms.sharing_rooms_with(user_id, &changed).await?;
    Ok(changed
        .into_iter()
        .filter(|u| sharing.contains(u))
        .collect())
}
