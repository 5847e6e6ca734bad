//! The lists of a sliding-sync request: which of the user's rooms each holds, in what order
//! (most recent activity first), and which of them its windows show.

use std::collections::{BTreeMap, HashMap, HashSet};

use ruma::{events::room::member::MembershipState, OwnedRoomId, UserId};
use serde_json::Value;

use super::{
    connection::Connection,
    request::{ListFilters, RoomSpec, SlidingRequest},
};
use crate::{
    ports::{ClientStore, Membership, RoomStore},
    Result,
};

/// A room of the user's, as the lists see it.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub membership: Membership,
    /// Its place in a list sorted by recency: the position of its latest activity.
    pub bump_stamp: i64,
    pub is_dm: bool,
    pub kind: RoomKind,
}

/// What kind of room it is, for the filters that ask.
#[derive(Debug, Clone, Default)]
pub(super) struct RoomKind {
    pub room_type: Option<String>,
    pub encrypted: bool,
}

/// What the lists decided: each list's count, and every room shown with what is asked of it.
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub counts: BTreeMap<String, u64>,
    pub shown: BTreeMap<OwnedRoomId, RoomSpec>,
    /// The rooms each list's windows show.
    pub by_list: BTreeMap<String, Vec<OwnedRoomId>>,
}

/// The user's rooms a list may hold: joined, invited and knocking, and those left or banned
/// since the connection last sent them (shown once, so the client learns of it).
pub(super) async fn candidates(
    rooms: &dyn RoomStore,
    client: &dyn ClientStore,
    user: &UserId,
    conn: &Connection,
    now: i64,
    need_kinds: bool,
) -> Result<Vec<Candidate>> {
    let memberships: Vec<Membership> = rooms
        .memberships(user)
        .await?
        .into_iter()
        .filter(|m| m.pos <= now)
        .filter(|m| match m.membership {
            MembershipState::Join | MembershipState::Invite | MembershipState::Knock => true,
            MembershipState::Leave | MembershipState::Ban => conn
                .rooms
                .get(&m.room_id)
                .is_some_and(|sent| m.pos > sent.pos),
            _ => false,
        })
        .collect();
    let joined: Vec<OwnedRoomId> = memberships
        .iter()
        .filter(|m| m.membership == MembershipState::Join)
        .map(|m| m.room_id.clone())
        .collect();
    let stamps = rooms.bump_stamps(&joined, now).await?;
    let kinds = if need_kinds {
        let ids: Vec<OwnedRoomId> = memberships.iter().map(|m| m.room_id.clone()).collect();
        room_kinds(rooms, &ids).await?
    } else {
        HashMap::new()
    };
    let direct = direct_rooms(client, user).await?;
    let mut out = Vec::with_capacity(memberships.len());
    for m in memberships {
        // Never negative: clients read it as an unsigned integer.
        let bump_stamp = match m.membership {
            MembershipState::Join => stamps.get(&m.room_id).copied().unwrap_or(m.pos),
            _ => m.pos,
        }
        .max(0);
        let is_dm = if m.membership == MembershipState::Invite {
            invited_as_direct(rooms, &m).await?
        } else {
            direct.contains(&m.room_id)
        };
        out.push(Candidate {
            kind: kinds.get(&m.room_id).cloned().unwrap_or_default(),
            membership: m,
            bump_stamp,
            is_dm,
        });
    }
    // Most recent first; ties by room id, so the order is the same on every request.
    out.sort_by(|a, b| {
        b.bump_stamp
            .cmp(&a.bump_stamp)
            .then_with(|| a.membership.room_id.cmp(&b.membership.room_id))
    });
    Ok(out)
}

/// The children of the spaces the lists filter by (`m.space.child` with a `via`), of the
/// spaces the user has joined only: a space the user is not in tells nothing.
pub(super) async fn space_children(
    rooms: &dyn RoomStore,
    req: &SlidingRequest,
    candidates: &[Candidate],
) -> Result<SpaceChildren> {
    let mut out = SpaceChildren::new();
    let asked: HashSet<&OwnedRoomId> = req.lists.values().flat_map(|l| &l.filters.spaces).collect();
    // Most requests filter by no space: nothing to read.
    if asked.is_empty() {
        return Ok(out);
    }
    let spaces: Vec<OwnedRoomId> = candidates
        .iter()
        .filter(|c| c.membership.membership == MembershipState::Join)
        .map(|c| &c.membership.room_id)
        .filter(|r| asked.contains(r))
        .cloned()
        .collect();
    if spaces.is_empty() {
        return Ok(out);
    }
    for e in rooms.state_of_rooms(&spaces, &["m.space.child"]).await? {
        let linked = e
            .pdu
            .content_value()
            .get("via")
            .and_then(Value::as_array)
            .is_some_and(|via| !via.is_empty());
        let child = e
            .pdu
            .state_key
            .as_deref()
            .and_then(|k| OwnedRoomId::try_from(k).ok());
        if let (true, Some(child)) = (linked, child) {
            out.entry(e.pdu.room_id().to_owned())
                .or_default()
                .insert(child);
        }
    }
    Ok(out)
}

/// Each space's children.
pub(super) type SpaceChildren = HashMap<OwnedRoomId, HashSet<OwnedRoomId>>;

/// Each list's rooms in order, and the rooms its windows show; then the subscriptions (to
/// rooms of the user's only).
pub(super) fn select(
    req: &SlidingRequest,
    candidates: &[Candidate],
    children: &SpaceChildren,
) -> Selection {
    let mut out = Selection::default();
    for (name, list) in &req.lists {
        let members: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| passes(&list.filters, c, children))
            .collect();
        out.counts.insert(name.clone(), members.len() as u64);
        let shown: Vec<OwnedRoomId> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| list.shows(*i as u64))
            .map(|(_, c)| c.membership.room_id.clone())
            .collect();
        for room in &shown {
            out.shown.entry(room.clone()).or_default().merge(&list.room);
        }
        out.by_list.insert(name.clone(), shown);
    }
    let mine: HashSet<&OwnedRoomId> = candidates.iter().map(|c| &c.membership.room_id).collect();
    for (room, spec) in &req.subscriptions {
        if mine.contains(room) {
            out.shown.entry(room.clone()).or_default().merge(spec);
        }
    }
    out
}

fn passes(f: &ListFilters, c: &Candidate, children: &SpaceChildren) -> bool {
    let is_invite = c.membership.membership == MembershipState::Invite;
    let in_space = || {
        f.spaces.iter().any(|s| {
            children
                .get(s)
                .is_some_and(|set| set.contains(&c.membership.room_id))
        })
    };
    f.is_dm.is_none_or(|want| want == c.is_dm)
        && f.is_invite.is_none_or(|want| want == is_invite)
        && f.is_encrypted.is_none_or(|want| want == c.kind.encrypted)
        && (f.room_types.is_empty() || f.room_types.contains(&c.kind.room_type))
        && !f.not_room_types.contains(&c.kind.room_type)
        && (f.spaces.is_empty() || in_space())
}

/// The type and encryption of rooms, from their create and encryption events.
async fn room_kinds(
    rooms: &dyn RoomStore,
    ids: &[OwnedRoomId],
) -> Result<HashMap<OwnedRoomId, RoomKind>> {
    let mut out: HashMap<OwnedRoomId, RoomKind> = HashMap::new();
    let state = rooms
        .state_of_rooms(ids, &["m.room.create", "m.room.encryption"])
        .await?;
    for e in state {
        if e.pdu.state_key.as_deref() != Some("") {
            continue;
        }
        let kind = out.entry(e.pdu.room_id().to_owned()).or_default();
        match e.pdu.kind.to_string().as_str() {
            "m.room.create" => {
                kind.room_type = e
                    .pdu
                    .content_value()
                    .get("type")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            _ => kind.encrypted = true,
        }
    }
    Ok(out)
}

/// The rooms the user's `m.direct` account data names.
async fn direct_rooms(client: &dyn ClientStore, user: &UserId) -> Result<HashSet<OwnedRoomId>> {
    let data = client.account_data(user, None, "m.direct").await?;
    Ok(data
        .as_ref()
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|r| OwnedRoomId::try_from(r).ok())
        .collect())
}

/// Whether the invite says it is to a direct chat (`is_direct`).
async fn invited_as_direct(rooms: &dyn RoomStore, m: &Membership) -> Result<bool> {
    Ok(rooms.event(&m.event_id).await?.is_some_and(|e| {
        e.pdu
            .content_value()
            .get("is_direct")
            .and_then(Value::as_bool)
            == Some(true)
    }))
}
