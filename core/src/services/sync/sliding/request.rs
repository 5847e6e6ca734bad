//! A sliding-sync request as the service takes it: the lists with their windows, the rooms
//! subscribed to, and the extensions asked for. The client API parses the wire format into
//! these, in one place, for the unstable endpoint and the spec's version to come.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::StoredEvent;

/// The most rooms a list window or a subscription set may name.
pub const MAX_WINDOW: u64 = 1_000;
/// The most events a room's timeline may carry in one response.
pub const MAX_TIMELINE_LIMIT: usize = 100;
/// The most lists, subscriptions or `required_state` entries a request may hold.
pub const MAX_ENTRIES: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct SlidingRequest {
    /// The client's name for the connection (`conn_id`), empty when it gave none.
    pub conn_id: String,
    /// Where the previous response left the connection; `None` starts it afresh.
    pub pos: Option<String>,
    /// Echoed in the response.
    pub txn_id: Option<String>,
    pub timeout_ms: u64,
    pub set_presence: Option<String>,
    pub lists: BTreeMap<String, ListSpec>,
    pub subscriptions: BTreeMap<OwnedRoomId, RoomSpec>,
    pub extensions: ExtensionsSpec,
}

/// A list: which of the user's rooms it holds (`filters`), the windows of its order sent
/// (`ranges`, inclusive), and what is sent of each room in them.
#[derive(Debug, Clone, Default)]
pub struct ListSpec {
    pub ranges: Vec<(u64, u64)>,
    pub room: RoomSpec,
    pub filters: ListFilters,
}

impl ListSpec {
    /// Whether the `index`-th room of the list is in one of its windows.
    pub fn shows(&self, index: u64) -> bool {
        self.ranges.iter().any(|(a, b)| *a <= index && index <= *b)
    }
}

/// What is sent of a room: state of some kinds and the latest events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RoomSpec {
    pub required_state: RequiredState,
    pub timeline_limit: usize,
}

impl RoomSpec {
    /// Both: the state either asks for and the longer timeline.
    pub fn merge(&mut self, other: &RoomSpec) {
        self.required_state.merge(&other.required_state);
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
    }
}

/// A state key as `required_state` names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StateKeyMatch {
    /// `*`: every state key.
    Any,
    /// `$ME`: the requesting user's.
    Me,
    /// `$LAZY` (members): the senders of the events sent with the room.
    Lazy,
    Exactly(String),
}

impl StateKeyMatch {
    pub fn parse(key: &str) -> Self {
        match key {
            "*" => StateKeyMatch::Any,
            "$ME" => StateKeyMatch::Me,
            "$LAZY" => StateKeyMatch::Lazy,
            other => StateKeyMatch::Exactly(other.to_owned()),
        }
    }
}

/// `required_state`: `(type, state key)` pairs; a type of `None` is `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequiredState(BTreeSet<(Option<String>, StateKeyMatch)>);

impl RequiredState {
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        RequiredState(
            entries
                .into_iter()
                .map(|(kind, key)| {
                    let kind = (kind != "*").then_some(kind);
                    (kind, StateKeyMatch::parse(&key))
                })
                .collect(),
        )
    }

    pub fn merge(&mut self, other: &RequiredState) {
        self.0.extend(other.0.iter().cloned());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether members are loaded lazily: the senders of the timeline, not all.
    pub fn lazy_members(&self) -> bool {
        self.0.iter().any(|(kind, key)| {
            *key == StateKeyMatch::Lazy && kind.as_deref() == Some("m.room.member")
        })
    }

    /// Whether the state event is asked for, for `user`, with `senders` the members a lazy
    /// entry names.
    pub fn wants(
        &self,
        event: &StoredEvent,
        user: &UserId,
        senders: &HashSet<OwnedUserId>,
    ) -> bool {
        let kind = event.pdu.kind.to_string();
        let key = event.pdu.state_key.as_deref().unwrap_or_default();
        self.0.iter().any(|(k, m)| {
            k.as_deref().is_none_or(|k| k == kind)
                && match m {
                    StateKeyMatch::Any => true,
                    StateKeyMatch::Me => key == user.as_str(),
                    StateKeyMatch::Lazy => senders.iter().any(|s| s.as_str() == key),
                    StateKeyMatch::Exactly(k) => k == key,
                }
        })
    }
}

/// Which of the user's rooms a list holds; each filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    pub is_dm: Option<bool>,
    pub is_encrypted: Option<bool>,
    pub is_invite: Option<bool>,
    /// Room types a room must have one of (`None`: a room without a type).
    pub room_types: Vec<Option<String>>,
    pub not_room_types: Vec<Option<String>>,
    /// Spaces (of the user's) a room must be a child of, one of them (`m.space.child`).
    pub spaces: Vec<OwnedRoomId>,
}

impl ListFilters {
    /// Whether the filters ask what kind of room it is (its create and encryption events).
    pub fn need_kinds(&self) -> bool {
        self.is_encrypted.is_some()
            || !self.room_types.is_empty()
            || !self.not_room_types.is_empty()
    }
}

/// Which rooms an extension covers: those of some lists and some subscriptions (all of
/// either when not given).
#[derive(Debug, Clone, Default)]
pub struct ExtensionScope {
    pub lists: Option<Vec<String>>,
    /// `None` inside: every subscribed room (`*`).
    pub rooms: Option<Vec<Option<OwnedRoomId>>>,
}

#[derive(Debug, Clone, Default)]
pub struct ToDeviceSpec {
    pub limit: Option<usize>,
    /// The `next_batch` the client holds: messages up to it were received.
    pub since: Option<String>,
}

/// The extensions asked for (`None`: not enabled).
#[derive(Debug, Clone, Default)]
pub struct ExtensionsSpec {
    pub to_device: Option<ToDeviceSpec>,
    pub e2ee: bool,
    pub account_data: Option<ExtensionScope>,
    pub receipts: Option<ExtensionScope>,
    pub typing: Option<ExtensionScope>,
}
