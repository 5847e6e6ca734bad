//! Refresh tokens (spec 1.3): a client that asks for one on login or registration gets an
//! access token that expires; once expired it answers `M_UNKNOWN_TOKEN` with `soft_logout`,
//! and `POST /refresh` hands a new pair, each refresh token working once. A client that asks
//! for none keeps a token that never expires. Login tokens (`login/get_token`) sign another
//! device in, once. Runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use common::{Client, Server};
use serde_json::{json, Value};

/// Long enough for a few requests, short enough to wait out.
const LIFETIME_SECS: u64 = 2;

fn with_token(c: &Client, token: &str) -> Client {
    Client {
        token: Some(token.to_owned()),
        ..c.clone()
    }
}

async fn whoami(c: &Client) -> (u16, Value) {
    c.get("/_matrix/client/v3/account/whoami").await
}

#[tokio::test]
async fn expiring_tokens_refresh_and_soft_logout() {
    let srv = Server::start_with(|c| c.access_token_lifetime_secs = LIFETIME_SECS).await;
    let anon = srv.anon();
    let (s, reg) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "alice", "password": "pw-alice", "refresh_token": true, "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(s, 200, "{reg}");
    assert!(reg["refresh_token"].is_string(), "{reg}");
    assert_eq!(reg["expires_in_ms"], LIFETIME_SECS * 1000);
    // Login asks for one too; a login that asks for none gets a token that never expires.
    let login = |refresh: bool| {
        let anon = anon.clone();
        async move {
            let (s, body) = anon
                .post(
                    "/_matrix/client/v3/login",
                    json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw-alice", "refresh_token": refresh }),
                )
                .await;
            assert_eq!(s, 200, "{body}");
            body
        }
    };
    let refreshing = login(true).await;
    let lasting = login(false).await;
    assert!(lasting.get("refresh_token").is_none() && lasting.get("expires_in_ms").is_none());
    let alice = with_token(&anon, refreshing["access_token"].as_str().unwrap());
    let plain = with_token(&anon, lasting["access_token"].as_str().unwrap());
    assert_eq!(whoami(&alice).await.0, 200);

    // Expired: the client is told to refresh, not that it was logged out.
    tokio::time::sleep(Duration::from_millis(LIFETIME_SECS * 1000 + 300)).await;
    let (s, err) = whoami(&alice).await;
    assert_eq!(s, 401);
    assert_eq!(err["errcode"], "M_UNKNOWN_TOKEN");
    assert_eq!(err["soft_logout"], true, "{err}");
    assert_eq!(
        whoami(&plain).await.0,
        200,
        "a token without refresh lives on"
    );

    // A refresh: a new pair for the same device; the old refresh token is spent.
    let old_refresh = refreshing["refresh_token"].as_str().unwrap();
    let (s, fresh) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": old_refresh }),
        )
        .await;
    assert_eq!(s, 200, "{fresh}");
    assert_eq!(fresh["expires_in_ms"], LIFETIME_SECS * 1000);
    let renewed = with_token(&anon, fresh["access_token"].as_str().unwrap());
    let (s, me) = whoami(&renewed).await;
    assert_eq!(s, 200);
    assert_eq!(me["device_id"], refreshing["device_id"]);
    let (s, err) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": old_refresh }),
        )
        .await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{err}"
    );
    assert_ne!(
        err["soft_logout"], true,
        "a spent refresh token is no soft logout"
    );

    // The next refresh works from the new refresh token; logout ends all of them.
    let next = fresh["refresh_token"].as_str().unwrap();
    let (s, latest) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": next }),
        )
        .await;
    assert_eq!(s, 200, "{latest}");
    let current = with_token(&anon, latest["access_token"].as_str().unwrap());
    let (s, _) = current.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(s, 200);
    let (s, err) = whoami(&current).await;
    assert_eq!((s, err["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
    assert_ne!(err["soft_logout"], true, "logged out for good: {err}");
    let (s, _) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": latest["refresh_token"] }),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn without_a_lifetime_refresh_tokens_still_rotate() {
    let srv = Server::start().await;
    let anon = srv.anon();
    let alice = srv.register("alice").await;
    let (s, login) = anon
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": alice.user_id }, "password": "pw-alice", "refresh_token": true }),
        )
        .await;
    assert_eq!(s, 200, "{login}");
    assert!(
        login.get("expires_in_ms").is_none(),
        "no lifetime configured"
    );
    let (s, fresh) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": login["refresh_token"] }),
        )
        .await;
    assert_eq!(s, 200, "{fresh}");
    assert!(fresh.get("expires_in_ms").is_none());
    assert_eq!(
        whoami(&with_token(&anon, fresh["access_token"].as_str().unwrap()))
            .await
            .0,
        200
    );
    let (s, err) = anon
        .post(
            "/_matrix/client/v3/refresh",
            json!({ "refresh_token": "nonsense" }),
        )
        .await;
    assert_eq!((s, err["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
}

/// Login tokens (`login/get_token`, `m.login.token`): a signed-in device asks for one with the
/// user's password; another device signs in with it, once, as the same user.
#[tokio::test]
async fn a_login_token_signs_in_another_device_once() {
    let srv = Server::start().await;
    let anon = srv.anon();
    let alice = srv.register("alice").await;
    let (_, flows) = anon.get("/_matrix/client/v3/login").await;
    assert!(
        flows["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["type"] == "m.login.token" && f["get_login_token"] == true),
        "{flows}"
    );
    let (_, caps) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(caps["capabilities"]["m.get_login_token"]["enabled"], true);

    // The password first (user-interactive auth), then the token.
    let (s, challenge) = alice
        .post("/_matrix/client/v1/login/get_token", json!({}))
        .await;
    assert_eq!(s, 401, "{challenge}");
    assert_eq!(challenge["flows"][0]["stages"][0], "m.login.password");
    let (s, issued) = alice
        .post(
            "/_matrix/client/v1/login/get_token",
            json!({ "auth": { "type": "m.login.password", "session": challenge["session"], "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw-alice" } }),
        )
        .await;
    assert_eq!(s, 200, "{issued}");
    assert!(issued["expires_in_ms"].as_u64().unwrap() > 0);
    let token = issued["login_token"].as_str().unwrap();

    let login = json!({ "type": "m.login.token", "token": token });
    let (s, other) = anon.post("/_matrix/client/v3/login", login.clone()).await;
    assert_eq!(s, 200, "{other}");
    assert_eq!(other["user_id"], alice.user_id.as_str());
    let (_, me) = whoami(&with_token(&anon, other["access_token"].as_str().unwrap())).await;
    assert_eq!(me["user_id"], alice.user_id.as_str());
    // Once only; and nonsense never.
    let (s, err) = anon.post("/_matrix/client/v3/login", login).await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{err}"
    );
    let (s, _) = anon
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.token", "token": "nope" }),
        )
        .await;
    assert_eq!(s, 403);
}
