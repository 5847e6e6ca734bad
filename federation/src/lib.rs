//! The Server-Server API: what other homeservers ask of this one. Today: this server's
//! signing keys (`/_matrix/key/v2/server`) and federation discovery
//! (`/.well-known/matrix/server`), which have no outbound part. Every path comes from ruma's
//! endpoint metadata.

use std::sync::Arc;

use axum::Router;
use ruma::OwnedServerName;
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
