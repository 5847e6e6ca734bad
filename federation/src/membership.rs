//! Memberships of other servers' users in rooms here, all through `Inbound`: `make_join`
//! (the template their server signs) and `send_join` v2 (the signed join, answered with the
//! room's state and auth chain); `make_leave` and `send_leave` v2; `make_knock` and
//! `send_knock`; and `/invite` v2, an invite of a user of this server, counter-signed.

use axum::{extract::State, Router};
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event, RawStrippedState,
};
use sandcat_client_api::{ApiError, ApiResult, RumaResponse, RumaRouter};
use sandcat_core::Error;
use serde_json::value::RawValue;

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<prepare_join_event::v1::Request, _, _>(make_join)
        .ruma::<create_join_event::v2::Request, _, _>(send_join)
        .ruma::<prepare_leave_event::v1::Request, _, _>(make_leave)
        .ruma::<create_leave_event::v2::Request, _, _>(send_leave)
        .ruma::<prepare_knock_event::v1::Request, _, _>(make_knock)
        .ruma::<create_knock_event::v1::Request, _, _>(send_knock)
        .ruma::<create_invite::v2::Request, _, _>(invite)
}

/// The entries of `invite_room_state` or `knock_room_state` (whole PDUs since Matrix 1.16,
/// stripped events before) as JSON; entries that are neither are left out.
pub(crate) fn told_state(entries: &[RawStrippedState]) -> Vec<serde_json::Value> {
    entries
        .iter()
        .filter_map(|entry| {
            let raw = match entry {
                RawStrippedState::Pdu(pdu) => pdu.get(),
                #[allow(deprecated)]
                RawStrippedState::Stripped(stripped) => stripped.json().get(),
                _ => return None,
            };
            serde_json::from_str(raw).ok()
        })
        .collect()
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError(Error::internal(e)))
}

/// GET /_matrix/federation/v1/make_join/{roomId}/{userId}
async fn make_join(
    State(s): State<FederationState>,
    req: Signed<prepare_join_event::v1::Request>,
) -> ApiResult<prepare_join_event::v1::Response> {
    let b = &req.body;
    let (version, template) = s
        .inbound
        .make_join(&req.origin, &b.room_id, &b.user_id, &b.ver)
        .await?;
    let mut answer = prepare_join_event::v1::Response::new(raw(template.to_string())?);
    answer.room_version = Some(version);
    Ok(RumaResponse(answer))
}

/// PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}
async fn send_join(
    State(s): State<FederationState>,
    req: Signed<create_join_event::v2::Request>,
) -> ApiResult<create_join_event::v2::Response> {
    let b = &req.body;
    let joined = s
        .inbound
        .send_join(&req.origin, &b.room_id, &b.event_id, b.pdu.get())
        .await?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = joined
        .state
        .into_iter()
        .map(raw)
        .collect::<Result<_, _>>()?;
    room_state.auth_chain = joined
        .auth_chain
        .into_iter()
        .map(raw)
        .collect::<Result<_, _>>()?;
    room_state.event = joined.event.map(raw).transpose()?;
    room_state.servers_in_room = Some(
        joined
            .servers_in_room
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    Ok(RumaResponse(create_join_event::v2::Response::new(
        room_state,
    )))
}

/// GET /_matrix/federation/v1/make_leave/{roomId}/{userId}
async fn make_leave(
    State(s): State<FederationState>,
    req: Signed<prepare_leave_event::v1::Request>,
) -> ApiResult<prepare_leave_event::v1::Response> {
    let b = &req.body;
    let (version, template) = s
        .inbound
        .make_leave(&req.origin, &b.room_id, &b.user_id)
        .await?;
    Ok(RumaResponse(prepare_leave_event::v1::Response::new(
        Some(version),
        raw(template.to_string())?,
    )))
}

/// PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}
async fn send_leave(
    State(s): State<FederationState>,
    req: Signed<create_leave_event::v2::Request>,
) -> ApiResult<create_leave_event::v2::Response> {
    let b = &req.body;
    s.inbound
        .send_leave(&req.origin, &b.room_id, &b.event_id, b.pdu.get())
        .await?;
    Ok(RumaResponse(create_leave_event::v2::Response::new()))
}

/// GET /_matrix/federation/v1/make_knock/{roomId}/{userId}
async fn make_knock(
    State(s): State<FederationState>,
    req: Signed<prepare_knock_event::v1::Request>,
) -> ApiResult<prepare_knock_event::v1::Response> {
    let b = &req.body;
    let (version, template) = s
        .inbound
        .make_knock(&req.origin, &b.room_id, &b.user_id, &b.ver)
        .await?;
    Ok(RumaResponse(prepare_knock_event::v1::Response::new(
        version,
        raw(template.to_string())?,
    )))
}

/// PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}
async fn send_knock(
    State(s): State<FederationState>,
    req: Signed<create_knock_event::v1::Request>,
) -> ApiResult<create_knock_event::v1::Response> {
    let b = &req.body;
    let shown = s
        .inbound
        .send_knock(&req.origin, &b.room_id, &b.event_id, b.pdu.get())
        .await?;
    let state = shown
        .into_iter()
        .map(|pdu| raw(pdu).map(RawStrippedState::Pdu))
        .collect::<Result<_, _>>()?;
    Ok(RumaResponse(create_knock_event::v1::Response::new(state)))
}

/// PUT /_matrix/federation/v2/invite/{roomId}/{eventId}
async fn invite(
    State(s): State<FederationState>,
    req: Signed<create_invite::v2::Request>,
) -> ApiResult<create_invite::v2::Response> {
    let b = &req.body;
    let told = told_state(&b.invite_room_state);
    let signed = s
        .inbound
        .invite(
            &req.origin,
            &b.room_id,
            &b.event_id,
            &b.room_version,
            b.event.get(),
            told,
        )
        .await?;
    Ok(RumaResponse(create_invite::v2::Response::new(raw(signed)?)))
}
