//! Reports users make of content and people, kept for the server's admins.

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};

use crate::Result;

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    Event(OwnedRoomId, OwnedEventId),
    Room(OwnedRoomId),
    User(OwnedUserId),
}

/// A report: who made it, of what, why, and when (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub reporter: OwnedUserId,
    pub subject: Reported,
    pub reason: String,
    pub received_ms: u64,
}

#[async_trait]
pub trait Reports: Send + Sync {
    async fn keep_report(&self, report: &Report) -> Result<()>;
    /// The latest reports, newest first, at most `limit`.
    async fn latest_reports(&self, limit: usize) -> Result<Vec<Report>>;
}
