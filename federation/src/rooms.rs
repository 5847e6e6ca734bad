//! Reads of a room's events by another server: `/event`, `/state`, `/state_ids`,
//! `/event_auth`, `/backfill` and `/get_missing_events`. The server must have a joined member in the room, or the room's
//! history must be world-readable (`ServerReads`).

use axum::{extract::State, Router};
use ruma::{
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
    MilliSecondsSinceUnixEpoch,
};
use sandcat_client_api::{ApiError, ApiResult, RumaResponse, RumaRouter};
use sandcat_core::Error;
use serde_json::value::RawValue;

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_event::v1::Request, _, _>(event)
        .ruma::<get_room_state_ids::v1::Request, _, _>(state_ids)
        .ruma::<get_room_state::v1::Request, _, _>(state)
        .ruma::<get_event_authorization::v1::Request, _, _>(event_auth)
        .ruma::<get_backfill::v1::Request, _, _>(backfill)
        .ruma::<get_missing_events::v1::Request, _, _>(missing_events)
}

fn raw(json: String) -> Result<Box<RawValue>, ApiError> {
    RawValue::from_string(json).map_err(|e| ApiError(Error::internal(e)))
}

fn raws(pdus: Vec<String>) -> Result<Vec<Box<RawValue>>, ApiError> {
    pdus.into_iter().map(raw).collect()
}

/// GET /_matrix/federation/v1/event/{eventId}
async fn event(
    State(s): State<FederationState>,
    req: Signed<get_event::v1::Request>,
) -> ApiResult<get_event::v1::Response> {
    let pdu = s.reads.event(&req.origin, &req.body.event_id).await?;
    Ok(RumaResponse(get_event::v1::Response::new(
        s.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        raw(pdu)?,
    )))
}

/// GET /_matrix/federation/v1/state_ids/{roomId}
async fn state_ids(
    State(s): State<FederationState>,
    req: Signed<get_room_state_ids::v1::Request>,
) -> ApiResult<get_room_state_ids::v1::Response> {
    let at = s
        .reads
        .state_ids(&req.origin, &req.body.room_id, &req.body.event_id)
        .await?;
    Ok(RumaResponse(get_room_state_ids::v1::Response::new(
        at.auth_chain_ids,
        at.pdu_ids,
    )))
}

/// GET /_matrix/federation/v1/state/{roomId}
async fn state(
    State(s): State<FederationState>,
    req: Signed<get_room_state::v1::Request>,
) -> ApiResult<get_room_state::v1::Response> {
    let (pdus, auth_chain) = s
        .reads
        .state(&req.origin, &req.body.room_id, &req.body.event_id)
        .await?;
    Ok(RumaResponse(get_room_state::v1::Response::new(
        raws(auth_chain)?,
        raws(pdus)?,
    )))
}

/// GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}
async fn event_auth(
    State(s): State<FederationState>,
    req: Signed<get_event_authorization::v1::Request>,
) -> ApiResult<get_event_authorization::v1::Response> {
    let chain = s
        .reads
        .event_auth(&req.origin, &req.body.room_id, &req.body.event_id)
        .await?;
    Ok(RumaResponse(get_event_authorization::v1::Response::new(
        raws(chain)?,
    )))
}

/// GET /_matrix/federation/v1/backfill/{roomId}
async fn backfill(
    State(s): State<FederationState>,
    req: Signed<get_backfill::v1::Request>,
) -> ApiResult<get_backfill::v1::Response> {
    let limit = usize::try_from(u64::from(req.body.limit)).unwrap_or(usize::MAX);
    let pdus = s
        .reads
        .backfill(&req.origin, &req.body.room_id, &req.body.v, limit)
        .await?;
    Ok(RumaResponse(get_backfill::v1::Response::new(
        s.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        raws(pdus)?,
    )))
}

/// POST /_matrix/federation/v1/get_missing_events/{roomId}
async fn missing_events(
    State(s): State<FederationState>,
    req: Signed<get_missing_events::v1::Request>,
) -> ApiResult<get_missing_events::v1::Response> {
    let b = &req.body;
    let limit = usize::try_from(u64::from(b.limit)).unwrap_or(usize::MAX);
    let pdus = s
        .reads
        .missing_events(
            &req.origin,
            &b.room_id,
            &b.earliest_events,
            &b.latest_events,
            limit,
        )
        .await?;
    Ok(RumaResponse(get_missing_events::v1::Response::new(raws(
        pdus,
    )?)))
}
