//! Regression tests for what a hostile tester found: bad input that made the server panic or
//! answer 500, limits that were missing, sessions that could not be revoked, registration and
//! codes that could be abused. Each runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline, with the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use base64::{engine::general_purpose, Engine};
use common::{enc, Client, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn password_auth(user: &str) -> Value {
    json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": format!("pw-{user}") })
}

async fn login(srv: &Server, user: &str, password: &str) -> (u16, Value) {
    srv.anon()
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password }),
        )
        .await
}

#[tokio::test]
async fn a_login_body_without_type_is_bad_json_not_a_crash() {
    let srv = Server::start().await;
    for body in [
        json!({}),
        json!({ "identifier": { "type": "m.id.user", "user": "x" } }),
    ] {
        let (s, b) = srv.anon().post("/_matrix/client/v3/login", body).await;
        assert_eq!((s, b["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{b}");
    }
    let (s, _) = srv.anon().get("/_matrix/client/versions").await;
    assert_eq!(s, 200, "still serving");
}

#[tokio::test]
async fn nul_characters_are_refused_the_same_way_on_both_profiles() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let r = enc(&room);
    let bad_param = [
        format!("/_matrix/client/v3/rooms/{r}/state/m.room.topic/a%00b"),
        format!("/_matrix/client/v3/rooms/{r}/state/m.a%00b/"),
        format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/txn%00"),
        format!(
            "/_matrix/client/v3/user/{}/account_data/x%00y",
            enc(&alice.user_id)
        ),
    ];
    for path in &bad_param {
        let (s, b) = alice.put(path, json!({ "body": "x" })).await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{path}: {b}"
        );
    }
    let bad_json: [(&str, Value); 4] = [
        (
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            json!({ "displayname": "a\u{0}b" }),
        ),
        (
            "/_matrix/client/v3/user_directory/search",
            json!({ "search_term": "a\u{0}" }),
        ),
        (
            "/_matrix/client/v3/keys/upload",
            json!({ "one_time_keys": { "signed_curve25519:A\u{0}": { "key": "k" } } }),
        ),
        (
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t1"),
            json!({ "msgtype": "m.text", "body": "nul \u{0} here" }),
        ),
    ];
    for (path, body) in bad_json {
        let method = if path.contains("displayname") || path.contains("/send/") {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let (s, b) = alice
            .raw(method, path, Some(body.to_string().into_bytes()))
            .await;
        assert_eq!(
            (s, b["errcode"].as_str()),
            (400, Some("M_BAD_JSON")),
            "{path}: {b}"
        );
    }
    let (s, b) = alice
        .raw(
            reqwest::Method::POST,
            "/_matrix/media/v3/upload?filename=a%00.png",
            Some(b"png".to_vec()),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{b}"
    );
    // A backslash before `u0000` is text, not a NUL.
    let (s, b) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/t2"),
            json!({ "msgtype": "m.text", "body": "\\u0000" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn replacing_a_master_key_needs_the_password_and_keys_are_the_uploaders() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let key = |user: &str, usage: &str, k: &str| json!({ "user_id": user, "usage": [usage], "keys": { format!("ed25519:{k}"): k } });
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    // Someone else's user id, or the wrong usage, is refused.
    let (s, b) = alice
        .post(
            path,
            json!({ "master_key": key("@bob:localhost", "master", "m1") }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{b}"
    );
    let (s, _) = alice
        .post(
            path,
            json!({ "master_key": key(&alice.user_id, "self_signing", "m1") }),
        )
        .await;
    assert_eq!(s, 400);
    // The first master key needs no password; the same again neither.
    let first = json!({ "master_key": key(&alice.user_id, "master", "m1") });
    let (s, b) = alice.post(path, first.clone()).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = alice.post(path, first).await;
    assert_eq!(s, 200, "re-uploading the same key: {b}");
    // Replacing it does.
    let second = json!({ "master_key": key(&alice.user_id, "master", "m2") });
    let (s, b) = alice.post(path, second.clone()).await;
    assert_eq!(s, 401, "{b}");
    assert!(b["flows"].is_array(), "a UIA challenge: {b}");
    let mut with_auth = second;
    with_auth["auth"] = password_auth("alice");
    let (s, b) = alice.post(path, with_auth).await;
    assert_eq!(s, 200, "{b}");
    let (_, keys) = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    let master = &keys["master_keys"][&alice.user_id];
    assert_eq!(master["keys"]["ed25519:m2"], "m2", "{keys}");
    assert_eq!(master["user_id"], alice.user_id.as_str());
}

/// A raw HTTP/1.1 exchange: what the server answers to `head` (before any body is sent).
async fn raw_head(base: &str, head: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer without the body")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let token = alice.token.clone().unwrap();
    for path in [
        "/_matrix/media/v3/upload".to_owned(),
        "/_matrix/client/v3/createRoom".to_owned(),
        "/api/file/upload".to_owned(),
    ] {
        let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n");
        let answer = raw_head(&srv.base, &head).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("M_TOO_LARGE"), "{path}: {answer}");
    }
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let srv = Server::start_with(|c| c.header_timeout_secs = 1).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    // Silent, and sending half a header: both are closed by the server.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHo")
        .await
        .unwrap();
    for (name, tcp) in [("silent", &mut silent), ("slow", &mut slow)] {
        let mut buf = vec![0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{name} connection still open"));
        // Closed (0 bytes, or a reset), possibly after a 408 answer.
        if let Ok(n) = read {
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{name}: {text}");
        }
    }
    let (s, _) = srv.anon().get("/_matrix/client/versions").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let srv = Server::start_with(|c| c.max_connections = 2).await;
    let addr = srv.base.trim_start_matches("http://").to_owned();
    let idle = [
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
        tokio::net::TcpStream::connect(&addr).await.unwrap(),
    ];
    // Let the server accept both before the third arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = {
        let base = srv.base.clone();
        tokio::spawn(async move {
            reqwest::get(format!("{base}/_matrix/client/versions"))
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "served beyond the cap");
    drop(idle);
    let status = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a connection closed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn profile_fields_have_limits() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let path = format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice.user_id)
    );
    let (s, b) = alice
        .put(&path, json!({ "displayname": "x".repeat(100_000) }))
        .await;
    assert_eq!((s, b["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{b}");
    let (s, _) = alice
        .put(&path, json!({ "displayname": "é".repeat(256) }))
        .await;
    assert_eq!(s, 200, "256 characters are fine");
    let (s, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/avatar_url",
                enc(&alice.user_id)
            ),
            json!({ "avatar_url": format!("mxc://localhost/{}", "a".repeat(2000)) }),
        )
        .await;
    assert_eq!(s, 400);
    // The user can still create rooms.
    alice.create_room(json!({})).await;
}

#[tokio::test]
async fn uploading_keys_wakes_a_waiting_sync_with_the_current_count() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let first = alice.sync(None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let alice = alice.clone();
        tokio::spawn(async move { alice.sync(Some(&since), 30_000).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "one_time_keys": { "signed_curve25519:AAAA": { "key": "k", "signatures": {} } } }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let woken = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the upload woke the long-poll")
        .unwrap();
    assert_eq!(
        woken["device_one_time_keys_count"]["signed_curve25519"], 1,
        "{woken}"
    );
}

#[tokio::test]
async fn an_account_can_be_deactivated_for_good() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = bob.create_room(json!({ "preset": "public_chat" })).await;
    alice.join(&room).await;
    let path = "/_matrix/client/v3/account/deactivate";
    let (s, b) = alice.post(path, json!({})).await;
    assert_eq!(s, 401, "the password is asked: {b}");
    let (s, b) = alice
        .post(
            path,
            json!({ "auth": password_auth("alice"), "erase": true }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    // No identity server binds any of her addresses: nothing failed to unbind.
    assert_eq!(b["id_server_unbind_result"], "success");
    let (s, b) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((s, b["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
    let (s, b) = login(&srv, "alice", "pw-alice").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_USER_DEACTIVATED")),
        "{b}"
    );
    let (s, b) = srv
        .anon()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "alice", "password": "pw", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_USER_IN_USE")),
        "never reused"
    );
    let (_, members) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            enc(&room)
        ))
        .await;
    assert!(
        members["joined"].get("@alice:localhost").is_none(),
        "left: {members}"
    );
    let (_, found) = bob
        .post(
            "/_matrix/client/v3/user_directory/search",
            json!({ "search_term": "alice" }),
        )
        .await;
    assert_eq!(found["results"], json!([]), "{found}");
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_for_every_api() {
    let srv = Server::start_with(|c| {
        c.max_login_failures = 3;
        c.login_lockout_secs = 600;
    })
    .await;
    srv.register("alice").await;
    for _ in 0..3 {
        let (s, _) = login(&srv, "alice", "wrong").await;
        assert_eq!(s, 403);
    }
    let (s, b) = login(&srv, "alice", "pw-alice").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (429, Some("M_LIMIT_EXCEEDED")),
        "{b}"
    );
    let res = reqwest::Client::new()
        .post(format!("{}/api/user/login", srv.base))
        .json(&json!({ "account": "alice", "password": general_purpose::STANDARD_NO_PAD.encode("pw-alice") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "the Sandcat login shares the lockout");
    // Another account is not affected.
    srv.register("bob").await;
    let (s, _) = login(&srv, "bob", "pw-bob").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn low_findings_absent_fields_aliases_creation_content_empty_sends_media_headers() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;
    // No alias for someone else's room.
    let (s, b) = bob
        .put(
            "/_matrix/client/v3/directory/room/%23mine:localhost",
            json!({ "room_id": private }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{b}"
    );
    // creation_content.type is a string.
    let (s, _) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "creation_content": { "type": 5 } }),
        )
        .await;
    assert_eq!(s, 400);
    // A send without a body stores nothing.
    let (s, _) = alice
        .raw(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/empty",
                enc(&private)
            ),
            None,
        )
        .await;
    assert_eq!(s, 400);
    // Absent, not null.
    let (_, members) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/joined_members",
            enc(&private)
        ))
        .await;
    let me = &members["joined"][&alice.user_id];
    assert!(me.get("avatar_url").is_none(), "{members}");
    let (_, devices) = alice.get("/_matrix/client/v3/devices").await;
    let device = &devices["devices"][0];
    assert!(device["device_id"].is_string(), "{devices}");
    assert!(
        device.as_object().unwrap().values().all(|v| !v.is_null()),
        "{devices}"
    );
    // Served media is sandboxed.
    let (s, up) = alice
        .raw(
            reqwest::Method::POST,
            "/_matrix/media/v3/upload?filename=a.html",
            Some(b"<script>alert(1)</script>".to_vec()),
        )
        .await;
    assert_eq!(s, 200, "{up}");
    let mxc = up["content_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mxc://")
        .to_owned();
    let res = reqwest::Client::new()
        .get(format!(
            "{}/_matrix/client/v1/media/download/{mxc}",
            srv.base
        ))
        .bearer_auth(alice.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("sandbox"));
    assert_eq!(h["x-content-type-options"], "nosniff");
}

// --- The Sandcat API

fn code_for(srv: &Server, email: &str) -> String {
    srv.outbox
        .0
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(e, _)| e == email)
        .map(|(_, c)| c.clone())
        .expect("a code was sent")
}

async fn send_code(http: &reqwest::Client, srv: &Server, email: &str) -> u16 {
    http.post(format!("{}/api/user/mail/send", srv.base))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn register(http: &reqwest::Client, srv: &Server, email: &str, code: &str) -> (u16, Value) {
    let res = http
        .post(format!("{}/api/user", srv.base))
        .json(&json!({ "avatar": "", "name": "n", "password": "pw-secret", "email": email, "code": code }))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// `(access, refresh)` tokens of a Sandcat login.
async fn sandcat_login(
    http: &reqwest::Client,
    srv: &Server,
    account: &str,
    pw: &str,
) -> (String, String) {
    let res = http
        .post(format!("{}/api/user/login", srv.base))
        .json(
            &json!({ "account": account, "password": general_purpose::STANDARD_NO_PAD.encode(pw) }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login {account}");
    let t: Value = res.json().await.unwrap();
    (
        t["token"].as_str().unwrap().to_owned(),
        t["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(http: &reqwest::Client, srv: &Server, token: &str, rotate: bool) -> (u16, String) {
    let res = http
        .get(format!(
            "{}/api/user/refresh_token/{token}/{rotate}",
            srv.base
        ))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[tokio::test]
async fn sandcat_registration_obeys_the_registration_setting() {
    let srv = Server::start_with(|c| c.registration_enabled = false).await;
    let http = reqwest::Client::new();
    assert_eq!(send_code(&http, &srv, "eve@example.org").await, 403);
    let (s, b) = register(&http, &srv, "eve@example.org", "000000").await;
    assert_eq!((s, b["kind"].as_str()), (403, Some("UnAuthorized")), "{b}");
}

#[tokio::test]
async fn codes_are_single_use_and_die_after_a_few_wrong_tries() {
    let srv = Server::start().await;
    let http = reqwest::Client::new();
    let email = "eve@example.org";
    assert_eq!(send_code(&http, &srv, email).await, 200);
    assert_eq!(
        send_code(&http, &srv, email).await,
        429,
        "not again so soon"
    );
    let code = code_for(&srv, email);
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for _ in 0..5 {
        let (s, b) = register(&http, &srv, email, wrong).await;
        assert_eq!((s, b["kind"].as_str()), (400, Some("CodeIsInvalid")), "{b}");
    }
    let (s, b) = register(&http, &srv, email, &code).await;
    assert_eq!(
        (s, b["kind"].as_str()),
        (400, Some("CodeIsExpired")),
        "the right code after too many wrong ones: {b}"
    );

    let email = "frank@example.org";
    assert_eq!(send_code(&http, &srv, email).await, 200);
    let code = code_for(&srv, email);
    let (s, b) = register(&http, &srv, email, &code).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = register(&http, &srv, "frank2@example.org", &code).await;
    assert_eq!(s, 400, "a code is for its own address");
    let (s, _) = register(&http, &srv, email, &code).await;
    assert_eq!(s, 400, "and used once");
}

#[tokio::test]
async fn sandcat_sessions_are_revoked_like_matrix_ones_and_refresh_once() {
    let srv = Server::start().await;
    let http = reqwest::Client::new();
    let alice: Client = srv.register("alice").await;
    let (access, refresh_token) = sandcat_login(&http, &srv, "alice", "pw-alice").await;
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &access, "alice").await,
        200
    );
    // A refresh token is no access token, and an access token does not refresh.
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &refresh_token, "alice").await,
        401
    );
    assert_eq!(refresh(&http, &srv, &access, false).await.0, 401);
    // A new access token, as often as needed; a new refresh token once.
    let (s, fresh) = refresh(&http, &srv, &refresh_token, false).await;
    assert_eq!(s, 200);
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &fresh, "alice").await,
        200
    );
    let (s, rotated) = refresh(&http, &srv, &refresh_token, true).await;
    assert_eq!(s, 200);
    assert_eq!(
        refresh(&http, &srv, &refresh_token, true).await.0,
        401,
        "used up"
    );
    assert_eq!(refresh(&http, &srv, &refresh_token, false).await.0, 401);
    assert_eq!(refresh(&http, &srv, &rotated, false).await.0, 200);
    // The session is a device: Matrix sees it, and deleting it ends every token of it.
    let (_, devices) = alice.get("/_matrix/client/v3/devices").await;
    assert_eq!(devices["devices"].as_array().unwrap().len(), 2, "{devices}");
    let (s, _) = alice.post("/_matrix/client/v3/logout/all", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &access, "alice").await,
        401
    );
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &fresh, "alice").await,
        401
    );
    assert_eq!(refresh(&http, &srv, &rotated, false).await.0, 401);
    // Signing out from the Sandcat client ends its session.
    let (access, _) = sandcat_login(&http, &srv, "alice", "pw-alice").await;
    let res = http
        .delete(format!("{}/api/user/alice", srv.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &access, "alice").await,
        401
    );
}

#[tokio::test]
async fn a_sandcat_password_change_takes_the_code_and_ends_every_session() {
    let srv = Server::start().await;
    let http = reqwest::Client::new();
    let email = "gina@example.org";
    assert_eq!(send_code(&http, &srv, email).await, 200);
    let (s, user) = register(&http, &srv, email, &code_for(&srv, email)).await;
    assert_eq!(s, 200);
    let id = user["id"].as_str().unwrap().to_owned();
    let (access, refresh_token) = sandcat_login(&http, &srv, email, "pw-secret").await;
    let (s, matrix) = login(&srv, &id, "pw-secret").await;
    assert_eq!(s, 200);
    let matrix_token = matrix["access_token"].as_str().unwrap().to_owned();

    let change = |code: String| {
        let http = http.clone();
        let url = format!("{}/api/user/pwd", srv.base);
        let id = id.clone();
        async move {
            http.put(url)
                .json(&json!({ "user_id": id, "email": email, "code": code, "pwd": general_purpose::STANDARD_NO_PAD.encode("pw-new") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // No code sent yet: refused, as is a wrong one.
    assert_eq!(change("123456".into()).await, 400);
    // The registration used its code, so a new one may be sent at once.
    assert_eq!(send_code(&http, &srv, email).await, 200);
    let code = code_for(&srv, email);
    assert_eq!(
        change(code.clone()).await,
        200,
        "no Authorization header needed"
    );
    assert_eq!(change(code).await, 400, "the code is used");
    assert_eq!(
        common::sandcat_get_user(&http, &srv.base, &access, &id).await,
        401
    );
    assert_eq!(refresh(&http, &srv, &refresh_token, false).await.0, 401);
    let res = http
        .get(format!("{}/_matrix/client/v3/account/whoami", srv.base))
        .bearer_auth(&matrix_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "Matrix sessions end too");
    let (s, _) = login(&srv, &id, "pw-new").await;
    assert_eq!(s, 200, "the new password works");
}

#[tokio::test]
async fn ws_addr_follows_a_tls_proxy() {
    let srv = Server::start_with(|c| c.public_base_url = String::new()).await;
    srv.register("alice").await;
    let login = |proto: Option<&'static str>| {
        let url = format!("{}/api/user/login", srv.base);
        async move {
            let mut req = reqwest::Client::new()
                .post(url)
                .header("host", "chat.example.org")
                .json(&json!({ "account": "alice", "password": general_purpose::STANDARD_NO_PAD.encode("pw-alice") }));
            if let Some(p) = proto {
                req = req.header("x-forwarded-proto", p);
            }
            let t: Value = req.send().await.unwrap().json().await.unwrap();
            t["ws_addr"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(login(Some("https")).await, "wss://chat.example.org/ws");
    assert_eq!(login(None).await, "ws://chat.example.org/ws");
}

#[tokio::test]
async fn the_register_page_avatars_exist_for_both_apis() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    for n in 1..=3 {
        for path in [
            format!("/api/file/avatar/get/avatar{n}.png"),
            format!("/api/file/avatar/get/avatar{n}"),
        ] {
            let res = reqwest::get(format!("{}{path}", srv.base)).await.unwrap();
            assert_eq!(res.status(), 200, "{path}");
            let bytes = res.bytes().await.unwrap();
            assert!(bytes.starts_with(b"\x89PNG"), "{path}");
        }
        let res = reqwest::Client::new()
            .get(format!(
                "{}/_matrix/client/v1/media/download/localhost/avatar{n}",
                srv.base
            ))
            .bearer_auth(alice.token.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "Matrix clients see it too");
    }
}

#[tokio::test]
async fn long_targets_and_headers_get_matrix_errors() {
    let srv = Server::start().await;
    let long = "a".repeat(10 * 1024);
    let res = reqwest::get(format!("{}/_matrix/client/v3/profile/{long}", srv.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 414);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE");
    let res = reqwest::Client::new()
        .get(format!("{}/_matrix/client/versions", srv.base))
        .header("x-padding", "p".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_TOO_LARGE");
}

#[tokio::test]
async fn an_unconfigured_oauth_provider_answers_a_sandcat_error() {
    let srv = Server::start().await;
    let res = reqwest::get(format!(
        "{}/api/user/auth/github/callback?code=x&state=y",
        srv.base
    ))
    .await
    .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "NotFound");
    assert!(
        body["details"].as_str().unwrap().contains("github"),
        "{body}"
    );
}
