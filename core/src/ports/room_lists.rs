//! What a room list needs of many rooms at once (sliding sync orders and filters every room
//! of a user on each request): one query per kind of data for all of them.

use std::collections::HashMap;

use async_trait::async_trait;
use ruma::OwnedRoomId;

use crate::{Result, StoredEvent};

/// The event types that move a room up a list sorted by recency (MSC4186's `bump_stamp`):
/// what a user would call activity, not every state change.
pub const BUMP_EVENT_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

#[async_trait]
pub trait RoomLists: Send + Sync {
    /// For each of `rooms` that has one, the position of its latest event of a
    /// [`BUMP_EVENT_TYPES`] type at or below `until`.
    async fn bump_stamps(
        &self,
        rooms: &[OwnedRoomId],
        until: i64,
    ) -> Result<HashMap<OwnedRoomId, i64>>;

    /// The current state events of `rooms` whose type is one of `kinds` (every type when
    /// `kinds` is empty), oldest first.
    async fn state_of_rooms(
        &self,
        rooms: &[OwnedRoomId],
        kinds: &[&str],
    ) -> Result<Vec<StoredEvent>>;
}
