//! Where sliding-sync connections keep their positions: what each response told the client,
//! so the next request (on any instance, after any restart) is answered with what changed
//! since, and a request retried with the same `pos` is answered again.

use async_trait::async_trait;
use ruma::UserId;

use crate::Result;

/// How long a position is kept unused before its connection must start again
/// (`M_UNKNOWN_POS`).
pub const POSITION_KEPT_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// One connection of one device (`conn_id` is the client's; empty when it sent none).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionKey<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a str,
    pub conn_id: &'a str,
}

#[async_trait]
pub trait SlidingConnections: Send + Sync {
    /// The state saved with `pos` on the connection, if it is still kept.
    async fn connection_position(
        &self,
        conn: ConnectionKey<'_>,
        pos: &str,
    ) -> Result<Option<String>>;

    /// Saves `state` as the position `pos` of the connection, made at `now_ms`. Every other
    /// position of the connection is dropped but `keep` (the one the request came with, which
    /// a client that lost this answer sends again), and so is every position of any
    /// connection older than [`POSITION_KEPT_MS`].
    async fn save_connection_position(
        &self,
        conn: ConnectionKey<'_>,
        pos: &str,
        keep: Option<&str>,
        state: &str,
        now_ms: u64,
    ) -> Result<()>;
}
