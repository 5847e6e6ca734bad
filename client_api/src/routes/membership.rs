//! Memberships: join (by id or alias, through other servers), knock, invite, leave, forget,
//! kick, ban, unban, the lists of joined rooms and members, and the rooms shared with another
//! user.

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events, get_mutual_rooms, invite_user,
            join_room_by_id, join_room_by_id_or_alias, joined_members, joined_rooms, kick_user,
            leave_room, unban_user,
        },
    },
    events::room::member::MembershipState,
};
use sandcat_core::{services::third_party_invites::ByAddress, Error, StoredEvent};
use serde_json::{json, Map};

use super::rooms::client_events;
use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<join_room_by_id::v3::Request, _, _>(join_by_id)
        .ruma::<join_room_by_id_or_alias::v3::Request, _, _>(join_by_id_or_alias)
        .ruma::<knock_room::v3::Request, _, _>(knock)
        .ruma::<invite_user::v3::Request, _, _>(invite)
        .ruma::<leave_room::v3::Request, _, _>(leave)
        .ruma::<forget_room::v3::Request, _, _>(forget)
        .ruma::<kick_user::v3::Request, _, _>(kick)
        .ruma::<ban_user::v3::Request, _, _>(ban)
        .ruma::<unban_user::v3::Request, _, _>(unban)
        .ruma::<joined_rooms::v3::Request, _, _>(joined_rooms)
        .ruma::<joined_members::v3::Request, _, _>(joined_members)
        .ruma::<get_member_events::v3::Request, _, _>(members)
        .ruma::<get_mutual_rooms::v1::Request, _, _>(mutual_rooms)
}

/// GET /_matrix/client/v1/mutual_rooms
async fn mutual_rooms(
    State(s): State<AppState>,
    req: Ruma<get_mutual_rooms::v1::Request>,
) -> ApiResult<get_mutual_rooms::v1::Response> {
    let page = s
        .rooms
        .mutual_rooms(
            &req.session()?.user_id,
            &req.body.user_id,
            req.body.from.as_deref(),
        )
        .await?;
    let mut resp = get_mutual_rooms::v1::Response::new(
        ruma::UInt::try_from(page.count).unwrap_or(ruma::UInt::MAX),
        page.joined,
    );
    resp.next_batch = page.next_batch;
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v3/rooms/{roomId}/join
async fn join_by_id(
    State(s): State<AppState>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> ApiResult<join_room_by_id::v3::Response> {
    s.rooms
        .join(
            req.session()?,
            &req.body.room_id,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(join_room_by_id::v3::Response::new(
        req.body.room_id.clone(),
    )))
}

/// POST /_matrix/client/v3/join/{roomIdOrAlias}
async fn join_by_id_or_alias(
    State(s): State<AppState>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    let (room_id, mut via) =
        super::appservice::locate_room(&s, req.body.room_id_or_alias.as_str()).await?;
    via.extend(req.body.via.iter().cloned());
    s.rooms
        .join_via(req.session()?, &room_id, &via, req.body.reason.as_deref())
        .await?;
    Ok(RumaResponse(join_room_by_id_or_alias::v3::Response::new(
        room_id,
    )))
}

/// POST /_matrix/client/v3/knock/{roomIdOrAlias}
async fn knock(
    State(s): State<AppState>,
    req: Ruma<knock_room::v3::Request>,
) -> ApiResult<knock_room::v3::Response> {
    let (room_id, mut via) =
        super::appservice::locate_room(&s, req.body.room_id_or_alias.as_str()).await?;
    via.extend(req.body.via.iter().cloned());
    s.rooms
        .knock(req.session()?, &room_id, &via, req.body.reason.as_deref())
        .await?;
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}

/// POST /_matrix/client/v3/rooms/{roomId}/invite
async fn invite(
    State(s): State<AppState>,
    req: Ruma<invite_user::v3::Request>,
) -> ApiResult<invite_user::v3::Response> {
    let r = match &req.body.recipient {
        invite_user::v3::InvitationRecipient::UserId(r) => r,
        invite_user::v3::InvitationRecipient::ThirdPartyId(t) => {
            let to = ByAddress {
                id_server: &t.id_server,
                id_access_token: &t.id_access_token,
                medium: t.medium.as_str(),
                address: &t.address,
            };
            s.third_party_invites
                .invite(req.session()?, &req.body.room_id, to)
                .await?;
            return Ok(RumaResponse(invite_user::v3::Response::new()));
        }
        _ => return Err(Error::bad_json("an invite names a user or an address").into()),
    };
    super::appservice::user_known(&s, &r.user_id).await?;
    s.rooms
        .set_membership(
            req.session()?,
            &req.body.room_id,
            &r.user_id,
            MembershipState::Invite,
            r.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(invite_user::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/leave
async fn leave(
    State(s): State<AppState>,
    req: Ruma<leave_room::v3::Request>,
) -> ApiResult<leave_room::v3::Response> {
    s.rooms
        .leave(
            req.session()?,
            &req.body.room_id,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(leave_room::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/forget
async fn forget(
    State(s): State<AppState>,
    req: Ruma<forget_room::v3::Request>,
) -> ApiResult<forget_room::v3::Response> {
    s.rooms.forget(req.session()?, &req.body.room_id).await?;
    Ok(RumaResponse(forget_room::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/kick
async fn kick(
    State(s): State<AppState>,
    req: Ruma<kick_user::v3::Request>,
) -> ApiResult<kick_user::v3::Response> {
    s.rooms
        .set_membership(
            req.session()?,
            &req.body.room_id,
            &req.body.user_id,
            MembershipState::Leave,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(kick_user::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/ban
async fn ban(
    State(s): State<AppState>,
    req: Ruma<ban_user::v3::Request>,
) -> ApiResult<ban_user::v3::Response> {
    s.rooms
        .set_membership(
            req.session()?,
            &req.body.room_id,
            &req.body.user_id,
            MembershipState::Ban,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(ban_user::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/unban
async fn unban(
    State(s): State<AppState>,
    req: Ruma<unban_user::v3::Request>,
) -> ApiResult<unban_user::v3::Response> {
    match s
        .rooms
        .store()
        .membership(&req.body.room_id, &req.body.user_id)
        .await?
    {
        Some(m) if m.membership == MembershipState::Ban => {}
        _ => return Err(Error::forbidden("user is not banned").into()),
    }
    s.rooms
        .set_membership(
            req.session()?,
            &req.body.room_id,
            &req.body.user_id,
            MembershipState::Leave,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(unban_user::v3::Response::new()))
}

/// GET /_matrix/client/v3/joined_rooms
async fn joined_rooms(
    State(s): State<AppState>,
    req: Ruma<joined_rooms::v3::Request>,
) -> ApiResult<joined_rooms::v3::Response> {
    Ok(RumaResponse(joined_rooms::v3::Response::new(
        s.rooms.joined_rooms(&req.session()?.user_id).await?,
    )))
}

/// GET /_matrix/client/v3/rooms/{roomId}/joined_members
async fn joined_members(
    State(s): State<AppState>,
    req: Ruma<joined_members::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let members = s
        .rooms
        .members(&req.session()?.user_id, &req.body.room_id)
        .await?;
    let mut joined = Map::new();
    for m in members
        .iter()
        .filter(|m| m.pdu.membership() == Some(MembershipState::Join))
    {
        let c = m.pdu.content_value();
        joined.insert(
            m.pdu.state_key.clone().unwrap_or_default(),
            crate::routes::present(
                json!({ "display_name": c.get("displayname"), "avatar_url": c.get("avatar_url") }),
            ),
        );
    }
    Ok(Json(json!({ "joined": joined })).into_response())
}

/// GET /_matrix/client/v3/rooms/{roomId}/members
async fn members(
    State(s): State<AppState>,
    req: Ruma<get_member_events::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let members = s.rooms.members(user, &req.body.room_id).await?;
    let want = req
        .body
        .membership
        .as_ref()
        .map(|m| MembershipState::from(m.as_str()));
    let not = req
        .body
        .not_membership
        .as_ref()
        .map(|m| MembershipState::from(m.as_str()));
    let chunk: Vec<StoredEvent> = members
        .into_iter()
        .filter(|m| {
            let ms = m.pdu.membership();
            want.as_ref().is_none_or(|w| ms.as_ref() == Some(w))
                && not.as_ref().is_none_or(|n| ms.as_ref() != Some(n))
        })
        .collect();
    Ok(Json(json!({ "chunk": client_events(user, &chunk) })).into_response())
}
