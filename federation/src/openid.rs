//! `/openid/userinfo`: a third party (an integration manager, a call's media service) that a
//! user handed an OpenID token asks whose it is. The request is not signed — the token is
//! the proof — so it is parsed here rather than by the signed-request extractor.

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
    Router,
};
use ruma::api::{federation::openid::get_openid_userinfo, IncomingRequestExt};
use sandcat_client_api::{ApiError, RumaResponse, RumaRouter};
use sandcat_core::{Error, ErrorCode};

use crate::FederationState;

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_openid_userinfo::v1::Request, _, _>(userinfo)
}

/// GET /_matrix/federation/v1/openid/userinfo?access_token=
async fn userinfo(State(s): State<FederationState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let request = http::Request::from_parts(parts, &[] as &[u8]);
    let asked = match get_openid_userinfo::v1::Request::try_from_http_request(request, &[]) {
        Ok(asked) => asked,
        Err(e) => {
            return ApiError(Error::matrix(ErrorCode::MissingParam, e.to_string())).into_response()
        }
    };
    match s.openid.userinfo(&asked.access_token).await {
        Ok(sub) => RumaResponse(get_openid_userinfo::v1::Response::new(sub)).into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}
