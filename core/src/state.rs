//! Reading room state: power levels and creators, as the services need them beyond the auth
//! rules (which `ruma::state_res` applies in the sequencer).

use ruma::{RoomVersionId, UserId};
use serde_json::Value;

use crate::Pdu;

/// The state events a user who is invited or knocking is shown of a room before joining
/// (stripped state): what identifies the room and says how to join it.
pub fn shown_before_joining(kind: &str) -> bool {
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

/// A user's power in a room; `i64::MAX` for the creators of a v12 room.
pub fn power_level(
    version: &RoomVersionId,
    create: Option<&Pdu>,
    power: Option<&Pdu>,
    user: &UserId,
) -> i64 {
    let privileged = version
        .rules()
        .is_some_and(|r| r.authorization.explicitly_privilege_room_creators);
    if privileged {
        if let Some(create) = create {
            if create.sender == user {
                return i64::MAX;
            }
            let content = create.content_value();
            if let Some(Value::Array(extra)) = content.get("additional_creators") {
                if extra.iter().any(|v| v.as_str() == Some(user.as_str())) {
                    return i64::MAX;
                }
            }
        }
    }
    match power {
        Some(p) => {
            let c = p.content_value();
            c.get("users")
                .and_then(|u| u.get(user.as_str()))
                .and_then(as_int)
                .or_else(|| c.get("users_default").and_then(as_int))
                .unwrap_or(0)
        }
        None => match create {
            // Without power levels the creator has 100.
            Some(c) if c.sender == user => 100,
            _ => 0,
        },
    }
}

/// A named level from the power levels content (`redact`, `kick`, `ban`, `invite`, `state_default`…).
pub fn required_level(power: Option<&Pdu>, name: &str, default: i64) -> i64 {
    power
        .and_then(|p| p.content_value().get(name).and_then(as_int))
        .unwrap_or(default)
}

pub(crate) fn as_int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
