//! Reports of events, rooms and users, for the server's admins (`sandcat reports`).

use axum::extract::State;
use ruma::api::client::{
    reporting::report_user,
    room::{report_content, report_room},
};

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<report_content::v3::Request, _, _>(event)
        .ruma::<report_room::v3::Request, _, _>(room)
        .ruma::<report_user::v3::Request, _, _>(user)
}

/// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
async fn event(
    State(s): State<AppState>,
    req: Ruma<report_content::v3::Request>,
) -> ApiResult<report_content::v3::Response> {
    let b = &req.body;
    s.reports
        .event(req.session()?, &b.room_id, &b.event_id, b.reason.as_deref())
        .await?;
    Ok(RumaResponse(report_content::v3::Response::new()))
}

/// POST /_matrix/client/v3/rooms/{roomId}/report
async fn room(
    State(s): State<AppState>,
    req: Ruma<report_room::v3::Request>,
) -> ApiResult<report_room::v3::Response> {
    let b = &req.body;
    s.reports
        .room(req.session()?, &b.room_id, &b.reason)
        .await?;
    Ok(RumaResponse(report_room::v3::Response::new()))
}

/// POST /_matrix/client/v3/users/{userId}/report
async fn user(
    State(s): State<AppState>,
    req: Ruma<report_user::v3::Request>,
) -> ApiResult<report_user::v3::Response> {
    let b = &req.body;
    s.reports
        .user(req.session()?, &b.user_id, &b.reason)
        .await?;
    Ok(RumaResponse(report_user::v3::Response::new()))
}
