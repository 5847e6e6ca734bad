//! What a client asks to append to a room, before the sequencer turns it into a PDU.

use ruma::{events::TimelineEventType, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event to append, as requested.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventIntent {
    pub sender: OwnedUserId,
    pub kind: TimelineEventType,
    pub state_key: Option<String>,
    pub content: Value,
    pub origin_server_ts: u64,
    pub redacts: Option<OwnedEventId>,
    /// `(device_id, txn_id)` of the sending request, for idempotent `PUT /send`.
    pub txn: Option<(String, String)>,
}

impl EventIntent {
    pub fn new(
        sender: OwnedUserId,
        kind: TimelineEventType,
        state_key: Option<String>,
        content: Value,
    ) -> Self {
        EventIntent {
            sender,
            kind,
            state_key,
            content,
            origin_server_ts: crate::now_ms(),
            redacts: None,
            txn: None,
        }
    }
}

/// Events for one room, appended together or not at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomBatch {
    pub room_id: OwnedRoomId,
    /// Set when the batch creates the room: its version.
    pub create_version: Option<RoomVersionId>,
    pub events: Vec<EventIntent>,
}
