//! The state of a joined room's section of `/sync`: `state`, the changes up to the start of
//! the timeline, or — when the client asks (`use_state_after`) — `state_after`, the changes
//! up to its end, which a client takes instead of the state events of the timeline. Both
//! carry the entries that state resolution changed in rooms other servers write to (state
//! resets), which the timeline cannot show.

use std::collections::HashSet;

use ruma::{EventId, RoomId, UserId};

use super::Sync;
use crate::{Result, StoredEvent};

/// What a room's section covers.
pub(super) struct Window<'a> {
    pub since: i64,
    pub now: i64,
    pub limited: bool,
    /// The room's timeline in this section, unfiltered, oldest first.
    pub timeline: &'a [StoredEvent],
    /// The room's whole current state, when the section is sent whole.
    pub current: Option<Vec<StoredEvent>>,
}

/// Which state a room's section carries.
#[derive(Debug)]
pub enum StateSection {
    /// `state`: up to the start of the timeline.
    Before(Vec<StoredEvent>),
    /// `state_after`: up to its end.
    After(Vec<StoredEvent>),
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection::Before(Vec::new())
    }
}

impl StateSection {
    pub fn events(&self) -> &[StoredEvent] {
        match self {
            StateSection::Before(e) | StateSection::After(e) => e,
        }
    }

    pub(super) fn retain(&mut self, keep: impl Fn(&StoredEvent) -> bool) {
        match self {
            StateSection::Before(e) | StateSection::After(e) => e.retain(|x| keep(x)),
        }
    }
}

impl Sync {
    /// The state `user` is told of `room_id` in the section `w`, as `state` or, when
    /// `after`, as `state_after`.
    pub(super) async fn room_state(
        &self,
        user: &UserId,
        room_id: &RoomId,
        w: Window<'_>,
        after: bool,
    ) -> Result<StateSection> {
        let in_timeline: HashSet<&EventId> = w.timeline.iter().map(|e| &*e.pdu.event_id).collect();
        if after {
            return Ok(StateSection::After(match w.current {
                Some(current) => current.into_iter().filter(|e| e.pos <= w.now).collect(),
                None => self.rooms.state_changes(room_id, w.since, w.now).await?,
            }));
        }
        if let Some(current) = w.current {
            return Ok(StateSection::Before(
                current
                    .into_iter()
                    .filter(|e| !in_timeline.contains(&*e.pdu.event_id) && e.pos <= w.now)
                    .collect(),
            ));
        }
        let until = match (w.limited, w.timeline.first()) {
            (true, Some(first)) => first.pos - 1,
            (true, None) => w.now,
            (false, _) => w.since,
        };
        let mut state = if w.limited {
            self.rooms.state_changes(room_id, w.since, until).await?
        } else {
            Vec::new()
        };
        // Resets happen only at events of other servers: none in the timeline, none to read.
        let own = user.server_name();
        if w.timeline.iter().any(|e| e.pdu.sender.server_name() != own) {
            for reset in self.rooms.state_resets(room_id, until, w.now).await? {
                state.retain(|e| {
                    e.pdu.kind.to_string() != reset.kind
                        || e.pdu.state_key.as_deref() != Some(reset.state_key.as_str())
                });
                if let Some(ev) = reset.event {
                    if !in_timeline.contains(&*ev.pdu.event_id) {
                        state.push(ev);
                    }
                }
            }
        }
        Ok(StateSection::Before(state))
    }
}
