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

/// What the handler must do next.
pub enum Uiaa {
    /// The stage is complete.
    Done,
    /// Reply with this 401.
    Challenge(Response),
}

impl Sessions {
    /// A 401 listing one flow with one stage, with a fresh session id.
    pub fn challenge(&self, stage: &str, error: Option<(&str, &str)>) -> Response {
        let session = sandcat_core::token::random_string(16);
        let mut body = json!({
            "flows": [{ "stages": [stage] }],
            "params": {},
            "session": session,
        });
        if let Some((code, msg)) = error {
            set(&mut body, "errcode", json!(code));
            set(&mut body, "error", json!(msg));
        }
        (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    }

    /// `m.login.dummy`: any request carrying it passes.
    pub fn dummy(&self, auth: &Option<AuthData>) -> Uiaa {
        match auth {
            Some(AuthData::Dummy(_)) => Uiaa::Done,
            _ => Uiaa::Challenge(self.challenge("m.login.dummy", None)),
        }
    }
}

impl From<Uiaa> for Result<(), Response> {
    fn from(u: Uiaa) -> Self {
        match u {
            Uiaa::Done => Ok(()),
            Uiaa::Challenge(r) => Err(r),
        }
    }
}

/// Either a Matrix error or a UIA challenge.
pub(crate) enum UiaaError {
    Api(ApiError),
    Challenge(Response),
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
            UiaaError::Challenge(r) => r,
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
                return Err(UiaaError::Challenge(s.uiaa.challenge(
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
                Err(UiaaError::Challenge(s.uiaa.challenge(
                    "m.login.password",
                    Some(("M_FORBIDDEN", "invalid password")),
                )))
            }
        }
        _ => Err(UiaaError::Challenge(
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
