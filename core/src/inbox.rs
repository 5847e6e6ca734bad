//! The inbox indexer: follows the event stream and copies each room message into the inbox of
//! every local member of its room (and of its sender); the inbox numbers each user's copies
//! with their own counters. A redaction removes the copies of the event it redacts. One
//! indexer runs cluster-wide, so it is the one writer of every user's counters; the inbox
//! records how far it got, so a restart (or another instance taking over) resumes there and
//! numbers nothing twice. [`InboxWatch`] tells every instance how far the inbox is.
//!
//! Group operations are inbox entries too, so that a member who was offline learns of them in
//! order: in a room that is not a Sandcat friendship, a membership change (join, leave, kick,
//! ban) goes to its target and to the local members, and a change of name, topic, avatar or
//! announcement to the local members but its sender — whether it was made from Sandcat or
//! from a Matrix client.

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
    ports::{Inbox, InboxItem, NativeStore, RoomStore, StreamPosition},
    Result, StoredEvent,
};

/// Events read from the stream per step.
const BATCH: usize = 500;

/// The least time between the starts of two steps while the stream stays busy: one step then
/// covers many messages (measured: embedded sends at 396 events/s stepping on every wake-up,
/// ~740 at 50 ms, ~900 at 250 ms). It is reached by doubling from [`FIRST_LINGER`] with
/// every busy step, so a short burst (a room being made) holds the next message back a few
/// milliseconds, not a quarter of a second.
const LINGER: Duration = Duration::from_millis(250);
const FIRST_LINGER: Duration = Duration::from_millis(4);
/// A step that covered fewer stream positions than this finds the stream quiet: the next
/// wake-up steps at once, so a message that comes alone reaches the inbox — and live Sandcat
/// delivery — without waiting for [`LINGER`].
const BUSY_STEP: i64 = 16;
/// A wake-up that took this long to come finds the stream quiet too.
const QUIET: Duration = Duration::from_millis(50);

/// Room state of Sandcat groups and friendships beyond the Matrix event types.
pub mod sandcat_state {
    /// A group's announcement: `{"text": …}`.
    pub const ANNOUNCEMENT: &str = "org.sandcat.announcement";
    /// A group's whole avatar list (Matrix has the first in `m.room.avatar`).
    pub const AVATARS: &str = "org.sandcat.avatar";
    /// Marks the DM room of a Sandcat friendship from its creation on.
    pub const FRIENDSHIP: &str = "org.sandcat.friendship";
    /// Group details a member is told of when they change.
    pub const GROUP_DETAILS: [&str; 5] = [
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        ANNOUNCEMENT,
        AVATARS,
    ];
    /// The reason of the kicks that dismiss a group.
    pub const DISMISSED: &str = "group dismissed";
}

/// How often an instance looks at the inbox's position while the stream is ahead of it.
const WATCH_EVERY: Duration = Duration::from_millis(20);

pub struct InboxIndexer {
    rooms: Arc<dyn RoomStore>,
    stream: Arc<dyn StreamPosition>,
    inbox: Arc<dyn Inbox>,
    native: Arc<dyn NativeStore>,
    server_name: OwnedServerName,
    watch: InboxWatch,
}

impl InboxIndexer {
    pub fn new(
        rooms: Arc<dyn RoomStore>,
        stream: Arc<dyn StreamPosition>,
        inbox: Arc<dyn Inbox>,
        native: Arc<dyn NativeStore>,
        server_name: OwnedServerName,
    ) -> Self {
        InboxIndexer {
            rooms,
            stream,
            inbox,
            native,
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
        let mut groups: HashMap<OwnedRoomId, bool> = HashMap::new();
        while from < until {
            let events = self.rooms.events_between(from, until, BATCH).await?;
            let upto = match events.last() {
                Some(last) if events.len() == BATCH => last.pos,
                _ => until,
            };
            let mut members = Members::default();
            let mut items = Vec::new();
            let mut redacted = Vec::new();
            for ev in &events {
                let room = ev.pdu.room_id();
                if ev.pdu.kind == TimelineEventType::RoomMember {
                    self.load(&mut members, room, &events, upto).await?;
                    members.apply(ev, &self.server_name);
                }
                match ev.pdu.kind {
                    TimelineEventType::RoomMessage if ev.redacted_because.is_none() => {
                        self.load(&mut members, room, &events, upto).await?;
                        items.extend(self.copies(ev, members.of(room)));
                    }
                    TimelineEventType::RoomRedaction => {
                        if let Some(target) = redacts(ev) {
                            redacted.push(target);
                        }
                    }
                    _ if ev.pdu.state_key.is_some() => {
                        let Some(recipients) = group_recipients(ev) else {
                            continue;
                        };
                        if !groups.contains_key(room) {
                            groups.insert(room.to_owned(), self.is_group(room).await?);
                        }
                        if groups.get(room) == Some(&true) {
                            self.load(&mut members, room, &events, upto).await?;
                            items.extend(self.notices(ev, recipients, members.of(room)));
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

    /// Loads the room's local members as they were before this batch of `events` (which ends
    /// at stream position `upto`): its members at `upto`, with the batch's membership changes
    /// undone. Walking the batch then gives the members at each event. Members "now" would
    /// not do: a change committed after `upto` (on the pipeline, committed before its
    /// position is published) would count for the batch's events.
    async fn load(
        &self,
        members: &mut Members,
        room: &ruma::RoomId,
        events: &[StoredEvent],
        upto: i64,
    ) -> Result<()> {
        if members.0.contains_key(room) {
            return Ok(());
        }
        let mut now = self.local_members(room, upto).await?;
        let mut seen = HashSet::new();
        for ev in events
            .iter()
            .filter(|e| e.pdu.room_id() == room && e.pdu.kind == TimelineEventType::RoomMember)
        {
            let Some(user) = ev.pdu.state_key.as_deref() else {
                continue;
            };
            if seen.insert(user.to_owned()) {
                if prev_membership(ev) == Some(MembershipState::Join) {
                    now.insert(user.to_owned());
                } else {
                    now.remove(user);
                }
            }
        }
        members.0.insert(room.to_owned(), now);
        Ok(())
    }

    /// Indexes whenever the stream moves, until the task is dropped; storage errors are
    /// retried with backoff. While the stream stays busy, steps start up to [`LINGER`] apart,
    /// so that one step (one write to the inbox) covers many messages: on SQLite the indexer
    /// shares the one writer with the sequencers. While it is quiet (the last step covered
    /// little, or the next wake-up was long in coming), a wake-up steps at once.
    pub async fn run(&self, notifier: Notifier) {
        let mut backoff = Duration::from_millis(100);
        let mut reached = 0;
        let mut linger = Duration::ZERO;
        loop {
            let mut wake = notifier.subscribe();
            let started = Instant::now();
            match self.step().await {
                Ok(now) => {
                    backoff = Duration::from_millis(100);
                    linger = if now - reached >= BUSY_STEP {
                        (linger * 2).clamp(FIRST_LINGER, LINGER)
                    } else {
                        Duration::ZERO
                    };
                    reached = now;
                    let waiting = Instant::now();
                    let _ = tokio::time::timeout(Duration::from_secs(1), wake.changed()).await;
                    if waiting.elapsed() >= QUIET {
                        linger = Duration::ZERO;
                    }
                    tokio::time::sleep_until(started + linger).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "indexing the inbox failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Local users joined to the room as of stream position `at`.
    async fn local_members(&self, room: &ruma::RoomId, at: i64) -> Result<HashSet<String>> {
        Ok(self
            .rooms
            .members_at(room, at)
            .await?
            .into_iter()
            .filter(|(user, membership)| {
                *membership == MembershipState::Join && user.server_name() == self.server_name
            })
            .map(|(user, _)| user.to_string())
            .collect())
    }

    /// Whether the room is a group to Sandcat: any room but a friendship's.
    async fn is_group(&self, room: &ruma::RoomId) -> Result<bool> {
        if !self.native.friends_in_room(room.as_str()).await?.is_empty() {
            return Ok(false);
        }
        let marked = self
            .rooms
            .state_event(room, sandcat_state::FRIENDSHIP, "")
            .await?;
        Ok(marked.is_none())
    }

    /// The items of a group operation: one for each local recipient, all received.
    fn notices(
        &self,
        ev: &StoredEvent,
        recipients: Recipients,
        members: &HashSet<String>,
    ) -> Vec<InboxItem> {
        let Ok(event) = serde_json::to_string(&ev.pdu) else {
            return Vec::new();
        };
        let event: Arc<str> = event.into();
        let sender = ev.pdu.sender.as_str();
        let target = ev.pdu.state_key.as_deref().unwrap_or_default();
        let mut users: Vec<&str> = match recipients {
            Recipients::TargetOnly => Vec::new(),
            Recipients::TargetAndMembers => members
                .iter()
                .map(String::as_str)
                .filter(|m| *m != target)
                .collect(),
            Recipients::MembersButSender => members
                .iter()
                .map(String::as_str)
                .filter(|m| *m != sender)
                .collect(),
        };
        if recipients != Recipients::MembersButSender
            && ruma::UserId::parse(target).is_ok_and(|t| t.server_name() == self.server_name)
        {
            users.push(target);
        }
        users.sort_unstable();
        users
            .into_iter()
            .map(|user| item(ev, &event, user, false))
            .collect()
    }

    /// One item per local member, plus the sender's own copy.
    fn copies(&self, ev: &StoredEvent, members: &HashSet<String>) -> Vec<InboxItem> {
        let sender = ev.pdu.sender.as_str();
        let Ok(event) = serde_json::to_string(&ev.pdu) else {
            return Vec::new();
        };
        let event: Arc<str> = event.into();
        let mut users: Vec<&str> = members.iter().map(String::as_str).collect();
        if ev.pdu.sender.server_name() == self.server_name && !members.contains(sender) {
            users.push(sender);
        }
        users
            .into_iter()
            .map(|user| item(ev, &event, user, user == sender))
            .collect()
    }
}

/// The item of `ev` (its PDU as JSON: `event`) for `user`.
fn item(ev: &StoredEvent, event: &Arc<str>, user: &str, sent: bool) -> InboxItem {
    InboxItem {
        user: user.to_owned(),
        pos: ev.pos,
        room: ev.pdu.room_id().to_string(),
        event_id: ev.pdu.event_id.to_string(),
        sent,
        event: event.clone(),
        ts: i64::from(ev.pdu.origin_server_ts.get()),
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

/// The local members of rooms, as of the event the indexer is at.
#[derive(Default)]
struct Members(HashMap<OwnedRoomId, HashSet<String>>);

impl Members {
    fn of(&self, room: &ruma::RoomId) -> &HashSet<String> {
        static NONE: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
        self.0
            .get(room)
            .unwrap_or_else(|| NONE.get_or_init(HashSet::new))
    }

    /// Follows a membership event of a loaded room.
    fn apply(&mut self, ev: &StoredEvent, server_name: &ruma::ServerName) {
        let (Some(set), Some(user)) = (
            self.0.get_mut(ev.pdu.room_id()),
            ev.pdu.state_key.as_deref(),
        ) else {
            return;
        };
        if !ruma::UserId::parse(user).is_ok_and(|u| u.server_name() == server_name) {
            return;
        }
        if ev.pdu.membership() == Some(MembershipState::Join) {
            set.insert(user.to_owned());
        } else {
            set.remove(user);
        }
    }
}

/// The membership a membership event replaced.
fn prev_membership(ev: &StoredEvent) -> Option<MembershipState> {
    ev.unsigned
        .as_ref()
        .and_then(|u| u.pointer("/prev_content/membership"))
        .and_then(serde_json::Value::as_str)
        .map(MembershipState::from)
}

/// Who is told of a group operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recipients {
    /// Only the member it is about (a kick that dismisses the group).
    TargetOnly,
    /// The member it is about and the other local members.
    TargetAndMembers,
    /// The local members but the one who made it (a change of the group's details).
    MembersButSender,
}

/// Whether a state event is a group operation, and for whom.
fn group_recipients(ev: &StoredEvent) -> Option<Recipients> {
    let kind = ev.pdu.kind.to_string();
    if sandcat_state::GROUP_DETAILS.contains(&kind.as_str()) {
        return (ev.pdu.state_key.as_deref() == Some("")).then_some(Recipients::MembersButSender);
    }
    if kind != "m.room.member" {
        return None;
    }
    let now = ev.pdu.membership()?;
    let before = prev_membership(ev);
    match now {
        // The creator's own first join: their client made the group.
        MembershipState::Join if u64::from(ev.pdu.depth) <= 2 => None,
        MembershipState::Join if before != Some(MembershipState::Join) => {
            Some(Recipients::TargetAndMembers)
        }
        MembershipState::Leave | MembershipState::Ban
            if matches!(
                before,
                Some(MembershipState::Join) | Some(MembershipState::Invite)
            ) =>
        {
            let reason = ev.pdu.content_value()["reason"].as_str().map(str::to_owned);
            if reason.as_deref() == Some(sandcat_state::DISMISSED) {
                Some(Recipients::TargetOnly)
            } else {
                Some(Recipients::TargetAndMembers)
            }
        }
        _ => None,
    }
}
