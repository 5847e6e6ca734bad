//! User-interactive authentication: the 401 that lists flows, and its sessions.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use ruma::api::client::uiaa::{AuthData, UserIdentifier};
use sandcat_core::{json::set, services::Session};
use serde_json::json;

use crate::ruma_wrapper::ApiError;

/// UIA sessions: an id per challenge (stages are checked on each request, so nothing about a
/// session is kept).
#[derive(Default)]
pub struct Sessions;

impl Sessions {
    /// A 401 listing one flow with one stage, with a fresh session id.
    pub fn challenge(&self, stage: &str, error: Option<(&str, &str)>) -> Response {
        self.challenge_any(&[stage], error)
    }

    /// A 401 listing flows of one stage each (any one completes it), with a fresh session
    /// id.
    pub fn challenge_any(&self, stages: &[&str], error: Option<(&str, &str)>) -> Response {
        let session = sandcat_core::token::random_string(16);
        let flows: Vec<serde_json::Value> =
            stages.iter().map(|s| json!({ "stages": [s] })).collect();
        let mut body = json!({
            "flows": flows,
            "params": {},
            "session": session,
        });
        if let Some((code, msg)) = error {
            set(&mut body, "errcode", json!(code));
            set(&mut body, "error", json!(msg));
        }
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    }
}

/// The stage that proves an address by a mailed token.
pub(crate) const EMAIL_STAGE: &str = "m.login.email.identity";

/// The outcome of an `m.login.email.identity` stage: a session not validated (or unknown)
/// is the challenge again with the reason; any other error stays what it is.
pub(crate) fn threepid_checked<T>(
    s: &crate::AppState,
    stages: &[&str],
    checked: sandcat_core::Result<T>,
) -> Result<T, UiaaError> {
    match checked {
        Err(sandcat_core::Error::Matrix {
            code: sandcat_core::ErrorCode::ThreepidAuthFailed,
            message,
        }) => Err(UiaaError::challenge(
            s.uiaa
                .challenge_any(stages, Some(("M_UNAUTHORIZED", &message))),
        )),
        other => Ok(other?),
    }
}

/// Either a Matrix error or a UIA challenge.
pub(crate) enum UiaaError {
    Api(ApiError),
    Challenge(Box<Response>),
}

impl UiaaError {
    pub(crate) fn challenge(r: Response) -> Self {
        UiaaError::Challenge(Box::new(r))
    }
}

impl From<ApiError> for UiaaError {
    fn from(e: ApiError) -> Self {
        UiaaError::Api(e)
    }
}

impl From<sandcat_core::Error> for UiaaError {
    fn from(e: sandcat_core::Error) -> Self {
        UiaaError::Api(ApiError(e))
    }
}

impl IntoResponse for UiaaError {
    fn into_response(self) -> Response {
        match self {
            UiaaError::Api(e) => e.into_response(),
            UiaaError::Challenge(r) => *r,
        }
    }
}

/// Checks an `m.login.password` UIA stage for the session's own user.
pub(crate) async fn password_stage(
    s: &crate::AppState,
    session: &Session,
    auth: &Option<AuthData>,
) -> Result<(), UiaaError> {
    match auth {
        Some(AuthData::Password(p)) => {
            let claimed = identifier_user(&p.identifier)
                .map(|u| s.accounts.user_id_from(u))
                .transpose()?;
            if claimed.is_some_and(|c| c != session.user_id) {
                return Err(UiaaError::challenge(s.uiaa.challenge(
                    "m.login.password",
                    Some(("M_FORBIDDEN", "wrong user")),
                )));
            }
            if s.accounts
                .check_password(&session.user_id, &p.password)
                .await?
            {
                Ok(())
            } else {
                Err(UiaaError::challenge(s.uiaa.challenge(
                    "m.login.password",
                    Some(("M_FORBIDDEN", "invalid password")),
                )))
            }
        }
        _ => Err(UiaaError::challenge(
            s.uiaa.challenge("m.login.password", None),
        )),
    }
}

pub(crate) fn identifier_user(id: &UserIdentifier) -> Option<&str> {
    match id {
        UserIdentifier::Matrix(m) => Some(&m.user),
        _ => None,
    }
}
