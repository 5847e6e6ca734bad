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
    /// Events of other servers to add, their signatures and hashes already checked where they
    /// arrived; each is checked against the room's state and appended (or held) on its own.
    /// A batch carries intents or received events, not both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote: Vec<ReceivedPdu>,
    /// A room this server joins through another server: what that server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<Box<RemoteJoin>>,
    /// Fill the room's history in before these events (its earliest), from the servers in it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backfill: Vec<OwnedEventId>,
    /// A membership of a user of this server in a room this server is not in: an invite
    /// another server sent, or the leave that rejects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<Box<OutsideMembership>>,
}

impl RoomBatch {
    /// A batch of intents for an existing room.
    pub fn intents(room_id: OwnedRoomId, events: Vec<EventIntent>) -> Self {
        RoomBatch {
            room_id,
            create_version: None,
            events,
            remote: Vec::new(),
            join: None,
            backfill: Vec::new(),
            outside: None,
        }
    }

    /// A batch of received events.
    pub fn received(room_id: OwnedRoomId, remote: Vec<ReceivedPdu>) -> Self {
        RoomBatch {
            remote,
            ..RoomBatch::intents(room_id, Vec::new())
        }
    }
}

/// A join through another server (`send_join`): the room's state before the join event and
/// the auth chain of that state and of the event, as the resident server answered (each
/// verified on arrival), and the join event, signed by both servers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteJoin {
    pub room_version: RoomVersionId,
    pub state: Vec<ReceivedPdu>,
    pub auth_chain: Vec<ReceivedPdu>,
    pub event: ReceivedPdu,
}

/// A membership event (invite, knock, leave) of a user of this server in a room whose state
/// this server does not have (no user of it has joined): it is kept on its own, as what this server knows of the
/// room, until a join through another server brings the room's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutsideMembership {
    pub room_version: RoomVersionId,
    /// The event, signed by the servers that must sign it (an invite: by both).
    pub event: ReceivedPdu,
    /// What the room's server told of it (`invite_room_state` with an invite,
    /// `knock_room_state` with a knock), as stripped events for the user's client.
    #[serde(default, alias = "invite_state", skip_serializing_if = "Vec::is_empty")]
    pub stripped_state: Vec<Value>,
}

/// An event of another server, verified ([`crate::remote_pdu::verify_pdu`]): its id and the
/// JSON to store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceivedPdu {
    pub event_id: OwnedEventId,
    pub json: String,
}

impl From<crate::remote_pdu::VerifiedPdu> for ReceivedPdu {
    fn from(v: crate::remote_pdu::VerifiedPdu) -> Self {
        ReceivedPdu {
            event_id: v.pdu.event_id,
            json: v.json,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The bus carries received events next to intents; a batch written before they existed
    /// (still on a Kafka topic across an upgrade) reads as a batch of intents.
    #[test]
    fn received_events_travel_on_the_bus_and_old_batches_still_read() {
        let batch = RoomBatch::received(
            "!r:localhost".try_into().unwrap(),
            vec![ReceivedPdu {
                event_id: "$e".try_into().unwrap(),
                json: r#"{"type":"m.room.message"}"#.into(),
            }],
        );
        let wire = serde_json::to_string(&batch).unwrap();
        let back: RoomBatch = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.remote.len(), 1);
        assert_eq!(back.remote[0].event_id, "$e");
        assert_eq!(back.remote[0].json, batch.remote[0].json);

        let old = r#"{"room_id":"!r:localhost","create_version":null,"events":[]}"#;
        let read: RoomBatch = serde_json::from_str(old).unwrap();
        assert!(read.remote.is_empty() && read.join.is_none() && read.backfill.is_empty());
        let local = serde_json::to_string(&read).unwrap();
        assert!(!local.contains("remote"), "{local}");
    }
}
