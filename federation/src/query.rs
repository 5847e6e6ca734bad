//! Queries by other servers: `/query/directory` (the room an alias of this server names, and
//! the servers to join it through) and `/query/profile` (a user's display name and avatar).

use axum::{extract::State, Router};
use ruma::api::federation::query::{get_profile_information, get_room_information};
use sandcat_client_api::{ApiResult, RumaResponse, RumaRouter};

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_room_information::v1::Request, _, _>(directory)
        .ruma::<get_profile_information::v1::Request, _, _>(profile)
}

/// GET /_matrix/federation/v1/query/profile?user_id=&field=
async fn profile(
    State(s): State<FederationState>,
    req: Signed<get_profile_information::v1::Request>,
) -> ApiResult<get_profile_information::v1::Response> {
    let (displayname, avatar_url) = s.reads.profile(&s.server_name, &req.body.user_id).await?;
    let field = req.body.field.as_ref().map(|f| f.as_str());
    let mut answer = get_profile_information::v1::Response::new();
    for (name, value) in [("displayname", displayname), ("avatar_url", avatar_url)] {
        if let Some(value) = value.filter(|_| field.is_none_or(|f| f == name)) {
            answer.data.set(name.to_owned(), value.into());
        }
    }
    Ok(RumaResponse(answer))
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
