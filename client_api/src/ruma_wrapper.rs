//! The bridge between axum and ruma: the `Ruma<T>` extractor parses any ruma request type
//! (path, query, body) and authenticates it as its metadata says; `RumaResponse` renders any
//! ruma response; `ApiError` renders domain errors as Matrix error bodies.

use std::{any::TypeId, net::SocketAddr};

use axum::{
    body::Body,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use http::StatusCode;
use ruma::api::{
    auth_scheme::{AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional},
    error::{ErrorKind, StandardErrorBody},
    path_builder::PathBuilder,
    IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt,
};
use sandcat_core::{input, ports::Standing, services::Session, Error, ErrorCode};

use crate::{ratelimit::Key, AppState};

/// Largest request body accepted (media uploads have their own limit).
pub const MAX_BODY: usize = 1024 * 1024;

/// A parsed, authenticated ruma request.
pub struct Ruma<T> {
    pub body: T,
    /// The caller, for endpoints that take an access token.
    pub session: Option<Session>,
    /// The body as it came, for the fields ruma does not type (yet).
    pub raw: bytes::Bytes,
}

impl<T> Ruma<T> {
    /// The caller of an endpoint that requires authentication (`M_MISSING_TOKEN` if a
    /// handler asks on an endpoint where the token is optional and none came).
    pub fn session(&self) -> Result<&Session, ApiError> {
        self.session.as_ref().ok_or_else(|| {
            ApiError(Error::matrix(
                ErrorCode::MissingToken,
                "missing access token",
            ))
        })
    }
}

fn query_param(parts: &http::request::Parts, name: &str) -> Option<String> {
    parts.uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// The session of an application service's `as_token`, acting as the asserted user (and
/// device), or `None` when the token is not an `as_token`.
async fn appservice_session(
    state: &AppState,
    parts: &http::request::Parts,
    token: &str,
    must_exist: bool,
) -> Result<Option<Session>, ApiError> {
    let Some(asv) = state.appservices.registry().by_token(token) else {
        return Ok(None);
    };
    let user_id = query_param(parts, "user_id");
    let device_id = query_param(parts, "org.matrix.msc3202.device_id")
        .or_else(|| query_param(parts, "device_id"));
    Ok(Some(
        state
            .appservices
            .session(&asv, user_id.as_deref(), device_id.as_deref(), must_exist)
            .await?,
    ))
}

/// The `Content-Length` a request declares.
fn declared_length(parts: &http::request::Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn query_has_nul(parts: &http::request::Parts) -> bool {
    parts.uri.query().is_some_and(|q| {
        form_urlencoded::parse(q.as_bytes()).any(|(k, v)| input::has_nul(&k) || input::has_nul(&v))
    })
}

fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(h) = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    {
        if let Some(t) = h.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    query_param(parts, "access_token")
}

impl<T> FromRequest<AppState> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> =
            match Path::<Vec<String>>::from_request_parts(&mut parts, state).await {
                Ok(Path(args)) => args,
                Err(_) => Vec::new(),
            };
        let upload = is_upload::<T>();
        let limit = if upload {
            state.media.max_bytes()
        } else {
            MAX_BODY
        };
        // A body declared too large is refused before a byte of it is read.
        if declared_length(&parts).is_some_and(|n| n > limit as u64) {
            return Err(ApiError(Error::matrix(
                ErrorCode::TooLarge,
                "request body too large",
            )));
        }
        if path_args.iter().any(|a| input::has_nul(a)) || query_has_nul(&parts) {
            return Err(ApiError(Error::invalid_param(
                "NUL characters are not accepted",
            )));
        }
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| ApiError(Error::matrix(ErrorCode::TooLarge, "request body too large")))?;

        // Clients send bodiless POSTs (e.g. join): read them as an empty object, as Synapse
        // does. A PUT carries what it stores (an event, account data), so it needs a body.
        let bytes = if bytes.is_empty() && !upload && parts.method == http::Method::POST {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let auth = TypeId::of::<T::Authentication>();
        let required = auth == TypeId::of::<AccessToken>();
        let optional = auth == TypeId::of::<AccessTokenOptional>();
        let as_required = auth == TypeId::of::<AppserviceToken>();
        let as_optional = auth == TypeId::of::<AppserviceTokenOptional>();
        let token = access_token(&parts);
        let session = match (&token, required || as_required) {
            (None, true) => {
                return Err(ApiError(Error::matrix(
                    ErrorCode::MissingToken,
                    "missing access token",
                )))
            }
            (None, false) => None,
            (Some(token), _) if required || optional => {
                match appservice_session(state, &parts, token, true).await? {
                    Some(s) => Some(s),
                    None => Some(state.accounts.authenticate(token).await?),
                }
            }
            (Some(token), _) if as_required || as_optional => {
                match appservice_session(state, &parts, token, false).await? {
                    Some(s) => Some(s),
                    None if as_required => {
                        // A user's token where only an application service may call.
                        state.accounts.authenticate(token).await?;
                        return Err(ApiError(Error::forbidden(
                            "only an application service may call this endpoint",
                        )));
                    }
                    // Registration and login ignore a stale user token.
                    None => None,
                }
            }
            (Some(_), _) => None,
        };
        if let Some(s) = &session {
            tracing::Span::current().record("user_id", tracing::field::display(&s.user_id));
            if s.standing == Standing::Locked && !allowed_while_locked::<T>() {
                return Err(ApiError(Error::matrix(
                    ErrorCode::UserLocked,
                    "this account is locked",
                )));
            }
            if s.appservice.is_none() {
                let ip = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip());
                // A device list that lags is no reason to refuse the request.
                if let Err(e) = state.accounts.touch(s, ip).await {
                    tracing::warn!(error = %e, "recording the device's last use");
                }
            }
        }
        let exempt = session.as_ref().is_some_and(|s| {
            s.appservice.as_deref().is_some_and(|id| {
                state
                    .appservices
                    .registry()
                    .by_id(id)
                    .is_none_or(|a| !a.rate_limits(&s.user_id))
            })
        });
        if (T::RATE_LIMITED || writes_events::<T>()) && !exempt {
            let key = match &session {
                Some(s) => Some(Key::User(s.user_id.to_string())),
                None => parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| Key::Address(c.0.ip())),
            };
            if let Some(key) = key {
                if let Err(wait) = state.limiter.check(key) {
                    return Err(ApiError(Error::matrix(
                        ErrorCode::LimitExceeded,
                        format!("too many requests; retry in {} ms", wait.as_millis()),
                    )));
                }
            }
        }

        if !upload
            && !bytes.is_empty()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err()
        {
            return Err(ApiError(Error::matrix(
                ErrorCode::NotJson,
                "request body is not valid JSON",
            )));
        }
        if !upload && bytes.is_empty() && parts.method == http::Method::PUT {
            return Err(ApiError(Error::matrix(
                ErrorCode::NotJson,
                "this request needs a JSON body",
            )));
        }
        if !upload && input::json_has_nul(&bytes) {
            return Err(ApiError(Error::bad_json("NUL characters are not accepted")));
        }
        let mut args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        // Routes for an empty trailing state key carry one argument less.
        let expected = T::PATH_BUILDER._path_parameters().len();
        while args.len() < expected {
            args.push("");
        }
        let http_req = http::Request::from_parts(parts, &bytes[..]);
        // ruma's deserializers can panic on some inputs (e.g. a login body without `type`,
        // ruma-client-api 0.25.2 `session/login.rs` indexes the map): a panic while parsing
        // is bad input, not a server error.
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_req, &args)
        }))
        .map_err(|_| ApiError(Error::bad_json("request body does not parse")))?;
        let body = parsed.map_err(|e| {
            let msg = e.to_string();
            tracing::debug!(error = %msg, "request did not parse");
            ApiError(Error::bad_json(msg))
        })?;
        Ok(Ruma {
            body,
            session,
            raw: bytes,
        })
    }
}

/// Media uploads: raw bytes, not JSON, up to the media size limit.
fn is_upload<T: 'static>() -> bool {
    use ruma::api::client::media::{create_content, create_content_async};
    let t = TypeId::of::<T>();
    t == TypeId::of::<create_content::v3::Request>()
        || t == TypeId::of::<create_content_async::v3::Request>()
}

/// What a locked account may still do: log out.
fn allowed_while_locked<T: 'static>() -> bool {
    use ruma::api::client::session::{logout, logout_all};
    let t = TypeId::of::<T>();
    t == TypeId::of::<logout::v3::Request>() || t == TypeId::of::<logout_all::v3::Request>()
}

/// Event-writing endpoints, limited like Synapse's `rc_message` although the spec's metadata
/// does not mark them.
fn writes_events<T: 'static>() -> bool {
    use ruma::api::client::{
        message::send_message_event, redact::redact_event, room::create_room,
        state::send_state_event,
    };
    let t = TypeId::of::<T>();
    t == TypeId::of::<send_message_event::v3::Request>()
        || t == TypeId::of::<send_state_event::v3::Request>()
        || t == TypeId::of::<redact_event::v3::Request>()
        || t == TypeId::of::<create_room::v3::Request>()
}

/// Any ruma response.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<BytesMut>() {
            Ok(res) => res.map(|b| Body::from(b.freeze())).into_response(),
            Err(e) => {
                ApiError(Error::internal(format!("response serialization: {e}"))).into_response()
            }
        }
    }
}

/// A domain error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

/// Status and ruma kind of an error code.
pub fn status_and_kind(code: ErrorCode) -> (StatusCode, ErrorKind) {
    use ErrorCode::*;
    match code {
        Forbidden => (StatusCode::FORBIDDEN, ErrorKind::Forbidden),
        NotFound => (StatusCode::NOT_FOUND, ErrorKind::NotFound),
        BadJson => (StatusCode::BAD_REQUEST, ErrorKind::BadJson),
        NotJson => (StatusCode::BAD_REQUEST, ErrorKind::NotJson),
        InvalidParam => (StatusCode::BAD_REQUEST, ErrorKind::InvalidParam),
        MissingParam => (StatusCode::BAD_REQUEST, ErrorKind::MissingParam),
        UnknownToken => (
            StatusCode::UNAUTHORIZED,
            ErrorKind::UnknownToken(Default::default()),
        ),
        ExpiredToken => {
            let mut data = ruma::api::error::UnknownTokenErrorData::new();
            data.soft_logout = true;
            (StatusCode::UNAUTHORIZED, ErrorKind::UnknownToken(data))
        }
        MissingToken => (StatusCode::UNAUTHORIZED, ErrorKind::MissingToken),
        UserInUse => (StatusCode::BAD_REQUEST, ErrorKind::UserInUse),
        InvalidUsername => (StatusCode::BAD_REQUEST, ErrorKind::InvalidUsername),
        Exclusive => (StatusCode::BAD_REQUEST, ErrorKind::Exclusive),
        LimitExceeded => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::LimitExceeded(Default::default()),
        ),
        TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorKind::TooLarge),
        Unrecognized => (StatusCode::NOT_FOUND, ErrorKind::Unrecognized),
        GuestAccessForbidden => (StatusCode::FORBIDDEN, ErrorKind::GuestAccessForbidden),
        RoomInUse => (StatusCode::BAD_REQUEST, ErrorKind::RoomInUse),
        BadState => (StatusCode::BAD_REQUEST, ErrorKind::BadState),
        UnsupportedRoomVersion => (StatusCode::BAD_REQUEST, ErrorKind::UnsupportedRoomVersion),
        UserDeactivated => (StatusCode::FORBIDDEN, ErrorKind::UserDeactivated),
        UserSuspended => (StatusCode::FORBIDDEN, ErrorKind::UserSuspended),
        UserLocked => (StatusCode::UNAUTHORIZED, ErrorKind::UserLocked),
        BadAlias => (StatusCode::BAD_REQUEST, ErrorKind::BadAlias),
        Unauthorized => (StatusCode::UNAUTHORIZED, ErrorKind::Unauthorized),
        UrlNotSet => (StatusCode::BAD_REQUEST, ErrorKind::UrlNotSet),
        CannotOverwriteMedia => (StatusCode::CONFLICT, ErrorKind::CannotOverwriteMedia),
        UnableToAuthorizeJoin => (StatusCode::BAD_REQUEST, ErrorKind::UnableToAuthorizeJoin),
        UnableToGrantJoin => (StatusCode::BAD_REQUEST, ErrorKind::UnableToGrantJoin),
        UnknownPos => (StatusCode::BAD_REQUEST, ErrorKind::UnknownPos),
        ThreepidInUse => (StatusCode::BAD_REQUEST, ErrorKind::ThreepidInUse),
        ThreepidNotFound => (StatusCode::BAD_REQUEST, ErrorKind::ThreepidNotFound),
        ThreepidAuthFailed => (StatusCode::FORBIDDEN, ErrorKind::ThreepidAuthFailed),
        ThreepidMediumNotSupported => (
            StatusCode::BAD_REQUEST,
            ErrorKind::ThreepidMediumNotSupported,
        ),
        ConnectionTimeout => (StatusCode::GATEWAY_TIMEOUT, ErrorKind::ConnectionTimeout),
        ConnectionFailed => (StatusCode::BAD_GATEWAY, ErrorKind::ConnectionFailed),
        BadStatus => (
            StatusCode::BAD_GATEWAY,
            ErrorKind::BadStatus(Default::default()),
        ),
        Unknown => (StatusCode::BAD_REQUEST, ErrorKind::Unknown),
    }
}

/// A Matrix error body with a status.
pub fn error_response(status: StatusCode, kind: ErrorKind, message: String) -> Response {
    let body = serde_json::to_vec(&StandardErrorBody::new(kind, message))
        .unwrap_or_else(|_| b"{\"errcode\":\"M_UNKNOWN\"}".to_vec());
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            Error::Matrix { code, message } => {
                let (status, kind) = status_and_kind(code);
                error_response(status, kind, message)
            }
            Error::IncompatibleRoomVersion(version) => {
                let message = format!("the room is of version {version}");
                let kind = ErrorKind::IncompatibleRoomVersion(
                    ruma::api::error::IncompatibleRoomVersionErrorData::new(version),
                );
                error_response(StatusCode::BAD_REQUEST, kind, message)
            }
            Error::WrongRoomKeysVersion(current) => {
                let message = format!("the current backup version is {current}");
                let kind = ErrorKind::WrongRoomKeysVersion(
                    ruma::api::error::WrongRoomKeysVersionErrorData::new(current),
                );
                error_response(StatusCode::FORBIDDEN, kind, message)
            }
            other => {
                tracing::error!(error = %other, "request failed");
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorKind::Unknown,
                    "internal server error".into(),
                )
            }
        }
    }
}
