//! The Sandcat native API: the REST + WebSocket protocol of Sandcat clients, served on the
//! same users, rooms and events as the Matrix API. A Sandcat user is the Matrix user
//! `@{id}:{server_name}`; a friendship is a DM room; a group is a room; a message is one
//! `m.room.message` event. Every request and frame is bound to the user of its token.
#![deny(clippy::indexing_slicing)] // request handling: input never decides an index

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{request::Parts, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post, put},
    Json, Router,
};
use ruma::OwnedUserId;
use sandcat_core::{
    inbox::InboxWatch,
    notifier::Notifier,
    ports::{Inbox, NativeStore, RoomStore, Standing, StreamPosition, UserStore},
    ratelimit::{Key, Limiter},
    services::{accounts::Accounts, data::ClientData, media::Media, rooms::Rooms, Session},
    Error as CoreError, ErrorCode, ServerConfig,
};
use serde::{Deserialize, Serialize};

mod files;
mod friends;
mod groups;
pub mod jwt;
mod mapping;
mod messages;
pub mod model;
pub mod oauth;
pub mod sso;
mod users;
mod ws;

pub use files::DEFAULT_AVATARS;
pub use jwt::Jwt;
pub use ws::Hub;

/// Where verification codes go. The default writes them to the log; tests read an outbox.
pub trait Mailer: Send + Sync {
    fn send_code(&self, email: &str, code: &str);
}

/// Writes codes to the server log (no mail relay is configured).
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send_code(&self, email: &str, code: &str) {
        tracing::info!(email, code, "verification code (no mail relay configured)");
    }
}

/// Keeps the codes it was asked to send, for tests and tools.
#[derive(Default)]
pub struct Outbox(pub std::sync::Mutex<Vec<(String, String)>>);

impl Mailer for Outbox {
    fn send_code(&self, email: &str, code: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((email.to_owned(), code.to_owned()));
    }
}

/// Everything the native API reaches. Cheap to clone.
#[derive(Clone)]
pub struct NativeState {
    pub config: Arc<ServerConfig>,
    pub accounts: Arc<Accounts>,
    pub rooms: Arc<Rooms>,
    pub data: Arc<ClientData>,
    pub users: Arc<dyn UserStore>,
    pub store: Arc<dyn NativeStore>,
    pub stream: Arc<dyn StreamPosition>,
    pub notifier: Notifier,
    pub jwt: Arc<Jwt>,
    pub hub: Arc<Hub>,
    pub mailer: Arc<dyn Mailer>,
    /// Requests per client address of the login and code endpoints.
    pub limiter: Arc<Limiter>,
    /// Files and avatars of `/file/*` are Matrix media.
    pub media: Arc<Media>,
    /// Per-user message inboxes: offline pull and `seq`.
    pub inbox: Arc<dyn Inbox>,
    /// How far the inbox is: live delivery follows it.
    pub inbox_watch: InboxWatch,
    /// Sign-in providers (GitHub, Google).
    pub oauth: oauth::OAuth,
}

impl NativeState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<ServerConfig>,
        accounts: Arc<Accounts>,
        rooms: Arc<Rooms>,
        data: Arc<ClientData>,
        users: Arc<dyn UserStore>,
        store: Arc<dyn NativeStore>,
        stream: Arc<dyn StreamPosition>,
        notifier: Notifier,
        jwt: Jwt,
        hub: Arc<Hub>,
        mailer: Arc<dyn Mailer>,
        media: Arc<Media>,
        inbox: Arc<dyn Inbox>,
    ) -> Self {
        NativeState {
            config,
            accounts,
            rooms,
            data,
            users,
            store,
            stream,
            notifier,
            jwt: Arc::new(jwt),
            hub,
            mailer,
            limiter: Arc::new(Limiter::new(0.0, 0)),
            media,
            inbox,
            inbox_watch: InboxWatch::default(),
            oauth: oauth::OAuth::default(),
        }
    }

    /// The sign-in providers (none by default).
    pub fn with_oauth(mut self, oauth: oauth::OAuth) -> Self {
        self.oauth = oauth;
        self
    }

    /// The watch of the inbox's position that live delivery follows; whoever starts the
    /// server keeps it current ([`InboxWatch::follow`]).
    pub fn with_inbox_watch(mut self, watch: InboxWatch) -> Self {
        self.inbox_watch = watch;
        self
    }

    /// Replaces the rate limiter of the login and code endpoints (the default lets
    /// everything through).
    pub fn with_rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.limiter = Arc::new(Limiter::new(per_second, burst));
        self
    }

    /// `429` when the key is over its rate.
    fn limit(&self, key: Key) -> ApiResult<()> {
        self.limiter.check(key).map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "BadRequest",
                format!("too many requests; retry in {} ms", wait.as_millis()),
            )
        })
    }

    fn room_store(&self) -> &Arc<dyn RoomStore> {
        self.rooms.store()
    }

    /// The Matrix user of a Sandcat id.
    pub(crate) fn matrix_id(&self, id: &str) -> Result<OwnedUserId, ApiError> {
        ruma::UserId::parse_with_server_name(id, &self.config.server_name)
            .map_err(|_| ApiError::bad_request(format!("invalid user id {id}")))
    }

    /// The session of an access token: signed by this server, unexpired, and its device not
    /// deleted (on any instance). The device's last use (from `ip`) is recorded, as for
    /// Matrix clients, so that a user's device list shows when each Sandcat client was used.
    pub async fn authenticate(&self, token: &str, ip: Option<IpAddr>) -> ApiResult<Auth> {
        let claims = self.jwt.verify(token, jwt::TokenUse::Access)?;
        let uid = self.matrix_id(&claims.sub)?;
        let session = self.accounts.device_session(&uid, &claims.sid).await?;
        if session.standing == Standing::Locked {
            return Err(ApiError::unauthorized("this account is locked"));
        }
        // A device list that lags is no reason to refuse the request.
        if let Err(e) = self.accounts.touch(&session, ip).await {
            tracing::warn!(error = %e, "recording the device's last use");
        }
        Ok(Auth {
            user: claims.sub,
            device: claims.sid,
        })
    }

    /// The session Sandcat actions of `user` run as in the Matrix services, with the
    /// account's standing (a suspended user's messages are refused as over Matrix).
    async fn session(&self, user: &str) -> Result<Session, ApiError> {
        let user_id = self.matrix_id(user)?;
        let standing = self.accounts.standing(&user_id).await?;
        Ok(Session::new(user_id, "SANDCAT".into()).with_standing(standing))
    }
}

/// An error in Sandcat's shape: `{"kind": "...", "details": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub details: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    kind: String,
    details: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, details: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            details: details.into(),
        }
    }
    pub fn bad_request(details: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", details)
    }
    pub fn unauthorized(details: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UnAuthorized", details)
    }
    /// A valid token acting on someone else's behalf.
    pub fn forbidden(details: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "UnAuthorized", details)
    }
    pub fn not_found(details: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", details)
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Matrix { code, message } => match code {
                ErrorCode::NotFound => ApiError::not_found(message),
                ErrorCode::Forbidden | ErrorCode::UserSuspended => ApiError::forbidden(message),
                ErrorCode::UnknownToken
                | ErrorCode::ExpiredToken
                | ErrorCode::MissingToken
                | ErrorCode::UserLocked
                | ErrorCode::Unauthorized => ApiError::unauthorized(message),
                ErrorCode::LimitExceeded => {
                    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "BadRequest", message)
                }
                ErrorCode::TooLarge => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "BadRequest", message)
                }
                _ => ApiError::bad_request(message),
            },
            other => {
                tracing::error!(error = %other, "native API request failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServer",
                    "internal server error",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                kind: self.kind.to_owned(),
                details: Some(self.details),
            }),
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The session of a valid `Authorization: Bearer <JWT>` access token.
pub struct Auth {
    /// The Sandcat user id.
    pub user: String,
    /// The device the token names.
    pub device: String,
}

impl Auth {
    /// Refuses acting for anyone else.
    pub fn check(&self, user_id: &str) -> ApiResult<()> {
        if self.user == user_id {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "the token's user may only act for itself",
            ))
        }
    }
}

impl FromRequestParts<NativeState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &NativeState) -> ApiResult<Self> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("missing token"))?;
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        state.authenticate(token.trim(), ip).await
    }
}

/// JSON body with Sandcat's error on bad input.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<NativeState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &NativeState) -> ApiResult<Self> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BodyParsing",
                format!("a request body is at most {MAX_JSON} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_JSON as u64) {
            return Err(too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX_JSON)
            .await
            .map_err(|_| too_large())?;
        if sandcat_core::input::json_has_nul(&bytes) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "BodyParsing",
                "NUL characters are not accepted",
            ));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "BodyParsing", e.to_string()))
    }
}

/// Path parameters with Sandcat's error on bad input.
pub struct PathArgs<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<NativeState> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &NativeState) -> ApiResult<Self> {
        let bad = |e: String| ApiError::new(StatusCode::BAD_REQUEST, "PathParsing", e);
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| bad(e.to_string()))?;
        if raw.iter().any(|(_, v)| sandcat_core::input::has_nul(v)) {
            return Err(bad("NUL characters are not accepted".into()));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathArgs(p.0))
            .map_err(|e| bad(e.to_string()))
    }
}

/// Largest JSON request body.
const MAX_JSON: usize = 1024 * 1024;

/// Body limit of `/file/*` uploads (the media service applies the configured limit).
const MAX_FILE: usize = 1024 * 1024 * 1024;

fn routes() -> Router<NativeState> {
    Router::new()
        .route("/user/mail/send", post(users::send_code))
        .route("/user", post(users::register).put(users::update))
        .route("/user/login", post(users::login))
        .route("/user/auth/{provider}", get(oauth::start))
        .route("/user/auth/{provider}/callback", get(oauth::callback))
        .route(
            "/user/refresh_token/{token}/{is_refresh}",
            get(users::refresh),
        )
        .route("/user/pwd", put(users::change_password))
        .route("/user/{id}", get(users::get_user).delete(users::logout))
        .route("/user/{user_id}/search/{pattern}", get(users::search))
        .route("/user/logout/{uuid}", delete(users::logout_session))
        .route("/friend", post(friends::request).delete(friends::delete))
        .route("/friend/{id}/{offline_time}", get(friends::list))
        .route("/friend/{id}/apply", get(friends::applications))
        .route("/friend/agree", put(friends::agree))
        .route("/friend/remark", put(friends::remark))
        .route("/friend/query/{user_id}", get(friends::query))
        .route("/group/{user_id}", post(groups::create).put(groups::update))
        .route("/group/{user_id}/{group_id}", get(groups::get))
        .route(
            "/group/member/{user_id}/{group_id}",
            get(groups::with_members),
        )
        .route(
            "/group/member",
            post(groups::members).delete(groups::remove),
        )
        .route("/group/invite", put(groups::invite))
        .route("/group", delete(groups::leave_or_dismiss))
        .route("/message", post(messages::pull).delete(messages::delete))
        .route("/message/seq/{user_id}", get(messages::seq))
        .route(
            "/file/upload",
            post(files::upload).layer(axum::extract::DefaultBodyLimit::max(MAX_FILE)),
        )
        .route(
            "/file/avatar/upload",
            post(files::upload_avatar).layer(axum::extract::DefaultBodyLimit::max(MAX_FILE)),
        )
        .route("/file/get/{name}", get(files::get))
        .route("/file/avatar/get/{name}", get(files::get))
        .route(
            "/ws/{user_id}/conn/{pointer_id}/{platform}/{token}",
            get(ws::connect),
        )
}

/// The native API, at the root and under `/api`.
pub fn router(state: NativeState) -> Router {
    Router::new()
        .merge(routes())
        .nest("/api", routes())
        .merge(sso::routes())
        .with_state(state)
}

/// Milliseconds since the epoch, as Sandcat's timestamps.
pub(crate) fn now() -> i64 {
    sandcat_core::now_ms() as i64
}
