//! Message search (`POST /search`, `room_events`): the words of the search term in the text
//! of the messages, names and topics of the rooms the user is joined to, within the history
//! each lets them read; best match or newest first, in pages, each result with the events
//! around it when asked.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use super::*;
use crate::ports::{HistoryRange, SearchOrder, SearchQuery, SearchedRoom};

/// The most results in one page.
pub const MAX_SEARCH_RESULTS: usize = 50;
/// The most words of a search term that count.
pub const MAX_SEARCH_WORDS: usize = 16;
/// The most events of context on either side of a result.
pub const MAX_SEARCH_CONTEXT: usize = 20;

/// One search, as the client asked it.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub term: String,
    /// Only these rooms (of the user's).
    pub rooms: Option<Vec<OwnedRoomId>>,
    /// Which texts: `m.room.message`, `m.room.name`, `m.room.topic` (all when empty).
    pub types: Vec<&'static str>,
    pub order: SearchOrder,
    pub limit: usize,
    pub next_batch: Option<String>,
    pub context: Option<ContextRequest>,
    /// Answer the current state of the rooms the results are in (`include_state`).
    pub include_state: bool,
    /// Group the page's results by these keys (`groupings`).
    pub group_by: Vec<SearchGrouping>,
}

/// What results may be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchGrouping {
    RoomId,
    Sender,
}

/// The results of a page that share a room or a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultGroup {
    /// The room id or the sender.
    pub key: String,
    /// Their events, in the page's order.
    pub event_ids: Vec<ruma::OwnedEventId>,
    /// Where the group stands among the page's groups (1: the one with the first result).
    pub order: usize,
}

/// The events around each result: how many before and after, and the senders' profiles.
#[derive(Debug, Clone, Copy)]
pub struct ContextRequest {
    pub before: usize,
    pub after: usize,
    pub profiles: bool,
}

#[derive(Debug, Default)]
pub struct SearchResults {
    pub count: u64,
    pub results: Vec<SearchResult>,
    /// The words searched, for the client to highlight.
    pub highlights: Vec<String>,
    pub next_batch: Option<String>,
    /// The current state of each room of the results, when asked.
    pub state: BTreeMap<OwnedRoomId, Vec<StoredEvent>>,
    /// The page's results grouped, per grouping asked.
    pub groups: Vec<(SearchGrouping, Vec<ResultGroup>)>,
}

#[derive(Debug)]
pub struct SearchResult {
    pub rank: f64,
    pub event: StoredEvent,
    pub context: Option<ResultContext>,
}

#[derive(Debug, Default)]
pub struct ResultContext {
    pub before: Vec<StoredEvent>,
    pub after: Vec<StoredEvent>,
    pub start: String,
    pub end: String,
    /// `(displayname, avatar_url)` of the senders, as the room's members state has them.
    pub profiles: BTreeMap<OwnedUserId, (Option<String>, Option<String>)>,
}

/// The words of a search term: letters and digits, lower-cased.
fn words(term: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let w = w.to_lowercase();
        if !out.contains(&w) && out.len() < MAX_SEARCH_WORDS {
            out.push(w);
        }
    }
    out
}

/// A page's results grouped by room or sender, groups in the order of their first result.
fn group(results: &[SearchResult], by: SearchGrouping) -> Vec<ResultGroup> {
    let mut groups: Vec<ResultGroup> = Vec::new();
    for r in results {
        let key = match by {
            SearchGrouping::RoomId => r.event.pdu.room_id().to_string(),
            SearchGrouping::Sender => r.event.pdu.sender.to_string(),
        };
        let id = r.event.pdu.event_id.clone();
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.event_ids.push(id),
            None => {
                let order = groups.len() + 1;
                groups.push(ResultGroup {
                    key,
                    event_ids: vec![id],
                    order,
                });
            }
        }
    }
    groups
}

/// Where a page starts: results skipped (rank order, `r…`) or a position (recent, `p…`).
fn parse_batch(token: &str, order: SearchOrder) -> Result<(usize, Option<i64>)> {
    let invalid = || Error::invalid_param("invalid next_batch token");
    match (order, token.split_at_checked(1)) {
        (SearchOrder::Rank, Some(("r", n))) => Ok((n.parse().map_err(|_| invalid())?, None)),
        (SearchOrder::Recent, Some(("p", p))) => Ok((0, Some(p.parse().map_err(|_| invalid())?))),
        _ => Err(invalid()),
    }
}

impl Rooms {
    pub async fn search(&self, user: &UserId, req: SearchRequest) -> Result<SearchResults> {
        let words = words(&req.term);
        let limit = req.limit.clamp(1, MAX_SEARCH_RESULTS);
        let (skip, below) = match &req.next_batch {
            Some(t) => parse_batch(t, req.order)?,
            None => (0, None),
        };
        let mut rooms = Vec::new();
        for m in self.store.memberships(user).await? {
            let wanted = req.rooms.as_ref().is_none_or(|r| r.contains(&m.room_id));
            if m.membership != MembershipState::Join || !wanted {
                continue;
            }
            let (floor, until) = self.visible_range(user, &m.room_id).await?;
            rooms.push(SearchedRoom {
                room_id: m.room_id,
                floor: floor.max(crate::ports::OUTLIERS_BELOW),
                until,
            });
        }
        let types = if req.types.is_empty() {
            crate::ports::SEARCHED_TYPES.to_vec()
        } else {
            req.types.clone()
        };
        let query = SearchQuery {
            words: words.clone(),
            types,
            rooms,
            order: req.order,
            limit,
            skip,
            below,
        };
        let found = self.store.search_events(&query).await?;
        let next_batch = match req.order {
            SearchOrder::Rank => {
                let seen = skip.saturating_add(found.hits.len());
                (u64::try_from(seen).unwrap_or(u64::MAX) < found.count).then(|| format!("r{seen}"))
            }
            SearchOrder::Recent => (found.hits.len() == limit)
                .then(|| found.hits.last().map(|(e, _)| format!("p{}", e.pos)))
                .flatten(),
        };
        let mut results = Vec::with_capacity(found.hits.len());
        for (event, rank) in found.hits {
            let context = match req.context {
                Some(c) => Some(self.result_context(user, &event, c).await?),
                None => None,
            };
            results.push(SearchResult {
                rank,
                event,
                context,
            });
        }
        let mut state = BTreeMap::new();
        if req.include_state {
            for r in &results {
                let room_id = r.event.pdu.room_id();
                if !state.contains_key(room_id) {
                    state.insert(room_id.to_owned(), self.state(user, room_id).await?);
                }
            }
        }
        let groups = req
            .group_by
            .iter()
            .map(|g| (*g, group(&results, *g)))
            .collect();
        Ok(SearchResults {
            count: found.count,
            results,
            highlights: words,
            next_batch,
            state,
            groups,
        })
    }

    /// The events around a result the user may read, and their senders' profiles.
    async fn result_context(
        &self,
        user: &UserId,
        event: &StoredEvent,
        c: ContextRequest,
    ) -> Result<ResultContext> {
        let room_id = event.pdu.room_id();
        let (floor, until) = self.visible_range(user, room_id).await?;
        let around = HistoryRange {
            floor,
            until,
            from: Some(HistoryToken::point_of(event)),
            to: None,
        };
        let before = match c.before.min(MAX_SEARCH_CONTEXT) {
            0 => Vec::new(),
            n => {
                self.store
                    .history(room_id, around, Direction::Backward, n)
                    .await?
            }
        };
        let after = match c.after.min(MAX_SEARCH_CONTEXT) {
            0 => Vec::new(),
            n => {
                self.store
                    .history(room_id, around, Direction::Forward, n)
                    .await?
            }
        };
        let start = HistoryToken::after(before.last().unwrap_or(event)).to_string();
        let end = HistoryToken::after(after.last().unwrap_or(event)).to_string();
        let mut profiles = BTreeMap::new();
        if c.profiles {
            for sender in before
                .iter()
                .chain(&after)
                .chain(std::iter::once(event))
                .map(|e| &e.pdu.sender)
            {
                if profiles.contains_key(sender) {
                    continue;
                }
                let member = self
                    .store
                    .state_event(room_id, "m.room.member", sender.as_str())
                    .await?
                    .map(|e| e.pdu.content_value());
                let field = |f: &str| {
                    member
                        .as_ref()
                        .and_then(|m| m.get(f))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                profiles.insert(sender.clone(), (field("displayname"), field("avatar_url")));
            }
        }
        Ok(ResultContext {
            before,
            after,
            start,
            end,
            profiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_become_words() {
        assert_eq!(words("Hello, WORLD! hello"), ["hello", "world"]);
        assert!(words(" ,.;").is_empty());
        assert_eq!(words("\"quoted\" OR-not").len(), 3);
    }

    #[test]
    fn page_tokens_match_their_order() {
        assert_eq!(parse_batch("r20", SearchOrder::Rank).unwrap(), (20, None));
        assert_eq!(
            parse_batch("p77", SearchOrder::Recent).unwrap(),
            (0, Some(77))
        );
        assert!(parse_batch("p77", SearchOrder::Rank).is_err());
        assert!(parse_batch("rx", SearchOrder::Rank).is_err());
        assert!(parse_batch("", SearchOrder::Recent).is_err());
    }
}
