//! Message search (`POST /search`): the database's own full-text engine (SQLite FTS5,
//! PostgreSQL `tsvector` with a GIN index) over the text of messages, room names and topics.

use async_trait::async_trait;
use ruma::OwnedRoomId;

use crate::{Result, StoredEvent};

/// The event types whose text is searched.
pub const SEARCHED_TYPES: &[&str] = &["m.room.message", "m.room.name", "m.room.topic"];

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchOrder {
    /// Best match first.
    Rank,
    /// Newest first.
    Recent,
}

/// A room searched, and the positions of it the searcher may read: `(floor, until]`.
#[derive(Debug, Clone)]
pub struct SearchedRoom {
    pub room_id: OwnedRoomId,
    pub floor: i64,
    pub until: i64,
}

/// One search: the words, where, in which order, and which page.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The words, each of which a result must hold.
    pub words: Vec<String>,
    /// The event types searched, of [`SEARCHED_TYPES`].
    pub types: Vec<&'static str>,
    pub rooms: Vec<SearchedRoom>,
    pub order: SearchOrder,
    pub limit: usize,
    /// Results skipped (rank order), or only events below this position (recent order).
    pub skip: usize,
    pub below: Option<i64>,
}

/// A page of results, each with its rank (higher is better), and how many there are in all.
#[derive(Debug, Clone, Default)]
pub struct SearchHits {
    pub hits: Vec<(StoredEvent, f64)>,
    pub count: u64,
}

#[async_trait]
pub trait RoomSearch: Send + Sync {
    async fn search_events(&self, query: &SearchQuery) -> Result<SearchHits>;
}
