//! EDUs for other servers, kept at stream positions until the destination accepts the
//! transaction that carries them, so that one sender per destination (one instance
//! cluster-wide) sends them all, in order with the events, whichever instance queued them.
//! To-device messages (room keys among them) and device-list and signing-key changes are kept
//! until accepted, however long the destination is away: a lost one is a message nobody
//! there can read. Typing, receipts and presence expire: after a while the next change has
//! superseded them, and a late one would mislead.

use async_trait::async_trait;
use ruma::{OwnedServerName, ServerName};

use crate::Result;

/// An EDU to keep for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEdu {
    pub destination: OwnedServerName,
    /// Its JSON (`edu_type` and `content`).
    pub edu: String,
    /// When it is no longer worth sending (ms since the epoch); `None`: never.
    pub expires_ms: Option<u64>,
}

/// One EDU for one server, as queued: its stream position, JSON and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEdu {
    pub pos: i64,
    pub edu: String,
    pub expires_ms: Option<u64>,
}

#[async_trait]
pub trait FederationOutbox: Send + Sync {
    /// Keeps each EDU for its destination, at a stream position of its own and in the order
    /// given; the stream moves on, so the destinations' sender wakes.
    async fn queue_edus(&self, edus: &[NewEdu]) -> Result<()>;
    /// `destination`'s EDUs at positions in `(after, until]` that have not expired at
    /// `now_ms`, oldest first, at most `limit`.
    async fn queued_edus(
        &self,
        destination: &ServerName,
        after: i64,
        until: i64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEdu>>;
    /// The servers with EDUs at positions in `(after, until]`, each with its first one.
    async fn edu_destinations(&self, after: i64, until: i64)
        -> Result<Vec<(OwnedServerName, i64)>>;
    /// Forgets `destination`'s EDUs up to position `upto`: it accepted them, or they expired
    /// before.
    async fn forget_edus(&self, destination: &ServerName, upto: i64) -> Result<()>;
}
