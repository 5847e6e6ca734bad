//! This server's public room directory as other servers read it: `GET` and `POST
//! /publicRooms` (with a search term), paged as the client API pages it; and `/hierarchy`,
//! a room of a space with its children as the asking server may see them.

use axum::{extract::State, Router};
use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        space::{get_hierarchy, SpaceHierarchyParentSummary},
    },
    directory::PublicRoomsChunk,
    room::RoomSummary,
    UInt,
};
use sandcat_client_api::{ApiError, ApiResult, RumaResponse, RumaRouter};
use sandcat_core::{
    ports::{PublicRoomsPage, PublicRoomsQuery},
    Error,
};

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_public_rooms::v1::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::v1::Request, _, _>(public_rooms_filtered)
        .ruma::<get_hierarchy::v1::Request, _, _>(hierarchy)
}

fn typed_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError(Error::internal(e)))
}

/// GET /_matrix/federation/v1/hierarchy/{roomId}
async fn hierarchy(
    State(s): State<FederationState>,
    req: Signed<get_hierarchy::v1::Request>,
) -> ApiResult<get_hierarchy::v1::Response> {
    let space = s
        .rooms
        .hierarchy_for_server(&req.origin, &req.body.room_id, req.body.suggested_only)
        .await?;
    let room: SpaceHierarchyParentSummary = typed_json(space.room)?;
    let children = space
        .children
        .into_iter()
        .map(typed_json::<RoomSummary>)
        .collect::<Result<_, _>>()?;
    let mut answer = get_hierarchy::v1::Response::new(room);
    answer.children = children;
    answer.inaccessible_children = space.inaccessible;
    Ok(RumaResponse(answer))
}

/// A page as ruma types it.
struct Typed {
    chunk: Vec<PublicRoomsChunk>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    total: Option<UInt>,
}

fn typed(page: PublicRoomsPage) -> Result<Typed, ApiError> {
    let chunk = page
        .chunk
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError(Error::internal(e)))?;
    Ok(Typed {
        chunk,
        next_batch: page.next_batch,
        prev_batch: page.prev_batch,
        total: page.total.and_then(|t| UInt::try_from(t).ok()),
    })
}

fn limit(limit: Option<UInt>) -> Option<usize> {
    limit.map(|l| u64::from(l) as usize)
}

/// GET /_matrix/federation/v1/publicRooms
async fn public_rooms(
    State(s): State<FederationState>,
    req: Signed<get_public_rooms::v1::Request>,
) -> ApiResult<get_public_rooms::v1::Response> {
    let query = PublicRoomsQuery {
        filter: None,
        since: req.body.since.clone(),
        limit: limit(req.body.limit),
    };
    let page = typed(s.rooms.public_rooms_page(None, &query).await?)?;
    let mut answer = get_public_rooms::v1::Response::new();
    answer.chunk = page.chunk;
    answer.next_batch = page.next_batch;
    answer.prev_batch = page.prev_batch;
    answer.total_room_count_estimate = page.total;
    Ok(RumaResponse(answer))
}

/// POST /_matrix/federation/v1/publicRooms
async fn public_rooms_filtered(
    State(s): State<FederationState>,
    req: Signed<get_public_rooms_filtered::v1::Request>,
) -> ApiResult<get_public_rooms_filtered::v1::Response> {
    let query = PublicRoomsQuery {
        filter: req.body.filter.generic_search_term.clone(),
        since: req.body.since.clone(),
        limit: limit(req.body.limit),
    };
    let page = typed(s.rooms.public_rooms_page(None, &query).await?)?;
    let mut answer = get_public_rooms_filtered::v1::Response::new();
    answer.chunk = page.chunk;
    answer.next_batch = page.next_batch;
    answer.prev_batch = page.prev_batch;
    answer.total_room_count_estimate = page.total;
    Ok(RumaResponse(answer))
}
