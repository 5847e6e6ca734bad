//! `/sync` and filters.

use axum::{extract::State, response::IntoResponse, Json};
use ruma::api::client::{
    filter::{create_filter, get_filter, FilterDefinition},
    sync::sync_events,
};
use sandcat_core::json::set;
use sandcat_core::{
    services::sync::{EventFilter, SyncFilter, SyncOutput, SyncRequest},
    Error, StoredEvent,
};
use serde_json::{json, Map, Value};

use crate::{
    routes::rooms::event_filter as room_event_filter,
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<sync_events::v3::Request, _, _>(sync)
        .ruma::<create_filter::v3::Request, _, _>(create_filter)
        .ruma::<get_filter::v3::Request, _, _>(get_filter)
}

fn plain_filter(f: &ruma::api::client::filter::Filter) -> EventFilter {
    EventFilter {
        types: f.types.clone(),
        not_types: f.not_types.clone(),
        senders: f
            .senders
            .as_ref()
            .map(|v| v.iter().map(|u| u.to_string()).collect()),
        not_senders: f.not_senders.iter().map(|u| u.to_string()).collect(),
    }
}

fn sync_filter(def: &FilterDefinition) -> SyncFilter {
    let room = &def.room;
    SyncFilter {
        timeline_limit: room
            .timeline
            .limit
            .map(|l| u64::from(l).clamp(1, 500) as usize)
            .unwrap_or(10),
        timeline: room_event_filter(&room.timeline),
        state: room_event_filter(&room.state),
        ephemeral: room_event_filter(&room.ephemeral),
        room_account_data: room_event_filter(&room.account_data),
        account_data: plain_filter(&def.account_data),
        presence: plain_filter(&def.presence),
        rooms: room
            .rooms
            .as_ref()
            .map(|r| r.iter().map(|r| r.to_string()).collect()),
        not_rooms: room.not_rooms.iter().map(|r| r.to_string()).collect(),
        include_leave: room.include_leave,
    }
}

fn events(user: &ruma::UserId, device: &str, evs: &[StoredEvent]) -> Vec<Value> {
    evs.iter()
        .map(|e| e.to_client_value(false, Some((user, Some(device)))))
        .collect()
}

fn render(user: &ruma::UserId, device: &str, out: SyncOutput) -> Value {
    let mut join = Map::new();
    for (room_id, r) in out.joined {
        let mut timeline =
            json!({ "events": events(user, device, &r.timeline), "limited": r.limited });
        if let Some(p) = r.prev_batch {
            set(&mut timeline, "prev_batch", json!(p));
        }
        join.insert(
            room_id.to_string(),
            json!({
                "timeline": timeline,
                "state": { "events": events(user, device, &r.state) },
                "ephemeral": { "events": r.ephemeral },
                "account_data": { "events": r.account_data },
                "unread_notifications": { "notification_count": r.notification_count, "highlight_count": r.highlight_count },
                                "summary": r.summary.map(|s| json!({
                    "m.heroes": s.heroes,
                    "m.joined_member_count": s.joined_count,
                    "m.invited_member_count": s.invited_count,
                })).unwrap_or_else(|| json!({})),
            }),
        );
    }
    let mut invite = Map::new();
    for (room_id, state) in out.invited {
        let stripped: Vec<Value> = state
            .iter()
            .map(|e| e.to_stripped_raw::<Value>())
            .map(|r| serde_json::from_str(r.json().get()).unwrap_or(Value::Null))
            .collect();
        invite.insert(
            room_id.to_string(),
            json!({ "invite_state": { "events": stripped } }),
        );
    }
    let mut leave = Map::new();
    for (room_id, r) in out.left {
        let mut timeline = json!({ "events": events(user, device, &r.timeline), "limited": false });
        if let Some(p) = r.prev_batch {
            set(&mut timeline, "prev_batch", json!(p));
        }
        leave.insert(
            room_id.to_string(),
            json!({ "timeline": timeline, "state": { "events": events(user, device, &r.state) } }),
        );
    }
    json!({
        "next_batch": out.next_batch,
        "rooms": { "join": join, "invite": invite, "leave": leave, "knock": {} },
        "account_data": { "events": out.account_data },
        "presence": { "events": out.presence },
        "to_device": { "events": out.to_device },
        "device_lists": { "changed": out.device_lists_changed, "left": [] },
        "device_one_time_keys_count": out.one_time_key_counts,
        "device_unused_fallback_key_types": out.unused_fallback_key_types,
    })
}

/// GET /_matrix/client/v3/sync
async fn sync(
    State(s): State<AppState>,
    req: Ruma<sync_events::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let session = req.session()?.clone();
    let b = req.body;
    let filter = match &b.filter {
        None => SyncFilter::default(),
        Some(sync_events::v3::Filter::FilterDefinition(def)) => sync_filter(def),
        Some(sync_events::v3::Filter::FilterId(id)) => {
            let v = s.data.filter(&session.user_id, id).await?;
            let def: FilterDefinition =
                serde_json::from_value(v).map_err(|e| Error::bad_json(e.to_string()))?;
            sync_filter(&def)
        }
        Some(_) => SyncFilter::default(),
    };
    let request = SyncRequest {
        since: b.since,
        full_state: b.full_state,
        timeout_ms: b.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
        filter,
        set_presence: Some(b.set_presence.as_str().to_owned()),
    };
    let out = s.sync.sync(&session, request).await?;
    Ok(Json(render(&session.user_id, &session.device_id, out)).into_response())
}

/// POST /_matrix/client/v3/user/{userId}/filter
async fn create_filter(
    State(s): State<AppState>,
    req: Ruma<create_filter::v3::Request>,
) -> ApiResult<create_filter::v3::Response> {
    let session = req.session()?;
    if req.body.user_id != session.user_id {
        return Err(Error::forbidden("you may only create filters for yourself").into());
    }
    let v = serde_json::to_value(&req.body.filter)
        .map_err(|e| ApiError(Error::bad_json(e.to_string())))?;
    let id = s.data.create_filter(&session.user_id, &v).await?;
    Ok(RumaResponse(create_filter::v3::Response::new(id)))
}

/// GET /_matrix/client/v3/user/{userId}/filter/{filterId}
async fn get_filter(
    State(s): State<AppState>,
    req: Ruma<get_filter::v3::Request>,
) -> ApiResult<get_filter::v3::Response> {
    let session = req.session()?;
    if req.body.user_id != session.user_id {
        return Err(Error::forbidden("you may only read your own filters").into());
    }
    let v = s.data.filter(&session.user_id, &req.body.filter_id).await?;
    let def: FilterDefinition =
        serde_json::from_value(v).map_err(|e| ApiError(Error::internal(e)))?;
    Ok(RumaResponse(get_filter::v3::Response::new(def)))
}
