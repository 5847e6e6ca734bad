//! The read side of a room: what a user may see, and pages of its history.

use ruma::events::room::member::MembershipState;
use ruma::{events::TimelineEventType, EventId, OwnedRoomId, RoomId, UserId};
use serde_json::json;

use super::*;

impl Rooms {
    /// The highest stream position the user may read in the room, or `M_FORBIDDEN`.
    /// Members read everything ("shared" history); former members read up to their leaving.
    pub async fn visible_until(&self, user_id: &UserId, room_id: &RoomId) -> Result<i64> {
        self.membership_until(user_id, room_id).await
    }

    /// `(floor, until)`: the member reads positions in `(floor, until]` (history visibility
    /// and departure both apply).
    pub async fn visible_range(&self, user_id: &UserId, room_id: &RoomId) -> Result<(i64, i64)> {
        let until = self.membership_until(user_id, room_id).await?;
        let floor = match self.store.membership(room_id, user_id).await? {
            Some(m) => crate::visibility::floor(self.store.as_ref(), room_id, &m).await?,
            None => 0,
        };
        Ok((floor, until))
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

    /// `GET /rooms/{roomId}/messages`. Tokens are stream boundaries (see [`parse_token`]).
    pub async fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<&str>,
        to: Option<&str>,
        dir: Direction,
        limit: usize,
    ) -> Result<Page> {
        let (floor, until_visible) = self.visible_range(user_id, room_id).await?;
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let now = i64::MAX;
        let from = match from {
            Some(t) => parse_token(t)?,
            None if dir == Direction::Backward => now,
            None => 0,
        };
        let to = to.map(parse_token).transpose()?;
        let events = match dir {
            Direction::Backward => {
                let after = to.unwrap_or(0).max(floor);
                self.store
                    .timeline(
                        room_id,
                        after,
                        from.min(until_visible),
                        Direction::Backward,
                        limit,
                    )
                    .await?
            }
            Direction::Forward => {
                let until = to.unwrap_or(now).min(until_visible);
                self.store
                    .timeline(room_id, from.max(floor), until, Direction::Forward, limit)
                    .await?
            }
        };
        let end = if events.len() < limit {
            None
        } else {
            events.last().map(|e| match dir {
                Direction::Backward => make_token(e.pos - 1),
                Direction::Forward => make_token(e.pos),
            })
        };
        Ok(Page { events, end })
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
        let before = self
            .store
            .timeline(room_id, floor, ev.pos - 1, Direction::Backward, half)
            .await?;
        let after = self
            .store
            .timeline(room_id, ev.pos, until, Direction::Forward, half)
            .await?;
        let start = make_token(before.last().map(|e| e.pos - 1).unwrap_or(ev.pos - 1));
        let end = make_token(after.last().map(|e| e.pos).unwrap_or(ev.pos));
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
