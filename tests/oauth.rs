//! Sign-in of Sandcat clients through a provider (GitHub's flow), against a real OAuth 2.0
//! provider served in-process on loopback: the redirect, the code exchange, the user lookup,
//! the account made once and signed into again, and the refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use axum::{
    extract::Form,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};

use common::Server;

const CLIENT_ID: &str = "sandcat-app";
const CLIENT_SECRET: &str = "s3cret";

/// The provider's token endpoint: codes `good-*` from this app give the token `tok-*`.
async fn token(headers: HeaderMap, Form(form): Form<Vec<(String, String)>>) -> impl IntoResponse {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let basic = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .map(str::to_owned);
    let expected = base64_pair(CLIENT_ID, CLIENT_SECRET);
    let app_ok = basic.as_deref() == Some(expected.as_str())
        || (field("client_id").as_deref() == Some(CLIENT_ID)
            && field("client_secret").as_deref() == Some(CLIENT_SECRET));
    match field("code").and_then(|c| c.strip_prefix("good-").map(str::to_owned)) {
        Some(who) if app_ok && field("grant_type").as_deref() == Some("authorization_code") => (
            StatusCode::OK,
            Json(json!({ "access_token": format!("tok-{who}"), "token_type": "bearer" })),
        ),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "bad_verification_code" })),
        ),
    }
}

fn base64_pair(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// The provider's user endpoint.
async fn user(headers: HeaderMap) -> impl IntoResponse {
    let token = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    match token {
        Some("tok-octo") => (
            StatusCode::OK,
            Json(
                json!({ "id": 42, "login": "octocat", "name": "Octo Cat", "email": "octo@example.org" }),
            ),
        ),
        Some("tok-anon") => (StatusCode::OK, Json(json!({ "id": 43, "login": "anon" }))),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "Bad credentials" })),
        ),
    }
}

async fn provider() -> String {
    let app = Router::new()
        .route("/login/oauth/access_token", post(token))
        .route("/user", get(user));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn with_github() -> Server {
    let idp = provider().await;
    Server::start_with(|c| {
        c.oauth.github = Some(sandcat_api::oauth::ProviderConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_url: "http://chat.example/third_login_callback/github".into(),
            auth_url: format!("{idp}/login/oauth/authorize"),
            token_url: format!("{idp}/login/oauth/access_token"),
            user_url: format!("{idp}/user"),
        });
    })
    .await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Starts a sign-in as the login page does; the `state` the provider is given.
async fn start(server: &Server) -> String {
    let res = http()
        .get(format!("{}/user/auth/github", server.base))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let to = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.path().ends_with("/login/oauth/authorize"), "{to}");
    let q: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["response_type"], "code");
    assert_eq!(
        q["redirect_uri"],
        "http://chat.example/third_login_callback/github"
    );
    assert!(q["scope"].contains("user:email"), "{q:?}");
    q["state"].clone()
}

/// The client's callback page calling the server.
async fn callback(server: &Server, code: &str, state: &str) -> (u16, Value) {
    let res = http()
        .get(format!("{}/api/user/auth/github/callback", server.base))
        .query(&[("code", code), ("state", state)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn github_sign_in_makes_an_account_once_and_signs_into_it() {
    let server = with_github().await;
    let state = start(&server).await;
    let (s, first) = callback(&server, "good-octo", &state).await;
    assert_eq!(s, 200, "{first}");
    let id = first["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["user"]["name"], "Octo Cat");
    assert_eq!(first["user"]["email"], "octo@example.org");
    assert!(first["ws_addr"].as_str().unwrap().ends_with("/ws"));
    // The token is a session like a password login's.
    let seq = http()
        .get(format!("{}/api/message/seq/{id}", server.base))
        .bearer_auth(first["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(seq.status(), 200);

    // Signing in again is the same account.
    let state = start(&server).await;
    let (s, again) = callback(&server, "good-octo", &state).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["user"]["id"], id);

    // Someone else at the provider, without a public email, gets an account of their own.
    let state = start(&server).await;
    let (s, other) = callback(&server, "good-anon", &state).await;
    assert_eq!(s, 200, "{other}");
    assert_ne!(other["user"]["id"], id);
    assert_eq!(other["user"]["name"], "anon");
}

#[tokio::test]
async fn a_sign_in_needs_its_state_and_a_code_the_provider_accepts() {
    let server = with_github().await;
    let state = start(&server).await;
    let (s, e) = callback(&server, "expired-or-forged", &state).await;
    assert_eq!((s, e["kind"].as_str()), (401, Some("UnAuthorized")), "{e}");
    for bad in ["", "not-a-state", "a.b.c"] {
        let (s, e) = callback(&server, "good-octo", bad).await;
        assert_eq!(s, 400, "state {bad:?}: {e}");
        assert!(e["details"].as_str().unwrap().contains("sign-in"), "{e}");
    }
    // A callback without its query fields gets the client's error shape too.
    let res = http()
        .get(format!("{}/api/user/auth/github/callback", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert!(e["details"].as_str().unwrap().contains("sign-in"), "{e}");
    let (s, e) = callback(&server, "", &start(&server).await).await;
    assert_eq!(
        (s, e["details"].as_str()),
        (400, Some("the provider sent no code"))
    );
    // An access token is not a state.
    let (_, signed_in) = callback(&server, "good-octo", &start(&server).await).await;
    let (s, _) = callback(&server, "good-octo", signed_in["token"].as_str().unwrap()).await;
    assert_eq!(s, 400);
    // A provider that is not configured says so, in the client's error shape.
    let res = http()
        .get(format!(
            "{}/api/user/auth/google/callback?code=x&state=y",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let e: Value = res.json().await.unwrap();
    assert!(
        e["details"].as_str().unwrap().contains("not configured"),
        "{e}"
    );
    let res = http()
        .get(format!("{}/user/auth/gitlab", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn no_new_accounts_through_a_provider_when_registration_is_closed() {
    let idp = provider().await;
    let server = Server::start_with(|c| {
        c.registration_enabled = false;
        c.oauth.github = Some(sandcat_api::oauth::ProviderConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_url: "http://chat.example/cb".into(),
            auth_url: format!("{idp}/login/oauth/authorize"),
            token_url: format!("{idp}/login/oauth/access_token"),
            user_url: format!("{idp}/user"),
        });
    })
    .await;
    let state = start_loose(&server).await;
    let (s, e) = callback(&server, "good-octo", &state).await;
    assert_eq!(s, 403, "{e}");
}

/// The state of a sign-in, without checking the redirect.
async fn start_loose(server: &Server) -> String {
    let res = http()
        .get(format!("{}/user/auth/github", server.base))
        .send()
        .await
        .unwrap();
    let to = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let state = to
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    state
}

/// Starts a Matrix single sign-on as a Matrix client does (the browser at
/// `/login/sso/redirect…`); the provider page's query.
async fn sso_start(server: &Server, path: &str) -> std::collections::HashMap<String, String> {
    let res = http()
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{path}: {}", res.status());
    let to = reqwest::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    assert!(to.path().ends_with("/login/oauth/authorize"), "{to}");
    to.query_pairs().into_owned().collect()
}

/// The provider sending the browser back to this server; the status and where it goes on.
async fn sso_callback(server: &Server, code: &str, state: &str) -> (u16, Option<reqwest::Url>) {
    let res = http()
        .get(format!("{}/_sandcat/sso/callback/github", server.base))
        .query(&[("code", code), ("state", state)])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| reqwest::Url::parse(l.to_str().unwrap()).unwrap());
    (status, location)
}

async fn token_login(server: &Server, token: &str) -> (u16, Value) {
    server
        .anon()
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.token", "token": token }),
        )
        .await
}

#[tokio::test]
async fn matrix_clients_sign_in_through_the_same_provider() {
    let server = with_github().await;
    // The provider is offered as m.login.sso.
    let (s, flows) = server.anon().get("/_matrix/client/v3/login").await;
    assert_eq!(s, 200);
    let sso = flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "m.login.sso")
        .unwrap_or_else(|| panic!("no m.login.sso: {flows}"))
        .clone();
    assert_eq!(sso["identity_providers"][0]["id"], "github");
    assert_eq!(sso["identity_providers"][0]["name"], "GitHub");
    assert_eq!(sso["identity_providers"][0]["brand"], "github");

    // The provider sends the browser back to this server, not to the Sandcat client's page.
    let redirect_url = "https://client.example/after?x=1";
    let q = sso_start(
        &server,
        &format!(
            "/_matrix/client/v3/login/sso/redirect/github?redirectUrl={}",
            common::enc(redirect_url)
        ),
    )
    .await;
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(
        q["redirect_uri"],
        format!("{}/_sandcat/sso/callback/github", server.base)
    );
    let (s, to) = sso_callback(&server, "good-octo", &q["state"]).await;
    assert_eq!(s, 303);
    let to = to.unwrap();
    assert_eq!(to.host_str(), Some("client.example"));
    let back: std::collections::HashMap<_, _> = to.query_pairs().into_owned().collect();
    assert_eq!(back["x"], "1", "the client's own query stays");
    let (s, login) = token_login(&server, &back["loginToken"]).await;
    assert_eq!(s, 200, "{login}");
    let user_id = login["user_id"].as_str().unwrap().to_owned();
    // The token works once.
    let (s, _) = token_login(&server, &back["loginToken"]).await;
    assert_eq!(s, 403);

    // With one provider, the redirect without an id goes to it; the same account again,
    // and the one a Sandcat client signing in through the provider reaches.
    let q = sso_start(
        &server,
        &format!(
            "/_matrix/client/v3/login/sso/redirect?redirectUrl={}",
            common::enc("io.element.app:/callback")
        ),
    )
    .await;
    let (s, to) = sso_callback(&server, "good-octo", &q["state"]).await;
    assert_eq!(s, 303);
    let to = to.unwrap();
    assert_eq!(to.scheme(), "io.element.app");
    let token = to
        .query_pairs()
        .find(|(k, _)| k == "loginToken")
        .unwrap()
        .1
        .into_owned();
    let (s, again) = token_login(&server, &token).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["user_id"], user_id.as_str());
    let (s, native) = callback(&server, "good-octo", &start(&server).await).await;
    assert_eq!(s, 200, "{native}");
    assert_eq!(
        format!("@{}:", native["user"]["id"].as_str().unwrap()),
        user_id[..user_id.find(':').unwrap() + 1]
    );

    // Refusals: no redirectUrl, an unknown provider, a Sandcat sign-in's state, a code the
    // provider refuses; and a Matrix sign-in's state at the Sandcat callback.
    let (s, e) = server
        .anon()
        .get("/_matrix/client/v3/login/sso/redirect/github")
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (400, Some("M_MISSING_PARAM")),
        "{e}"
    );
    let (s, e) = server
        .anon()
        .get("/_matrix/client/v3/login/sso/redirect/gitlab?redirectUrl=https%3A%2F%2Fc.example")
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{e}"
    );
    let (s, to) = sso_callback(&server, "good-octo", &start(&server).await).await;
    assert_eq!((s, to), (400, None));
    let q = sso_start(
        &server,
        "/_matrix/client/v3/login/sso/redirect/github?redirectUrl=https%3A%2F%2Fc.example",
    )
    .await;
    let (s, to) = sso_callback(&server, "bad-code", &q["state"]).await;
    assert_eq!((s, to), (401, None));
    let (s, e) = callback(&server, "good-octo", &q["state"]).await;
    assert_eq!(s, 400, "{e}");

    // Without providers: no m.login.sso, and the redirect says there is none.
    let plain = Server::start().await;
    let (_, flows) = plain.anon().get("/_matrix/client/v3/login").await;
    assert!(
        !flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.sso"),
        "{flows}"
    );
    let (s, e) = plain
        .anon()
        .get("/_matrix/client/v3/login/sso/redirect?redirectUrl=https%3A%2F%2Fc.example")
        .await;
    assert_eq!(
        (s, e["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{e}"
    );
}
