//! `PUT /_matrix/federation/v1/send/{txnId}`: another server's events (PDUs), each added on
//! its own through its room's lane with its own outcome. The transaction's `origin` must be
//! the server that signed the request. EDUs are not taken yet.

use axum::{extract::State, Router};
use ruma::api::federation::transactions::send_transaction_message;
use sandcat_client_api::{ApiResult, RumaResponse, RumaRouter};
use sandcat_core::Error;

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<send_transaction_message::v1::Request, _, _>(send)
}

async fn send(
    State(s): State<FederationState>,
    req: Signed<send_transaction_message::v1::Request>,
) -> ApiResult<send_transaction_message::v1::Response> {
    let b = &req.body;
    if b.origin != req.origin {
        return Err(Error::forbidden(format!(
            "a transaction of {} signed by {}",
            b.origin, req.origin
        ))
        .into());
    }
    let pdus: Vec<&str> = b.pdus.iter().map(|p| p.get()).collect();
    let outcomes = s.inbound.transaction(&req.origin, &pdus).await?;
    Ok(RumaResponse(send_transaction_message::v1::Response::new(
        outcomes,
    )))
}
