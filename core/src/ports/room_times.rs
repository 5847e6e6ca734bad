//! Events by time (`/timestamp_to_event`): the event of a room closest to a moment, for
//! "jump to date".

use async_trait::async_trait;
use ruma::{OwnedEventId, RoomId};

use crate::{ports::Direction, Result};

#[async_trait]
pub trait RoomTimes: Send + Sync {
    /// The room's event whose `origin_server_ts` is the first at or after `ts` (`Forward`) or
    /// the last at or before it (`Backward`), among the events at positions in
    /// `(after, until]`; with its timestamp.
    async fn event_at_time(
        &self,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
        after: i64,
        until: i64,
    ) -> Result<Option<(OwnedEventId, u64)>>;
}
