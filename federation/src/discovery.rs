//! `GET /.well-known/matrix/server`: where other servers reach this one's federation API; and
//! `GET /_matrix/federation/v1/version`: which server software answers.

use axum::{extract::State, response::IntoResponse, response::Response, Router};
use ruma::api::federation::discovery::{discover_homeserver, get_server_version};
use sandcat_client_api::{ApiError, RumaResponse, RumaRouter};
use sandcat_core::Error;

use crate::FederationState;

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<discover_homeserver::Request, _, _>(well_known_server)
        .ruma::<get_server_version::v1::Request, _, _>(version)
}

/// The implementation's name and version.
async fn version() -> RumaResponse<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Sandcat".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut answer = get_server_version::v1::Response::new();
    answer.server = Some(server);
    RumaResponse(answer)
}

/// `{"m.server": "<host[:port]>"}` when delegation is configured, else 404: other servers then
/// reach the server name itself (port 8448), as the spec's resolution says.
async fn well_known_server(State(s): State<FederationState>) -> Response {
    match &s.well_known_server {
        Some(server) => {
            RumaResponse(discover_homeserver::Response::new(server.clone())).into_response()
        }
        None => {
            ApiError(Error::not_found("no federation delegation is configured")).into_response()
        }
    }
}
