//! EDUs of this server's users out to other servers.
//!
//! - Typing, public read receipts (for the servers in the room) and presence (for the servers
//!   that share a room with the user) are queued per destination as they happen, on the
//!   instance where they happen, and sent in transactions of their own (at most 100 EDUs
//!   each). A destination that cannot be reached after a few attempts loses them: the next
//!   change supersedes them.
//! - To-device messages (for the recipients' server) and device-list and signing-key changes
//!   (for the servers that share a room with the user) must not be lost: a lost room key is a
//!   message nobody there can read. They are kept in the [`FederationOutbox`] at stream
//!   positions, and the destination's event sender (`sender.rs`, one instance cluster-wide)
//!   carries them in its transactions until they are accepted.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use ruma::{
    api::federation::transactions::{edu::Edu, send_transaction_message},
    serde::Raw,
    EventId, MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, ServerName, UserId,
};
use sandcat_core::{
    notifier::Notifier,
    ports::{FederationEdus, FederationOutbox, RoomStore},
    Result,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::client::FederationClient;

/// The most EDUs one transaction carries (the spec's limit).
const MAX_EDUS_PER_TRANSACTION: usize = 100;
/// EDUs waiting for one destination; more are dropped (and logged) while it is unreachable.
const MAX_QUEUED: usize = 1_000;
/// Attempts at one transaction of EDUs before it is dropped.
const ATTEMPTS: u32 = 4;

/// The handle the rest of the server hands EDUs to.
#[derive(Clone)]
pub struct EduSender(Arc<Queues>);

/// The destinations' queues, and what sending takes.
struct Queues {
    client: Arc<FederationClient>,
    rooms: Arc<dyn RoomStore>,
    outbox: Arc<dyn FederationOutbox>,
    notifier: Notifier,
    own: OwnedServerName,
    queues: Mutex<HashMap<OwnedServerName, mpsc::Sender<Value>>>,
    /// Distinguishes this process's EDU transactions from each other and from the event
    /// stream's (whose ids are numbers).
    next_txn: AtomicU64,
    started_ms: u64,
}

impl EduSender {
    pub fn new(
        client: Arc<FederationClient>,
        rooms: Arc<dyn RoomStore>,
        outbox: Arc<dyn FederationOutbox>,
        notifier: Notifier,
        own: OwnedServerName,
    ) -> Self {
        EduSender(Arc::new(Queues {
            client,
            rooms,
            outbox,
            notifier,
            own,
            queues: Mutex::default(),
            next_txn: AtomicU64::new(0),
            started_ms: MilliSecondsSinceUnixEpoch::now().get().into(),
        }))
    }
}

impl Queues {
    /// Queues `edu` for every other server with a joined member in the room.
    fn to_room(self: &Arc<Self>, room_id: &RoomId, edu: Value) {
        let this = self.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            let servers = match this.rooms.joined_servers(&room_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%room_id, error = %e, "the servers of a room could not be read; an EDU is dropped");
                    return;
                }
            };
            for server in servers.into_iter().filter(|s| *s != this.own) {
                this.enqueue(server, edu.clone());
            }
        });
    }

    /// Queues `edu` for every other server with a joined member in a room `user_id` is in.
    fn to_user_rooms(self: &Arc<Self>, user_id: &UserId, edu: Value) {
        let this = self.clone();
        let user_id = user_id.to_owned();
        tokio::spawn(async move {
            let servers = match this.rooms.servers_sharing_rooms_with(&user_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%user_id, error = %e, "the servers sharing a user's rooms could not be read; an EDU is dropped");
                    return;
                }
            };
            for server in servers.into_iter().filter(|s| *s != this.own) {
                this.enqueue(server, edu.clone());
            }
        });
    }

    /// Keeps `edu` for every other server that shares a room with `user_id`, until each has
    /// accepted it.
    async fn keep_for_user_rooms(&self, user_id: &UserId, edu: Value) -> Result<()> {
        let servers = self.rooms.servers_sharing_rooms_with(user_id).await?;
        let edu = edu.to_string();
        let queued: Vec<(OwnedServerName, String)> = servers
            .into_iter()
            .filter(|s| *s != self.own)
            .map(|s| (s, edu.clone()))
            .collect();
        self.keep(&queued).await
    }

    /// Keeps EDUs for their destinations, and wakes the sender.
    async fn keep(&self, edus: &[(OwnedServerName, String)]) -> Result<()> {
        if edus.is_empty() {
            return Ok(());
        }
        self.outbox.queue_edus(edus).await?;
        self.notifier.notify();
        Ok(())
    }

    /// Queues `edu` for `destination`, or drops it when the queue is full.
    fn enqueue(self: &Arc<Self>, destination: OwnedServerName, edu: Value) {
        let queue = self.queue(destination.clone());
        if queue.try_send(edu).is_err() {
            tracing::info!(%destination, "an EDU was dropped: too many wait for that server");
        }
    }

    /// The queue of `destination`, with its task started on first use.
    fn queue(self: &Arc<Self>, destination: OwnedServerName) -> mpsc::Sender<Value> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = queues.get(&destination).filter(|q| !q.is_closed()) {
            return q.clone();
        }
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        queues.insert(destination.clone(), tx.clone());
        tokio::spawn(self.clone().drain(destination, rx));
        tx
    }

    /// Sends what arrives for `destination`, a transaction at a time.
    async fn drain(self: Arc<Self>, destination: OwnedServerName, mut rx: mpsc::Receiver<Value>) {
        while let Some(first) = rx.recv().await {
            let mut edus = vec![first];
            while edus.len() < MAX_EDUS_PER_TRANSACTION {
                match rx.try_recv() {
                    Ok(edu) => edus.push(edu),
                    Err(_) => break,
                }
            }
            self.send(&destination, edus).await;
        }
    }

    async fn send(&self, destination: &OwnedServerName, edus: Vec<Value>) {
        let n = self.next_txn.fetch_add(1, Ordering::Relaxed);
        let txn = format!("edu.{}.{n}", self.started_ms);
        let raws: Vec<Raw<Edu>> = edus
            .iter()
            .filter_map(|e| Raw::new(e).ok().map(Raw::cast_unchecked))
            .collect();
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let mut request = send_transaction_message::v1::Request::new(
                txn.clone().into(),
                self.own.clone(),
                MilliSecondsSinceUnixEpoch::now(),
            );
            request.edus = raws.clone();
            match self.client.send(destination, request).await {
                Ok(_) => return,
                Err(e) if attempt == ATTEMPTS => {
                    tracing::info!(%destination, error = %e, count = edus.len(), "EDUs were dropped");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl FederationEdus for EduSender {
    async fn to_device(&self, destination: &ServerName, content: Value) -> Result<()> {
        if destination == self.0.own {
            return Ok(());
        }
        let edu = json!({ "edu_type": "m.direct_to_device", "content": content });
        self.0
            .keep(&[(destination.to_owned(), edu.to_string())])
            .await
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
        self.0
            .keep_for_user_rooms(
                user_id,
                json!({ "edu_type": "m.device_list_update", "content": content }),
            )
            .await
    }

    fn presence(&self, user_id: &UserId, content: Value) {
        self.0.to_user_rooms(
            user_id,
            json!({ "edu_type": "m.presence", "content": { "push": [content] } }),
        );
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
        self.0
            .keep_for_user_rooms(
                user_id,
                json!({ "edu_type": "m.signing_key_update", "content": content }),
            )
            .await
    }

    fn typing(&self, room_id: &RoomId, user_id: &UserId, typing: bool) {
        self.0.to_room(
            room_id,
            json!({
                "edu_type": "m.typing",
                "content": { "room_id": room_id, "user_id": user_id, "typing": typing },
            }),
        );
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
        self.0.to_room(
            room_id,
            json!({
                "edu_type": "m.receipt",
                "content": { room_id.as_str(): { "m.read": read } },
            }),
        );
    }
}
