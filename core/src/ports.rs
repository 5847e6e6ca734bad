//! The ports: what the domain needs from storage and transport, shaped around domain
//! operations. Each has an embedded implementation and a pipeline implementation in
//! `sandcat-backends`; both pass the same contract tests.

use std::collections::HashMap;

use async_trait::async_trait;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::Value;

use crate::{intent::RoomBatch, Error, Pdu, Result, StoredEvent};

mod inbox;
pub use inbox::{number_inbox_items, Inbox, InboxEntry, InboxItem, InboxSeqs, SeqRange};
mod threads;
pub use threads::{RoomThreads, ThreadActivity};
mod room_lists;
pub use room_lists::{RoomLists, BUMP_EVENT_TYPES};
mod room_times;
pub use room_times::RoomTimes;
mod profile_fields;
pub use profile_fields::ProfileFields;
mod login_tokens;
pub use login_tokens::LoginTokens;
mod registration_tokens;
mod threepids;
pub use threepids::{
    AddressInvite, IdentityServers, StoredInvite, ThreePid, ThreePidStore, ValidationPurpose,
    ValidationSession,
};
mod web_pages;
pub use web_pages::{WebContent, WebPages};
mod mail;
pub use mail::{Mail, Mailer};
pub use registration_tokens::{RegistrationToken, RegistrationTokens};
mod users;
pub use users::{DeviceRecord, TokenOwner, TokenRotation, UserRecord, UserStore};
mod account_standing;
pub use account_standing::{AccountFlag, AccountFlags, AccountStanding, Standing};
mod room_search;
pub use room_search::{
    RoomSearch, SearchHits, SearchOrder, SearchQuery, SearchedRoom, SEARCHED_TYPES,
};
mod sliding_connections;
pub use sliding_connections::{ConnectionKey, SlidingConnections, POSITION_KEPT_MS};
mod room_dag;
pub use room_dag::{
    HeldEvent, HeldStatus, HistoryRange, NoRemoteFetch, NoRemoteRooms, PublicRoomsPage,
    PublicRoomsQuery, RemoteAppend, RemoteFetch, RemoteRooms, RemoteSpace, StateChange, StateReset,
    StoredState, TopoPoint, HISTORY_START, OUTLIERS_BELOW,
};
mod remote_keys;
pub use remote_keys::{NoRemoteKeys, RemoteKeys};
mod remote_media;
pub use remote_media::{NoRemoteMedia, RemoteFile, RemoteMedia};
mod key_backups;
pub use key_backups::{BackedUpKey, BackupVersion, KeyBackups, KeyScope};
mod reports;
pub use reports::{Report, Reported, Reports};
mod openid_tokens;
pub use openid_tokens::OpenIdTokens;
mod received_transactions;
pub use received_transactions::{ReceivedTransactions, TRANSACTION_KEPT_MS};
mod push;
pub use push::{
    Counts, Notified, PushAction, PushFormat, PushStore, PusherRecord, StoredRules, UnreadCounts,
};
mod server_keys;
pub use server_keys::{KeyFetch, NoKeyFetch, ServerKey, ServerKeyStore};
mod federation_outbox;
pub use federation_outbox::{FederationOutbox, NewEdu, QueuedEdu};

/// A room's heads and current state, as the sequencer needs it to append.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    pub version: RoomVersionId,
    /// The forward extremities: the events no other event of the room names as a prev event
    /// yet. A new local event names them (at most [`MAX_PREV_EVENTS`]) as its prev events.
    pub extremities: Vec<OwnedEventId>,
    /// The greatest depth of the room's events.
    pub depth: u64,
    pub state: Vec<Pdu>,
}

/// The most prev events a local event names (as Synapse does); extremities beyond it stay
/// extremities until a later event names them.
pub const MAX_PREV_EVENTS: usize = 20;

/// An event ready to be appended, with everything the store must index.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub pdu: Pdu,
    /// The canonical JSON of the PDU as signed.
    pub json: String,
    pub unsigned: Option<Value>,
    pub txn: Option<(OwnedUserId, String, String)>,
    /// Set on the create event: the room version.
    pub room_version: Option<RoomVersionId>,
    /// Set on a redaction: the target and its redacted JSON.
    pub redaction: Option<(OwnedEventId, String)>,
    /// Set when the state before the event is not that after its first prev event (it
    /// merges forks, whose states were resolved): the event gets a state group of its own.
    pub state_before: Option<StoredState>,
    /// Set on an event of another server: the current state it brings.
    pub remote: Option<RemoteAppend>,
    /// What push rules asked of local users for it: kept in the same transaction.
    pub push: Vec<PushAction>,
}

/// One batch of an [`RoomStore::append_group`].
#[derive(Debug, Clone, Copy)]
pub struct AppendBatch<'a> {
    pub events: &'a [NewEvent],
    pub batch_id: Option<&'a str>,
}

/// What became of a batch: the ids of its events, or the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Appended(Vec<OwnedEventId>),
    Refused(crate::error::ErrorCode, String),
}

/// Which way to read a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A membership of a user in a room, with the stream position where it was set.
#[derive(Debug, Clone)]
pub struct Membership {
    pub room_id: OwnedRoomId,
    pub membership: MembershipState,
    pub pos: i64,
    pub event_id: OwnedEventId,
}

/// Events, room state, memberships, aliases and the public room directory.
#[async_trait]
pub trait RoomStore: RoomThreads + RoomLists + RoomTimes + RoomSearch + Send + Sync {
    async fn load_room(&self, room_id: &RoomId) -> Result<Option<RoomSnapshot>>;
    /// Appends sequenced events atomically (all or none), returning their stream positions.
    /// The prev events of a batch's first event must all still be forward extremities of the
    /// room (the heads the sequencer built on); they stop being extremities and the batch's last
    /// event becomes one. Otherwise nothing is written and `Error::Conflict` tells the
    /// sequencer to rebuild on the new heads.
    /// `batch_id` (a batch from a bus that may redeliver) is recorded with the event ids in
    /// the same transaction.
    async fn append(&self, events: &[NewEvent], batch_id: Option<&str>) -> Result<Vec<i64>> {
        let mut positions = self
            .append_group(&[AppendBatch { events, batch_id }])
            .await?;
        positions
            .pop()
            .ok_or_else(|| Error::storage("an append returned no positions"))
    }
    /// Appends several batches (of different rooms) in one transaction, all or none: group
    /// commit, for a sequencer lane that has several batches waiting. Positions per batch.
    async fn append_group(&self, batches: &[AppendBatch<'_>]) -> Result<Vec<Vec<i64>>>;
    /// What became of a batch of the bus, if it was sequenced.
    async fn batch_outcome(&self, batch_id: &str) -> Result<Option<BatchOutcome>>;
    /// Records the outcome of a batch that appended nothing (refused, or only replays).
    async fn record_batch_outcome(&self, batch_id: &str, outcome: &BatchOutcome) -> Result<()>;
    /// The outcomes known among `batch_ids`.
    async fn batch_outcomes(&self, batch_ids: &[String]) -> Result<Vec<(String, BatchOutcome)>> {
        let mut out = Vec::new();
        for id in batch_ids {
            if let Some(o) = self.batch_outcome(id).await? {
                out.push((id.clone(), o));
            }
        }
        Ok(out)
    }
    async fn event(&self, event_id: &ruma::EventId) -> Result<Option<StoredEvent>>;
    /// The event a device sent to a room with this transaction id (ids are per room: the room
    /// is part of the request path that the id makes idempotent).
    async fn txn_event(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>>;
    async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>>;
    async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>>;
    /// The state of the room after an event, `(type, state_key) → event id`; `None` for an
    /// event the store does not know or one stored before it kept the state at every event.
    async fn state_after(
        &self,
        event_id: &ruma::EventId,
    ) -> Result<Option<HashMap<(String, String), OwnedEventId>>>;
    /// The events `event_ids` and every event in their auth chains that the store has, for
    /// state resolution and authorization.
    async fn auth_graph(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Pdu>>;
    /// Stores an outlier: an event of another server kept for what it authorizes, with no
    /// place in the stream or the room's history (a position below [`OUTLIERS_BELOW`]), and
    /// no state.
    async fn add_outlier(&self, pdu: &Pdu, json: &str) -> Result<()>;
    /// Stores an event of the room's past, filled in later (backfilled): in its history (by
    /// depth) but not in the stream, at a position below zero and above the outliers'. An
    /// outlier it was stored as before moves there.
    async fn add_backfilled(&self, pdu: &Pdu, json: &str) -> Result<()>;
    /// The room's earliest events in its history (those of the least depth), if it is a room
    /// that other servers write to: where its history is filled in from.
    async fn earliest_events(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>>;
    /// Keeps an event of another server that does not join the room's timeline.
    async fn hold(&self, event: &HeldEvent) -> Result<()>;
    /// Why an event is held back, if it is.
    async fn held(&self, event_id: &ruma::EventId) -> Result<Option<(HeldStatus, String)>>;
    /// The servers with a joined member in a room other servers share (this one too).
    async fn federated_servers(&self) -> Result<Vec<ruma::OwnedServerName>>;
    /// The PDU of an event as stored: as signed, redacted if it was.
    async fn event_json(&self, event_id: &ruma::EventId) -> Result<Option<String>>;
    /// The PDUs of many events as stored, in no particular order; those the store lacks are
    /// left out. For answers of thousands of events (`send_join`, `/state`): one query per
    /// chunk rather than per event.
    async fn events_json(&self, event_ids: &[OwnedEventId]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(event_ids.len());
        for id in event_ids {
            out.extend(self.event_json(id).await?);
        }
        Ok(out)
    }
    /// An event held back, as received.
    async fn held_pdu(&self, event_id: &ruma::EventId) -> Result<Option<HeldEvent>>;
    async fn state_event(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>>;
    /// The room's state entries that changed at positions in `(after, until]`, each with
    /// the event it holds after the latest change: the latest state event of the entry, or
    /// what state resolution set there since (see [`RoomStore::state_resets`]; an entry it
    /// left out is not answered).
    async fn state_changes(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StoredEvent>>;
    /// The latest state reset per entry at positions in `(after, until]`: entries state
    /// resolution set to another event than the one at that position (rooms other servers
    /// write to only).
    async fn state_resets(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StateReset>>;
    async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Membership>>;
    /// Every room the user has a membership in (any kind), minus forgotten ones.
    async fn memberships(&self, user_id: &UserId) -> Result<Vec<Membership>>;
    /// `(user, membership)` of everyone with a membership in the room.
    async fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>>;
    /// Whether this server is in the room: it has the room's state (its create event), not
    /// only memberships of its users outside it (see the sequencer's `outside.rs`).
    async fn is_resident(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .state_event(room_id, "m.room.create", "")
            .await?
            .is_some())
    }
    /// The other servers with a joined member in a room `user_id` has joined: where what the
    /// user does outside rooms (presence, device keys) is told. Only rooms shared with another
    /// server can name one, so only those need reading.
    async fn servers_sharing_rooms_with(
        &self,
        user_id: &UserId,
    ) -> Result<std::collections::BTreeSet<ruma::OwnedServerName>>;
    /// Those of `users` who share a joined room with `user_id` (`user_id` too, if listed).
    async fn sharing_rooms_with(
        &self,
        user_id: &UserId,
        users: &[OwnedUserId],
    ) -> Result<std::collections::HashSet<OwnedUserId>>;
    /// The servers with a joined member in the room (this one too, if it has one).
    async fn joined_servers(
        &self,
        room_id: &RoomId,
    ) -> Result<std::collections::BTreeSet<ruma::OwnedServerName>> {
        Ok(self
            .members(room_id)
            .await?
            .into_iter()
            .filter(|(_, m)| *m == MembershipState::Join)
            .map(|(u, _)| u.server_name().to_owned())
            .collect())
    }
    /// The room's memberships as of stream position `at`: the current ones, but for a user
    /// whose membership changed after `at` (committed, perhaps not yet published), the one
    /// their latest membership event at or below `at` gave (none before it: left out).
    async fn members_at(
        &self,
        room_id: &RoomId,
        at: i64,
    ) -> Result<Vec<(OwnedUserId, MembershipState)>>;
    /// Events with `after < pos <= until`, oldest first when `Forward`, newest first when
    /// `Backward`; at most `limit`.
    async fn timeline(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// A page of the room's history in topological order (depth, then stream position):
    /// `/messages` and `/context`. For rooms only this server writes to, it is stream order.
    async fn history(
        &self,
        room_id: &RoomId,
        range: HistoryRange,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    /// Events related to `event_id` (by `m.relates_to`), filtered by relation type and event type.
    async fn relations(
        &self,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
    async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()>;
    /// The user's notifications in the room that no read receipt (public or private) covers.
    async fn count_unread(&self, room_id: &RoomId, user_id: &UserId) -> Result<UnreadCounts>;
    /// What a sync shows of rooms it sends whole (an initial sync, a room joined since), for
    /// many rooms in a few queries rather than several per room.
    async fn room_overviews(
        &self,
        rooms: &[OwnedRoomId],
        user_id: &UserId,
        until: i64,
        latest: usize,
    ) -> Result<HashMap<OwnedRoomId, RoomOverview>>;
    async fn set_alias(&self, alias: &str, room_id: &RoomId, creator: &UserId) -> Result<()>;
    async fn alias(&self, alias: &str) -> Result<Option<(OwnedRoomId, OwnedUserId)>>;
    async fn delete_alias(&self, alias: &str) -> Result<bool>;
    async fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<String>>;
    async fn set_public(&self, room_id: &RoomId, public: bool) -> Result<()>;
    async fn is_public(&self, room_id: &RoomId) -> Result<bool>;
    async fn public_rooms(&self) -> Result<Vec<OwnedRoomId>>;
    /// Events of every room with `after < pos <= until`, oldest first; at most `limit`.
    async fn events_between(
        &self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;
}

/// A room as a sync that sends it whole needs it.
#[derive(Debug, Clone, Default)]
pub struct RoomOverview {
    /// The current state, oldest first.
    pub state: Vec<StoredEvent>,
    /// The latest events up to the position asked for, newest first.
    pub latest: Vec<StoredEvent>,
    /// The user's notifications no read receipt covers.
    pub unread: UnreadCounts,
}

/// A read receipt as stored.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub receipt_type: String,
    pub thread_id: Option<String>,
    pub event_id: OwnedEventId,
    pub ts: u64,
    pub pos: i64,
}

/// Per-user client data: account data, filters, receipts.
#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<i64>;
    async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<Value>>;
    /// `(room, type, content)` changed after `after`.
    async fn account_data_since(
        &self,
        user_id: &UserId,
        after: i64,
    ) -> Result<Vec<(Option<OwnedRoomId>, String, Value)>>;
    async fn create_filter(&self, user_id: &UserId, filter: &Value) -> Result<String>;
    async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Option<Value>>;
    async fn set_receipt(&self, receipt: &Receipt) -> Result<i64>;
    /// Receipts in the room with `pos > after`.
    async fn receipts_since(&self, room_id: &RoomId, after: i64) -> Result<Vec<Receipt>>;
    /// Every receipt of each of `rooms`, in one query.
    async fn receipts_of(
        &self,
        rooms: &[OwnedRoomId],
    ) -> Result<HashMap<OwnedRoomId, Vec<Receipt>>>;
    async fn receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        receipt_type: &str,
    ) -> Result<Option<Receipt>>;
}

/// The stream position every persistent write takes a number from.
pub trait StreamPosition: Send + Sync {
    /// The highest position whose write has committed: `/sync` never reads past it.
    fn current_pos(&self) -> i64;
}

/// The room log. `submit` returns once the batch is sequenced and persisted (or refused).
#[async_trait]
pub trait EventBus: Send + Sync {
    async fn submit(&self, batch: RoomBatch) -> Result<Vec<StoredEvent>>;
    /// Stops accepting batches and waits for the ones in flight.
    async fn shutdown(&self);
}

/// What the bus hands each batch to: the room sequencer.
#[async_trait]
pub trait BatchHandler: Send + Sync {
    async fn handle(&self, batch: RoomBatch) -> Result<Vec<StoredEvent>>;
    /// Handles a batch that may be delivered more than once: the first delivery sequences it
    /// and records the outcome under `batch_id`; later ones return that outcome.
    async fn handle_once(&self, batch_id: &str, batch: RoomBatch) -> Result<Vec<StoredEvent>>;
    /// Handles what waits on a lane at once: `(batch id, batch)` pairs, a batch with an id as
    /// `handle_once` would. Answers in the same order.
    async fn handle_group(
        &self,
        jobs: Vec<(Option<String>, RoomBatch)>,
    ) -> Vec<Result<Vec<StoredEvent>>> {
        let mut out = Vec::with_capacity(jobs.len());
        for (id, batch) in jobs {
            out.push(match id {
                Some(id) => self.handle_once(&id, batch).await,
                None => self.handle(batch).await,
            });
        }
        out
    }
    /// Forgets cached room heads (the rooms this instance sequences changed).
    fn reset(&self) {}
}

/// One to-device message for one device.
#[derive(Debug, Clone)]
pub struct ToDevice {
    pub user_id: OwnedUserId,
    pub device_id: String,
    /// The event as delivered: `{sender, type, content}`.
    pub event: Value,
}

/// End-to-end encryption keys and the to-device inbox.
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn set_device_keys(&self, user_id: &UserId, device_id: &str, keys: &Value) -> Result<()>;
    /// `(device_id, keys)` of every device of the user that uploaded keys.
    async fn device_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>>;
    /// Adds one-time keys (`fallback` false) or replaces the fallback keys (`fallback` true).
    async fn add_one_time_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, Value)],
        fallback: bool,
    ) -> Result<()>;
    /// Unclaimed one-time keys per algorithm.
    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<(String, u64)>>;
    async fn unused_fallback_algorithms(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<String>>;
    /// Takes one one-time key of the algorithm, or else the fallback key: `(key id, key)`.
    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>>;
    async fn set_cross_signing_key(&self, user_id: &UserId, kind: &str, key: &Value) -> Result<()>;
    /// `(kind, key)`: `master`, `self_signing`, `user_signing`.
    async fn cross_signing_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>>;
    /// Users whose device or cross-signing keys changed in `(after, until]`.
    async fn key_changes(&self, after: i64, until: i64) -> Result<Vec<OwnedUserId>>;
    async fn add_to_device(&self, messages: &[ToDevice]) -> Result<()>;
    /// Messages for the device with a position in `(after, until]`, oldest first.
    async fn to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Value)>>;
    /// Drops messages the device has acknowledged (positions up to `up_to`).
    async fn ack_to_device(&self, user_id: &UserId, device_id: &str, up_to: i64) -> Result<()>;
}

/// Where an application service's transaction stream stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppserviceState {
    /// Every event at or below this position was pushed (or was of no interest).
    pub last_pos: i64,
    /// The id the next new transaction takes.
    pub next_txn: u64,
    /// A transaction built but not yet acknowledged: `(txn id, up to position, body)`. It is
    /// sent again, unchanged, until the application service accepts it.
    pub pending: Option<(u64, i64, String)>,
}

/// Persistent transaction state of application services.
#[async_trait]
pub trait AppserviceStore: Send + Sync {
    async fn appservice_state(&self, id: &str) -> Result<Option<AppserviceState>>;
    async fn set_appservice_state(&self, id: &str, state: &AppserviceState) -> Result<()>;
}

/// Receives ephemeral data as it happens, for pushers such as application services.
pub trait EduSink: Send + Sync {
    /// A room EDU (`m.typing`, `m.receipt`) in client format with `room_id`.
    fn room_edu(&self, room_id: &RoomId, edu: Value);
    /// An `m.presence` event of `user_id`.
    fn presence(&self, user_id: &UserId, edu: Value);
    /// To-device messages as queued for their devices.
    fn to_device(&self, messages: &[ToDevice]);
}

/// EDUs of this server's users for other servers (federation), as they happen: typing
/// changes and public read receipts for the servers in the room, to-device messages, and
/// device changes for the servers that share a room with the user. Typing, receipts and
/// presence are sent at once, best effort (the next change supersedes them); to-device
/// messages and key changes are kept until accepted (`Ok` once they are), since a lost one
/// leaves another server's users unable to decrypt.
#[async_trait::async_trait]
pub trait FederationEdus: Send + Sync {
    fn typing(&self, room_id: &RoomId, user_id: &UserId, typing: bool);
    /// To-device messages of a user of this server for users of `destination`: the content
    /// of an `m.direct_to_device` EDU.
    async fn to_device(&self, destination: &ruma::ServerName, content: Value) -> Result<()>;
    /// A user's device changed (its keys: `None` when it was deleted), for the servers that
    /// share a room with the user.
    async fn device_list_update(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: Option<Value>,
    ) -> Result<()>;
    /// A user's presence changed (the content of an `m.presence` event), for the servers that
    /// share a room with the user.
    fn presence(&self, user_id: &UserId, content: Value);
    /// A user's master or self-signing key changed (the new ones), for the servers that
    /// share a room with the user.
    async fn signing_key_update(
        &self,
        user_id: &UserId,
        master: Option<Value>,
        self_signing: Option<Value>,
    ) -> Result<()>;
    fn read(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &ruma::EventId,
        thread_id: Option<&str>,
        ts: u64,
    );
}

/// What Sandcat clients know about a user beyond the Matrix profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NativeProfile {
    pub user_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub gender: String,
    pub age: i32,
    pub region: Option<String>,
    pub address: Option<String>,
    pub birthday: Option<i64>,
    pub signature: String,
    pub create_time: i64,
    pub update_time: i64,
}

/// Where a friend request or friendship stands; the numbers are Sandcat's wire values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FriendshipStatus {
    #[default]
    Pending,
    Accepted,
    Rejected,
    Blacked,
    Deleted,
}

impl FriendshipStatus {
    pub fn as_i32(self) -> i32 {
        match self {
            FriendshipStatus::Pending => 0,
            FriendshipStatus::Accepted => 1,
            FriendshipStatus::Rejected => 2,
            FriendshipStatus::Blacked => 3,
            FriendshipStatus::Deleted => 4,
        }
    }

    /// The status of a stored number (an unknown one reads as pending).
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => FriendshipStatus::Accepted,
            2 => FriendshipStatus::Rejected,
            3 => FriendshipStatus::Blacked,
            4 => FriendshipStatus::Deleted,
            _ => FriendshipStatus::Pending,
        }
    }
}

/// A friend request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Friendship {
    pub fs_id: String,
    pub user_id: String,
    pub friend_id: String,
    pub status: FriendshipStatus,
    pub apply_msg: Option<String>,
    pub req_remark: Option<String>,
    pub resp_msg: Option<String>,
    pub resp_remark: Option<String>,
    pub source: String,
    pub create_time: i64,
    pub update_time: i64,
}

/// One direction of a friendship, with the DM room that carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FriendRow {
    pub user_id: String,
    pub friend_id: String,
    pub fs_id: String,
    pub status: FriendshipStatus,
    pub remark: Option<String>,
    pub source: String,
    pub room_id: String,
    pub create_time: i64,
    pub update_time: i64,
}

/// The outcome of trying an emailed verification code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// The right code: it is used up.
    Accepted,
    /// A wrong code; the code stays valid for the tries left.
    Wrong,
    /// Older than its lifetime, or used up by too many wrong tries (it is gone).
    Expired,
    /// No code was sent to this address (or it was used).
    Missing,
}

/// Storage of the Sandcat native API (user ids here are Matrix localparts).
#[async_trait]
pub trait NativeStore: Send + Sync {
    /// Stores a new code for `email`, issued at `now_ms`, replacing an earlier one issued at
    /// least `min_interval_ms` before; `false` (nothing stored) when the earlier one is newer.
    /// Codes older than `ttl_ms` (never tried) are dropped, so the table stays small.
    async fn put_code(
        &self,
        email: &str,
        code: &str,
        now_ms: i64,
        min_interval_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool>;
    /// Counts a try of `code` for `email`, atomically, cluster-wide: a code is accepted once,
    /// within `ttl_ms` of being issued, and only among its first `max_tries` tries.
    async fn try_code(
        &self,
        email: &str,
        code: &str,
        now_ms: i64,
        ttl_ms: i64,
        max_tries: i64,
    ) -> Result<CodeCheck>;
    async fn native_profile(&self, user_id: &str) -> Result<Option<NativeProfile>>;
    async fn put_native_profile(&self, profile: &NativeProfile) -> Result<()>;
    /// Forgets what Sandcat kept about a user (an erased account), sign-in links included.
    async fn delete_native_profile(&self, user_id: &str) -> Result<()>;
    /// The user with this email or phone.
    async fn user_by_contact(&self, contact: &str) -> Result<Option<String>>;
    /// The user an identity of a sign-in provider (`github`, `google`) is linked to.
    async fn oauth_user(&self, provider: &str, subject: &str) -> Result<Option<String>>;
    /// Links an identity to a user; `false` (nothing changed) when it is linked already.
    async fn link_oauth(&self, provider: &str, subject: &str, user_id: &str) -> Result<bool>;
    async fn put_friendship(&self, fs: &Friendship) -> Result<()>;
    async fn friendship(&self, fs_id: &str) -> Result<Option<Friendship>>;
    /// Requests sent to `user_id` with the status, updated after `since`.
    async fn friendships_to(
        &self,
        user_id: &str,
        status: FriendshipStatus,
        since: i64,
    ) -> Result<Vec<Friendship>>;
    async fn put_friend(&self, row: &FriendRow) -> Result<()>;
    async fn friend(&self, user_id: &str, friend_id: &str) -> Result<Option<FriendRow>>;
    /// Friend rows of `user_id` updated after `since`.
    async fn friends(&self, user_id: &str, since: i64) -> Result<Vec<FriendRow>>;
    /// Friend rows (both directions) whose DM is this room.
    async fn friends_in_room(&self, room_id: &str) -> Result<Vec<FriendRow>>;
}

/// A content URI of this server and what is known about its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaRecord {
    pub media_id: String,
    pub uploader: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub created_ts: u64,
    /// False for an id created with `/create` whose bytes have not arrived.
    pub uploaded: bool,
}

/// Media metadata (the database side).
#[async_trait]
pub trait MediaIndex: Send + Sync {
    /// Inserts or replaces a record.
    async fn put_media(&self, record: &MediaRecord) -> Result<()>;
    async fn media(&self, media_id: &str) -> Result<Option<MediaRecord>>;
}

/// Media bytes (local files or S3), by key.
#[async_trait]
pub trait MediaStore: Send + Sync {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<()>;
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
}
