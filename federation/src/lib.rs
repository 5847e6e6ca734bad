//! The Server-Server API: what other homeservers ask of this one. Today: this server's
//! signing keys (`/_matrix/key/v2/server`) and federation discovery
//! (`/.well-known/matrix/server`), which have no outbound part. Every path comes from ruma's
//! endpoint metadata.

use std::sync::Arc;

use axum::{handler::Handler, routing::on, routing::MethodFilter, Router};
use ruma::{
    api::{path_builder::PathBuilder, Metadata},
    OwnedServerName,
};
use sandcat_core::services::server_keys::ServerKeys;

mod discovery;
mod keys;

/// What the federation endpoints share.
#[derive(Clone)]
pub struct FederationState {
    keys: Arc<ServerKeys>,
    /// `m.server` of `/.well-known/matrix/server`; none: the document is not served.
    well_known_server: Option<OwnedServerName>,
}

impl FederationState {
    pub fn new(keys: Arc<ServerKeys>, well_known_server: Option<OwnedServerName>) -> Self {
        FederationState {
            keys,
            well_known_server,
        }
    }
}

/// The federation router, without a fallback of its own (it is merged with the client API's,
/// which answers unknown paths).
pub fn router(state: FederationState) -> Router {
    let r = Router::new();
    let r = keys::routes(r);
    let r = discovery::routes(r);
    r.with_state(state)
}

/// Registers a handler on every path of a ruma endpoint.
trait RumaRoute {
    fn ruma<R, H, T>(self, handler: H) -> Self
    where
        R: Metadata,
        H: Handler<T, FederationState>,
        T: 'static;
}

impl RumaRoute for Router<FederationState> {
    fn ruma<R, H, T>(mut self, handler: H) -> Self
    where
        R: Metadata,
        H: Handler<T, FederationState>,
        T: 'static,
    {
        // Runs once, building the router at start-up: never on input.
        #[allow(clippy::expect_used)]
        let filter =
            MethodFilter::try_from(R::METHOD).expect("Matrix endpoints use standard methods");
        for path in R::PATH_BUILDER.all_paths() {
            self = self.route(path, on(filter, handler.clone()));
        }
        self
    }
}
