//! Discovery: versions, well-known (client and support), capabilities; and the TURN
//! servers calls go through.

use std::collections::BTreeMap;

use axum::{extract::State, response::IntoResponse, Json};
use ruma::api::client::{
    discovery::{
        discover_policy_server, discover_support, get_capabilities, get_supported_versions,
    },
    voip::get_turn_server_info,
};
use sandcat_core::{services::voip::turn_credentials, Error, ServerConfig};
use serde_json::json;

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<get_supported_versions::Request, _, _>(versions)
        .ruma::<get_capabilities::v3::Request, _, _>(capabilities)
        .route("/.well-known/matrix/client", axum::routing::get(well_known))
        .ruma::<discover_support::Request, _, _>(support)
        .ruma::<discover_policy_server::Request, _, _>(policy_server)
        .ruma::<get_turn_server_info::v3::Request, _, _>(turn_server)
}

/// GET /.well-known/matrix/support: the configured contacts, else 404.
async fn support(State(s): State<AppState>) -> Result<axum::response::Response, crate::ApiError> {
    match &s.config.support {
        Some(doc) => Ok(Json(doc.clone()).into_response()),
        None => Err(Error::not_found("no support contacts are configured").into()),
    }
}

/// GET /.well-known/matrix/policy_server: this server is no policy server (spec 1.18), so
/// it has no keys to publish.
async fn policy_server(
    _: Ruma<discover_policy_server::Request>,
) -> ApiResult<discover_policy_server::Response> {
    Err(Error::not_found("this server is not a policy server").into())
}

/// GET /_matrix/client/v3/voip/turnServer: a credential for the configured TURN servers, or
/// an empty object when there are none (as clients expect).
async fn turn_server(
    State(s): State<AppState>,
    req: Ruma<get_turn_server_info::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    let now = sandcat_core::now_ms() / 1000;
    let body = match turn_credentials(&s.config.turn, &req.session()?.user_id, now)? {
        Some(c) => json!({
            "username": c.username,
            "password": c.password,
            "uris": c.uris,
            "ttl": c.ttl_secs,
        }),
        None => json!({}),
    };
    Ok(Json(body).into_response())
}

/// GET /_matrix/client/versions
async fn versions(
    _: Ruma<get_supported_versions::Request>,
) -> ApiResult<get_supported_versions::Response> {
    let versions = [
        "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7",
        "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
    ];
    let mut resp =
        get_supported_versions::Response::new(versions.iter().map(|v| v.to_string()).collect());
    resp.unstable_features = BTreeMap::from([
        ("org.matrix.msc3827.stable".to_owned(), true),
        // Simplified sliding sync (MSC4186).
        ("org.matrix.simplified_msc3575".to_owned(), true),
    ]);
    Ok(RumaResponse(resp))
}

/// GET /.well-known/matrix/client
async fn well_known(State(s): State<AppState>) -> impl IntoResponse {
    Json(json!({ "m.homeserver": { "base_url": s.config.public_base_url } }))
}

/// GET /_matrix/client/v3/capabilities
async fn capabilities(
    State(s): State<AppState>,
    req: Ruma<get_capabilities::v3::Request>,
) -> Result<axum::response::Response, crate::ApiError> {
    // Administrators may suspend and lock accounts (`/admin/suspend`, `/admin/lock`).
    let admin = s.accounts.is_admin(&req.session()?.user_id).await?;
    let available: serde_json::Map<String, serde_json::Value> =
        ServerConfig::supported_room_versions()
            .iter()
            .map(|v| (v.to_string(), json!("stable")))
            .collect();
    Ok(Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": s.config.default_room_version, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": s.threepids.email_enabled() },
            "m.get_login_token": { "enabled": true },
            // Extended profile fields (spec 1.16): any field but those with their own
            // endpoints, which the two capabilities above govern.
            "m.profile_fields": { "enabled": true, "disallowed": ["displayname", "avatar_url"] },
            "m.account_moderation": { "suspend": admin, "lock": admin },
        }
    }))
    .into_response())
}
