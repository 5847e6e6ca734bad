//! `PUT /_matrix/federation/v1/send/{txnId}`: another server's events (PDUs), each added on
//! its own through its room's lane with its own outcome. The transaction's `origin` must be
//! the server that signed the request. Its EDUs reach this server's users: typing and read
//! receipts (each only for a user of the sending server joined to the room), to-device
//! messages, device list and signing-key updates, and presence (each only of a user of the
//! sending server; presence only of a user in a room here). A transaction sent again (the same origin and
//! transaction id) gets the first answer and is not taken twice.

use axum::{extract::State, Router};
use ruma::{
    api::federation::transactions::{edu::Edu, send_transaction_message},
    serde::Raw,
    ServerName,
};
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
    if let Some(outcomes) = s
        .inbound
        .answered(&req.origin, b.transaction_id.as_str())
        .await?
    {
        tracing::debug!(origin = %req.origin, txn_id = %b.transaction_id, "a transaction sent again");
        return Ok(RumaResponse(send_transaction_message::v1::Response::new(
            outcomes,
        )));
    }
    let pdus: Vec<&str> = b.pdus.iter().map(|p| p.get()).collect();
    let outcomes = s.inbound.transaction(&req.origin, &pdus).await?;
    take_edus(&s, &req.origin, &b.edus).await;
    if let Err(e) = s
        .inbound
        .remember(&req.origin, b.transaction_id.as_str(), &outcomes)
        .await
    {
        tracing::warn!(origin = %req.origin, error = %e, "a transaction's answer was not kept");
    }
    Ok(RumaResponse(send_transaction_message::v1::Response::new(
        outcomes,
    )))
}

/// The typing and read-receipt EDUs of a transaction, each on its own: one that fails its
/// checks is logged with the origin and left out.
async fn take_edus(s: &FederationState, origin: &ServerName, edus: &[Raw<Edu>]) {
    for raw in edus {
        let outcome = match raw.deserialize() {
            Ok(Edu::Typing(t)) => {
                s.data
                    .remote_typing(origin, &t.room_id, &t.user_id, t.typing)
                    .await
            }
            Ok(Edu::Receipt(r)) => {
                let mut outcome = Ok(());
                for (room_id, map) in &r.receipts {
                    for (user_id, read) in &map.read {
                        let thread = read.data.thread.as_str();
                        let ts = read
                            .data
                            .ts
                            .map_or_else(sandcat_core::now_ms, |t| t.get().into());
                        for event_id in &read.event_ids {
                            let one = s
                                .data
                                .remote_read(origin, room_id, user_id, event_id, thread, ts)
                                .await;
                            outcome = outcome.and(one);
                        }
                    }
                }
                outcome
            }
            Ok(Edu::DirectToDevice(d)) => {
                let messages = d
                    .messages
                    .iter()
                    .map(|(user, devices)| {
                        let per_device = devices
                            .iter()
                            .filter_map(|(device, content)| {
                                let content = serde_json::from_str(content.json().get()).ok()?;
                                Some((device.to_string(), content))
                            })
                            .collect();
                        (user.clone(), per_device)
                    })
                    .collect();
                s.e2ee
                    .remote_to_device(origin, &d.sender, &d.ev_type.to_string(), &messages)
                    .await
            }
            Ok(Edu::Presence(p)) => {
                let mut outcome = Ok(());
                for u in &p.push {
                    let one = s
                        .data
                        .remote_presence(
                            origin,
                            &u.user_id,
                            u.presence.as_str(),
                            u.status_msg.clone(),
                        )
                        .await;
                    outcome = outcome.and(one);
                }
                outcome
            }
            Ok(Edu::SigningKeyUpdate(u)) => {
                s.e2ee.remote_signing_key_change(origin, &u.user_id).await
            }
            Ok(Edu::DeviceListUpdate(u)) => {
                s.e2ee
                    .remote_device_change(origin, &u.user_id, u.device_id.as_str())
                    .await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(Error::bad_json(e.to_string())),
        };
        if let Err(e) = outcome {
            tracing::info!(%origin, error = %e, "an EDU was left out");
        }
    }
}
