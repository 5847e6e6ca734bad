//! EDUs that must reach another server: to-device messages (room keys among them) and the
//! device-list and signing-key changes that other servers' clients encrypt by. Each is kept at
//! a stream position of its own until the destination accepts the transaction that carries
//! it, so a server that is down for a while gets them when it is back, and on the pipeline
//! the one instance that sends to a destination sends them too, whichever instance queued
//! them. Typing, receipts and presence are not kept: the next change supersedes them.

use async_trait::async_trait;
use ruma::{OwnedServerName, ServerName};

use crate::Result;

/// One EDU for one server, as queued: its stream position and JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEdu {
    pub pos: i64,
    pub edu: String,
}

#[async_trait]
pub trait FederationOutbox: Send + Sync {
    /// Keeps each EDU (its JSON) for its destination, at a stream position of its own and in
    /// the order given; the stream moves on, so the destinations' sender wakes.
    async fn queue_edus(&self, edus: &[(OwnedServerName, String)]) -> Result<()>;
    /// `destination`'s EDUs at positions in `(after, until]`, oldest first, at most `limit`.
    async fn queued_edus(
        &self,
        destination: &ServerName,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<QueuedEdu>>;
    /// The servers with EDUs at positions in `(after, until]`, each with its first one.
    async fn edu_destinations(&self, after: i64, until: i64)
        -> Result<Vec<(OwnedServerName, i64)>>;
    /// Forgets `destination`'s EDUs up to position `upto`: it accepted them.
    async fn forget_edus(&self, destination: &ServerName, upto: i64) -> Result<()>;
}
