//! Endpoints for and around application services: ping, the network-scoped room directory,
//! third-party protocol lookups, and the helpers that ask a service about an unknown user or
//! alias before answering "not found".

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::client::{
        appservice::{request_ping, set_room_visibility},
        room::Visibility,
        thirdparty::{
            get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
            get_user_for_protocol, get_user_for_user_id,
        },
    },
    OwnedRoomId, OwnedServerName, RoomAliasId, UserId,
};
use sandcat_core::{Error, ErrorCode};
use serde_json::{json, Map};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<request_ping::v1::Request, _, _>(ping)
        .ruma::<set_room_visibility::v3::Request, _, _>(set_network_visibility)
        .ruma::<get_protocols::v3::Request, _, _>(protocols)
        .ruma::<get_protocol::v3::Request, _, _>(protocol)
        .ruma::<get_location_for_protocol::v3::Request, _, _>(locations)
        .ruma::<get_user_for_protocol::v3::Request, _, _>(users)
        .ruma::<get_location_for_room_alias::v3::Request, _, _>(location_for_alias)
        .ruma::<get_user_for_user_id::v3::Request, _, _>(user_for_id)
}

/// Resolves `#alias` or `!room`, with servers to join it through (none for a room id); an
/// alias of this server nobody has is asked of the services whose namespace holds it, which
/// may create it; another server's alias is asked of that server.
pub(crate) async fn locate_room(
    s: &AppState,
    room_id_or_alias: &str,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), Error> {
    if !room_id_or_alias.starts_with('#') {
        return Ok((s.rooms.resolve(room_id_or_alias).await?, Vec::new()));
    }
    let alias = RoomAliasId::parse(room_id_or_alias)
        .map_err(|e| Error::invalid_param(format!("invalid room alias: {e}")))?;
    match s.rooms.locate(&alias).await {
        Err(Error::Matrix {
            code: ErrorCode::NotFound,
            message,
        }) if alias.server_name() == s.config.server_name => {
            if s.appservices.query_alias(&alias).await {
                s.rooms.locate(&alias).await
            } else {
                Err(Error::Matrix {
                    code: ErrorCode::NotFound,
                    message,
                })
            }
        }
        other => other,
    }
}

/// Whether a local user exists, asking the services whose namespace holds an unknown one.
pub(crate) async fn user_known(s: &AppState, user_id: &UserId) -> Result<bool, Error> {
    if user_id.server_name() != s.config.server_name || s.accounts.exists(user_id).await? {
        return Ok(true);
    }
    Ok(s.appservices.query_user(user_id).await && s.accounts.exists(user_id).await?)
}

/// POST /_matrix/client/v1/appservice/{appserviceId}/ping
async fn ping(
    State(s): State<AppState>,
    req: Ruma<request_ping::v1::Request>,
) -> ApiResult<request_ping::v1::Response> {
    let ms = s
        .appservices
        .ping(
            req.session()?,
            &req.body.appservice_id,
            req.body.transaction_id.clone(),
        )
        .await?;
    Ok(RumaResponse(request_ping::v1::Response::new(
        std::time::Duration::from_millis(ms),
    )))
}

/// PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}
async fn set_network_visibility(
    State(s): State<AppState>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let b = &req.body;
    if s.rooms.store().room_version(&b.room_id).await?.is_none() {
        return Err(Error::not_found("unknown room").into());
    }
    tracing::debug!(network = %b.network_id, room_id = %b.room_id, "application service directory entry");
    s.rooms
        .store()
        .set_public(&b.room_id, b.visibility == Visibility::Public)
        .await?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}

/// GET /_matrix/client/v3/thirdparty/protocols
async fn protocols(
    State(s): State<AppState>,
    _: Ruma<get_protocols::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let map: Map<String, serde_json::Value> = s.appservices.protocols().await.into_iter().collect();
    Ok(Json(map).into_response())
}

/// GET /_matrix/client/v3/thirdparty/protocol/{protocol}
async fn protocol(
    State(s): State<AppState>,
    req: Ruma<get_protocol::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    Ok(Json(s.appservices.protocol(&req.body.protocol).await?).into_response())
}

/// GET /_matrix/client/v3/thirdparty/location/{protocol}
async fn locations(
    State(s): State<AppState>,
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let found = s
        .appservices
        .protocol_lookup(&req.body.protocol, false, req.body.fields.clone())
        .await?;
    Ok(Json(json!(found)).into_response())
}

/// GET /_matrix/client/v3/thirdparty/user/{protocol}
async fn users(
    State(s): State<AppState>,
    req: Ruma<get_user_for_protocol::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let found = s
        .appservices
        .protocol_lookup(&req.body.protocol, true, req.body.fields.clone())
        .await?;
    Ok(Json(json!(found)).into_response())
}

/// GET /_matrix/client/v3/thirdparty/location?alias=
async fn location_for_alias(
    State(s): State<AppState>,
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let found = s
        .appservices
        .reverse_lookup(Some(&req.body.alias), None)
        .await?;
    Ok(Json(json!(found)).into_response())
}

/// GET /_matrix/client/v3/thirdparty/user?userid=
async fn user_for_id(
    State(s): State<AppState>,
    req: Ruma<get_user_for_user_id::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let found = s
        .appservices
        .reverse_lookup(None, Some(&req.body.userid))
        .await?;
    Ok(Json(json!(found)).into_response())
}
