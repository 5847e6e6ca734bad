//! EDUs of this server's users out to other servers: typing and public read receipts (for
//! the servers in the room), presence, device-list and signing-key changes (for the servers
//! that share a room with the user) and to-device messages (for the recipients' server).
//!
//! Each is kept in the [`FederationOutbox`] at a stream position, and the destination's
//! sender (`sender.rs`, led by one instance cluster-wide) carries it in its next
//! transaction, in order with the events. To-device messages and key changes wait however
//! long the destination is away, and are kept before the request that sends them is
//! answered: a lost room key is a message nobody there can read. Typing, receipts and
//! presence expire ([`Ephemeral`]): by then the next change has superseded them. They are
//! kept in the background, as the client's request does not wait on other servers.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, ServerName, UserId};
use sandcat_core::{
    notifier::Notifier,
    ports::{FederationEdus, FederationOutbox, NewEdu, RoomStore},
    Result,
};
use serde_json::{json, Value};

/// How long an ephemeral EDU is worth sending.
#[derive(Debug, Clone, Copy)]
enum Ephemeral {
    /// Another server drops a typing notification after 30 s unless renewed.
    Typing,
    /// A read receipt is superseded by the next one; an hour covers a server restarting.
    Receipt,
    /// Presence is told again on the next change.
    Presence,
}

impl Ephemeral {
    fn lifetime(self) -> Duration {
        match self {
            Ephemeral::Typing => Duration::from_secs(20),
            Ephemeral::Receipt => Duration::from_secs(3600),
            Ephemeral::Presence => Duration::from_secs(300),
        }
    }

    fn expires_ms(self) -> u64 {
        u64::from(MilliSecondsSinceUnixEpoch::now().get())
            .saturating_add(self.lifetime().as_millis() as u64)
    }
}

/// The handle the rest of the server hands EDUs to.
#[derive(Clone)]
pub struct EduSender(Arc<Inner>);

struct Inner {
    rooms: Arc<dyn RoomStore>,
    outbox: Arc<dyn FederationOutbox>,
    notifier: Notifier,
    own: OwnedServerName,
}

impl EduSender {
    pub fn new(
        rooms: Arc<dyn RoomStore>,
        outbox: Arc<dyn FederationOutbox>,
        notifier: Notifier,
        own: OwnedServerName,
    ) -> Self {
        EduSender(Arc::new(Inner {
            rooms,
            outbox,
            notifier,
            own,
        }))
    }
}

impl Inner {
    /// Keeps `edu` for every other server that shares a room with `user_id`.
    async fn keep_for_user_rooms(
        &self,
        user_id: &UserId,
        edu: Value,
        expires_ms: Option<u64>,
    ) -> Result<()> {
        let servers = self.rooms.servers_sharing_rooms_with(user_id).await?;
        self.keep_for(servers, edu, expires_ms).await
    }

    /// Keeps `edu` for every other server with a joined member in the room.
    async fn keep_for_room(&self, room_id: &RoomId, edu: Value, expires_ms: u64) -> Result<()> {
        let servers = self.rooms.joined_servers(room_id).await?;
        self.keep_for(servers, edu, Some(expires_ms)).await
    }

    async fn keep_for(
        &self,
        servers: impl IntoIterator<Item = OwnedServerName>,
        edu: Value,
        expires_ms: Option<u64>,
    ) -> Result<()> {
        let edu = edu.to_string();
        let queued: Vec<NewEdu> = servers
            .into_iter()
            .filter(|s| *s != self.own)
            .map(|destination| NewEdu {
                destination,
                edu: edu.clone(),
                expires_ms,
            })
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        self.outbox.queue_edus(&queued).await?;
        self.notifier.notify();
        Ok(())
    }
}

impl EduSender {
    /// Keeps an ephemeral EDU for the servers of a room, in the background.
    fn to_room(&self, room_id: &RoomId, edu: Value, kind: Ephemeral) {
        let (this, room_id) = (self.0.clone(), room_id.to_owned());
        let expires = kind.expires_ms();
        tokio::spawn(async move {
            if let Err(e) = this.keep_for_room(&room_id, edu, expires).await {
                tracing::warn!(%room_id, error = %e, ?kind, "an EDU for other servers was dropped");
            }
        });
    }
}

#[async_trait::async_trait]
impl FederationEdus for EduSender {
    async fn to_device(&self, destination: &ServerName, content: Value) -> Result<()> {
        let edu = json!({ "edu_type": "m.direct_to_device", "content": content });
        self.0.keep_for([destination.to_owned()], edu, None).await
    }

    async fn device_list_update(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: Option<Value>,
    ) -> Result<()> {
        let mut content = json!({
            "user_id": user_id,
            "device_id": device_id,
            "stream_id": MilliSecondsSinceUnixEpoch::now(),
            "prev_id": [],
            "deleted": keys.is_none(),
        });
        if let Some(keys) = keys {
            content["keys"] = keys;
        }
        let edu = json!({ "edu_type": "m.device_list_update", "content": content });
        self.0.keep_for_user_rooms(user_id, edu, None).await
    }

    fn presence(&self, user_id: &UserId, content: Value) {
        let (this, user_id) = (self.0.clone(), user_id.to_owned());
        let edu = json!({ "edu_type": "m.presence", "content": { "push": [content] } });
        let expires = Ephemeral::Presence.expires_ms();
        tokio::spawn(async move {
            if let Err(e) = this.keep_for_user_rooms(&user_id, edu, Some(expires)).await {
                tracing::warn!(%user_id, error = %e, "a presence EDU for other servers was dropped");
            }
        });
    }

    async fn signing_key_update(
        &self,
        user_id: &UserId,
        master: Option<Value>,
        self_signing: Option<Value>,
    ) -> Result<()> {
        let mut content = json!({ "user_id": user_id });
        if let Some(master) = master {
            content["master_key"] = master;
        }
        if let Some(self_signing) = self_signing {
            content["self_signing_key"] = self_signing;
        }
        let edu = json!({ "edu_type": "m.signing_key_update", "content": content });
        self.0.keep_for_user_rooms(user_id, edu, None).await
    }

    fn typing(&self, room_id: &RoomId, user_id: &UserId, typing: bool) {
        let edu = json!({
            "edu_type": "m.typing",
            "content": { "room_id": room_id, "user_id": user_id, "typing": typing },
        });
        self.to_room(room_id, edu, Ephemeral::Typing);
    }

    fn read(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
        thread_id: Option<&str>,
        ts: u64,
    ) {
        let mut data = json!({ "ts": ts });
        if let Some(t) = thread_id {
            data["thread_id"] = json!(t);
        }
        let read = BTreeMap::from([(
            user_id.as_str(),
            json!({ "event_ids": [event_id], "data": data }),
        )]);
        let edu = json!({
            "edu_type": "m.receipt",
            "content": { room_id.as_str(): { "m.read": read } },
        });
        self.to_room(room_id, edu, Ephemeral::Receipt);
    }
}
