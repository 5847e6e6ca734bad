//! Push: what push rules decided for each local user at each event (kept with the event, in
//! the transaction that appends it), the unread counts and notification list read from it,
//! and the pushers that carry notifications to users' phones.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use ruma::{push::Action, OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;

use crate::{Result, StoredEvent};

/// What an event asks for one local user: a notification, perhaps highlighted. Only events
/// whose matching rule says `notify` get one.
#[derive(Debug, Clone)]
pub struct PushAction {
    pub user_id: OwnedUserId,
    pub highlight: bool,
    /// The thread the event is in (its root); `None` on the main timeline.
    pub thread: Option<OwnedEventId>,
    /// The actions of the rule that matched.
    pub actions: Vec<Action>,
}

/// Notifications and highlights not yet read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub notifications: u64,
    pub highlights: u64,
}

impl Counts {
    pub fn add(&mut self, other: Counts) {
        self.notifications += other.notifications;
        self.highlights += other.highlights;
    }
}

/// A room's unread counts: of its main timeline and of each thread. A notification counts
/// until a read receipt covers it: an unthreaded one, or one of its own thread (`main` for
/// the main timeline).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnreadCounts {
    pub main: Counts,
    pub threads: BTreeMap<OwnedEventId, Counts>,
}

impl UnreadCounts {
    /// The main timeline and every thread together.
    pub fn total(&self) -> Counts {
        let mut all = self.main;
        for c in self.threads.values() {
            all.add(*c);
        }
        all
    }
}

/// A notification of a user, as `/notifications` and the push gateway show it.
#[derive(Debug, Clone)]
pub struct Notified {
    pub room_id: OwnedRoomId,
    pub event: StoredEvent,
    pub actions: Vec<Action>,
    pub highlight: bool,
    /// When the event was appended, ms since the epoch.
    pub ts: u64,
    /// Whether a read receipt of the user covers it.
    pub read: bool,
}

/// How an HTTP pusher's notifications carry the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFormat {
    /// The event's type, sender, content and room names.
    Full,
    /// Only ids and counts (`event_id_only`): the app fetches the event itself.
    EventIdOnly,
}

/// A pusher: where a device of a user wants its notifications. Only HTTP pushers (to a push
/// gateway) are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct PusherRecord {
    pub user_id: OwnedUserId,
    /// The device whose session set it; the pusher goes with the device.
    pub device_id: Option<OwnedDeviceId>,
    pub app_id: String,
    pub pushkey: String,
    /// The push gateway's notify URL.
    pub url: String,
    pub format: PushFormat,
    /// The pusher as the client set it (the spec's `Pusher` object), shown back as it is.
    pub body: Value,
    /// When it was set, ms since the epoch.
    pub created_ts: u64,
}

/// A user's `m.push_rules` account data as stored: the position of its last change and its
/// JSON, parsed only when the position is new to the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRules {
    pub pos: i64,
    pub json: String,
}

#[async_trait]
pub trait PushStore: Send + Sync {
    /// The `m.push_rules` account data of those of `users` that have any.
    async fn push_rules_of(
        &self,
        users: &[OwnedUserId],
    ) -> Result<HashMap<OwnedUserId, StoredRules>>;

    /// The unread counts of `user` in each of `rooms` as of the stream position `until`
    /// (rooms without any are left out).
    async fn unread_counts(
        &self,
        user: &UserId,
        rooms: &[OwnedRoomId],
        until: i64,
    ) -> Result<HashMap<OwnedRoomId, UnreadCounts>>;

    /// Unread notifications of `user` across all rooms (a phone's badge).
    async fn unread_total(&self, user: &UserId) -> Result<u64>;

    /// `user`'s notifications below the position `before` (all when `None`), newest first,
    /// at most `limit`; only highlights when `highlights_only`.
    async fn notifications(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: usize,
        highlights_only: bool,
    ) -> Result<Vec<Notified>>;

    /// `user`'s notifications with `after < pos <= until`, oldest first, at most `limit`.
    async fn notifications_after(
        &self,
        user: &UserId,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Notified>>;

    /// Forgets notifications appended before `before_ts` (ms); answers how many.
    async fn forget_notifications(&self, before_ts: u64) -> Result<u64>;

    async fn pushers(&self, user: &UserId) -> Result<Vec<PusherRecord>>;
    /// Every pusher of every user (for the senders).
    async fn all_pushers(&self) -> Result<Vec<PusherRecord>>;
    /// Adds or replaces the user's pusher of its app id and push key; unless `append`, the
    /// pushers of other users with the same app id and push key go.
    async fn set_pusher(&self, pusher: &PusherRecord, append: bool) -> Result<()>;
    /// Removes a pusher: the user's, or, with no user, every user's (a gateway rejected the
    /// push key).
    async fn delete_pusher(&self, user: Option<&UserId>, app_id: &str, pushkey: &str)
        -> Result<()>;
}
