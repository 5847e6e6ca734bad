//! `/sync` and filters.

use axum::{extract::State, response::IntoResponse, Json};
use ruma::api::client::{
    filter::{create_filter, get_filter, FilterDefinition},
    sync::sync_events,
};
use sandcat_core::{
    services::sync::{EventFilter, SyncFilter, SyncRequest},
    Error,
};

mod body;
mod sliding;
mod sliding_body;

use body::SyncBody;

use crate::{
    routes::rooms::event_filter as room_event_filter,
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<sync_events::v3::Request, _, _>(sync)
        .ruma::<sync_events::v5::Request, _, _>(sliding::sliding_sync)
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
        unread_thread_notifications: room.timeline.unread_thread_notifications,
    }
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
        use_state_after: b.use_state_after,
        timeout_ms: b.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
        filter,
        set_presence: Some(b.set_presence.as_str().to_owned()),
    };
    let out = s.sync.sync(&session, request).await?;
    let viewer = (&*session.user_id, Some(session.device_id.as_str()));
    Ok(Json(SyncBody::new(&out, viewer)).into_response())
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
