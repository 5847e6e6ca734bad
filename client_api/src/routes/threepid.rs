//! Third-party identifiers: email addresses validated by a mailed token, added to and removed
//! from accounts, bound through identity servers; the page the mailed link opens. Phone
//! numbers are refused (`M_THREEPID_MEDIUM_NOT_SUPPORTED`): this server sends no SMS.

use axum::{
    extract::{Query, State},
    response::{Html, IntoResponse, Redirect, Response},
    Json,
};
use ruma::{
    api::client::account::{
        add_3pid, bind_3pid, delete_3pid, get_3pids, request_3pid_management_token_via_email,
        request_3pid_management_token_via_msisdn, request_password_change_token_via_email,
        request_password_change_token_via_msisdn, request_registration_token_via_email,
        request_registration_token_via_msisdn, unbind_3pid, ThirdPartyIdRemovalStatus,
    },
    thirdparty::{Medium, ThirdPartyIdentifier, ThirdPartyIdentifierInit},
    ClientSecret, MilliSecondsSinceUnixEpoch, OwnedSessionId, UInt,
};
use sandcat_core::{
    ports::ValidationPurpose,
    services::threepids::{Requested, Unbound, SUBMIT_PATH, VALIDATE_PATH},
    Error, ErrorCode,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    ruma_wrapper::{ApiResult, Ruma, RumaResponse},
    uiaa::{self, UiaaError},
    ApiError, AppState, RumaRouter,
};

pub(super) fn routes(r: axum::Router<AppState>) -> axum::Router<AppState> {
    r.ruma::<request_3pid_management_token_via_email::v3::Request, _, _>(add_token)
        .ruma::<request_registration_token_via_email::v3::Request, _, _>(register_token)
        .ruma::<request_password_change_token_via_email::v3::Request, _, _>(password_token)
        .ruma::<request_3pid_management_token_via_msisdn::v3::Request, _, _>(add_msisdn)
        .ruma::<request_registration_token_via_msisdn::v3::Request, _, _>(register_msisdn)
        .ruma::<request_password_change_token_via_msisdn::v3::Request, _, _>(password_msisdn)
        .ruma::<add_3pid::v3::Request, _, _>(add)
        .ruma::<get_3pids::v3::Request, _, _>(list)
        .ruma::<delete_3pid::v3::Request, _, _>(delete)
        .ruma::<bind_3pid::v3::Request, _, _>(bind)
        .ruma::<unbind_3pid::v3::Request, _, _>(unbind)
        .route(VALIDATE_PATH, axum::routing::get(validate_link))
        .route(SUBMIT_PATH, axum::routing::post(submit_token))
}

/// The removal status the spec names for an unbinding's outcome.
pub(crate) fn removal_status(unbound: Unbound) -> ThirdPartyIdRemovalStatus {
    match unbound {
        Unbound::Success => ThirdPartyIdRemovalStatus::Success,
        Unbound::NoSupport => ThirdPartyIdRemovalStatus::NoSupport,
    }
}

/// Mails a token for `purpose`; the session id and the `submit_url` to answer.
async fn mail_token(
    s: &AppState,
    purpose: ValidationPurpose,
    client_secret: &ClientSecret,
    email: &str,
    send_attempt: UInt,
    next_link: Option<&str>,
) -> Result<(OwnedSessionId, String), ApiError> {
    let Requested { sid, submit_url } = s
        .threepids
        .request_token(
            purpose,
            client_secret.as_str(),
            email,
            u64::from(send_attempt),
            next_link,
        )
        .await?;
    let sid = OwnedSessionId::try_from(sid.as_str())
        .map_err(|e| ApiError(Error::internal(format!("a session id: {e}"))))?;
    Ok((sid, submit_url))
}

/// POST /_matrix/client/v3/account/3pid/email/requestToken
async fn add_token(
    State(s): State<AppState>,
    req: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_email::v3::Response> {
    let b = &req.body;
    let (sid, submit_url) = mail_token(
        &s,
        ValidationPurpose::AddToAccount,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    let mut resp = request_3pid_management_token_via_email::v3::Response::new(sid);
    resp.submit_url = Some(submit_url);
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v3/register/email/requestToken
async fn register_token(
    State(s): State<AppState>,
    req: Ruma<request_registration_token_via_email::v3::Request>,
) -> ApiResult<request_registration_token_via_email::v3::Response> {
    if !s.config.registration_enabled {
        return Err(Error::forbidden("registration is disabled on this server").into());
    }
    let b = &req.body;
    let (sid, submit_url) = mail_token(
        &s,
        ValidationPurpose::Register,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    let mut resp = request_registration_token_via_email::v3::Response::new(sid);
    resp.submit_url = Some(submit_url);
    Ok(RumaResponse(resp))
}

/// POST /_matrix/client/v3/account/password/email/requestToken
async fn password_token(
    State(s): State<AppState>,
    req: Ruma<request_password_change_token_via_email::v3::Request>,
) -> ApiResult<request_password_change_token_via_email::v3::Response> {
    let b = &req.body;
    let (sid, submit_url) = mail_token(
        &s,
        ValidationPurpose::PasswordReset,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    let mut resp = request_password_change_token_via_email::v3::Response::new(sid);
    resp.submit_url = Some(submit_url);
    Ok(RumaResponse(resp))
}

fn no_sms() -> ApiError {
    ApiError(Error::matrix(
        ErrorCode::ThreepidMediumNotSupported,
        "this server does not send SMS: phone numbers cannot be validated",
    ))
}

/// POST /_matrix/client/v3/account/3pid/msisdn/requestToken
async fn add_msisdn(
    _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>,
) -> ApiResult<request_3pid_management_token_via_msisdn::v3::Response> {
    Err(no_sms())
}

/// POST /_matrix/client/v3/register/msisdn/requestToken
async fn register_msisdn(
    _: Ruma<request_registration_token_via_msisdn::v3::Request>,
) -> ApiResult<request_registration_token_via_msisdn::v3::Response> {
    Err(no_sms())
}

/// POST /_matrix/client/v3/account/password/msisdn/requestToken
async fn password_msisdn(
    _: Ruma<request_password_change_token_via_msisdn::v3::Request>,
) -> ApiResult<request_password_change_token_via_msisdn::v3::Response> {
    Err(no_sms())
}

/// POST /_matrix/client/v3/account/3pid/add — after the user's password (user-interactive
/// auth), the address the session validated joins the account.
async fn add(
    State(s): State<AppState>,
    req: Ruma<add_3pid::v3::Request>,
) -> Result<Response, UiaaError> {
    let session = req.session()?;
    uiaa::password_stage(&s, session, &req.body.auth).await?;
    s.threepids
        .add_to_account(
            &session.user_id,
            req.body.sid.as_str(),
            req.body.client_secret.as_str(),
            ValidationPurpose::AddToAccount,
        )
        .await?;
    Ok(RumaResponse(add_3pid::v3::Response::new()).into_response())
}

fn millis(ms: u64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new_saturating(ms))
}

/// GET /_matrix/client/v3/account/3pid
async fn list(
    State(s): State<AppState>,
    req: Ruma<get_3pids::v3::Request>,
) -> ApiResult<get_3pids::v3::Response> {
    let threepids: Vec<ThirdPartyIdentifier> = s
        .threepids
        .list(&req.session()?.user_id)
        .await?
        .into_iter()
        .map(|t| {
            ThirdPartyIdentifierInit {
                address: t.address,
                medium: Medium::from(t.medium.as_str()),
                validated_at: millis(t.validated_at),
                added_at: millis(t.added_at),
            }
            .into()
        })
        .collect();
    Ok(RumaResponse(get_3pids::v3::Response::new(threepids)))
}

/// POST /_matrix/client/v3/account/3pid/delete
async fn delete(
    State(s): State<AppState>,
    req: Ruma<delete_3pid::v3::Request>,
) -> ApiResult<delete_3pid::v3::Response> {
    let unbound = s
        .threepids
        .remove(
            &req.session()?.user_id,
            req.body.medium.as_str(),
            &req.body.address,
            req.body.id_server.as_deref(),
        )
        .await?;
    Ok(RumaResponse(delete_3pid::v3::Response::new(
        removal_status(unbound),
    )))
}

/// POST /_matrix/client/v3/account/3pid/unbind — the address stays with the account.
async fn unbind(
    State(s): State<AppState>,
    req: Ruma<unbind_3pid::v3::Request>,
) -> ApiResult<unbind_3pid::v3::Response> {
    let unbound = s
        .threepids
        .unbind(
            &req.session()?.user_id,
            req.body.medium.as_str(),
            &req.body.address,
            req.body.id_server.as_deref(),
        )
        .await?;
    Ok(RumaResponse(unbind_3pid::v3::Response::new(
        removal_status(unbound),
    )))
}

/// POST /_matrix/client/v3/account/3pid/bind — through the identity server that validated
/// the address.
async fn bind(
    State(s): State<AppState>,
    req: Ruma<bind_3pid::v3::Request>,
) -> ApiResult<bind_3pid::v3::Response> {
    let b = &req.body;
    s.threepids
        .bind(
            &req.session()?.user_id,
            &b.identity_server_info.id_server,
            &b.identity_server_info.id_access_token,
            b.sid.as_str(),
            b.client_secret.as_str(),
        )
        .await?;
    Ok(RumaResponse(bind_3pid::v3::Response::new()))
}

/// A token coming back: from the mailed link's query, or a client's body (`submit_url`).
#[derive(Deserialize)]
struct TokenSubmission {
    sid: String,
    client_secret: String,
    token: String,
}

/// POST `submit_url`: `{ "success": true }` once the token is right.
async fn submit_token(
    State(s): State<AppState>,
    body: Result<Json<TokenSubmission>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(t) = body.map_err(|e| {
        Error::matrix(
            ErrorCode::BadJson,
            format!("expected {{sid, client_secret, token}}: {e}"),
        )
    })?;
    s.threepids
        .submit_token(&t.sid, &t.client_secret, &t.token)
        .await?;
    Ok(Json(json!({ "success": true })).into_response())
}

/// GET the mailed link: validates, then leads to the client's `next_link` or says it is done.
async fn validate_link(
    State(s): State<AppState>,
    query: Result<Query<TokenSubmission>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let outcome = match query {
        Ok(Query(t)) => s
            .threepids
            .submit_token(&t.sid, &t.client_secret, &t.token)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("the link is incomplete: {e}")),
    };
    match outcome {
        Ok(Some(next)) => Redirect::to(&next).into_response(),
        Ok(None) => page(
            http::StatusCode::OK,
            "Your email address is confirmed. You can go back to your app now.",
        ),
        Err(why) => page(
            http::StatusCode::BAD_REQUEST,
            &format!("This link does not work: {why}. Ask your app for a new mail."),
        ),
    }
}

/// A small page for a person who followed a link (text escaped).
fn page(status: http::StatusCode, text: &str) -> Response {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Email address</title>\
         </head><body><p>{escaped}</p></body></html>"
    );
    (status, Html(body)).into_response()
}
