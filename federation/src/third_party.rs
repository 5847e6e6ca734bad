//! `/3pid/onbind`: an identity server hands on the invites of an address that is now bound
//! to a user of this server. The request is not signed — each invite carries the identity
//! server's signature, which the room's authorization rules check — so it is parsed here
//! rather than by the signed-request extractor.

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
    Router,
};
use ruma::api::{federation::thirdparty::bind_callback, IncomingRequestExt};
use sandcat_client_api::{ApiError, RumaResponse, RumaRouter};
use sandcat_core::{services::third_party_invites::BoundInvite, Error};

use crate::FederationState;

/// The largest body taken: an address's invites.
const MAX_BODY: usize = 256 * 1024;

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<bind_callback::v1::Request, _, _>(on_bind)
}

/// PUT /_matrix/federation/v1/3pid/onbind
async fn on_bind(State(s): State<FederationState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return ApiError(Error::matrix(
            sandcat_core::ErrorCode::TooLarge,
            format!("the body is larger than {MAX_BODY} bytes"),
        ))
        .into_response();
    };
    let request = http::Request::from_parts(parts, &body[..]);
    let bound = match bind_callback::v1::Request::try_from_http_request(request, &[] as &[&str]) {
        Ok(bound) => bound,
        Err(e) => return ApiError(Error::bad_json(e.to_string())).into_response(),
    };
    let mut invites = Vec::with_capacity(bound.invites.len());
    for i in bound.invites {
        let signed = match serde_json::from_str::<serde_json::Value>(i.signed.json().get()) {
            Ok(signed) => signed,
            Err(e) => return ApiError(Error::bad_json(e.to_string())).into_response(),
        };
        invites.push(BoundInvite {
            mxid: i.mxid,
            room_id: i.room_id,
            sender: i.sender,
            signed,
        });
    }
    match s.third_party_invites.bound(invites).await {
        Ok(_) => RumaResponse(bind_callback::v1::Response::new()).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
