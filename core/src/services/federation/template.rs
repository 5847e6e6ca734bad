//! Where an event built outside the room's lane goes: on the room's heads, with its auth
//! events from the room's current state. For the templates of `make_join` and `make_leave`,
//! and for an invite of another server's user, which that server signs before the room's
//! lane adds it.

use ruma::{
    events::{StateEventType, TimelineEventType},
    state_res, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId,
};
use serde_json::{json, Value};

use crate::{
    ports::{RoomSnapshot, MAX_PREV_EVENTS},
    sequencer::rules_for,
    Error, Result,
};

/// An event's place in a room: its prev events, auth events and depth.
#[derive(Debug, Clone)]
pub struct Placement {
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
}

/// The place of a new event of `sender` in the room `snapshot` shows.
pub fn place(
    snapshot: &RoomSnapshot,
    kind: &TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &Value,
) -> Result<Placement> {
    let rules = rules_for(&snapshot.version)?;
    let raw = serde_json::value::to_raw_value(content)?;
    let auth_types =
        state_res::auth_types_for_event(kind, sender, state_key, &raw, &rules.authorization)
            .map_err(Error::internal)?;
    let auth_events = auth_types
        .iter()
        .filter(|(t, _)| {
            *t != StateEventType::RoomCreate || rules.event_format.allow_room_create_in_auth_events
        })
        .filter_map(|(t, k)| {
            let t = t.to_string();
            snapshot
                .state
                .iter()
                .find(|p| p.kind.to_string() == t && p.state_key.as_deref() == Some(k.as_str()))
                .map(|p| p.event_id.clone())
        })
        .collect();
    Ok(Placement {
        prev_events: snapshot
            .extremities
            .iter()
            .take(MAX_PREV_EVENTS)
            .cloned()
            .collect(),
        auth_events,
        depth: snapshot.depth + 1,
    })
}

/// The template of a membership event of `user_id` (with `content`) that its own server
/// fills in and signs (`make_join`, `make_leave`, `make_knock`).
pub fn membership_template(
    snapshot: &RoomSnapshot,
    room_id: &RoomId,
    user_id: &UserId,
    content: Value,
) -> Result<Value> {
    let at = place(
        snapshot,
        &TimelineEventType::RoomMember,
        user_id,
        Some(user_id.as_str()),
        &content,
    )?;
    Ok(json!({
        "room_id": room_id,
        "sender": user_id,
        "type": "m.room.member",
        "state_key": user_id,
        "content": content,
        "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        "prev_events": at.prev_events,
        "auth_events": at.auth_events,
        "depth": at.depth,
    }))
}
