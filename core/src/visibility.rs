//! History visibility: how far back a member may read a room (`m.room.history_visibility`).
//!
//! `shared` and `world_readable` rooms show members their whole history; `joined` rooms show
//! history from the member's join, `invited` rooms from their invite. The streak of membership
//! is found by walking back through the member's own membership events.

use ruma::RoomId;
use serde_json::Value;

use crate::{
    ports::{Membership, RoomStore},
    Result, StoredEvent,
};

/// The stream position below which the member may not read (0: everything).
pub async fn floor(
    store: &dyn RoomStore,
    room_id: &RoomId,
    membership: &Membership,
) -> Result<i64> {
    let setting = store
        .state_event(room_id, "m.room.history_visibility", "")
        .await?;
    floor_with(store, setting.as_ref(), membership).await
}

/// [`floor`] with the room's `m.room.history_visibility` event already at hand (`None`: the
/// room has none, which means `shared`).
pub async fn floor_with(
    store: &dyn RoomStore,
    setting: Option<&StoredEvent>,
    membership: &Membership,
) -> Result<i64> {
    let visibility = setting
        .and_then(|e| {
            e.pdu
                .content_value()
                .get("history_visibility")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "shared".to_owned());
    let streak: &[&str] = match visibility.as_str() {
        "joined" => &["join"],
        "invited" => &["join", "invite"],
        _ => return Ok(0),
    };
    let Some(mut event) = store.event(&membership.event_id).await? else {
        return Ok(0);
    };
    for _ in 0..100 {
        let unsigned = event.unsigned.clone().unwrap_or(Value::Null);
        let previous = unsigned
            .get("prev_content")
            .and_then(|c| c.get("membership"))
            .and_then(Value::as_str);
        let replaces = unsigned
            .get("replaces_state")
            .and_then(Value::as_str)
            .and_then(|id| ruma::EventId::parse(id).ok());
        match (previous, replaces) {
            (Some(p), Some(id)) if streak.contains(&p) => match store.event(&id).await? {
                Some(prev) => event = prev,
                None => break,
            },
            _ => break,
        }
    }
    Ok(event.pos - 1)
}
