//! Registration tokens: with `registration_requires_token`, `/register` asks for the
//! `m.login.registration_token` stage; a token works as many times as it allows and until it
//! expires, a failed registration gives its use back, and the validity endpoint tells. Runs on
//! the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Server};
use sandcat_core::services::registration_tokens::NewToken;
use serde_json::{json, Value};

async fn register(srv: &Server, name: &str, auth: Option<Value>) -> (u16, Value) {
    let mut body = json!({ "username": name, "password": format!("pw-{name}") });
    if let Some(a) = auth {
        body["auth"] = a;
    }
    srv.anon().post("/_matrix/client/v3/register", body).await
}

fn token_auth(token: &str) -> Option<Value> {
    Some(json!({ "type": "m.login.registration_token", "token": token }))
}

async fn validity(srv: &Server, token: &str) -> bool {
    let (s, b) = srv
        .anon()
        .get(&format!(
            "/_matrix/client/v1/register/m.login.registration_token/validity?token={}",
            enc(token)
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    b["valid"].as_bool().unwrap()
}

#[tokio::test]
async fn registration_needs_a_valid_token() {
    let srv = Server::start_with(|c| c.registration_requires_token = true).await;
    let once = sandcat::create_registration_token(
        &srv.config,
        NewToken {
            uses_allowed: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Without a token (or with the dummy stage): the flow asks for one.
    for auth in [None, Some(json!({ "type": "m.login.dummy" }))] {
        let (s, b) = register(&srv, "alice", auth).await;
        assert_eq!(s, 401, "{b}");
        assert_eq!(
            b["flows"][0]["stages"],
            json!(["m.login.registration_token"])
        );
        assert!(b["session"].is_string());
    }
    // A wrong token: asked again, with the reason.
    let (s, b) = register(&srv, "alice", token_auth("nope")).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (401, Some("M_FORBIDDEN")),
        "{b}"
    );
    assert!(!validity(&srv, "nope").await);
    assert!(!validity(&srv, "not a token!").await);

    // The token works once; a registration that fails (no password) gives the use back.
    assert!(validity(&srv, &once.token).await);
    let (s, b) = srv
        .anon()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "alice", "auth": { "type": "m.login.registration_token", "token": once.token } }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_MISSING_PARAM")),
        "{b}"
    );
    assert!(validity(&srv, &once.token).await, "the use was given back");
    let (s, b) = register(&srv, "alice", token_auth(&once.token)).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["access_token"].is_string());
    assert!(!validity(&srv, &once.token).await, "used up");
    let (s, b) = register(&srv, "bob", token_auth(&once.token)).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (401, Some("M_FORBIDDEN")),
        "{b}"
    );

    // A token of any number of uses, until it expires.
    let named = sandcat::create_registration_token(
        &srv.config,
        NewToken {
            token: Some("team-2026".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for name in ["bob", "carol"] {
        let (s, b) = register(&srv, name, token_auth(&named.token)).await;
        assert_eq!(s, 200, "{name}: {b}");
    }
    let expired = sandcat::create_registration_token(
        &srv.config,
        NewToken {
            lifetime_ms: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!validity(&srv, &expired.token).await);
    let (s, _) = register(&srv, "dave", token_auth(&expired.token)).await;
    assert_eq!(s, 401);

    // Tokens are listed and deleted by admins; a bad or taken name is refused.
    let gate = sandcat::registration_tokens(&srv.config).await.unwrap();
    let listed = gate.list().await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .any(|t| t.token == "team-2026" && t.completed == 2));
    assert!(gate.delete("team-2026").await.unwrap());
    assert!(!validity(&srv, "team-2026").await);
    for bad in ["has space", "once"] {
        let token = if bad == "once" {
            once.token.clone()
        } else {
            bad.to_owned()
        };
        let made = gate
            .create(NewToken {
                token: Some(token),
                ..Default::default()
            })
            .await;
        assert!(made.is_err(), "{bad}");
    }
}

#[tokio::test]
async fn without_the_setting_no_token_is_asked() {
    let srv = Server::start().await;
    let (s, b) = register(&srv, "alice", None).await;
    assert_eq!(s, 401);
    assert_eq!(b["flows"][0]["stages"], json!(["m.login.dummy"]));
    let (s, b) = register(&srv, "alice", Some(json!({ "type": "m.login.dummy" }))).await;
    assert_eq!(s, 200, "{b}");
}
