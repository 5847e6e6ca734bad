//! What the client of a user who is invited or knocking is shown of a room before joining:
//! the room's state events of a few kinds when this server is in the room, else what the
//! room's server told of it (with the invite, or in answer to the knock).

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::StoredEvent;

use ruma::{events::TimelineEventType, UserId};

use super::StrippedRoom;
use crate::{ports::Membership, state::shown_before_joining};

/// The room `m` (an invite or a knock of `user`) as its client is shown it: of the room's
/// current `state`, the kinds shown before joining and the user's membership; then what the
/// room's server told of it.
pub(super) fn stripped_room(
    state: Vec<StoredEvent>,
    m: &Membership,
    user: &UserId,
) -> StrippedRoom {
    let state: Vec<StoredEvent> = state
        .into_iter()
        .filter(|e| {
            shown_before_joining(e.pdu.kind.to_string().as_str())
                || (e.pdu.kind == TimelineEventType::RoomMember
                    && (e.pdu.state_key.as_deref() == Some(user.as_str())
                        || e.pdu.event_id == m.event_id))
        })
        .collect();
    let told = told_state(&state);
    StrippedRoom { state, told }
}

/// What the room's server told of a room this server is not in (kept with the invite as
/// `invite_room_state`, with the knock as `knock_room_state`), as stripped events: the kinds
/// a client is shown, none that the room's state here already has.
fn told_state(state: &[StoredEvent]) -> Vec<Value> {
    let held: HashSet<(String, &str)> = state
        .iter()
        .map(|e| {
            (
                e.pdu.kind.to_string(),
                e.pdu.state_key.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let told = state
        .iter()
        .filter_map(|e| {
            let unsigned = e.unsigned.as_ref()?;
            unsigned
                .get("invite_room_state")
                .or_else(|| unsigned.get("knock_room_state"))?
                .as_array()
        })
        .flatten();
    told.filter_map(|v| {
        let kind = v.get("type")?.as_str()?;
        let key = v.get("state_key")?.as_str()?;
        let wanted = shown_before_joining(kind) || kind == "m.room.member";
        (wanted && !held.contains(&(kind.to_owned(), key))).then(|| {
            json!({
                "type": kind,
                "state_key": key,
                "sender": v.get("sender"),
                "content": v.get("content"),
            })
        })
    })
    .collect()
}
