//! What an invited user's client is shown of a room before joining: the room's state events
//! of a few kinds when this server is in the room, else what the inviting server told of it.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::StoredEvent;

/// The state events an invited user's client is shown of the room.
pub(super) fn is_invite_state(kind: &str) -> bool {
    matches!(
        kind,
        "m.room.create"
            | "m.room.join_rules"
            | "m.room.name"
            | "m.room.avatar"
            | "m.room.canonical_alias"
            | "m.room.encryption"
            | "m.room.topic"
    )
}

/// What the inviting server told of a room this server is not in (kept with the invite as
/// `invite_room_state`), as stripped events: the kinds a client is shown, none that the
/// room's state here already has.
pub(super) fn told_invite_state(state: &[StoredEvent]) -> Vec<Value> {
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
        .filter_map(|e| e.unsigned.as_ref()?.get("invite_room_state")?.as_array())
        .flatten();
    told.filter_map(|v| {
        let kind = v.get("type")?.as_str()?;
        let key = v.get("state_key")?.as_str()?;
        let wanted = is_invite_state(kind) || kind == "m.room.member";
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
