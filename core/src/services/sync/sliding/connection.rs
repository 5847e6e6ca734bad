//! What a sliding-sync connection remembers between requests: how far the streams were
//! sent, which rooms the client holds and up to where, and the list sizes it was told.
//! Saved with each position (`pos`) the server answers, as JSON.

use std::collections::BTreeMap;

use ruma::OwnedRoomId;
use serde::{Deserialize, Serialize};

use super::request::RoomSpec;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Connection {
    /// The stream position the last response covered.
    pub pos: i64,
    /// The ephemeral counter (typing) it covered.
    pub ephemeral: u64,
    /// The rooms the client was sent, by what it holds of each.
    pub rooms: BTreeMap<OwnedRoomId, SentRoom>,
    /// The count of each list, as last told.
    pub lists: BTreeMap<String, u64>,
}

/// What the client holds of a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SentRoom {
    /// Up to where its events and state were sent.
    pub pos: i64,
    /// The user's membership when it was (`join`, `invite`, …).
    pub membership: String,
    /// What was asked of it ([`spec_signature`]): asking for more sends it afresh.
    pub spec: String,
}

/// A stable rendering of what is asked of a room, to tell whether that changed.
pub(super) fn spec_signature(spec: &RoomSpec) -> String {
    format!("{}|{:?}", spec.timeline_limit, spec.required_state)
}
