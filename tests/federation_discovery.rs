//! Server discovery over real DNS: a server named without a port (`chat.test`) has no
//! `.well-known` document and an SRV record (`_matrix-fed._tcp.chat.test`) on a DNS server
//! on loopback naming `localhost` and its port. A server that asks that DNS server finds it
//! there: its user joins a room by the other server's alias, and they talk both ways.
//! A server delegated by a `.well-known` document that is reached through redirects is found
//! too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use axum::{
    http::{header, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Json, Router,
};
use common::{
    dns, enc,
    federation::{certificate, federating_as, federating_with, free_port, heard},
};
use serde_json::json;

/// Two servers: `a` asks the DNS server at `dns`; `b` is named `name` (without a port) and
/// listens on `port`, where `a` must find it. Keep the servers: they stop when dropped.
struct Found {
    a: common::Server,
    b: common::Server,
    alice: common::Client,
    bob: common::Client,
}

async fn found_by_name(
    certs: &std::path::Path,
    dns: std::net::SocketAddr,
    name: &str,
    port: u16,
) -> Found {
    let (a, _) = federating_with(certs, move |c| {
        c.federation.dns_server = dns.to_string();
    })
    .await;
    let b = federating_as(
        certs,
        tempfile::tempdir().unwrap(),
        name.into(),
        port,
        |_| {},
    )
    .await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    Found { a, b, alice, bob }
}

#[tokio::test]
async fn a_server_is_found_through_its_srv_record() {
    let certs = tempfile::tempdir().unwrap();
    let port = free_port();
    let dns = dns::start(&[("_matrix-fed._tcp.chat.test", "localhost", port)]).await;
    let Found {
        a: _a,
        b: _b,
        alice,
        bob,
    } = found_by_name(certs.path(), dns, "chat.test", port).await;
    assert_eq!(bob.user_id, "@bob:chat.test");
    let room = bob
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "hall" }))
        .await;

    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/join/{}", enc("#hall:chat.test")),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    alice.send_text(&room, "t1", "found you").await;
    assert!(
        heard(&bob, &room, "found you").await,
        "chat.test never got the message"
    );
    bob.send_text(&room, "t1", "and I you").await;
    assert!(
        heard(&alice, &room, "and I you").await,
        "the answer never came back"
    );
}

/// Serves `.well-known/matrix/server` for `old.test` where servers look for it (HTTPS on port
/// 443 of the address every name has here): a permanent redirect to another name, then a
/// relative one, then the document naming `localhost:{port}`. Other names get a 404.
async fn serve_redirected_well_known(port: u16) {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let tls = sandcat::tls::acceptor(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:443")
        .await
        .unwrap_or_else(|e| {
            panic!("binding 127.0.0.1:443 ({e}): this test serves a .well-known document where other servers look for it, which takes root (as CI runs)")
        });
    let host_is = |headers: &HeaderMap, name: &str| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.split(':').next() == Some(name))
    };
    let router = Router::new()
        .route(
            "/.well-known/matrix/server",
            get(move |headers: HeaderMap| async move {
                if host_is(&headers, "old.test") {
                    let to = [(header::LOCATION, "https://new.test/moved")];
                    (StatusCode::MOVED_PERMANENTLY, to).into_response()
                } else {
                    StatusCode::NOT_FOUND.into_response()
                }
            }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/delegation")]) }),
        )
        .route(
            "/delegation",
            get(move || async move { Json(json!({ "m.server": format!("localhost:{port}") })) }),
        );
    tokio::spawn(async move {
        let _certs = certs;
        sandcat::listener::serve(
            listener,
            router,
            &sandcat::listener::Limits::default(),
            Some(tls),
            std::future::pending(),
        )
        .await
    });
}

#[tokio::test]
async fn a_server_is_found_through_well_known_redirects() {
    let certs = tempfile::tempdir().unwrap();
    let port = free_port();
    serve_redirected_well_known(port).await;
    let dns = dns::start(&[]).await;
    let Found {
        a: _a,
        b: _b,
        alice,
        bob,
    } = found_by_name(certs.path(), dns, "old.test", port).await;
    let room = bob
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "moved" }))
        .await;

    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/join/{}", enc("#moved:old.test")),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "the delegation was not followed: {body}");
    alice.send_text(&room, "t1", "through the redirects").await;
    assert!(
        heard(&bob, &room, "through the redirects").await,
        "old.test never got the message"
    );
}
