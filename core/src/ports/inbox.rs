//! The inbox port: per-user delivery queues of room messages, with the user's own dense
//! counters. Filled by the inbox indexer (`crate::inbox`), read by Sandcat delivery.
//!
//! Every user has two sequences: `seq` numbers what they received, `send_seq` what they sent,
//! each `1, 2, 3, …` without gaps, in stream order. Sandcat clients treat a jump of more than
//! one as lost messages and pull, so a gap costs a round trip and a hole is a lost message.
//! The indexer is the one writer of both counters, cluster-wide.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use ruma::{OwnedEventId, OwnedRoomId};

use crate::{Pdu, Result, StoredEvent};

/// What the indexer hands the inbox: a room event for one user, not yet numbered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    /// The owner of the inbox, a Matrix user id.
    pub user: String,
    /// The event's stream position.
    pub pos: i64,
    pub room: String,
    pub event_id: String,
    /// Whether the owner sent it: it then takes the next `send_seq`, else the next `seq`.
    pub sent: bool,
    /// The event's PDU (JSON), so that a read needs no second lookup; shared by the items
    /// of one event (a group's membership change has one per member).
    pub event: Arc<str>,
    /// `origin_server_ts`.
    pub ts: i64,
}

/// A numbered entry of a user's inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub item: InboxItem,
    /// Its number in the owner's received sequence, or in their sent one when `item.sent`.
    pub seq: i64,
}

impl InboxEntry {
    /// The event, as the room store would return it.
    pub fn stored_event(&self) -> Result<StoredEvent> {
        let event_id = OwnedEventId::try_from(self.item.event_id.as_str())
            .map_err(|e| crate::Error::Internal(format!("inbox event id: {e}")))?;
        let room_id = OwnedRoomId::try_from(self.item.room.as_str())
            .map_err(|e| crate::Error::Internal(format!("inbox room id: {e}")))?;
        Ok(StoredEvent {
            pos: self.item.pos,
            pdu: Pdu::from_stored(&self.item.event, event_id, room_id)?,
            unsigned: None,
            redacted_because: None,
            txn: None,
        })
    }
}

/// A user's latest received (`seq`) and sent (`send_seq`) numbers; 0 before the first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxSeqs {
    pub seq: i64,
    pub send_seq: i64,
}

/// Numbers `after < n <= until` of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub after: i64,
    pub until: i64,
}

impl SeqRange {
    /// No number at all.
    pub const NONE: SeqRange = SeqRange { after: 0, until: 0 };
    /// Every number.
    pub const ALL: SeqRange = SeqRange {
        after: 0,
        until: i64::MAX,
    };

    pub fn new(after: i64, until: i64) -> Self {
        SeqRange { after, until }
    }

    pub fn contains(&self, n: i64) -> bool {
        self.after < n && n <= self.until
    }
}

impl InboxSeqs {
    /// Takes the next number of the sequence an item goes to.
    fn next(&mut self, sent: bool) -> i64 {
        let n = if sent {
            &mut self.send_seq
        } else {
            &mut self.seq
        };
        *n += 1;
        *n
    }
}

/// Numbers `items` (in stream order) after each user's `counters`, which it advances; a user
/// missing there starts from 0. The one numbering rule, for every backend.
pub fn number_inbox_items(
    items: &[InboxItem],
    counters: &mut HashMap<String, InboxSeqs>,
) -> Vec<InboxEntry> {
    items
        .iter()
        .map(|item| InboxEntry {
            seq: counters
                .entry(item.user.clone())
                .or_default()
                .next(item.sent),
            item: item.clone(),
        })
        .collect()
}

/// Per-user inboxes. Readers see an entry only once the step that wrote it is complete, so a
/// step cut short by a crash shows nothing half-done.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// One indexing step: numbers each user's items (given in stream order) after that user's
    /// counters, adds them, removes every copy of the `redacted` events, then records the
    /// stream as indexed up to `upto`. Items at or below the indexed position are skipped:
    /// repeating a step — after a crash, or by the next indexer — numbers nothing twice and
    /// leaves no gap.
    async fn append(&self, items: &[InboxItem], redacted: &[String], upto: i64) -> Result<()>;
    /// The stream position up to which the inbox is complete.
    async fn indexed(&self) -> Result<i64>;
    /// The user's received entries numbered in `received` and sent ones numbered in `sent`,
    /// in stream order; at most `limit`.
    async fn pull(
        &self,
        user: &str,
        received: SeqRange,
        sent: SeqRange,
        limit: usize,
    ) -> Result<Vec<InboxEntry>>;
    /// The user's entries (received and sent) after stream position `after`, in stream
    /// order; at most `limit`. Live delivery follows this.
    async fn since(&self, user: &str, after: i64, limit: usize) -> Result<Vec<InboxEntry>>;
    /// The user's received entry numbered `seq`.
    async fn received(&self, user: &str, seq: i64) -> Result<Option<InboxEntry>>;
    /// The user's latest numbers; deleting entries does not lower them.
    async fn latest(&self, user: &str) -> Result<InboxSeqs>;
    /// Removes the user's received entries with these numbers.
    async fn remove(&self, user: &str, seqs: &[i64]) -> Result<()>;
}
