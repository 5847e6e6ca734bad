//! This server's users' end-to-end encryption keys for other servers: `/user/keys/query`,
//! `/user/keys/claim` and `/user/devices/{userId}`, answered by the `Keys` service.

use std::collections::BTreeMap;

use axum::{extract::State, Router};
use ruma::{
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
    serde::Raw,
    UInt,
};
use sandcat_client_api::{ApiError, ApiResult, RumaResponse, RumaRouter};
use sandcat_core::Error;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{signed::Signed, FederationState};

pub(crate) fn routes(r: Router<FederationState>) -> Router<FederationState> {
    r.ruma::<get_keys::v1::Request, _, _>(query)
        .ruma::<claim_keys::v1::Request, _, _>(claim)
        .ruma::<get_devices::v1::Request, _, _>(devices)
}

/// A section of a JSON answer as its ruma type (empty when absent).
fn section<T: DeserializeOwned + Default>(body: &Value, name: &str) -> Result<T, ApiError> {
    match body.get(name) {
        None => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| ApiError(Error::internal(e))),
    }
}

fn raw<T>(v: Value) -> Result<Raw<T>, ApiError> {
    Raw::new(&v)
        .map(Raw::cast_unchecked)
        .map_err(|e| ApiError(Error::internal(e)))
}

/// POST /_matrix/federation/v1/user/keys/query
async fn query(
    State(s): State<FederationState>,
    req: Signed<get_keys::v1::Request>,
) -> ApiResult<get_keys::v1::Response> {
    let wanted = req
        .body
        .device_keys
        .iter()
        .map(|(u, d)| (u.clone(), d.iter().map(ToString::to_string).collect()))
        .collect();
    let body = s.e2ee.query_for_server(&wanted).await?;
    let mut answer = get_keys::v1::Response::new(section(&body, "device_keys")?);
    answer.master_keys = section(&body, "master_keys")?;
    answer.self_signing_keys = section(&body, "self_signing_keys")?;
    Ok(RumaResponse(answer))
}

/// POST /_matrix/federation/v1/user/keys/claim
async fn claim(
    State(s): State<FederationState>,
    req: Signed<claim_keys::v1::Request>,
) -> ApiResult<claim_keys::v1::Response> {
    let wanted = req
        .body
        .one_time_keys
        .iter()
        .map(|(u, devices)| {
            let per_device: BTreeMap<String, String> = devices
                .iter()
                .map(|(d, alg)| (d.to_string(), alg.to_string()))
                .collect();
            (u.clone(), per_device)
        })
        .collect();
    let body = s.e2ee.claim_for_server(&wanted).await?;
    let keys = serde_json::from_value(body).map_err(|e| ApiError(Error::internal(e)))?;
    Ok(RumaResponse(claim_keys::v1::Response::new(keys)))
}

/// GET /_matrix/federation/v1/user/devices/{userId}
async fn devices(
    State(s): State<FederationState>,
    req: Signed<get_devices::v1::Request>,
) -> ApiResult<get_devices::v1::Response> {
    let user_id = &req.body.user_id;
    let (devices, master, self_signing) = s.e2ee.devices_for_server(user_id).await?;
    let stream_id = UInt::try_from(sandcat_core::now_ms()).unwrap_or(UInt::MAX);
    let mut answer = get_devices::v1::Response::new(user_id.clone(), stream_id);
    for (id, keys, name) in devices {
        let mut device = get_devices::v1::UserDevice::new(id.into(), raw(keys)?);
        device.device_display_name = name;
        answer.devices.push(device);
    }
    answer.master_key = master.map(raw).transpose()?;
    answer.self_signing_key = self_signing.map(raw).transpose()?;
    Ok(RumaResponse(answer))
}
