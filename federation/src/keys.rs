//! `GET /_matrix/key/v2/server`: this server's signing keys, signed.

use axum::{extract::State, response::IntoResponse, response::Response, Router};
use ruma::{api::federation::discovery::get_server_keys, serde::Raw, MilliSecondsSinceUnixEpoch};
use sandcat_client_api::{ApiError, RumaResponse, RumaRouter};
use sandcat_core::Error;

use crate::FederationState;

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_server_keys::v2::Request, _, _>(server_keys)
        // The key id path of the first key API, gone from the spec: Synapse still answers it
        // with the whole document (the id is ignored), and older servers still ask it. ruma
        // has no endpoint for it, so its path is written here.
        .route(
            "/_matrix/key/v2/server/{key_id}",
            axum::routing::get(server_keys),
        )
}

/// The key document, signed afresh at each request with `valid_until_ts` a day ahead.
async fn server_keys(State(s): State<FederationState>) -> Response {
    let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let document = match s.keys.key_document(now).await {
        Ok(d) => d,
        Err(e) => return ApiError(e).into_response(),
    };
    match Raw::from_json_string(document) {
        Ok(raw) => RumaResponse(get_server_keys::v2::Response::new(raw)).into_response(),
        Err(e) => ApiError(Error::internal(e)).into_response(),
    }
}
