//! Server-side key backup (`/room_keys`): versions (create, read, update, delete) and the
//! keys of a version (all, a room's, a session's: put, get, delete). The keys are kept as
//! the client encrypted them; `services/key_backup.rs` decides which to keep.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::{
    api::client::backup::{
        add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
        update_backup_version, BackupAlgorithm, KeyBackupData, RoomKeyBackup,
    },
    serde::Raw,
    OwnedRoomId, RoomId, UInt,
};
use sandcat_core::{
    ports::{BackedUpKey, BackupVersion, KeyScope},
    services::key_backup::{nested, BackupCount},
    Error,
};
use serde_json::{json, Value};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<create_backup_version::v3::Request, _, _>(create_version)
        .ruma::<get_latest_backup_info::v3::Request, _, _>(latest_version)
        .ruma::<get_backup_info::v3::Request, _, _>(version)
        .ruma::<update_backup_version::v3::Request, _, _>(update_version)
        .ruma::<delete_backup_version::v3::Request, _, _>(delete_version)
        .ruma::<add_backup_keys::v3::Request, _, _>(put_keys)
        .ruma::<add_backup_keys_for_room::v3::Request, _, _>(put_room_keys)
        .ruma::<add_backup_keys_for_session::v3::Request, _, _>(put_session_key)
        .ruma::<get_backup_keys::v3::Request, _, _>(keys)
        .ruma::<get_backup_keys_for_room::v3::Request, _, _>(room_keys)
        .ruma::<get_backup_keys_for_session::v3::Request, _, _>(session_key)
        .ruma::<delete_backup_keys::v3::Request, _, _>(delete_keys)
        .ruma::<delete_backup_keys_for_room::v3::Request, _, _>(delete_room_keys)
        .ruma::<delete_backup_keys_for_session::v3::Request, _, _>(delete_session_key)
}

fn bad_json(why: impl std::fmt::Display) -> ApiError {
    ApiError(Error::bad_json(why.to_string()))
}

/// The `algorithm` and `auth_data` of a version's body.
fn algorithm(raw: &Raw<BackupAlgorithm>) -> Result<(String, Value), ApiError> {
    let v: Value = serde_json::from_str(raw.json().get()).map_err(bad_json)?;
    let (Some(name), Some(auth_data)) = (
        v.get("algorithm").and_then(Value::as_str),
        v.get("auth_data"),
    ) else {
        return Err(bad_json(
            "a backup version names its algorithm and auth_data",
        ));
    };
    if !auth_data.is_object() {
        return Err(bad_json("auth_data must be an object"));
    }
    Ok((name.to_owned(), auth_data.clone()))
}

/// A session's key as the client sent it, checked for the fields the rules read.
fn key(
    room_id: &RoomId,
    session_id: &str,
    raw: &Raw<KeyBackupData>,
) -> Result<BackedUpKey, ApiError> {
    let v: Value = serde_json::from_str(raw.json().get()).map_err(bad_json)?;
    let count = |field: &str| {
        v.get(field)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad_json(format!("{field} must be a non-negative integer")))
    };
    let (Some(is_verified), Some(session_data)) = (
        v.get("is_verified").and_then(Value::as_bool),
        v.get("session_data"),
    ) else {
        return Err(bad_json("a backed-up key has is_verified and session_data"));
    };
    if !session_data.is_object() {
        return Err(bad_json("session_data must be an object"));
    }
    Ok(BackedUpKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: count("first_message_index")?,
        forwarded_count: count("forwarded_count")?,
        is_verified,
        session_data: session_data.to_string(),
    })
}

/// A kept key as the client reads it.
fn key_data(key: &BackedUpKey) -> Result<Raw<KeyBackupData>, ApiError> {
    let session_data: Value =
        serde_json::from_str(&key.session_data).map_err(|e| ApiError(Error::internal(e)))?;
    let body = json!({
        "first_message_index": key.first_message_index,
        "forwarded_count": key.forwarded_count,
        "is_verified": key.is_verified,
        "session_data": session_data,
    });
    Raw::from_json_string(body.to_string()).map_err(|e| ApiError(Error::internal(e)))
}

fn sessions(
    keys: BTreeMap<String, BackedUpKey>,
) -> Result<BTreeMap<String, Raw<KeyBackupData>>, ApiError> {
    keys.into_iter()
        .map(|(id, key)| Ok((id, key_data(&key)?)))
        .collect()
}

fn uint(v: u64) -> UInt {
    UInt::try_from(v).unwrap_or(UInt::MAX)
}

fn version_info(v: &BackupVersion) -> Result<Raw<BackupAlgorithm>, ApiError> {
    let auth_data: Value =
        serde_json::from_str(&v.auth_data).map_err(|e| ApiError(Error::internal(e)))?;
    let body = json!({ "algorithm": v.algorithm, "auth_data": auth_data });
    Raw::from_json_string(body.to_string()).map_err(|e| ApiError(Error::internal(e)))
}

/// POST /_matrix/client/v3/room_keys/version
async fn create_version(
    State(s): State<AppState>,
    req: Ruma<create_backup_version::v3::Request>,
) -> ApiResult<create_backup_version::v3::Response> {
    let (name, auth_data) = algorithm(&req.body.algorithm)?;
    let version = s
        .key_backup
        .create(&req.session()?.user_id, &name, &auth_data)
        .await?;
    Ok(RumaResponse(create_backup_version::v3::Response::new(
        version,
    )))
}

/// GET /_matrix/client/v3/room_keys/version
async fn latest_version(
    State(s): State<AppState>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> ApiResult<get_latest_backup_info::v3::Response> {
    let v = s.key_backup.info(&req.session()?.user_id, None).await?;
    Ok(RumaResponse(get_latest_backup_info::v3::Response::new(
        version_info(&v)?,
        uint(v.count),
        v.etag.to_string(),
        v.version.to_string(),
    )))
}

/// GET /_matrix/client/v3/room_keys/version/{version}
async fn version(
    State(s): State<AppState>,
    req: Ruma<get_backup_info::v3::Request>,
) -> ApiResult<get_backup_info::v3::Response> {
    let v = s
        .key_backup
        .info(&req.session()?.user_id, Some(&req.body.version))
        .await?;
    Ok(RumaResponse(get_backup_info::v3::Response::new(
        version_info(&v)?,
        uint(v.count),
        v.etag.to_string(),
        v.version.to_string(),
    )))
}

/// PUT /_matrix/client/v3/room_keys/version/{version}
async fn update_version(
    State(s): State<AppState>,
    req: Ruma<update_backup_version::v3::Request>,
) -> ApiResult<update_backup_version::v3::Response> {
    let (name, auth_data) = algorithm(&req.body.algorithm)?;
    let named: Value = serde_json::from_str(req.body.algorithm.json().get()).map_err(bad_json)?;
    if let Some(v) = named.get("version").and_then(Value::as_str) {
        if v != req.body.version {
            return Err(ApiError(Error::invalid_param(
                "the body names another version than the path",
            )));
        }
    }
    s.key_backup
        .update(
            &req.session()?.user_id,
            &req.body.version,
            &name,
            &auth_data,
        )
        .await?;
    Ok(RumaResponse(update_backup_version::v3::Response::new()))
}

/// DELETE /_matrix/client/v3/room_keys/version/{version}
async fn delete_version(
    State(s): State<AppState>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> ApiResult<delete_backup_version::v3::Response> {
    s.key_backup
        .delete(&req.session()?.user_id, &req.body.version)
        .await?;
    Ok(RumaResponse(delete_backup_version::v3::Response::new()))
}

fn counted(c: BackupCount) -> (String, UInt) {
    (c.etag, uint(c.count))
}

/// PUT /_matrix/client/v3/room_keys/keys
async fn put_keys(
    State(s): State<AppState>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> ApiResult<add_backup_keys::v3::Response> {
    let mut keys = Vec::new();
    for (room_id, room) in &req.body.rooms {
        for (session_id, data) in &room.sessions {
            keys.push(key(room_id, session_id, data)?);
        }
    }
    let (etag, count) = counted(
        s.key_backup
            .put(&req.session()?.user_id, &req.body.version, keys)
            .await?,
    );
    Ok(RumaResponse(add_backup_keys::v3::Response::new(
        etag, count,
    )))
}

/// PUT /_matrix/client/v3/room_keys/keys/{roomId}
async fn put_room_keys(
    State(s): State<AppState>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> ApiResult<add_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let keys = b
        .sessions
        .iter()
        .map(|(session_id, data)| key(&b.room_id, session_id, data))
        .collect::<Result<Vec<_>, _>>()?;
    let (etag, count) = counted(
        s.key_backup
            .put(&req.session()?.user_id, &b.version, keys)
            .await?,
    );
    Ok(RumaResponse(add_backup_keys_for_room::v3::Response::new(
        etag, count,
    )))
}

/// PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
async fn put_session_key(
    State(s): State<AppState>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> ApiResult<add_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let keys = vec![key(&b.room_id, &b.session_id, &b.session_data)?];
    let (etag, count) = counted(
        s.key_backup
            .put(&req.session()?.user_id, &b.version, keys)
            .await?,
    );
    Ok(RumaResponse(
        add_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}

/// GET /_matrix/client/v3/room_keys/keys
async fn keys(
    State(s): State<AppState>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> ApiResult<get_backup_keys::v3::Response> {
    let kept = s
        .key_backup
        .keys(&req.session()?.user_id, &req.body.version, KeyScope::All)
        .await?;
    let rooms: BTreeMap<OwnedRoomId, RoomKeyBackup> = nested(kept)
        .into_iter()
        .map(|(room_id, keys)| Ok((room_id, RoomKeyBackup::new(sessions(keys)?))))
        .collect::<Result<_, ApiError>>()?;
    Ok(RumaResponse(get_backup_keys::v3::Response::new(rooms)))
}

/// GET /_matrix/client/v3/room_keys/keys/{roomId}
async fn room_keys(
    State(s): State<AppState>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> ApiResult<get_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let kept = s
        .key_backup
        .keys(
            &req.session()?.user_id,
            &b.version,
            KeyScope::Room(&b.room_id),
        )
        .await?;
    let keys = nested(kept).remove(&b.room_id).unwrap_or_default();
    Ok(RumaResponse(get_backup_keys_for_room::v3::Response::new(
        sessions(keys)?,
    )))
}

/// GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
async fn session_key(
    State(s): State<AppState>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> ApiResult<get_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let scope = KeyScope::Session(&b.room_id, &b.session_id);
    let kept = s
        .key_backup
        .keys(&req.session()?.user_id, &b.version, scope)
        .await?;
    let first = kept
        .first()
        .ok_or_else(|| ApiError(Error::not_found("no key for this session")))?;
    Ok(RumaResponse(
        get_backup_keys_for_session::v3::Response::new(key_data(first)?),
    ))
}

/// DELETE /_matrix/client/v3/room_keys/keys
async fn delete_keys(
    State(s): State<AppState>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> ApiResult<delete_backup_keys::v3::Response> {
    let (etag, count) = counted(
        s.key_backup
            .delete_keys(&req.session()?.user_id, &req.body.version, KeyScope::All)
            .await?,
    );
    Ok(RumaResponse(delete_backup_keys::v3::Response::new(
        etag, count,
    )))
}

/// DELETE /_matrix/client/v3/room_keys/keys/{roomId}
async fn delete_room_keys(
    State(s): State<AppState>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> ApiResult<delete_backup_keys_for_room::v3::Response> {
    let b = &req.body;
    let (etag, count) = counted(
        s.key_backup
            .delete_keys(
                &req.session()?.user_id,
                &b.version,
                KeyScope::Room(&b.room_id),
            )
            .await?,
    );
    Ok(RumaResponse(
        delete_backup_keys_for_room::v3::Response::new(etag, count),
    ))
}

/// DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}
async fn delete_session_key(
    State(s): State<AppState>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<delete_backup_keys_for_session::v3::Response> {
    let b = &req.body;
    let scope = KeyScope::Session(&b.room_id, &b.session_id);
    let (etag, count) = counted(
        s.key_backup
            .delete_keys(&req.session()?.user_id, &b.version, scope)
            .await?,
    );
    Ok(RumaResponse(
        delete_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}
