//! Sign-in through GitHub or Google (the OAuth 2.0 authorization-code flow), as the Sandcat
//! client does it: its login page sends the browser to `GET /user/auth/{provider}`, which
//! redirects to the provider with a signed `state`; the provider sends the browser back to the
//! client's callback page (the configured `redirect_url`), which calls
//! `GET /user/auth/{provider}/callback?code=…&state=…`. The server checks the state, trades
//! the code for a token, reads who the user is, and signs in the account linked to that
//! identity — making one the first time, when registration is open.

use std::{collections::HashMap, fmt, str::FromStr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, Query, State},
    response::Redirect,
    Json,
};
use http::HeaderMap;
use oauth2::{
    basic::BasicClient, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use sandcat_core::ratelimit::Key;
use serde::Deserialize;
use serde_json::Value;

use crate::{model::Token, ApiError, ApiResult, NativeState, PathArgs};

/// Longest wait for a provider's answer.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest provider field kept (names, emails).
const MAX_FIELD: usize = 255;

/// A sign-in provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    Github,
    Google,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Google => "google",
        }
    }

    /// Its name as people know it.
    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Github => "GitHub",
            Provider::Google => "Google",
        }
    }

    /// Its public endpoints: authorization, token, user.
    fn endpoints(self) -> [&'static str; 3] {
        match self {
            Provider::Github => [
                "https://github.com/login/oauth/authorize",
                "https://github.com/login/oauth/access_token",
                "https://api.github.com/user",
            ],
            Provider::Google => [
                "https://accounts.google.com/o/oauth2/v2/auth",
                "https://oauth2.googleapis.com/token",
                "https://openidconnect.googleapis.com/v1/userinfo",
            ],
        }
    }

    fn scopes(self) -> &'static [&'static str] {
        match self {
            Provider::Github => &["read:user", "user:email"],
            Provider::Google => &["openid", "email", "profile"],
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        match s {
            "github" => Ok(Provider::Github),
            "google" => Ok(Provider::Google),
            other => Err(ApiError::not_found(format!(
                "no sign-in provider {other}; there are github and google"
            ))),
        }
    }
}

/// `[oauth.github]` / `[oauth.google]`: the app registered with the provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub client_id: String,
    pub client_secret: String,
    /// The Sandcat client's callback page, as registered with the provider.
    pub redirect_url: String,
    /// The provider's endpoints; empty: its public ones (set them for GitHub Enterprise).
    pub auth_url: String,
    pub token_url: String,
    pub user_url: String,
}

/// `[oauth]`: the configured providers; an unconfigured one answers a clear error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthConfig {
    pub github: Option<ProviderConfig>,
    pub google: Option<ProviderConfig>,
}

impl OAuthConfig {
    /// The ids of the configured providers (`github`, `google`).
    pub fn configured(&self) -> Vec<String> {
        [
            (Provider::Github, &self.github),
            (Provider::Google, &self.google),
        ]
        .into_iter()
        .filter(|(_, c)| c.is_some())
        .map(|(p, _)| p.as_str().to_owned())
        .collect()
    }
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

struct Configured {
    client: Client,
    user_url: String,
}

/// The configured providers, ready to use.
#[derive(Clone, Default)]
pub struct OAuth {
    providers: Arc<HashMap<Provider, Configured>>,
    http: reqwest::Client,
}

impl OAuth {
    /// Checks the configuration: every configured provider needs a client id, a secret and a
    /// redirect URL, and its URLs must parse.
    pub fn new(config: &OAuthConfig) -> Result<Self, String> {
        let mut providers = HashMap::new();
        for (provider, c) in [
            (Provider::Github, &config.github),
            (Provider::Google, &config.google),
        ] {
            let Some(c) = c else { continue };
            let bad = |what: &str, e: &dyn fmt::Display| format!("[oauth.{provider}] {what}: {e}");
            if c.client_id.is_empty() || c.client_secret.is_empty() || c.redirect_url.is_empty() {
                return Err(format!(
                    "[oauth.{provider}] needs client_id, client_secret and redirect_url"
                ));
            }
            let [auth, token, user] = provider.endpoints();
            let or = |set: &str, default: &str| {
                if set.is_empty() {
                    default.to_owned()
                } else {
                    set.to_owned()
                }
            };
            let client = BasicClient::new(ClientId::new(c.client_id.clone()))
                .set_client_secret(ClientSecret::new(c.client_secret.clone()))
                .set_auth_uri(AuthUrl::new(or(&c.auth_url, auth)).map_err(|e| bad("auth_url", &e))?)
                .set_token_uri(
                    TokenUrl::new(or(&c.token_url, token)).map_err(|e| bad("token_url", &e))?,
                )
                .set_redirect_uri(
                    RedirectUrl::new(c.redirect_url.clone())
                        .map_err(|e| bad("redirect_url", &e))?,
                );
            let user_url = or(&c.user_url, user);
            reqwest::Url::parse(&user_url).map_err(|e| bad("user_url", &e))?;
            providers.insert(provider, Configured { client, user_url });
        }
        let http = reqwest::Client::builder()
            // The token endpoint must not redirect (the code would leak along).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .user_agent("sandcat")
            .build()
            .map_err(|e| format!("[oauth] HTTP client: {e}"))?;
        Ok(OAuth {
            providers: Arc::new(providers),
            http,
        })
    }

    fn get(&self, provider: Provider) -> ApiResult<&Configured> {
        self.providers.get(&provider).ok_or_else(|| {
            ApiError::not_found(format!(
                "sign-in with {provider} is not configured on this server; use your account and password"
            ))
        })
    }

    /// Who the user is at the provider, from an authorization code.
    /// `redirect`: where the provider sent the browser back to, when not the Sandcat
    /// client's page (Matrix single sign-on comes back to this server).
    pub(crate) async fn identity(
        &self,
        provider: Provider,
        code: &str,
        redirect: Option<RedirectUrl>,
    ) -> ApiResult<Identity> {
        let p = self.get(provider)?;
        let refused = |e: &dyn fmt::Display| {
            tracing::info!(%provider, error = %e, "a sign-in was refused by the provider");
            ApiError::unauthorized(format!("{provider} did not accept the sign-in"))
        };
        let mut exchange = p
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(r) = redirect {
            exchange = exchange.set_redirect_uri(std::borrow::Cow::Owned(r));
        }
        let token = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| refused(&e))?;
        let user: Value = self
            .http
            .get(&p.user_url)
            .bearer_auth(token.access_token().secret())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| refused(&e))?
            .json()
            .await
            .map_err(|e| refused(&e))?;
        Identity::of(provider, &user).ok_or_else(|| refused(&"no user id in the answer"))
    }
}

impl OAuth {
    /// The configured providers, GitHub first.
    pub fn providers(&self) -> Vec<Provider> {
        [Provider::Github, Provider::Google]
            .into_iter()
            .filter(|p| self.providers.contains_key(p))
            .collect()
    }

    /// The provider's sign-in page for a sign-in with `state`, coming back to `redirect`
    /// (else the configured client page).
    pub(crate) fn authorize_url(
        &self,
        provider: Provider,
        state: String,
        redirect: Option<RedirectUrl>,
    ) -> ApiResult<String> {
        let p = self.get(provider)?;
        let mut auth = p.client.authorize_url(|| CsrfToken::new(state));
        for scope in provider.scopes() {
            auth = auth.add_scope(Scope::new((*scope).to_owned()));
        }
        if let Some(r) = redirect {
            auth = auth.set_redirect_uri(std::borrow::Cow::Owned(r));
        }
        let (url, _) = auth.url();
        Ok(url.to_string())
    }

    pub(crate) fn is_configured(&self, provider: Provider) -> bool {
        self.providers.contains_key(&provider)
    }
}

/// A user as a provider tells it.
pub(crate) struct Identity {
    subject: String,
    name: Option<String>,
    email: Option<String>,
}

impl Identity {
    fn of(provider: Provider, user: &Value) -> Option<Self> {
        let text = |key: &str| {
            user.get(key)
                .and_then(Value::as_str)
                .map(|v| v.chars().take(MAX_FIELD).collect::<String>())
                .filter(|v| !v.trim().is_empty())
        };
        let subject = match provider {
            Provider::Github => user.get("id")?.as_u64()?.to_string(),
            Provider::Google => text("sub")?,
        };
        let name = text("name").or_else(|| text("login"));
        // Google says whether the address is verified; GitHub shows only verified ones.
        let verified = provider == Provider::Github
            || user.get("email_verified").and_then(Value::as_bool) == Some(true);
        Some(Identity {
            subject,
            name,
            email: text("email").filter(|_| verified),
        })
    }
}

/// The callback's query; a missing field is refused by the state or code check, in the
/// client's error shape.
#[derive(Deserialize)]
pub(crate) struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
}

/// GET /user/auth/{provider} — to the provider's sign-in page.
pub(crate) async fn start(
    State(s): State<NativeState>,
    PathArgs(provider): PathArgs<String>,
) -> ApiResult<Redirect> {
    let provider: Provider = provider.parse()?;
    s.oauth.get(provider)?;
    let state = s.jwt.issue_state(provider.as_str(), None)?;
    Ok(Redirect::to(&s.oauth.authorize_url(provider, state, None)?))
}

/// GET /user/auth/{provider}/callback?code&state — signs in as the provider's user.
pub(crate) async fn callback(
    State(s): State<NativeState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    PathArgs(provider): PathArgs<String>,
    Query(q): Query<Callback>,
) -> ApiResult<Json<Token>> {
    let provider: Provider = provider.parse()?;
    s.oauth.get(provider)?;
    s.limit(Key::Address(peer.ip()))?;
    if s.jwt
        .check_state(&q.state, provider.as_str())?
        .redirect
        .is_some()
    {
        return Err(ApiError::bad_request(
            "the sign-in was started by a Matrix client",
        ));
    }
    if q.code.is_empty() {
        return Err(ApiError::bad_request("the provider sent no code"));
    }
    let who = s.oauth.identity(provider, &q.code, None).await?;
    let id = account_of(&s, provider, &who).await?;
    Ok(Json(crate::users::sign_in(&s, &id, &headers).await?))
}

/// The account linked to the provider's user — made the first time (when registration is
/// open); its Sandcat id.
pub(crate) async fn account_of(
    s: &NativeState,
    provider: Provider,
    who: &Identity,
) -> ApiResult<String> {
    if let Some(id) = s.store.oauth_user(provider.as_str(), &who.subject).await? {
        return Ok(id);
    }
    let id = crate::users::new_account(
        s,
        None,
        who.name.as_deref().unwrap_or(provider.as_str()),
        who.email.as_deref(),
    )
    .await?;
    if s.store
        .link_oauth(provider.as_str(), &who.subject, &id)
        .await?
    {
        return Ok(id);
    }
    // Another sign-in of the same identity linked first: that account.
    s.store
        .oauth_user(provider.as_str(), &who.subject)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the sign-in could not be linked"))
}
