//! The Matrix Client-Server API: `/_matrix/client/**` and `/.well-known/matrix/client`.
//!
//! Every route is one handler taking a ruma request through [`Ruma`] and returning a ruma
//! response; routes are registered from ruma's own path metadata. Handlers translate between
//! the wire types and the services of `sandcat-core`, and hold no logic of their own beyond that.
#![deny(clippy::indexing_slicing)] // request handling: input never decides an index

use std::sync::Arc;

use axum::{
    extract::Request,
    handler::Handler,
    response::{IntoResponse, Response},
    routing::{on, MethodFilter},
    Router,
};
use http::StatusCode;
use ruma::api::{error::ErrorKind, path_builder::PathBuilder, Metadata};
use sandcat_appservice::Appservices;
use sandcat_core::{
    services::{
        accounts::Accounts, data::ClientData, deactivation::Deactivation, key_backup::KeyBackup,
        keys::Keys, media::Media, openid::OpenId, push::Push,
        registration_tokens::RegistrationGate, reports::ContentReports, rooms::Rooms, sync::Sync,
        third_party_invites::ThirdPartyInvites, threepids::ThreePids, url_previews::UrlPreviews,
    },
    ServerConfig,
};

pub mod metrics;
pub use sandcat_core::ratelimit;
mod routes;
pub mod ruma_wrapper;
mod uiaa;

pub use ruma_wrapper::{ApiError, ApiResult, Ruma, RumaResponse};

/// The services the client API reaches. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServerConfig>,
    pub accounts: Arc<Accounts>,
    pub rooms: Arc<Rooms>,
    pub sync: Arc<Sync>,
    pub data: Arc<ClientData>,
    pub keys: Arc<Keys>,
    pub appservices: Arc<Appservices>,
    pub media: Arc<Media>,
    pub uiaa: Arc<uiaa::Sessions>,
    pub limiter: Arc<ratelimit::Limiter>,
    pub metrics: Arc<metrics::Metrics>,
    pub deactivation: Arc<Deactivation>,
    pub openid: Arc<OpenId>,
    pub key_backup: Arc<KeyBackup>,
    pub reports: Arc<ContentReports>,
    pub push: Arc<Push>,
    pub registration: Arc<RegistrationGate>,
    pub threepids: Arc<ThreePids>,
    pub previews: Arc<UrlPreviews>,
    pub third_party_invites: Arc<ThirdPartyInvites>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Arc<ServerConfig>,
        accounts: Arc<Accounts>,
        rooms: Arc<Rooms>,
        sync: Arc<Sync>,
        data: Arc<ClientData>,
        keys: Arc<Keys>,
        appservices: Arc<Appservices>,
        media: Arc<Media>,
        metrics: Arc<metrics::Metrics>,
        deactivation: Arc<Deactivation>,
        openid: Arc<OpenId>,
        key_backup: Arc<KeyBackup>,
        reports: Arc<ContentReports>,
        push: Arc<Push>,
        registration: Arc<RegistrationGate>,
        threepids: Arc<ThreePids>,
        previews: Arc<UrlPreviews>,
        third_party_invites: Arc<ThirdPartyInvites>,
    ) -> Self {
        AppState {
            config,
            accounts,
            rooms,
            sync,
            keys,
            data,
            appservices,
            media,
            uiaa: Default::default(),
            limiter: Arc::new(ratelimit::Limiter::new(0.0, 0)),
            metrics,
            deactivation,
            openid,
            key_backup,
            reports,
            push,
            registration,
            threepids,
            previews,
            third_party_invites,
        }
    }
}

impl AppState {
    /// Replaces the rate limiter (the default lets everything through).
    pub fn with_rate_limit(mut self, per_second: f64, burst: u32) -> Self {
        self.limiter = Arc::new(ratelimit::Limiter::new(per_second, burst));
        self
    }
}

/// Registers a handler under every path ruma knows for the endpoint `R` (shared with the
/// federation API, whose routers have a state of their own).
pub trait RumaRouter<S> {
    fn ruma<R, H, T>(self, handler: H) -> Self
    where
        R: Metadata,
        H: Handler<T, S>,
        T: 'static;
}

impl<S: Clone + Send + std::marker::Sync + 'static> RumaRouter<S> for Router<S> {
    fn ruma<R, H, T>(mut self, handler: H) -> Self
    where
        R: Metadata,
        H: Handler<T, S>,
        T: 'static,
    {
        // Runs once, building the router at start-up: never on input.
        #[allow(clippy::expect_used)]
        let filter =
            MethodFilter::try_from(R::METHOD).expect("Matrix endpoints use standard methods");
        for path in R::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, handler.clone()));
            // An empty state key leaves the path ending in `/` (or nothing): route those too.
            if let Some(prefix) = path.strip_suffix("/{state_key}") {
                self = self.route(prefix, on(filter, handler.clone()));
                self = self.route(&format!("{prefix}/"), on(filter, handler.clone()));
            }
        }
        self
    }
}

/// The client API router (without the outer layers, which the binary adds).
pub fn router(state: AppState) -> Router {
    routes::routes()
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn unrecognized(req: Request) -> Response {
    tracing::debug!(uri = %req.uri(), "unrecognized endpoint");
    ruma_wrapper::error_response(
        StatusCode::NOT_FOUND,
        ErrorKind::Unrecognized,
        "unrecognized request".into(),
    )
}

async fn method_not_allowed() -> impl IntoResponse {
    ruma_wrapper::error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Unrecognized,
        "method not allowed".into(),
    )
}
