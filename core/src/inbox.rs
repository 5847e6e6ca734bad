//! The inbox indexer: follows the event stream and copies each room message into the inbox of
//! every local member of its room (and of its sender); the inbox numbers each user's copies
//! with their own counters. A redaction removes the copies of the event it redacts. One
//! indexer runs cluster-wide, so it is the one writer of every user's counters; the inbox
//! records how far it got, so a restart (or another instance taking over) resumes there and
//! numbers nothing twice. [`InboxWatch`] tells every instance how far the inbox is.

use ruma::events::room::member::MembershipState;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use ruma::{events::TimelineEventType, OwnedRoomId, OwnedServerName};

use crate::{
    notifier::Notifier,
    ports::{Inbox, InboxItem, RoomStore, StreamPosition},
    Result, StoredEvent,
};

/// Events read from the stream per step.
const BATCH: usize = 500;

/// The least time between the starts of two steps: under load one step then covers many
/// messages (measured: embedded sends at 396 events/s stepping on every wake-up, ~740 at
/// 50 ms, ~900 at 250 ms). After a quiet spell the first wake-up steps at once, so a lone
/// message reaches the inbox — and live Sandcat delivery — without this wait.
const LINGER: Duration = Duration::from_millis(250);

/// How often an instance looks at the inbox's position while the stream is ahead of it.
const WATCH_EVERY: Duration = Duration::from_millis(20);

pub struct InboxIndexer {
    rooms: Arc<dyn RoomStore>,
    stream: Arc<dyn StreamPosition>,
    inbox: Arc<dyn Inbox>,
    server_name: OwnedServerName,
    watch: InboxWatch,
}

impl InboxIndexer {
    pub fn new(
        rooms: Arc<dyn RoomStore>,
        stream: Arc<dyn StreamPosition>,
        inbox: Arc<dyn Inbox>,
        server_name: OwnedServerName,
    ) -> Self {
        InboxIndexer {
            rooms,
            stream,
            inbox,
            server_name,
            watch: InboxWatch::default(),
        }
    }

    /// Tells `watch` of every step's end, at once (other instances poll for it).
    pub fn with_watch(mut self, watch: InboxWatch) -> Self {
        self.watch = watch;
        self
    }

    /// Indexes the stream up to the current position; returns the position reached.
    pub async fn step(&self) -> Result<i64> {
        let mut from = self.inbox.indexed().await?;
        let until = self.stream.current_pos();
        let mut members: HashMap<OwnedRoomId, HashSet<String>> = HashMap::new();
        while from < until {
            let events = self.rooms.events_between(from, until, BATCH).await?;
            let upto = match events.last() {
                Some(last) if events.len() == BATCH => last.pos,
                _ => until,
            };
            let mut items = Vec::new();
            let mut redacted = Vec::new();
            for ev in &events {
                match ev.pdu.kind {
                    TimelineEventType::RoomMessage if ev.redacted_because.is_none() => {
                        let room = ev.pdu.room_id();
                        if !members.contains_key(room) {
                            members.insert(room.to_owned(), self.local_members(room).await?);
                        }
                        items.extend(self.copies(ev, &members[room]));
                    }
                    TimelineEventType::RoomRedaction => {
                        if let Some(target) = redacts(ev) {
                            redacted.push(target);
                        }
                    }
                    _ => {}
                }
            }
            self.inbox.append(&items, &redacted, upto).await?;
            self.watch.advance(upto);
            from = upto;
        }
        Ok(from)
    }

    /// Indexes whenever the stream moves, until the task is dropped; storage errors are
    /// retried with backoff. Steps start at least [`LINGER`] apart, so that under load one
    /// step (one write to the inbox) covers many messages: on SQLite the indexer shares the
    /// one writer with the sequencers.
    pub async fn run(&self, notifier: Notifier) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut wake = notifier.subscribe();
            let started = Instant::now();
            match self.step().await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    let _ = tokio::time::timeout(Duration::from_secs(1), wake.changed()).await;
                    tokio::time::sleep_until(started + LINGER).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "indexing the inbox failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Local users joined to the room now — not at the event: the indexer runs right behind
    /// the stream, as the application service pushers do.
    async fn local_members(&self, room: &ruma::RoomId) -> Result<HashSet<String>> {
        Ok(self
            .rooms
            .members(room)
            .await?
            .into_iter()
            .filter(|(user, membership)| {
                *membership == MembershipState::Join && user.server_name() == self.server_name
            })
            .map(|(user, _)| user.to_string())
            .collect())
    }

    /// One item per local member, plus the sender's own copy.
    fn copies(&self, ev: &StoredEvent, members: &HashSet<String>) -> Vec<InboxItem> {
        let sender = ev.pdu.sender.as_str();
        let Ok(event) = serde_json::to_string(&ev.pdu) else {
            return Vec::new();
        };
        let mut users: Vec<&str> = members.iter().map(String::as_str).collect();
        if ev.pdu.sender.server_name() == self.server_name && !members.contains(sender) {
            users.push(sender);
        }
        users
            .into_iter()
            .map(|user| InboxItem {
                user: user.to_owned(),
                pos: ev.pos,
                room: ev.pdu.room_id().to_string(),
                event_id: ev.pdu.event_id.to_string(),
                sent: user == sender,
                event: event.clone(),
                ts: i64::from(ev.pdu.origin_server_ts.get()),
            })
            .collect()
    }
}

/// The event a redaction redacts: the top-level `redacts` of older room versions, or the
/// content's `redacts` of version 11 and later.
fn redacts(ev: &StoredEvent) -> Option<String> {
    ev.pdu.redacts.as_ref().map(|r| r.to_string()).or_else(|| {
        ev.pdu.content_value()["redacts"]
            .as_str()
            .map(str::to_owned)
    })
}

/// How far the inbox is indexed, as this instance knows it: the indexer's own instance hears
/// of each step at once, the others look while their stream is ahead of the inbox.
#[derive(Clone)]
pub struct InboxWatch {
    tx: Arc<watch::Sender<i64>>,
}

impl Default for InboxWatch {
    fn default() -> Self {
        InboxWatch {
            tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl InboxWatch {
    /// The inbox is complete up to `pos` (never moves back).
    pub fn advance(&self, pos: i64) {
        self.tx.send_if_modified(|at| {
            let moved = pos > *at;
            if moved {
                *at = pos;
            }
            moved
        });
    }

    /// The position as last seen.
    pub fn indexed(&self) -> i64 {
        *self.tx.borrow()
    }

    /// Subscribe before reading, so that no step between the read and the wait is missed.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.tx.subscribe()
    }

    /// Keeps the position current until the task is dropped: whenever this instance's stream
    /// is ahead of it, reads the inbox's position every [`WATCH_EVERY`].
    pub async fn follow(
        &self,
        inbox: Arc<dyn Inbox>,
        stream: Arc<dyn StreamPosition>,
        notifier: Notifier,
    ) {
        loop {
            let mut wake = notifier.subscribe();
            match inbox.indexed().await {
                Ok(pos) => self.advance(pos),
                Err(e) => tracing::debug!(error = %e, "reading the inbox position"),
            }
            if self.indexed() < stream.current_pos() {
                tokio::time::sleep(WATCH_EVERY).await;
            } else {
                let _ = tokio::time::timeout(Duration::from_secs(5), wake.changed()).await;
            }
        }
    }
}
