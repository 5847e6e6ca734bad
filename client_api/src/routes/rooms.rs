//! Rooms: create, upgrade, send, state, redact, read history, aliases and directory
//! (memberships are in `membership.rs`).

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::{
        client::{
            alias::{create_alias, delete_alias, get_alias},
            context::get_context,
            directory::{
                get_public_rooms, get_public_rooms_filtered, get_room_visibility,
                set_room_visibility,
            },
            message::{get_message_events, send_message_event},
            peeking::get_current_state,
            redact::redact_event,
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            room::{
                aliases, create_room, get_event_by_timestamp, get_room_event, get_summary,
                upgrade_room, Visibility,
            },
            space::get_hierarchy,
            state::{get_state_event_for_key, get_state_events, send_state_event},
            threads::get_threads,
        },
        Direction,
    },
    UInt,
};
use sandcat_core::json::set;
use sandcat_core::{
    ports::{Direction as Dir, PublicRoomsPage, PublicRoomsQuery},
    services::{
        rooms::{CreateRoom, HierarchyQuery, Page, RoomPreset, Upgrade},
        sync::EventFilter,
    },
    Error, StoredEvent,
};
use serde_json::{json, Value};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<create_room::v3::Request, _, _>(create_room)
        .ruma::<send_message_event::v3::Request, _, _>(send)
        .ruma::<send_state_event::v3::Request, _, _>(send_state)
        .ruma::<get_state_events::v3::Request, _, _>(state)
        .ruma::<get_state_event_for_key::v3::Request, _, _>(state_event)
        .ruma::<redact_event::v3::Request, _, _>(redact)
        .ruma::<get_room_event::v3::Request, _, _>(event)
        .ruma::<get_context::v3::Request, _, _>(context)
        .ruma::<get_message_events::v3::Request, _, _>(messages)
        .ruma::<get_relating_events::v1::Request, _, _>(relations)
        .ruma::<get_relating_events_with_rel_type::v1::Request, _, _>(relations_rel)
        .ruma::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
            relations_rel_type,
        )
        .ruma::<create_alias::v3::Request, _, _>(set_alias)
        .ruma::<get_alias::v3::Request, _, _>(get_alias)
        .ruma::<delete_alias::v3::Request, _, _>(delete_alias)
        .ruma::<get_public_rooms::v3::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::v3::Request, _, _>(public_rooms_filtered)
        .ruma::<get_room_visibility::v3::Request, _, _>(get_visibility)
        .ruma::<get_hierarchy::v1::Request, _, _>(hierarchy)
        .ruma::<get_summary::v1::Request, _, _>(summary)
        .ruma::<get_threads::v1::Request, _, _>(threads)
        .ruma::<aliases::v3::Request, _, _>(room_aliases)
        .ruma::<set_room_visibility::v3::Request, _, _>(set_visibility)
        .ruma::<upgrade_room::v3::Request, _, _>(upgrade)
        .ruma::<get_event_by_timestamp::v1::Request, _, _>(event_at_time)
        .ruma::<get_current_state::v3::Request, _, _>(room_initial_sync)
}

/// GET /_matrix/client/v3/rooms/{roomId}/initialSync
async fn room_initial_sync(
    State(s): State<AppState>,
    req: Ruma<get_current_state::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let room_id = &req.body.room_id;
    let snapshot = s.rooms.room_initial_sync(user, room_id, 20).await?;
    let tags = s.data.tags(user, room_id).await?;
    let mut messages = json!({
        "chunk": client_events(user, &snapshot.messages),
        "end": snapshot.end,
    });
    if let Some(start) = &snapshot.start {
        set(&mut messages, "start", json!(start));
    }
    Ok(Json(json!({
        "room_id": room_id,
        "membership": snapshot.membership.map(|m| m.to_string()),
        "messages": messages,
        "state": client_events(user, &snapshot.state),
        "visibility": if snapshot.public { "public" } else { "private" },
        "account_data": [{ "type": "m.tag", "content": tags }],
        "presence": [],
    }))
    .into_response())
}

/// GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event
async fn event_at_time(
    State(s): State<AppState>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let b = &req.body;
    let dir = match b.dir {
        Direction::Forward => Dir::Forward,
        Direction::Backward => Dir::Backward,
    };
    let (event_id, ts) = s
        .rooms
        .event_at_time(&req.session()?.user_id, &b.room_id, b.ts.get().into(), dir)
        .await?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(
        event_id,
        ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(ts).unwrap_or(ruma::UInt::MAX)),
    )))
}

/// POST /_matrix/client/v3/rooms/{roomId}/upgrade
async fn upgrade(
    State(s): State<AppState>,
    req: Ruma<upgrade_room::v3::Request>,
) -> ApiResult<upgrade_room::v3::Response> {
    let b = &req.body;
    let upgrade = Upgrade {
        new_version: b.new_version.clone(),
        additional_creators: b.additional_creators.clone(),
    };
    let new_room = s
        .rooms
        .upgrade_room(req.session()?, &b.room_id, upgrade)
        .await?;
    Ok(RumaResponse(upgrade_room::v3::Response::new(new_room)))
}

fn raw_json<T>(v: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    serde_json::from_str(v.json().get()).map_err(|e| ApiError(Error::bad_json(e.to_string())))
}

fn preset(p: &create_room::v3::RoomPreset) -> Result<RoomPreset, Error> {
    use create_room::v3::RoomPreset as Wire;
    match p {
        Wire::PrivateChat => Ok(RoomPreset::PrivateChat),
        Wire::PublicChat => Ok(RoomPreset::PublicChat),
        Wire::TrustedPrivateChat => Ok(RoomPreset::TrustedPrivateChat),
        other => Err(Error::bad_json(format!(
            "unknown preset {}",
            other.as_str()
        ))),
    }
}

/// POST /_matrix/client/v3/createRoom
async fn create_room(
    State(s): State<AppState>,
    req: Ruma<create_room::v3::Request>,
) -> ApiResult<create_room::v3::Response> {
    let session = req.session()?.clone();
    let b = req.body;
    if let Some(name) = &b.room_alias_name {
        if let Ok(alias) = ruma::RoomAliasId::parse(format!("#{name}:{}", s.config.server_name)) {
            s.appservices
                .check_alias_claim(&alias, session.appservice.as_deref())?;
        }
    }
    for user in &b.invite {
        super::appservice::user_known(&s, user).await?;
    }
    let creation_content = match &b.creation_content {
        Some(c) => match raw_json(c)? {
            Value::Object(m) => Some(m),
            _ => return Err(Error::bad_json("creation_content must be an object").into()),
        },
        None => None,
    };
    let mut initial_state = Vec::new();
    for ev in &b.initial_state {
        let v = raw_json(ev)?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("initial_state events need a type"))?;
        let key = v.get("state_key").and_then(Value::as_str).unwrap_or("");
        let content = v.get("content").cloned().unwrap_or(json!({}));
        initial_state.push((kind.to_owned(), key.to_owned(), content));
    }
    let power_level_content_override = match &b.power_level_content_override {
        Some(p) => match raw_json(p)? {
            Value::Object(m) => Some(m),
            _ => {
                return Err(
                    Error::bad_json("power_level_content_override must be an object").into(),
                )
            }
        },
        None => None,
    };
    let room_id = s
        .rooms
        .create_room(
            &session,
            CreateRoom {
                preset: b.preset.as_ref().map(preset).transpose()?,
                public: b.visibility == Visibility::Public,
                room_alias_name: b.room_alias_name,
                name: b.name,
                topic: b.topic,
                invite: b.invite,
                is_direct: b.is_direct,
                room_version: b.room_version,
                creation_content,
                initial_state,
                power_level_content_override,
            },
        )
        .await?;
    Ok(RumaResponse(create_room::v3::Response::new(room_id)))
}

pub(super) fn client_events(s: &ruma::UserId, evs: &[StoredEvent]) -> Vec<Value> {
    evs.iter()
        .map(|e| e.to_client_value(true, Some((s, None))))
        .collect()
}

/// PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}
async fn send(
    State(s): State<AppState>,
    req: Ruma<send_message_event::v3::Request>,
) -> ApiResult<send_message_event::v3::Response> {
    let content = raw_json(&req.body.body)?;
    let event_id = s
        .rooms
        .send(
            req.session()?,
            &req.body.room_id,
            &req.body.event_type.to_string(),
            content,
            Some(req.body.txn_id.as_str()),
            massaged_ts(req.session()?, req.body.timestamp),
        )
        .await?;
    s.metrics
        .events_sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(RumaResponse(send_message_event::v3::Response::new(
        event_id,
    )))
}

/// PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
async fn send_state(
    State(s): State<AppState>,
    req: Ruma<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    let content = raw_json(&req.body.body)?;
    let event_id = s
        .rooms
        .send_state(
            req.session()?,
            &req.body.room_id,
            &req.body.event_type.to_string(),
            &req.body.state_key,
            content,
            massaged_ts(req.session()?, req.body.timestamp),
        )
        .await?;
    Ok(RumaResponse(send_state_event::v3::Response::new(event_id)))
}

/// `?ts=`: only application services may set an event's timestamp (for imported history).
fn massaged_ts(
    session: &sandcat_core::services::Session,
    ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
) -> Option<u64> {
    session.appservice.as_ref()?;
    ts.map(|t| u64::from(t.get()))
}

/// GET /_matrix/client/v3/rooms/{roomId}/state
async fn state(
    State(s): State<AppState>,
    req: Ruma<get_state_events::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let evs = s.rooms.state(user, &req.body.room_id).await?;
    Ok(Json(Value::Array(client_events(user, &evs))).into_response())
}

/// GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}
async fn state_event(
    State(s): State<AppState>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let ev = s
        .rooms
        .state_event(
            user,
            &req.body.room_id,
            &req.body.event_type.to_string(),
            &req.body.state_key,
        )
        .await?;
    let full = matches!(
        req.body.format,
        get_state_event_for_key::v3::StateEventFormat::Event
    );
    let body = if full {
        ev.to_client_value(true, Some((user, None)))
    } else {
        ev.pdu.content_value()
    };
    Ok(Json(body).into_response())
}

/// PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}
async fn redact(
    State(s): State<AppState>,
    req: Ruma<redact_event::v3::Request>,
) -> ApiResult<redact_event::v3::Response> {
    let b = &req.body;
    let event_id = s
        .rooms
        .redact(
            req.session()?,
            &b.room_id,
            &b.event_id,
            b.reason.as_deref(),
            b.txn_id.as_str(),
        )
        .await?;
    Ok(RumaResponse(redact_event::v3::Response::new(event_id)))
}

/// GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}
async fn event(
    State(s): State<AppState>,
    req: Ruma<get_room_event::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let ev = s
        .rooms
        .event(user, &req.body.room_id, &req.body.event_id)
        .await?;
    Ok(Json(ev.to_client_value(true, Some((user, None)))).into_response())
}

/// GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}
async fn context(
    State(s): State<AppState>,
    req: Ruma<get_context::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let limit = u64::from(req.body.limit) as usize;
    let (ev, before, after, state) = s
        .rooms
        .context(user, &req.body.room_id, &req.body.event_id, limit)
        .await?;
    Ok(Json(json!({
        "event": ev.to_client_value(true, Some((user, None))),
        "events_before": client_events(user, &before.events),
        "events_after": client_events(user, &after.events),
        "start": before.end,
        "end": after.end,
        "state": client_events(user, &state),
    }))
    .into_response())
}

pub(crate) fn event_filter(f: &ruma::api::client::filter::RoomEventFilter) -> EventFilter {
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

/// GET /_matrix/client/v3/rooms/{roomId}/messages
async fn messages(
    State(s): State<AppState>,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = &req.session()?.user_id;
    let b = &req.body;
    let dir = if b.dir == Direction::Backward {
        Dir::Backward
    } else {
        Dir::Forward
    };
    let limit = u64::from(b.limit).min(1000) as usize;
    let page = s
        .rooms
        .messages(
            user,
            &b.room_id,
            b.from.as_deref(),
            b.to.as_deref(),
            dir,
            limit,
        )
        .await?;
    let filter = event_filter(&b.filter);
    let chunk: Vec<StoredEvent> = page
        .events
        .into_iter()
        .filter(|e| filter.allows(&e.pdu.kind.to_string(), Some(e.pdu.sender.as_str())))
        .collect();
    let start = b
        .from
        .clone()
        .unwrap_or_else(|| sandcat_core::services::rooms::make_token(i64::MAX));
    let mut body = json!({ "start": start, "chunk": client_events(user, &chunk) });
    if let Some(end) = page.end {
        set(&mut body, "end", json!(end));
    }
    Ok(Json(body).into_response())
}

#[allow(clippy::too_many_arguments)]
async fn relations_common(
    s: &AppState,
    user: &ruma::UserId,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    rel: Option<&str>,
    kind: Option<&str>,
    from: Option<&str>,
    limit: Option<UInt>,
) -> Result<axum::response::Response, ApiError> {
    let limit = limit.map(|l| u64::from(l) as usize).unwrap_or(50);
    let page = s
        .rooms
        .relations(user, room_id, event_id, rel, kind, from, limit)
        .await?;
    Ok(Json(chunk_page(user, page)).into_response())
}

/// A page of events as `/relations` and `/threads` answer it: the events and the token of
/// the next page.
fn chunk_page(user: &ruma::UserId, page: Page) -> Value {
    let mut body = json!({ "chunk": client_events(user, &page.events) });
    if let Some(end) = page.end {
        set(&mut body, "next_batch", json!(end));
    }
    body
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
async fn relations(
    State(s): State<AppState>,
    req: Ruma<get_relating_events::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    relations_common(
        &s,
        &req.session()?.user_id,
        &b.room_id,
        &b.event_id,
        None,
        None,
        b.from.as_deref(),
        b.limit,
    )
    .await
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}
async fn relations_rel(
    State(s): State<AppState>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    relations_common(
        &s,
        &req.session()?.user_id,
        &b.room_id,
        &b.event_id,
        Some(b.rel_type.as_ref()),
        None,
        b.from.as_deref(),
        b.limit,
    )
    .await
}

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}
async fn relations_rel_type(
    State(s): State<AppState>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    relations_common(
        &s,
        &req.session()?.user_id,
        &b.room_id,
        &b.event_id,
        Some(b.rel_type.as_ref()),
        Some(&b.event_type.to_string()),
        b.from.as_deref(),
        b.limit,
    )
    .await
}

/// PUT /_matrix/client/v3/directory/room/{roomAlias}
async fn set_alias(
    State(s): State<AppState>,
    req: Ruma<create_alias::v3::Request>,
) -> ApiResult<create_alias::v3::Response> {
    s.appservices
        .check_alias_claim(&req.body.room_alias, req.session()?.appservice.as_deref())?;
    s.rooms
        .set_alias(
            req.session()?,
            req.body.room_alias.as_str(),
            &req.body.room_id,
        )
        .await?;
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

/// GET /_matrix/client/v3/directory/room/{roomAlias}
async fn get_alias(
    State(s): State<AppState>,
    req: Ruma<get_alias::v3::Request>,
) -> ApiResult<get_alias::v3::Response> {
    let (room_id, servers) =
        super::appservice::locate_room(&s, req.body.room_alias.as_str()).await?;
    Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)))
}

/// DELETE /_matrix/client/v3/directory/room/{roomAlias}
async fn delete_alias(
    State(s): State<AppState>,
    req: Ruma<delete_alias::v3::Request>,
) -> ApiResult<delete_alias::v3::Response> {
    s.rooms
        .delete_alias(req.session()?, req.body.room_alias.as_str())
        .await?;
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

/// A directory page as the client API answers it.
fn public_page_body(page: PublicRoomsPage) -> Value {
    let mut body = json!({ "chunk": page.chunk });
    for (key, value) in [
        ("next_batch", page.next_batch.map(Value::from)),
        ("prev_batch", page.prev_batch.map(Value::from)),
        ("total_room_count_estimate", page.total.map(Value::from)),
    ] {
        if let Some(v) = value {
            set(&mut body, key, v);
        }
    }
    body
}

/// GET /_matrix/client/v3/publicRooms
async fn public_rooms(
    State(s): State<AppState>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    let query = PublicRoomsQuery {
        filter: None,
        since: b.since.clone(),
        limit: b.limit.map(|l| u64::from(l) as usize),
    };
    let page = s
        .rooms
        .public_rooms_page(b.server.as_deref(), &query)
        .await?;
    Ok(Json(public_page_body(page)).into_response())
}

/// POST /_matrix/client/v3/publicRooms
async fn public_rooms_filtered(
    State(s): State<AppState>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    let query = PublicRoomsQuery {
        filter: b.filter.generic_search_term.clone(),
        since: b.since.clone(),
        limit: b.limit.map(|l| u64::from(l) as usize),
    };
    let page = s
        .rooms
        .public_rooms_page(b.server.as_deref(), &query)
        .await?;
    Ok(Json(public_page_body(page)).into_response())
}

/// GET /_matrix/client/v1/rooms/{roomId}/hierarchy
async fn hierarchy(
    State(s): State<AppState>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    let as_usize = |v: Option<UInt>| v.map(|l| u64::from(l).min(u32::MAX.into()) as usize);
    let query = HierarchyQuery {
        from: b.from.clone(),
        limit: as_usize(b.limit),
        max_depth: as_usize(b.max_depth),
        suggested_only: b.suggested_only,
    };
    let page = s
        .rooms
        .hierarchy(&req.session()?.user_id, &b.room_id, &query)
        .await?;
    let mut body = json!({ "rooms": page.rooms });
    if let Some(next) = page.next_batch {
        set(&mut body, "next_batch", json!(next));
    }
    Ok(Json(body).into_response())
}

/// GET /_matrix/client/v1/rooms/{roomId}/threads
async fn threads(
    State(s): State<AppState>,
    req: Ruma<get_threads::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let b = &req.body;
    let user = &req.session()?.user_id;
    let participated = b.include == get_threads::v1::IncludeThreads::Participated;
    let limit = b.limit.map(|l| u64::from(l) as usize).unwrap_or(50);
    let page = s
        .rooms
        .threads(user, &b.room_id, participated, b.from.as_deref(), limit)
        .await?;
    Ok(Json(chunk_page(user, page)).into_response())
}

/// GET /_matrix/client/v1/room_summary/{roomIdOrAlias}
async fn summary(
    State(s): State<AppState>,
    req: Ruma<get_summary::v1::Request>,
) -> Result<axum::response::Response, ApiError> {
    let (room_id, mut via) =
        super::appservice::locate_room(&s, req.body.room_id_or_alias.as_str()).await?;
    via.extend(req.body.via.iter().cloned());
    let user = req.session.as_ref().map(|s| s.user_id.clone());
    let (mut body, membership) = s
        .rooms
        .room_summary(user.as_deref(), &room_id, &via)
        .await?;
    if let Some(m) = membership {
        set(&mut body, "membership", json!(m));
    }
    Ok(Json(body).into_response())
}

/// GET /_matrix/client/v3/rooms/{roomId}/aliases
async fn room_aliases(
    State(s): State<AppState>,
    req: Ruma<aliases::v3::Request>,
) -> ApiResult<aliases::v3::Response> {
    let aliases = s
        .rooms
        .aliases(&req.session()?.user_id, &req.body.room_id)
        .await?;
    Ok(RumaResponse(aliases::v3::Response::new(aliases)))
}

/// GET /_matrix/client/v3/directory/list/room/{roomId}
async fn get_visibility(
    State(s): State<AppState>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<get_room_visibility::v3::Response> {
    if s.rooms
        .store()
        .room_version(&req.body.room_id)
        .await?
        .is_none()
    {
        return Err(Error::not_found("unknown room").into());
    }
    let public = s.rooms.store().is_public(&req.body.room_id).await?;
    Ok(RumaResponse(get_room_visibility::v3::Response::new(
        if public {
            Visibility::Public
        } else {
            Visibility::Private
        },
    )))
}

/// PUT /_matrix/client/v3/directory/list/room/{roomId}
async fn set_visibility(
    State(s): State<AppState>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    s.rooms
        .set_visibility(
            req.session()?,
            &req.body.room_id,
            req.body.visibility == Visibility::Public,
        )
        .await?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}
