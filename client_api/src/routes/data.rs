//! Account data, tags, typing, receipts, read markers, presence, push rules, user directory.

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data,
            set_room_account_data,
        },
        presence::{get_presence, set_presence},
        push::{
            delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
            get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
            set_pushrule_enabled,
        },
        read_marker::set_read_marker,
        receipt::create_receipt,
        tag::{create_tag, delete_tag, get_tags},
        typing::create_typing_event,
        user_directory::search_users,
    },
    events::receipt::ReceiptThread,
    UserId,
};
use sandcat_core::{services::Session, Error, ErrorCode};
use serde_json::{json, Value};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    ApiError, AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<set_global_account_data::v3::Request, _, _>(set_global)
        .ruma::<get_global_account_data::v3::Request, _, _>(get_global)
        .ruma::<set_room_account_data::v3::Request, _, _>(set_room)
        .ruma::<get_room_account_data::v3::Request, _, _>(get_room)
        .ruma::<get_tags::v3::Request, _, _>(tags)
        .ruma::<create_tag::v3::Request, _, _>(put_tag)
        .ruma::<delete_tag::v3::Request, _, _>(del_tag)
        .ruma::<create_typing_event::v3::Request, _, _>(typing)
        .ruma::<create_receipt::v3::Request, _, _>(receipt)
        .ruma::<set_read_marker::v3::Request, _, _>(read_markers)
        .ruma::<set_presence::v3::Request, _, _>(put_presence)
        .ruma::<get_presence::v3::Request, _, _>(presence)
        .ruma::<get_pushrules_all::v3::Request, _, _>(push_rules)
        .ruma::<get_pushrules_global_scope::v3::Request, _, _>(push_rules_global)
        .ruma::<get_pushrule::v3::Request, _, _>(push_rule)
        .ruma::<set_pushrule::v3::Request, _, _>(set_push_rule)
        .ruma::<delete_pushrule::v3::Request, _, _>(delete_push_rule)
        .ruma::<get_pushrule_enabled::v3::Request, _, _>(push_rule_enabled)
        .ruma::<set_pushrule_enabled::v3::Request, _, _>(set_push_rule_enabled)
        .ruma::<get_pushrule_actions::v3::Request, _, _>(push_rule_actions)
        .ruma::<set_pushrule_actions::v3::Request, _, _>(set_push_rule_actions)
        .ruma::<search_users::v3::Request, _, _>(search)
}

fn own(session: &Session, user_id: &UserId) -> Result<(), ApiError> {
    if session.user_id != user_id {
        return Err(Error::forbidden("you may only access your own data").into());
    }
    Ok(())
}

fn content<T>(raw: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError(Error::bad_json(e.to_string())))
}

/// PUT /_matrix/client/v3/user/{userId}/account_data/{type}
async fn set_global(
    State(s): State<AppState>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<set_global_account_data::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    s.data
        .set_account_data(
            &req.body.user_id,
            None,
            &req.body.event_type.to_string(),
            content(&req.body.data)?,
        )
        .await?;
    Ok(RumaResponse(set_global_account_data::v3::Response::new()))
}

/// GET /_matrix/client/v3/user/{userId}/account_data/{type}
async fn get_global(
    State(s): State<AppState>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    own(req.session()?, &req.body.user_id)?;
    Ok(Json(
        s.data
            .account_data(&req.body.user_id, None, &req.body.event_type.to_string())
            .await?,
    )
    .into_response())
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
async fn set_room(
    State(s): State<AppState>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<set_room_account_data::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    s.data
        .set_account_data(
            &req.body.user_id,
            Some(&req.body.room_id),
            &req.body.event_type.to_string(),
            content(&req.body.data)?,
        )
        .await?;
    Ok(RumaResponse(set_room_account_data::v3::Response::new()))
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}
async fn get_room(
    State(s): State<AppState>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    own(req.session()?, &req.body.user_id)?;
    Ok(Json(
        s.data
            .account_data(
                &req.body.user_id,
                Some(&req.body.room_id),
                &req.body.event_type.to_string(),
            )
            .await?,
    )
    .into_response())
}

/// GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags
async fn tags(
    State(s): State<AppState>,
    req: Ruma<get_tags::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    own(req.session()?, &req.body.user_id)?;
    Ok(Json(s.data.tags(&req.body.user_id, &req.body.room_id).await?).into_response())
}

/// PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
async fn put_tag(
    State(s): State<AppState>,
    req: Ruma<create_tag::v3::Request>,
) -> ApiResult<create_tag::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    let info = serde_json::to_value(&req.body.tag_info)
        .map_err(|e| ApiError(Error::bad_json(e.to_string())))?;
    s.data
        .set_tag(
            &req.body.user_id,
            &req.body.room_id,
            &req.body.tag,
            Some(info),
        )
        .await?;
    Ok(RumaResponse(create_tag::v3::Response::new()))
}

/// DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}
async fn del_tag(
    State(s): State<AppState>,
    req: Ruma<delete_tag::v3::Request>,
) -> ApiResult<delete_tag::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    s.data
        .set_tag(&req.body.user_id, &req.body.room_id, &req.body.tag, None)
        .await?;
    Ok(RumaResponse(delete_tag::v3::Response::new()))
}

/// PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}
async fn typing(
    State(s): State<AppState>,
    req: Ruma<create_typing_event::v3::Request>,
) -> ApiResult<create_typing_event::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    let (on, timeout) = match &req.body.state {
        create_typing_event::v3::Typing::Yes(info) => (true, info.timeout.as_millis() as u64),
        _ => (false, 0),
    };
    s.data
        .typing(req.session()?, &req.body.room_id, on, timeout)
        .await?;
    Ok(RumaResponse(create_typing_event::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}
async fn receipt(
    State(s): State<AppState>,
    req: Ruma<create_receipt::v3::Request>,
) -> ApiResult<create_receipt::v3::Response> {
    let b = &req.body;
    let thread = match &b.thread {
        ReceiptThread::Unthreaded => None,
        other => other.as_str().map(str::to_owned),
    };
    s.data
        .receipt(
            req.session()?,
            &b.room_id,
            b.receipt_type.as_str(),
            &b.event_id,
            thread.as_deref(),
        )
        .await?;
    Ok(RumaResponse(create_receipt::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/read_markers
async fn read_markers(
    State(s): State<AppState>,
    req: Ruma<set_read_marker::v3::Request>,
) -> ApiResult<set_read_marker::v3::Response> {
    let b = &req.body;
    if let Some(e) = &b.fully_read {
        s.data
            .receipt(req.session()?, &b.room_id, "m.fully_read", e, None)
            .await?;
    }
    if let Some(e) = &b.read_receipt {
        s.data
            .receipt(req.session()?, &b.room_id, "m.read", e, None)
            .await?;
    }
    if let Some(e) = &b.private_read_receipt {
        s.data
            .receipt(req.session()?, &b.room_id, "m.read.private", e, None)
            .await?;
    }
    Ok(RumaResponse(set_read_marker::v3::Response::new()))
}

/// PUT /_matrix/client/v3/presence/{userId}/status
async fn put_presence(
    State(s): State<AppState>,
    req: Ruma<set_presence::v3::Request>,
) -> ApiResult<set_presence::v3::Response> {
    own(req.session()?, &req.body.user_id)?;
    s.data.set_presence(
        &req.body.user_id,
        req.body.presence.as_str(),
        req.body.status_msg.clone(),
    )?;
    Ok(RumaResponse(set_presence::v3::Response::new()))
}

/// GET /_matrix/client/v3/presence/{userId}/status
async fn presence(
    State(s): State<AppState>,
    req: Ruma<get_presence::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    if s.accounts.user(&req.body.user_id).await?.is_none() {
        return Err(Error::not_found("unknown user").into());
    }
    let mut v = s.data.presence(&req.body.user_id);
    if let Value::Object(m) = &mut v {
        m.remove("user_id");
    }
    Ok(Json(v).into_response())
}

/// GET /_matrix/client/v3/pushrules/
async fn push_rules(
    State(s): State<AppState>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<get_pushrules_all::v3::Response> {
    Ok(RumaResponse(get_pushrules_all::v3::Response::new(
        s.data.push_rules(&req.session()?.user_id).await?,
    )))
}

/// GET /_matrix/client/v3/pushrules/global/
async fn push_rules_global(
    State(s): State<AppState>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<get_pushrules_global_scope::v3::Response> {
    Ok(RumaResponse(get_pushrules_global_scope::v3::Response::new(
        s.data.push_rules(&req.session()?.user_id).await?,
    )))
}

fn no_rule() -> ApiError {
    ApiError(Error::not_found("push rule not found"))
}

fn rule_error(e: impl std::fmt::Display) -> ApiError {
    ApiError(Error::matrix(ErrorCode::BadJson, e.to_string()))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
async fn push_rule(
    State(s): State<AppState>,
    req: Ruma<get_pushrule::v3::Request>,
) -> ApiResult<get_pushrule::v3::Response> {
    let rules = s.data.push_rules(&req.session()?.user_id).await?;
    let rule = rules
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_rule)?;
    Ok(RumaResponse(get_pushrule::v3::Response::new(
        rule.to_owned().into(),
    )))
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
async fn set_push_rule(
    State(s): State<AppState>,
    req: Ruma<set_pushrule::v3::Request>,
) -> ApiResult<set_pushrule::v3::Response> {
    let user = &req.session()?.user_id;
    let mut rules = s.data.push_rules(user).await?;
    rules
        .insert(
            req.body.rule.clone(),
            req.body.after.as_deref(),
            req.body.before.as_deref(),
        )
        .map_err(rule_error)?;
    s.data.set_push_rules(user, &rules).await?;
    Ok(RumaResponse(set_pushrule::v3::Response::new()))
}

/// DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}
async fn delete_push_rule(
    State(s): State<AppState>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<delete_pushrule::v3::Response> {
    let user = &req.session()?.user_id;
    let mut rules = s.data.push_rules(user).await?;
    if rules
        .get(req.body.kind.clone(), &req.body.rule_id)
        .is_none()
    {
        return Err(no_rule());
    }
    rules
        .remove(req.body.kind.clone(), &req.body.rule_id)
        .map_err(rule_error)?;
    s.data.set_push_rules(user, &rules).await?;
    Ok(RumaResponse(delete_pushrule::v3::Response::new()))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
async fn push_rule_enabled(
    State(s): State<AppState>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let rules = s.data.push_rules(&req.session()?.user_id).await?;
    let rule = rules
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_rule)?;
    Ok(RumaResponse(get_pushrule_enabled::v3::Response::new(
        rule.enabled(),
    )))
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled
async fn set_push_rule_enabled(
    State(s): State<AppState>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> ApiResult<set_pushrule_enabled::v3::Response> {
    let user = &req.session()?.user_id;
    let mut rules = s.data.push_rules(user).await?;
    rules
        .set_enabled(req.body.kind.clone(), &req.body.rule_id, req.body.enabled)
        .map_err(|_| no_rule())?;
    s.data.set_push_rules(user, &rules).await?;
    Ok(RumaResponse(set_pushrule_enabled::v3::Response::new()))
}

/// GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
async fn push_rule_actions(
    State(s): State<AppState>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<get_pushrule_actions::v3::Response> {
    let rules = s.data.push_rules(&req.session()?.user_id).await?;
    let rule = rules
        .get(req.body.kind.clone(), &req.body.rule_id)
        .ok_or_else(no_rule)?;
    Ok(RumaResponse(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    )))
}

/// PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions
async fn set_push_rule_actions(
    State(s): State<AppState>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> ApiResult<set_pushrule_actions::v3::Response> {
    let user = &req.session()?.user_id;
    let mut rules = s.data.push_rules(user).await?;
    rules
        .set_actions(
            req.body.kind.clone(),
            &req.body.rule_id,
            req.body.actions.clone(),
        )
        .map_err(|_| no_rule())?;
    s.data.set_push_rules(user, &rules).await?;
    Ok(RumaResponse(set_pushrule_actions::v3::Response::new()))
}

/// POST /_matrix/client/v3/user_directory/search
async fn search(
    State(s): State<AppState>,
    req: Ruma<search_users::v3::Request>,
) -> Result<axum::response::Response, ApiError> {
    let limit = u64::from(req.body.limit).clamp(1, 100) as usize;
    let found = s.accounts.search(&req.body.search_term, limit + 1).await?;
    let limited = found.len() > limit;
    let results: Vec<Value> = found
        .into_iter()
        .take(limit)
        .map(|u| crate::routes::present(json!({ "user_id": u.user_id, "display_name": u.displayname, "avatar_url": u.avatar_url })))
        .collect();
    Ok(Json(json!({ "results": results, "limited": limited })).into_response())
}
