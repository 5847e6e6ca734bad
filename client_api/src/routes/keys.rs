//! End-to-end encryption endpoints: keys, cross-signing, to-device (key backup: `backup.rs`).

use std::collections::BTreeMap;

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
    },
    to_device::DeviceIdOrAllDevices,
    OwnedUserId,
};
use sandcat_core::{services::sync::SyncToken, Error};
use serde_json::Value;

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<upload_keys::v3::Request, _, _>(upload)
        .ruma::<get_keys::v3::Request, _, _>(query)
        .ruma::<claim_keys::v3::Request, _, _>(claim)
        .ruma::<get_key_changes::v3::Request, _, _>(changes)
        .ruma::<upload_signing_keys::v3::Request, _, _>(upload_cross_signing)
        .ruma::<upload_signatures::v3::Request, _, _>(upload_signatures)
        .ruma::<send_event_to_device::v3::Request, _, _>(send_to_device)
}

fn json<T>(raw: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError(Error::bad_json(e.to_string())))
}

/// POST /_matrix/client/v3/keys/upload
async fn upload(
    State(s): State<AppState>,
    req: Ruma<upload_keys::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    let device_keys = b.device_keys.as_ref().map(json).transpose()?;
    let one_time = b
        .one_time_keys
        .iter()
        .map(|(id, k)| Ok((id.to_string(), json(k)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let fallback = b
        .fallback_keys
        .iter()
        .map(|(id, k)| Ok((id.to_string(), json(k)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let counts = s
        .keys
        .upload(req.session()?, device_keys, one_time, fallback)
        .await?;
    Ok(Json(serde_json::json!({ "one_time_key_counts": counts })).into_response())
}

/// POST /_matrix/client/v3/keys/query
async fn query(
    State(s): State<AppState>,
    req: Ruma<get_keys::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let wanted: BTreeMap<OwnedUserId, Vec<String>> = req
        .body
        .device_keys
        .iter()
        .map(|(u, ds)| (u.clone(), ds.iter().map(|d| d.to_string()).collect()))
        .collect();
    Ok(Json(s.keys.query(&req.session()?.user_id, &wanted).await?).into_response())
}

/// POST /_matrix/client/v3/keys/claim
async fn claim(
    State(s): State<AppState>,
    req: Ruma<claim_keys::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let wanted: BTreeMap<OwnedUserId, BTreeMap<String, String>> = req
        .body
        .one_time_keys
        .iter()
        .map(|(u, ds)| {
            (
                u.clone(),
                ds.iter()
                    .map(|(d, alg)| (d.to_string(), alg.to_string()))
                    .collect(),
            )
        })
        .collect();
    Ok(Json(s.keys.claim(&wanted).await?).into_response())
}

/// GET /_matrix/client/v3/keys/changes
async fn changes(
    State(s): State<AppState>,
    req: Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let from = parse_token_pos(&req.body.from)?;
    let to = parse_token_pos(&req.body.to)?;
    let changed = s.keys.changes(&req.session()?.user_id, from, to).await?;
    Ok(RumaResponse(get_key_changes::v3::Response::new(
        changed,
        vec![],
    )))
}

fn parse_token_pos(t: &str) -> Result<i64, ApiError> {
    if t.starts_with('s') {
        Ok(t.parse::<SyncToken>()?.pos)
    } else {
        Ok(sandcat_core::services::rooms::parse_token(t)?)
    }
}

/// POST /_matrix/client/v3/keys/device_signing/upload
async fn upload_cross_signing(
    State(s): State<AppState>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> Result<axum::response::Response, crate::uiaa::UiaaError> {
    let b = &req.body;
    let keys = [
        ("master", b.master_key.as_ref().map(json).transpose()?),
        (
            "self_signing",
            b.self_signing_key.as_ref().map(json).transpose()?,
        ),
        (
            "user_signing",
            b.user_signing_key.as_ref().map(json).transpose()?,
        ),
    ];
    let session = req.session()?;
    if s.keys
        .replaces_master_key(&session.user_id, keys[0].1.as_ref())
        .await?
    {
        crate::uiaa::password_stage(&s, session, &b.auth).await?;
    }
    s.keys.upload_cross_signing(session, &keys).await?;
    Ok(RumaResponse(upload_signing_keys::v3::Response::new()).into_response())
}

/// POST /_matrix/client/v3/keys/signatures/upload
async fn upload_signatures(
    State(s): State<AppState>,
    req: Ruma<upload_signatures::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let signed = serde_json::to_value(&req.body.signed_keys)
        .map_err(|e| ApiError(Error::bad_json(e.to_string())))?;
    if let Value::Object(map) = signed {
        s.keys.upload_signatures(req.session()?, &map).await?;
    }
    Ok(Json(serde_json::json!({ "failures": {} })).into_response())
}

/// PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
async fn send_to_device(
    State(s): State<AppState>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> ApiResult<send_event_to_device::v3::Response> {
    let mut messages: BTreeMap<OwnedUserId, BTreeMap<String, Value>> = BTreeMap::new();
    for (user, devices) in &req.body.messages {
        let entry = messages.entry(user.clone()).or_default();
        for (device, content) in devices {
            let key = match device {
                DeviceIdOrAllDevices::DeviceId(d) => d.to_string(),
                DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
            };
            entry.insert(key, json(content)?);
        }
    }
    s.keys
        .send_to_device(
            req.session()?,
            &req.body.event_type.to_string(),
            req.body.txn_id.as_str(),
            &messages,
        )
        .await?;
    Ok(RumaResponse(send_event_to_device::v3::Response::new()))
}
