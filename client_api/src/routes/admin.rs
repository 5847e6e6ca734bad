//! Account moderation by the server's administrators: suspension and locking (spec 1.18).

use axum::extract::State;
use ruma::api::client::admin::{is_user_locked, is_user_suspended, lock_user, suspend_user};
use sandcat_core::ports::AccountFlag;

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    AppState, RumaRouter,
};

pub(crate) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<is_user_suspended::v1::Request, _, _>(suspended)
        .ruma::<suspend_user::v1::Request, _, _>(suspend)
        .ruma::<is_user_locked::v1::Request, _, _>(locked)
        .ruma::<lock_user::v1::Request, _, _>(lock)
}

/// GET /_matrix/client/v1/admin/suspend/{userId}
async fn suspended(
    State(s): State<AppState>,
    req: Ruma<is_user_suspended::v1::Request>,
) -> ApiResult<is_user_suspended::v1::Response> {
    let on = s
        .accounts
        .account_flag(req.session()?, &req.body.user_id, AccountFlag::Suspended)
        .await?;
    Ok(RumaResponse(is_user_suspended::v1::Response::new(on)))
}

/// PUT /_matrix/client/v1/admin/suspend/{userId}
async fn suspend(
    State(s): State<AppState>,
    req: Ruma<suspend_user::v1::Request>,
) -> ApiResult<suspend_user::v1::Response> {
    let b = &req.body;
    s.accounts
        .set_account_flag(
            req.session()?,
            &b.user_id,
            AccountFlag::Suspended,
            b.suspended,
        )
        .await?;
    Ok(RumaResponse(suspend_user::v1::Response::new(b.suspended)))
}

/// GET /_matrix/client/v1/admin/lock/{userId}
async fn locked(
    State(s): State<AppState>,
    req: Ruma<is_user_locked::v1::Request>,
) -> ApiResult<is_user_locked::v1::Response> {
    let on = s
        .accounts
        .account_flag(req.session()?, &req.body.user_id, AccountFlag::Locked)
        .await?;
    Ok(RumaResponse(is_user_locked::v1::Response::new(on)))
}

/// PUT /_matrix/client/v1/admin/lock/{userId}
async fn lock(
    State(s): State<AppState>,
    req: Ruma<lock_user::v1::Request>,
) -> ApiResult<lock_user::v1::Response> {
    let b = &req.body;
    s.accounts
        .set_account_flag(req.session()?, &b.user_id, AccountFlag::Locked, b.locked)
        .await?;
    Ok(RumaResponse(lock_user::v1::Response::new(b.locked)))
}
