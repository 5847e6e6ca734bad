//! The read side of a room: what a user may see, and pages of its history.

use ruma::events::room::member::MembershipState;
use ruma::{events::TimelineEventType, EventId, OwnedRoomId, RoomId, UserId};
use serde_json::json;

use super::*;
use crate::ports::{HistoryRange, TopoPoint, HISTORY_START, OUTLIERS_BELOW};

/// A `/messages` token: a stream position (`s…` or `t<pos>`: a sync's `prev_batch`, or a
/// token of an older version), or a point in the room's topological order (`t<depth>_<pos>`:
/// what a page of history answers, to go on strictly beyond it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryToken {
    Stream(i64),
    Point(TopoPoint),
}

impl HistoryToken {
    pub fn parse(token: &str) -> Result<Self> {
        if let Some((depth, pos)) = token.strip_prefix('t').and_then(|b| b.split_once('_')) {
            if let (Ok(depth), Ok(pos)) = (depth.parse(), pos.parse()) {
                return Ok(HistoryToken::Point(TopoPoint { depth, pos }));
            }
        }
        parse_token(token).map(HistoryToken::Stream)
    }

    /// The point of `ev` in its room's order.
    pub fn point_of(ev: &StoredEvent) -> TopoPoint {
        TopoPoint {
            depth: i64::try_from(u64::from(ev.pdu.depth)).unwrap_or(i64::MAX),
            pos: ev.pos,
        }
    }

    /// The token that goes on from `ev`, exclusive.
    pub fn after(ev: &StoredEvent) -> Self {
        HistoryToken::Point(Self::point_of(ev))
    }
}

impl std::fmt::Display for HistoryToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryToken::Stream(pos) => write!(f, "t{pos}"),
            HistoryToken::Point(p) => write!(f, "t{}_{}", p.depth, p.pos),
        }
    }
}

impl Rooms {
    /// The highest stream position the user may read in the room, or `M_FORBIDDEN`.
    /// Members read everything ("shared" history); former members read up to their leaving.
    pub async fn visible_until(&self, user_id: &UserId, room_id: &RoomId) -> Result<i64> {
        self.membership_until(user_id, room_id).await
    }

    /// `(floor, until)`: the member reads positions in `(floor, until]` (history visibility
    /// and departure both apply). A member who may read the whole history reads the
    /// backfilled events below zero too ([`HISTORY_START`]).
    pub async fn visible_range(&self, user_id: &UserId, room_id: &RoomId) -> Result<(i64, i64)> {
        let until = self.membership_until(user_id, room_id).await?;
        let floor = match self.store.membership(room_id, user_id).await? {
            Some(m) => crate::visibility::floor(self.store.as_ref(), room_id, &m).await?,
            None => 0,
        };
        Ok((if floor == 0 { HISTORY_START } else { floor }, until))
    }

    async fn membership_until(&self, user_id: &UserId, room_id: &RoomId) -> Result<i64> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == MembershipState::Join => Ok(i64::MAX),
            Some(m)
                if m.membership == MembershipState::Leave
                    || m.membership == MembershipState::Ban =>
            {
                if self
                    .store
                    .event(&m.event_id)
                    .await?
                    .and_then(|e| e.unsigned)
                    .and_then(|u| {
                        u.get("prev_content")
                            .and_then(|p| p.get("membership"))
                            .cloned()
                    })
                    == Some(json!("join"))
                {
                    Ok(m.pos)
                } else {
                    Err(Error::forbidden("you are not a member of this room"))
                }
            }
            _ => {
                if self.is_world_readable(room_id).await? {
                    Ok(i64::MAX)
                } else {
                    Err(Error::forbidden("you are not a member of this room"))
                }
            }
        }
    }

    async fn is_world_readable(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .store
            .state_event(room_id, "m.room.history_visibility", "")
            .await?
            .is_some_and(|e| {
                e.pdu.content_value().get("history_visibility") == Some(&json!("world_readable"))
            }))
    }

    pub async fn event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StoredEvent> {
        let (floor, until) = self.visible_range(user_id, room_id).await?;
        self.store
            .event(event_id)
            .await?
            .filter(|e| e.pdu.room_id() == room_id && e.pos > floor && e.pos <= until)
            .ok_or_else(|| Error::not_found("event not found"))
    }

    pub async fn state(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        self.visible_until(user_id, room_id).await?;
        self.store.current_state(room_id).await
    }

    pub async fn state_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: &str,
        key: &str,
    ) -> Result<StoredEvent> {
        self.visible_until(user_id, room_id).await?;
        self.store
            .state_event(room_id, kind, key)
            .await?
            .ok_or_else(|| Error::not_found("state event not found"))
    }

    pub async fn members(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        self.visible_until(user_id, room_id).await?;
        Ok(self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .filter(|e| e.pdu.kind == TimelineEventType::RoomMember)
            .collect())
    }

    /// `GET /rooms/{roomId}/messages`, in the room's topological order. A token is a stream
    /// position (a sync's `prev_batch`: what the room held then) or a point in that order
    /// (what a page answers: see [`HistoryToken`]).
    pub async fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<&str>,
        to: Option<&str>,
        dir: Direction,
        limit: usize,
    ) -> Result<Page> {
        let (floor, until) = self.visible_range(user_id, room_id).await?;
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let mut range = HistoryRange {
            floor,
            until,
            from: None,
            to: None,
        };
        let from = from.map(HistoryToken::parse).transpose()?;
        let to = to.map(HistoryToken::parse).transpose()?;
        // A stream position bounds the stream positions read; a point bounds the order.
        match (dir, from) {
            (_, None) => {}
            (_, Some(HistoryToken::Point(p))) => range.from = Some(p),
            (Direction::Backward, Some(HistoryToken::Stream(p))) => range.until = until.min(p),
            (Direction::Forward, Some(HistoryToken::Stream(p))) => range.floor = floor.max(p),
        }
        match (dir, to) {
            (_, None) => {}
            (_, Some(HistoryToken::Point(p))) => range.to = Some(p),
            (Direction::Backward, Some(HistoryToken::Stream(q))) => {
                range.floor = range.floor.max(q)
            }
            (Direction::Forward, Some(HistoryToken::Stream(q))) => range.until = range.until.min(q),
        }
        let mut events = self.store.history(room_id, range, dir, limit).await?;
        // The bottom of what this server has of a room's whole history: fill in its past.
        let at_bottom = dir == Direction::Backward
            && events.len() < limit
            && range.floor == HISTORY_START
            && range.to.is_none();
        if at_bottom && self.backfill(room_id).await {
            events = self.store.history(room_id, range, dir, limit).await?;
        }
        let end = if events.len() < limit {
            None
        } else {
            events.last().map(|e| HistoryToken::after(e).to_string())
        };
        Ok(Page { events, end })
    }

    /// Asks the servers in the room for its past when its earliest events name prev events
    /// this server lacks (a room joined through another server), through the room's lane.
    /// Answers whether it asked; a failure only leaves history where it ends.
    async fn backfill(&self, room_id: &RoomId) -> bool {
        let earliest = match self.store.earliest_events(room_id).await {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(%room_id, error = %e, "reading a room's earliest events failed");
                return false;
            }
        };
        let mut from = Vec::new();
        for ev in earliest {
            for prev in &ev.pdu.prev_events {
                let known = self.store.event(prev).await.ok().flatten();
                if known.is_none_or(|e| e.pos <= OUTLIERS_BELOW) {
                    from.push(ev.pdu.event_id.clone());
                    break;
                }
            }
        }
        if from.is_empty() {
            return false;
        }
        let batch = RoomBatch {
            backfill: from,
            ..RoomBatch::intents(room_id.to_owned(), Vec::new())
        };
        match self.bus.submit(batch).await {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(%room_id, error = %e, "backfill failed");
                false
            }
        }
    }

    /// `GET /rooms/{roomId}/context/{eventId}`: events before and after, and the state.
    pub async fn context(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> Result<(StoredEvent, Page, Page, Vec<StoredEvent>)> {
        let ev = self.event(user_id, room_id, event_id).await?;
        let (floor, until) = self.visible_range(user_id, room_id).await?;
        let half = (limit.min(self.config.max_timeline_limit) / 2).max(1);
        let around = HistoryRange {
            floor,
            until,
            from: Some(HistoryToken::point_of(&ev)),
            to: None,
        };
        let before = self
            .store
            .history(room_id, around, Direction::Backward, half)
            .await?;
        let after = self
            .store
            .history(room_id, around, Direction::Forward, half)
            .await?;
        let start = HistoryToken::after(before.last().unwrap_or(&ev)).to_string();
        let end = HistoryToken::after(after.last().unwrap_or(&ev)).to_string();
        let state = self.store.current_state(room_id).await?;
        Ok((
            ev,
            Page {
                events: before,
                end: Some(start),
            },
            Page {
                events: after,
                end: Some(end),
            },
            state,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn relations(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let until = self.visible_until(user_id, room_id).await?;
        let before = match from {
            Some(t) => parse_token(t)?.min(until),
            None => until,
        };
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let events = self
            .store
            .relations(room_id, event_id, rel_type, event_type, before, limit)
            .await?;
        let end = (events.len() == limit)
            .then(|| events.last().map(|e| make_token(e.pos - 1)))
            .flatten();
        Ok(Page { events, end })
    }

    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .store
            .memberships(user_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == MembershipState::Join)
            .map(|m| m.room_id)
            .collect())
    }
}

impl Rooms {
    /// `/timestamp_to_event`: the event of the room the user may read that is closest to
    /// `ts` in direction `dir` (the first at or after it, or the last at or before it), with
    /// its timestamp; `M_NOT_FOUND` when there is none.
    pub async fn event_at_time(
        &self,
        user: &UserId,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
    ) -> Result<(OwnedEventId, u64)> {
        let (floor, until) = self.visible_range(user, room_id).await?;
        self.store
            .event_at_time(room_id, ts, dir, floor.max(OUTLIERS_BELOW), until)
            .await?
            .ok_or_else(|| Error::not_found(format!("no event of {room_id} near {ts}")))
    }
}

/// A room as `/rooms/{roomId}/initialSync` shows it: the user's membership, the latest
/// events (oldest first) with the tokens to page back from them and to go on after them, the
/// room's state, and whether it is listed in the directory.
#[derive(Debug)]
pub struct RoomInitialSync {
    pub membership: Option<MembershipState>,
    pub messages: Vec<StoredEvent>,
    pub start: Option<String>,
    pub end: String,
    pub state: Vec<StoredEvent>,
    pub public: bool,
}

impl Rooms {
    /// `/rooms/{roomId}/initialSync` for a member (or former member) of the room.
    pub async fn room_initial_sync(
        &self,
        user: &UserId,
        room_id: &RoomId,
        limit: usize,
    ) -> Result<RoomInitialSync> {
        let state = self.state(user, room_id).await?;
        let page = self
            .messages(user, room_id, None, None, Direction::Backward, limit)
            .await?;
        let mut messages = page.events;
        messages.reverse();
        let end = make_token(messages.last().map_or(0, |e| e.pos));
        Ok(RoomInitialSync {
            membership: self
                .store
                .membership(room_id, user)
                .await?
                .map(|m| m.membership),
            messages,
            start: page.end,
            end,
            state,
            public: self.store.is_public(room_id).await?,
        })
    }
}
