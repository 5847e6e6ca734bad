//! Who may knock on a room, and who may join a room whose join rule is `restricted` (room versions 8 and later) or
//! `knock_restricted` (10 and later): a user joined to one of the rooms its allow list names,
//! vouched for by a member of a resident server who may invite — the join names that member
//! in `join_authorised_via_users_server`, and that member's server signs it. The auth rules
//! check the voucher's membership and power; this module decides whether this server gives
//! one, for a join of its own user or for the join another server asks for (`make_join`).

use ruma::{
    events::{
        room::{
            join_rules::{AllowRule, JoinRule, RoomJoinRulesEventContent},
            member::MembershipState,
        },
        TimelineEventType,
    },
    OwnedRoomId, OwnedUserId, RoomVersionId, ServerName, UserId,
};

use crate::{
    ports::{RoomSnapshot, RoomStore},
    state, Error, ErrorCode, Pdu, Result,
};

/// The content key that names the member vouching for a restricted join.
pub const AUTHORISED_VIA: &str = "join_authorised_via_users_server";

/// The rooms whose members may join, when the room's join rule (`join_rules`, its
/// `m.room.join_rules` event) is `restricted` or `knock_restricted` and the room's version
/// knows that rule; `None` for every other rule.
pub fn allowed_rooms(version: &RoomVersionId, join_rules: &Pdu) -> Option<Vec<OwnedRoomId>> {
    let rules = version.rules()?.authorization;
    let content: RoomJoinRulesEventContent = serde_json::from_str(join_rules.content.get()).ok()?;
    let restricted = match content.join_rule {
        JoinRule::Restricted(r) if rules.restricted_join_rule => r,
        JoinRule::KnockRestricted(r) if rules.knock_restricted_join_rule => r,
        _ => return None,
    };
    Some(
        restricted
            .allow
            .into_iter()
            .filter_map(|rule| match rule {
                AllowRule::RoomMembership(m) => Some(m.room_id),
                _ => None,
            })
            .collect(),
    )
}

/// Whether the room `snapshot` shows takes knocks: its join rule is `knock`, or
/// `knock_restricted`, and its version knows that rule.
pub fn takes_knocks(snapshot: &RoomSnapshot) -> bool {
    let Some(rules) = snapshot.version.rules().map(|r| r.authorization) else {
        return false;
    };
    let content = snapshot
        .state
        .iter()
        .find(|p| p.kind == TimelineEventType::RoomJoinRules && p.state_key.as_deref() == Some(""))
        .and_then(|p| serde_json::from_str::<RoomJoinRulesEventContent>(p.content.get()).ok());
    match content.map(|c| c.join_rule) {
        Some(JoinRule::Knock) => rules.knocking,
        Some(JoinRule::KnockRestricted(_)) => rules.knock_restricted_join_rule,
        _ => false,
    }
}

/// The member of this server (`own`) who vouches for `user` joining the room `snapshot`
/// shows, when its join rule is restricted and `user` is neither joined nor invited: `None`
/// when the room needs no voucher (the auth rules decide alone). Refused with `M_FORBIDDEN`
/// when the user is in none of the allowed rooms, `M_UNABLE_TO_AUTHORISE_JOIN` when this
/// server is in none of them (so it cannot tell), `M_UNABLE_TO_GRANT_JOIN` when no member of
/// this server may invite.
pub async fn voucher(
    store: &dyn RoomStore,
    snapshot: &RoomSnapshot,
    user: &UserId,
    own: &ServerName,
) -> Result<Option<OwnedUserId>> {
    let find = |kind: TimelineEventType, key: &str| {
        snapshot
            .state
            .iter()
            .find(|p| p.kind == kind && p.state_key.as_deref() == Some(key))
    };
    let Some(allowed) = find(TimelineEventType::RoomJoinRules, "")
        .and_then(|rules| allowed_rooms(&snapshot.version, rules))
    else {
        return Ok(None);
    };
    let current = find(TimelineEventType::RoomMember, user.as_str()).and_then(Pdu::membership);
    if matches!(
        current,
        Some(MembershipState::Join | MembershipState::Invite)
    ) {
        return Ok(None);
    }
    let mut known = false;
    for room in &allowed {
        if !store.is_resident(room).await? {
            continue;
        }
        known = true;
        let joined = store
            .membership(room, user)
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join);
        if joined {
            return granting_member(snapshot, own, find).map(Some);
        }
    }
    if known {
        Err(Error::forbidden(format!(
            "{user} is not a member of any room that grants access to this one"
        )))
    } else {
        Err(Error::matrix(
            ErrorCode::UnableToAuthorizeJoin,
            "this server is in none of the rooms that grant access to this one",
        ))
    }
}

/// A joined member of this server whose power reaches the room's invite level: the one with
/// the most power (ties: the least user id, so every call picks the same).
fn granting_member<'a>(
    snapshot: &'a RoomSnapshot,
    own: &ServerName,
    find: impl Fn(TimelineEventType, &str) -> Option<&'a Pdu>,
) -> Result<OwnedUserId> {
    let create = find(TimelineEventType::RoomCreate, "");
    let power = find(TimelineEventType::RoomPowerLevels, "");
    let needed = state::required_level(power, "invite", 0);
    snapshot
        .state
        .iter()
        .filter(|p| p.membership() == Some(MembershipState::Join))
        .filter_map(|p| UserId::parse(p.state_key.as_deref()?).ok())
        .filter(|u| u.server_name() == own)
        .map(|u| {
            let level = state::power_level(&snapshot.version, create, power, &u);
            (level, u)
        })
        .filter(|(level, _)| *level >= needed)
        .min_by(|(la, ua), (lb, ub)| lb.cmp(la).then_with(|| ua.cmp(ub)))
        .map(|(_, u)| u)
        .ok_or_else(|| {
            Error::matrix(
                ErrorCode::UnableToGrantJoin,
                "no member of this server may let users into this room",
            )
        })
}
