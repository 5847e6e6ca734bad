//! Threads of a room (`/rooms/{roomId}/threads`): the events that `m.thread` replies name,
//! with what a thread list shows of each — how many replies, the latest, whether the reader
//! took part.

use async_trait::async_trait;
use ruma::{OwnedEventId, RoomId, UserId};

use crate::Result;

/// A thread: its root, its latest reply (and that reply's position, which orders threads),
/// how many replies it has, and whether the reader wrote one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadActivity {
    pub root: OwnedEventId,
    pub latest: OwnedEventId,
    pub latest_pos: i64,
    pub replies: u64,
    pub reader_replied: bool,
}

#[async_trait]
pub trait RoomThreads: Send + Sync {
    /// The threads of a room whose latest reply (among those at or below `until`) is at or
    /// below `before`, the most recently active first, at most `limit`; `reader`'s part in
    /// each told.
    async fn thread_activity(
        &self,
        room_id: &RoomId,
        reader: &UserId,
        until: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<ThreadActivity>>;
}
