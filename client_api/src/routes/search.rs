//! `POST /_matrix/client/v3/search`: message search (`room_events`), answered in the spec's
//! shape (results with rank and context, count, highlights, next_batch).

use axum::{extract::State, response::IntoResponse, Json};
use ruma::api::client::search::search_events::v3::{
    self as search, GroupingKey, OrderBy, SearchKeys,
};
use sandcat_core::{
    ports::SearchOrder,
    services::rooms::{ContextRequest, SearchGrouping, SearchRequest, SearchResults},
    Error,
};
use serde_json::{json, Map, Value};

use super::rooms::client_events;
use crate::{ruma_wrapper::Ruma, ApiError, AppState, RumaRouter};

/// The longest search term taken.
const MAX_TERM_BYTES: usize = 1024;

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<search::Request, _, _>(search_events)
}

/// POST /_matrix/client/v3/search
async fn search_events(
    State(s): State<AppState>,
    req: Ruma<search::Request>,
) -> Result<axum::response::Response, ApiError> {
    let user = req.session()?.user_id.clone();
    let b = req.body;
    let Some(criteria) = b.search_categories.room_events else {
        return Ok(Json(json!({ "search_categories": {} })).into_response());
    };
    if criteria.search_term.len() > MAX_TERM_BYTES {
        return Err(Error::invalid_param(format!(
            "a search term takes at most {MAX_TERM_BYTES} bytes"
        ))
        .into());
    }
    let types = criteria
        .keys
        .unwrap_or_default()
        .iter()
        .filter_map(|k| match k {
            SearchKeys::ContentBody => Some("m.room.message"),
            SearchKeys::ContentName => Some("m.room.name"),
            SearchKeys::ContentTopic => Some("m.room.topic"),
            _ => None,
        })
        .collect();
    let order = match criteria.order_by {
        Some(OrderBy::Recent) => SearchOrder::Recent,
        _ => SearchOrder::Rank,
    };
    let ctx = &criteria.event_context;
    let context =
        (u64::from(ctx.before_limit) > 0 || u64::from(ctx.after_limit) > 0 || ctx.include_profile)
            .then(|| ContextRequest {
                before: usize::try_from(u64::from(ctx.before_limit)).unwrap_or(usize::MAX),
                after: usize::try_from(u64::from(ctx.after_limit)).unwrap_or(usize::MAX),
                profiles: ctx.include_profile,
            });
    let filter = &criteria.filter;
    let request = SearchRequest {
        term: criteria.search_term.clone(),
        rooms: filter.rooms.clone(),
        types,
        order,
        limit: filter
            .limit
            .map_or(10, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)),
        next_batch: b.next_batch,
        context,
        include_state: criteria.include_state.unwrap_or(false),
        group_by: criteria
            .groupings
            .group_by
            .iter()
            .filter_map(|g| match g.key {
                Some(GroupingKey::RoomId) => Some(SearchGrouping::RoomId),
                Some(GroupingKey::Sender) => Some(SearchGrouping::Sender),
                _ => None,
            })
            .collect(),
    };
    let found = s.rooms.search(&user, request).await?;
    Ok(
        Json(json!({ "search_categories": { "room_events": body(&user, &found) } }))
            .into_response(),
    )
}

fn body(user: &ruma::UserId, found: &SearchResults) -> Value {
    let results: Vec<Value> = found
        .results
        .iter()
        .map(|r| {
            let mut entry = Map::new();
            entry.insert("rank".into(), json!(r.rank));
            entry.insert(
                "result".into(),
                r.event.to_client_value(true, Some((user, None))),
            );
            if let Some(c) = &r.context {
                let profiles: Map<String, Value> = c
                    .profiles
                    .iter()
                    .map(|(u, (name, avatar))| {
                        (
                            u.to_string(),
                            json!({ "displayname": name, "avatar_url": avatar }),
                        )
                    })
                    .collect();
                entry.insert(
                    "context".into(),
                    json!({
                        "events_before": client_events(user, &c.before),
                        "events_after": client_events(user, &c.after),
                        "start": c.start,
                        "end": c.end,
                        "profile_info": profiles,
                    }),
                );
            }
            Value::Object(entry)
        })
        .collect();
    let mut out = Map::new();
    out.insert("count".into(), json!(found.count));
    out.insert("results".into(), Value::Array(results));
    out.insert("highlights".into(), json!(found.highlights));
    if let Some(n) = &found.next_batch {
        out.insert("next_batch".into(), json!(n));
    }
    if !found.state.is_empty() {
        let state: Map<String, Value> = found
            .state
            .iter()
            .map(|(room, evs)| (room.to_string(), Value::Array(client_events(user, evs))))
            .collect();
        out.insert("state".into(), Value::Object(state));
    }
    if !found.groups.is_empty() {
        let groups: Map<String, Value> = found
            .groups
            .iter()
            .map(|(by, groups)| {
                let key = match by {
                    SearchGrouping::RoomId => "room_id",
                    SearchGrouping::Sender => "sender",
                };
                let of_key: Map<String, Value> = groups
                    .iter()
                    .map(|g| {
                        (
                            g.key.clone(),
                            json!({ "results": g.event_ids, "order": g.order }),
                        )
                    })
                    .collect();
                (key.to_owned(), Value::Object(of_key))
            })
            .collect();
        out.insert("groups".into(), Value::Object(groups));
    }
    Value::Object(out)
}
