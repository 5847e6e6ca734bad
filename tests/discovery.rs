//! What a client discovers of the server before and beside rooms: `/versions`,
//! `/.well-known/matrix/client` and `/.well-known/matrix/support`, capabilities, login
//! flows, health and metrics, and credentials for the configured TURN servers
//! (`/voip/turnServer`, TURN REST: the password the HMAC-SHA1 of the user name under the
//! shared secret). Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`,
//! on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use base64::Engine;
use common::Server;
use hmac::{Hmac, Mac};
use serde_json::json;

#[tokio::test]
async fn discovery_endpoints() {
    let srv = Server::start().await;
    let c = srv.anon();
    let (s, b) = c.get("/_matrix/client/versions").await;
    assert_eq!(s, 200);
    assert!(b["versions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v == "v1.12"));
    let (s, b) = c.get("/.well-known/matrix/client").await;
    assert_eq!(s, 200);
    assert!(b["m.homeserver"]["base_url"].is_string());
    let alice = srv.register("alice").await;
    let (s, b) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(s, 200);
    assert_eq!(b["capabilities"]["m.room_versions"]["default"], "12");
    let (s, b) = c.get("/_matrix/client/v3/login").await;
    assert_eq!(s, 200);
    assert_eq!(b["flows"][0]["type"], "m.login.password");
}

#[tokio::test]
async fn health_and_metrics() {
    let srv = Server::start().await;
    let c = srv.anon();
    let (s, b) = c.get("/health").await;
    assert_eq!((s, b), (200, json!("OK")));
    let (s, b) = c.get("/metrics").await;
    assert_eq!(s, 200);
    assert!(b.as_str().unwrap().contains("sandcat_http_requests_total"));
}

#[tokio::test]
async fn support_contacts_and_turn_servers_as_configured() {
    // Neither configured: no support document, and an empty TURN answer.
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let (status, _) = srv.anon().get("/.well-known/matrix/support").await;
    assert_eq!(status, 404);
    let (status, body) = alice.get("/_matrix/client/v3/voip/turnServer").await;
    assert_eq!((status, body), (200, json!({})));

    let srv = Server::start_with(|c| {
        c.voip.turn_uris = vec!["turn:turn.example.org:3478?transport=udp".into()];
        c.voip.turn_shared_secret = "shared".into();
        c.voip.turn_ttl_secs = 3600;
        c.support.support_page = "https://example.org/help".into();
        c.support.contacts = vec![sandcat::config::SupportContact {
            role: "m.role.admin".into(),
            matrix_id: "@admin:example.org".into(),
            email_address: String::new(),
        }];
    })
    .await;
    let alice = srv.register("alice").await;
    let (status, doc) = srv.anon().get("/.well-known/matrix/support").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["support_page"], "https://example.org/help");
    assert_eq!(
        doc["contacts"],
        json!([{ "role": "m.role.admin", "matrix_id": "@admin:example.org" }])
    );

    let (status, turn) = alice.get("/_matrix/client/v3/voip/turnServer").await;
    assert_eq!(status, 200, "{turn}");
    assert_eq!(
        turn["uris"],
        json!(["turn:turn.example.org:3478?transport=udp"])
    );
    assert_eq!(turn["ttl"], 3600);
    let username = turn["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(expiry > now && expiry <= now + 3600 + 5, "{username}");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"shared").unwrap();
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(turn["password"], expected.as_str());
    let (status, _) = srv.anon().get("/_matrix/client/v3/voip/turnServer").await;
    assert_eq!(status, 401);
}
