//! Queries of this server's directory by other servers: `/query/directory` (the room an
//! alias of this server names, and the servers to join it through).

use axum::{extract::State, Router};
use ruma::api::federation::query::get_room_information;
use sandcat_client_api::{ApiResult, RumaResponse, RumaRouter};

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_room_information::v1::Request, _, _>(directory)
}

/// GET /_matrix/federation/v1/query/directory?room_alias=
async fn directory(
    State(s): State<FederationState>,
    req: Signed<get_room_information::v1::Request>,
) -> ApiResult<get_room_information::v1::Response> {
    let (room_id, servers) = s.reads.alias(&s.server_name, &req.body.room_alias).await?;
    Ok(RumaResponse(get_room_information::v1::Response::new(
        room_id, servers,
    )))
}
