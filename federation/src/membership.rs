//! Another server's user joins a room here: `make_join` (the template its server signs) and
//! `send_join` v2 (the signed join, answered with the room's state and auth chain), both
//! through `Inbound`.

use axum::{extract::State, Router};
use ruma::api::federation::membership::{create_join_event, prepare_join_event};
use sandcat_client_api::{ApiError, ApiResult, RumaResponse, RumaRouter};
use sandcat_core::Error;
use serde_json::value::RawValue;

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<prepare_join_event::v1::Request, _, _>(make_join)
        .ruma::<create_join_event::v2::Request, _, _>(send_join)
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
