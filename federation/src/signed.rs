//! A request of another server: its `X-Matrix` signature checked against the origin's keys
//! (fetched once and kept until they expire), counted against the origin's rate limit, then
//! parsed as the ruma endpoint it is for.

use axum::{
    extract::{FromRequest, Path, Request},
    RequestPartsExt,
};
use ruma::{
    api::{federation::authentication::XMatrix, IncomingRequest, IncomingRequestExt},
    MilliSecondsSinceUnixEpoch, OwnedServerName,
};
use sandcat_client_api::ApiError;
use sandcat_core::{ratelimit::Key, Error, ErrorCode};

use crate::FederationState;

/// Largest request body of another server (a transaction of 50 PDUs and 100 EDUs fits).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// A parsed request, signed by `origin`.
pub struct Signed<T> {
    pub origin: OwnedServerName,
    pub body: T,
}

fn unauthorized(why: impl std::fmt::Display) -> ApiError {
    ApiError(Error::matrix(ErrorCode::Unauthorized, why.to_string()))
}

impl<T> FromRequest<FederationState> for Signed<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &FederationState) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> = match parts.extract::<Path<Vec<String>>>().await {
            Ok(Path(args)) => args,
            Err(_) => Vec::new(),
        };
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError(Error::matrix(ErrorCode::TooLarge, "request body too large")))?;
        let request = http::Request::from_parts(parts, bytes);
        let x_matrix = XMatrix::extract_from_http_headers(request.headers())
            .map_err(|e| unauthorized(format!("no valid X-Matrix authorization: {e}")))?;
        let origin = x_matrix.origin.clone();
        let signers = [(origin.clone(), vec![x_matrix.key.to_string()])].into();
        let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
        let keys = state.keys.key_map(&signers, now).await.map_err(|e| {
            tracing::info!(%origin, error = %e, "the keys of a requesting server could not be had");
            unauthorized(format!("the keys of {origin} could not be had"))
        })?;
        if let Err(e) = x_matrix.verify_http_request(&request, &state.server_name, &keys) {
            tracing::info!(%origin, error = %e, "a request's signature failed");
            return Err(unauthorized(format!("the request's signature failed: {e}")));
        }
        if let Some(sender) = &state.sender {
            sender.contacted(&origin);
        }
        if let Err(wait) = state.limiter.check(Key::Server(origin.to_string())) {
            tracing::info!(%origin, "a server went over its rate limit");
            return Err(ApiError(Error::matrix(
                ErrorCode::LimitExceeded,
                format!("too many requests; retry in {} ms", wait.as_millis()),
            )));
        }
        let (parts, bytes) = request.into_parts();
        let request = http::Request::from_parts(parts, bytes.as_ref());
        let path_args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let body = T::try_from_http_request(request, &path_args).map_err(|e| {
            tracing::info!(%origin, error = %e, "a request of another server did not parse");
            ApiError(Error::bad_json(e.to_string()))
        })?;
        Ok(Signed { origin, body })
    }
}
