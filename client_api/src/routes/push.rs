//! Pushers (`/pushers`, `/pushers/set`) and the notification list (`/notifications`).

use axum::extract::State;
use ruma::{
    api::client::push::{get_notifications, get_pushers, set_pusher, Pusher, PusherKind},
    push::PushFormat as RumaPushFormat,
    MilliSecondsSinceUnixEpoch, UInt,
};
use sandcat_core::{
    ports::PushFormat,
    services::push::{NewPusher, NotificationsPage},
    Error,
};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<get_pushers::v3::Request, _, _>(pushers)
        .ruma::<set_pusher::v3::Request, _, _>(set)
        .ruma::<get_notifications::v3::Request, _, _>(notifications)
}

/// GET /_matrix/client/v3/pushers
async fn pushers(
    State(s): State<AppState>,
    req: Ruma<get_pushers::v3::Request>,
) -> ApiResult<get_pushers::v3::Response> {
    let stored = s.push.pushers(&req.session()?.user_id).await?;
    // Each was parsed as a `Pusher` when it was set.
    let pushers = stored
        .into_iter()
        .filter_map(|p| serde_json::from_value::<Pusher>(p.body).ok())
        .collect();
    Ok(RumaResponse(get_pushers::v3::Response::new(pushers)))
}

/// POST /_matrix/client/v3/pushers/set
async fn set(
    State(s): State<AppState>,
    req: Ruma<set_pusher::v3::Request>,
) -> ApiResult<set_pusher::v3::Response> {
    let session = req.session()?;
    match &req.body.action {
        set_pusher::v3::PusherAction::Post(post) => {
            let pusher = &post.pusher;
            let PusherKind::Http(http) = &pusher.kind else {
                return Err(Error::invalid_param(
                    "only http pushers are supported (no notification is mailed yet)",
                )
                .into());
            };
            let format = match &http.format {
                None => PushFormat::Full,
                Some(RumaPushFormat::EventIdOnly) => PushFormat::EventIdOnly,
                Some(other) => {
                    return Err(Error::invalid_param(format!(
                        "unknown push format {}",
                        other.as_str()
                    ))
                    .into())
                }
            };
            let pusher = NewPusher {
                app_id: pusher.ids.app_id.clone(),
                pushkey: pusher.ids.pushkey.clone(),
                url: http.url.clone(),
                format,
                body: serde_json::to_value(pusher).map_err(Error::from)?,
                append: post.append,
            };
            s.push.set_pusher(session, pusher).await?;
        }
        set_pusher::v3::PusherAction::Delete(ids) => {
            s.push
                .delete_pusher(&session.user_id, &ids.app_id, &ids.pushkey)
                .await?;
        }
        _ => return Err(Error::invalid_param("unknown pusher action").into()),
    }
    Ok(RumaResponse(set_pusher::v3::Response::new()))
}

/// GET /_matrix/client/v3/notifications
async fn notifications(
    State(s): State<AppState>,
    req: Ruma<get_notifications::v3::Request>,
) -> ApiResult<get_notifications::v3::Response> {
    let user = &req.session()?.user_id;
    let b = &req.body;
    let NotificationsPage {
        notifications,
        next_token,
    } = s
        .push
        .notifications(
            user,
            b.from.as_deref(),
            b.limit.map(u64::from),
            b.only.as_deref(),
        )
        .await?;
    let notifications = notifications
        .into_iter()
        .map(|n| {
            get_notifications::v3::Notification::new(
                n.actions,
                n.event.to_raw(true, Some((user, None))),
                n.read,
                n.room_id,
                MilliSecondsSinceUnixEpoch(UInt::new_saturating(n.ts)),
            )
        })
        .collect();
    let mut response = get_notifications::v3::Response::new(notifications);
    response.next_token = next_token;
    Ok(RumaResponse(response))
}
