//! Single sign-on for Matrix clients (`m.login.sso`) through the providers Sandcat clients
//! sign in with: `GET /_matrix/client/v3/login/sso/redirect/{idpId}?redirectUrl=…` sends the
//! browser to the provider with a signed `state` that carries `redirectUrl`; the provider
//! sends it back to [`CALLBACK_PATH`] on this server, which signs in the account linked to
//! the provider's user (the same account a Sandcat client's sign-in reaches; made the first
//! time when registration is open) and sends the browser on to `redirectUrl` with a
//! single-use `loginToken` that the client trades for an access token (`m.login.token`).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Json, Router,
};
use oauth2::RedirectUrl;
use sandcat_core::services::Session;
use serde::Deserialize;
use serde_json::json;

use crate::{
    oauth::{account_of, Provider},
    ApiError, NativeState, PathArgs,
};

/// Where providers send the browser back to; the provider's app must allow
/// `{public_base_url}/_sandcat/sso/callback/{github|google}`.
pub const CALLBACK_PATH: &str = "/_sandcat/sso/callback";
/// The longest `redirectUrl` taken.
const MAX_REDIRECT: usize = 2000;

pub(crate) fn routes() -> Router<NativeState> {
    let mut r = Router::new();
    for version in ["r0", "v3"] {
        r = r
            .route(
                &format!("/_matrix/client/{version}/login/sso/redirect"),
                get(redirect_any),
            )
            .route(
                &format!("/_matrix/client/{version}/login/sso/redirect/{{idp}}"),
                get(redirect_to),
            );
    }
    r.route(&format!("{CALLBACK_PATH}/{{provider}}"), get(callback))
}

/// A Matrix error (these endpoints belong to the Client-Server API).
struct MatrixError {
    status: StatusCode,
    errcode: &'static str,
    error: String,
}

impl IntoResponse for MatrixError {
    fn into_response(self) -> Response {
        let body = json!({ "errcode": self.errcode, "error": self.error });
        (self.status, Json(body)).into_response()
    }
}

fn matrix_error(
    status: StatusCode,
    errcode: &'static str,
    error: impl Into<String>,
) -> MatrixError {
    MatrixError {
        status,
        errcode,
        error: error.into(),
    }
}

fn from_native(e: ApiError) -> MatrixError {
    let errcode = match e.status {
        StatusCode::NOT_FOUND => "M_NOT_FOUND",
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => "M_FORBIDDEN",
        StatusCode::TOO_MANY_REQUESTS => "M_LIMIT_EXCEEDED",
        s if s.is_server_error() => "M_UNKNOWN",
        _ => "M_INVALID_PARAM",
    };
    matrix_error(e.status, errcode, e.details)
}

#[derive(Deserialize)]
struct RedirectQuery {
    #[serde(rename = "redirectUrl", default)]
    redirect_url: String,
}

/// The client's `redirectUrl`, checked: an absolute URL (apps use their own schemes).
fn client_redirect(q: &RedirectQuery) -> Result<String, MatrixError> {
    if q.redirect_url.is_empty() {
        return Err(matrix_error(
            StatusCode::BAD_REQUEST,
            "M_MISSING_PARAM",
            "redirectUrl is required",
        ));
    }
    let ok = q.redirect_url.len() <= MAX_REDIRECT && reqwest::Url::parse(&q.redirect_url).is_ok();
    if !ok {
        return Err(matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "redirectUrl must be an absolute URL of at most 2000 bytes",
        ));
    }
    Ok(q.redirect_url.clone())
}

fn callback_url(s: &NativeState, provider: Provider) -> Result<RedirectUrl, MatrixError> {
    let base = s.config.public_base_url.trim_end_matches('/');
    RedirectUrl::new(format!("{base}{CALLBACK_PATH}/{}", provider.as_str())).map_err(|e| {
        matrix_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            format!("public_base_url does not make a callback URL: {e}"),
        )
    })
}

/// The provider's sign-in page, for a sign-in that ends at `redirect`.
fn to_provider(
    s: &NativeState,
    provider: Provider,
    redirect: &str,
) -> Result<Response, MatrixError> {
    let state = s
        .jwt
        .issue_state(provider.as_str(), Some(redirect))
        .map_err(from_native)?;
    let url = s
        .oauth
        .authorize_url(provider, state, Some(callback_url(s, provider)?))
        .map_err(from_native)?;
    Ok(Redirect::to(&url).into_response())
}

/// GET /_matrix/client/v3/login/sso/redirect — the only provider's page, or a page to pick
/// one.
async fn redirect_any(
    State(s): State<NativeState>,
    Query(q): Query<RedirectQuery>,
) -> Result<Response, MatrixError> {
    let redirect = client_redirect(&q)?;
    let providers = s.oauth.providers();
    match providers.as_slice() {
        [] => Err(matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "no single sign-on provider is configured on this server",
        )),
        [only] => to_provider(&s, *only, &redirect),
        several => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("redirectUrl", &redirect)
                .finish();
            let links: String = several
                .iter()
                .map(|p| {
                    format!(
                        "<li><a href=\"/_matrix/client/v3/login/sso/redirect/{id}?{}\">{}</a></li>",
                        query.replace('&', "&amp;").replace('"', "&quot;"),
                        p.display_name(),
                        id = p.as_str(),
                    )
                })
                .collect();
            Ok(Html(format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in</title>\
                 </head><body><p>Sign in with:</p><ul>{links}</ul></body></html>"
            ))
            .into_response())
        }
    }
}

/// GET /_matrix/client/v3/login/sso/redirect/{idpId}
async fn redirect_to(
    State(s): State<NativeState>,
    PathArgs(idp): PathArgs<String>,
    Query(q): Query<RedirectQuery>,
) -> Result<Response, MatrixError> {
    let redirect = client_redirect(&q)?;
    match idp.parse::<Provider>() {
        Ok(p) if s.oauth.is_configured(p) => to_provider(&s, p, &redirect),
        _ => Err(matrix_error(
            StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("no single sign-on provider {idp:?} on this server"),
        )),
    }
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
}

/// GET /_sandcat/sso/callback/{provider}?code&state — on to the client with a login token.
async fn callback(
    State(s): State<NativeState>,
    PathArgs(provider): PathArgs<String>,
    Query(q): Query<Callback>,
) -> Response {
    match sign_in(&s, &provider, &q).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            let text = format!(
                "The sign-in did not work: {}. Start it again from your app.",
                e.details
            );
            let escaped = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            (
                e.status,
                Html(format!(
                    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Sign in</title>\
                     </head><body><p>{escaped}</p></body></html>"
                )),
            )
                .into_response()
        }
    }
}

async fn sign_in(s: &NativeState, provider: &str, q: &Callback) -> Result<String, ApiError> {
    let provider: Provider = provider.parse()?;
    let claims = s.jwt.check_state(&q.state, provider.as_str())?;
    let redirect = claims
        .redirect
        .ok_or_else(|| ApiError::bad_request("the sign-in was not started by a Matrix client"))?;
    if q.code.is_empty() {
        return Err(ApiError::bad_request("the provider sent no code"));
    }
    let back = callback_url(s, provider)
        .map_err(|_| ApiError::bad_request("public_base_url does not make a callback URL"))?;
    let who = s.oauth.identity(provider, &q.code, Some(back)).await?;
    let id = account_of(s, provider, &who).await?;
    let user_id = s.matrix_id(&id)?;
    let (token, _) = s
        .accounts
        .issue_login_token(&Session::new(user_id.clone(), String::new()))
        .await?;
    tracing::info!(%user_id, %provider, "single sign-on");
    let mut url = reqwest::Url::parse(&redirect)
        .map_err(|e| ApiError::bad_request(format!("redirectUrl: {e}")))?;
    url.query_pairs_mut().append_pair("loginToken", &token);
    Ok(url.to_string())
}
