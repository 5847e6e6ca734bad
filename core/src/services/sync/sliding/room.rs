//! One room of a sliding-sync response: its latest events, the state asked for, and what a
//! room list shows of it (name, avatar, heroes, counts, recency).

use std::collections::HashSet;

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    OwnedUserId, UserId,
};
use serde_json::Value;

use super::{connection::SentRoom, lists::Candidate, request::RoomSpec};
use crate::{
    ports::RoomOverview, services::rooms::make_token, services::sync::invites::stripped_room,
    StoredEvent,
};

/// How many members a room without a name is shown by.
const MAX_HEROES: usize = 5;

/// A room as a sliding-sync response carries it.
#[derive(Debug, Default)]
pub struct SlidingRoom {
    /// The client is sent the room afresh: it drops what it held.
    pub initial: bool,
    pub name: Option<String>,
    /// `Some(None)`: the room's avatar was removed.
    pub avatar: Option<Option<String>>,
    pub is_dm: Option<bool>,
    /// For an invite or a knock: the stripped state the client is shown.
    pub invite_state: Option<Vec<Value>>,
    pub timeline: Vec<StoredEvent>,
    pub required_state: Vec<StoredEvent>,
    pub prev_batch: Option<String>,
    pub limited: bool,
    pub joined_count: Option<u64>,
    pub invited_count: Option<u64>,
    /// How many of the timeline's events are new to the client (the rest it may have seen).
    pub num_live: Option<u64>,
    pub bump_stamp: i64,
    pub heroes: Option<Vec<Hero>>,
    pub notification_count: Option<u64>,
    pub highlight_count: Option<u64>,
}

/// A member a room without a name is called after.
#[derive(Debug, Clone)]
pub struct Hero {
    pub user_id: OwnedUserId,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// A joined room (or one left since it was sent): `overview` holds its current state and its
/// latest events, newest first; `sent` what the client holds of it, `None` when it is sent
/// afresh; `floor` the position below which the user may not read.
pub(super) fn joined_room(
    user: &UserId,
    c: &Candidate,
    spec: &RoomSpec,
    sent: Option<&SentRoom>,
    overview: RoomOverview,
    floor: i64,
    now: i64,
) -> SlidingRoom {
    let limit = spec.timeline_limit;
    let after = sent.map_or(floor, |s| s.pos.max(floor));
    let mut events: Vec<StoredEvent> = overview
        .latest
        .into_iter()
        .filter(|e| e.pos > after)
        .take(limit + 1)
        .collect();
    let limited = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    let prev_batch = Some(make_token(events.first().map_or(now, |e| e.pos - 1)));
    let changed_since = sent.map(|s| s.pos);
    let is_new = |e: &StoredEvent| changed_since.is_none_or(|p| e.pos > p);
    let mut senders: HashSet<OwnedUserId> = events.iter().map(|e| e.pdu.sender.clone()).collect();
    if sent.is_none() {
        senders.insert(user.to_owned());
    }
    let lazy = spec.required_state.lazy_members();
    let required_state: Vec<StoredEvent> = overview
        .state
        .iter()
        .filter(|e| {
            spec.required_state.wants(e, user, &senders)
                && (is_new(e)
                    || (lazy
                        && e.pdu.kind == TimelineEventType::RoomMember
                        && senders
                            .iter()
                            .any(|s| e.pdu.state_key.as_deref() == Some(s.as_str()))))
        })
        .cloned()
        .collect();
    let state_of = |kind: &str| {
        overview
            .state
            .iter()
            .find(|e| e.pdu.kind.to_string() == kind && e.pdu.state_key.as_deref() == Some(""))
    };
    let content_str = |e: &StoredEvent, field: &str| {
        e.pdu
            .content_value()
            .get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let name_event = state_of("m.room.name");
    let name = name_event
        .filter(|e| is_new(e))
        .and_then(|e| content_str(e, "name"));
    let avatar = state_of("m.room.avatar")
        .filter(|e| is_new(e))
        .map(|e| content_str(e, "url"));
    let members: Vec<&StoredEvent> = overview
        .state
        .iter()
        .filter(|e| e.pdu.kind == TimelineEventType::RoomMember)
        .collect();
    let members_changed = sent.is_none() || members.iter().any(|e| is_new(e));
    let count = |state: MembershipState| {
        members
            .iter()
            .filter(|e| e.pdu.membership().as_ref() == Some(&state))
            .count() as u64
    };
    let unnamed = name_event.and_then(|e| content_str(e, "name")).is_none();
    let heroes = (members_changed && unnamed).then(|| heroes(user, &members));
    let num_live = sent.map_or(0, |_| events.len() as u64);
    SlidingRoom {
        initial: sent.is_none(),
        name,
        avatar,
        is_dm: sent.is_none().then_some(c.is_dm),
        invite_state: None,
        timeline: events,
        required_state,
        prev_batch,
        limited,
        joined_count: members_changed.then(|| count(MembershipState::Join)),
        invited_count: members_changed.then(|| count(MembershipState::Invite)),
        num_live: Some(num_live),
        bump_stamp: c.bump_stamp,
        heroes,
        notification_count: Some(overview.unread.total().notifications),
        highlight_count: Some(overview.unread.total().highlights),
    }
}

/// The members (joined or invited, not the user) a room without a name is called after.
fn heroes(user: &UserId, members: &[&StoredEvent]) -> Vec<Hero> {
    members
        .iter()
        .filter(|e| {
            e.pdu.state_key.as_deref() != Some(user.as_str())
                && matches!(
                    e.pdu.membership(),
                    Some(MembershipState::Join | MembershipState::Invite)
                )
        })
        .take(MAX_HEROES)
        .filter_map(|e| {
            let content = e.pdu.content_value();
            let field = |f: &str| content.get(f).and_then(Value::as_str).map(str::to_owned);
            Some(Hero {
                user_id: OwnedUserId::try_from(e.pdu.state_key.as_deref()?).ok()?,
                displayname: field("displayname"),
                avatar_url: field("avatar_url"),
            })
        })
        .collect()
}

/// A room the user is invited to or knocking on: the stripped state it is shown.
pub(super) fn outside_room(user: &UserId, c: &Candidate, state: Vec<StoredEvent>) -> SlidingRoom {
    let stripped = stripped_room(state, &c.membership, user);
    let mut invite_state: Vec<Value> = stripped
        .state
        .iter()
        .filter_map(|e| serde_json::to_value(e.stripped_event()).ok())
        .collect();
    invite_state.extend(stripped.told);
    let name = invite_state.iter().find_map(|e| {
        (e.get("type")?.as_str()? == "m.room.name")
            .then(|| e.get("content")?.get("name")?.as_str().map(str::to_owned))?
    });
    SlidingRoom {
        initial: true,
        name,
        is_dm: Some(c.is_dm),
        invite_state: Some(invite_state),
        bump_stamp: c.bump_stamp,
        ..Default::default()
    }
}

/// A room left (or banned from) since the client was sent it: the events up to the leave.
pub(super) fn left_room(c: &Candidate, mut events: Vec<StoredEvent>, limit: usize) -> SlidingRoom {
    let limited = events.len() > limit;
    events.truncate(limit);
    events.reverse();
    let prev_batch = events.first().map(|e| make_token(e.pos - 1));
    SlidingRoom {
        initial: false,
        num_live: Some(events.len() as u64),
        timeline: events,
        prev_batch,
        limited,
        bump_stamp: c.bump_stamp,
        ..Default::default()
    }
}
