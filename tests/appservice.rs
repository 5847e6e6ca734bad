//! Application services end to end: a real HTTP application service (a small axum server in
//! this test) registered from a YAML file, talking to the real server over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post, put},
    Json, Router,
};
use common::{enc, Client, Server};
use serde_json::{json, Value};

const AS_TOKEN: &str = "as_token_bridge_0123456789";
const HS_TOKEN: &str = "hs_token_bridge_0123456789";

/// What the test application service saw and how it behaves.
#[derive(Default)]
struct Seen {
    /// Accepted transactions: (txn id, body).
    accepted: Mutex<Vec<(String, Value)>>,
    /// Transaction ids refused while "down".
    refused: Mutex<Vec<String>>,
    down: AtomicBool,
    bad_auth: AtomicUsize,
    /// The homeserver's base URL, for queries that create users and rooms.
    hs: Mutex<String>,
    pings: AtomicUsize,
}

type Shared = Arc<Seen>;

fn authorized(seen: &Seen, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == format!("Bearer {HS_TOKEN}"));
    if !ok {
        seen.bad_auth.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn transaction(
    State(seen): State<Shared>,
    Path(txn): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&seen, &headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    if seen.down.load(Ordering::SeqCst) {
        seen.refused.lock().unwrap().push(txn);
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let mut accepted = seen.accepted.lock().unwrap();
    // A repeat of an accepted transaction is acknowledged and dropped, as the spec asks.
    if !accepted.iter().any(|(t, _)| *t == txn) {
        accepted.push((txn, body));
    }
    (StatusCode::OK, Json(json!({})))
}

fn as_client(base: &str, user_id: Option<&str>) -> Client {
    Client {
        base: base.to_owned(),
        token: Some(AS_TOKEN.to_owned()),
        user_id: user_id.unwrap_or("@bridge_bot:localhost").to_owned(),
        http: reqwest::Client::new(),
    }
}

/// `GET /_matrix/app/v1/users/{userId}`: the bridge creates its puppets on demand.
async fn query_user(
    State(seen): State<Shared>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&seen, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    if !user_id.starts_with("@_bridge_") {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND"})),
        );
    }
    let localpart = user_id[1..]
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let hs = seen.hs.lock().unwrap().clone();
    let (s, b) = as_client(&hs, None)
        .post(
            "/_matrix/client/v3/register",
            json!({ "type": "m.login.application_service", "username": localpart, "inhibit_login": true }),
        )
        .await;
    assert_eq!(s, 200, "puppet registration in query: {b}");
    (StatusCode::OK, Json(json!({})))
}

/// `GET /_matrix/app/v1/rooms/{alias}`: the bridge creates portal rooms on demand.
async fn query_alias(
    State(seen): State<Shared>,
    Path(alias): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&seen, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let name = alias[1..].split(':').next().unwrap_or_default().to_owned();
    let hs = seen.hs.lock().unwrap().clone();
    let (s, b) = as_client(&hs, None)
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "room_alias_name": name, "preset": "public_chat" }),
        )
        .await;
    assert_eq!(s, 200, "portal creation in query: {b}");
    (StatusCode::OK, Json(json!({})))
}

async fn ping(State(seen): State<Shared>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    if !authorized(&seen, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    seen.pings.fetch_add(1, Ordering::SeqCst);
    (StatusCode::OK, Json(json!({})))
}

async fn protocol(Path(p): Path<String>) -> (StatusCode, Json<Value>) {
    if p != "chat" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "user_fields": ["nick"], "location_fields": ["channel"], "icon": "mxc://localhost/icon",
            "field_types": { "nick": { "regexp": ".*", "placeholder": "nick" }, "channel": { "regexp": "#.*", "placeholder": "#chan" } },
            "instances": [{ "desc": "Chat", "network_id": "chat", "fields": {}, "instance_id": "chat" }]
        })),
    )
}

/// Starts the application service; returns its state and URL.
async fn start_appservice() -> (Shared, String) {
    let seen: Shared = Arc::default();
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
        .route("/_matrix/app/v1/users/{user}", get(query_user))
        .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/_matrix/app/v1/thirdparty/protocol/{p}", get(protocol))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, url)
}

fn registration(url: &str) -> String {
    format!(
        r##"id: bridge
url: "{url}"
as_token: {AS_TOKEN}
hs_token: {HS_TOKEN}
sender_localpart: bridge_bot
rate_limited: false
receive_ephemeral: true
protocols: ["chat"]
namespaces:
  users:
    - exclusive: true
      regex: "@_bridge_.*:localhost"
  aliases:
    - exclusive: true
      regex: "#_bridge_.*:localhost"
  rooms: []
"##
    )
}

/// A server whose registration directory holds the bridge's file.
async fn start_with_bridge(dir: tempfile::TempDir, url: &str) -> Server {
    std::fs::create_dir_all(dir.path().join("appservices")).unwrap();
    std::fs::write(
        dir.path().join("appservices/bridge.yaml"),
        registration(url),
    )
    .unwrap();
    Server::start_in(dir, |_| {}).await
}

/// Every timeline event the application service accepted, in delivery order.
fn delivered(seen: &Seen) -> Vec<Value> {
    seen.accepted
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, b)| b["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn delivered_bodies(seen: &Seen, room: &str) -> Vec<String> {
    delivered(seen)
        .iter()
        .filter(|e| e["room_id"] == room && e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// Waits (up to 20 s) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn register_puppet(hs: &str, localpart: &str) -> (u16, Value) {
    as_client(hs, None)
        .post(
            "/_matrix/client/v3/register",
            json!({ "type": "m.login.application_service", "username": localpart, "inhibit_login": true }),
        )
        .await
}

#[tokio::test]
async fn namespaces_identity_and_exclusivity() {
    let (seen, url) = start_appservice().await;
    let server = start_with_bridge(tempfile::tempdir().unwrap(), &url).await;
    *seen.hs.lock().unwrap() = server.base.clone();
    let anon = server.anon();

    // Ordinary registration cannot take a reserved name.
    let (s, b) = anon
        .post("/_matrix/client/v3/register", json!({ "username": "_bridge_x", "password": "pw", "auth": { "type": "m.login.dummy" } }))
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_EXCLUSIVE")),
        "{b}"
    );
    let (s, b) = anon
        .get("/_matrix/client/v3/register/available?username=_bridge_x")
        .await;
    assert_eq!(b["errcode"], "M_EXCLUSIVE", "{s} {b}");

    // The service registers its puppets, only inside its namespace.
    let (s, b) = register_puppet(&server.base, "_bridge_alice").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], "@_bridge_alice:localhost");
    assert!(b.get("access_token").is_none(), "inhibit_login: {b}");
    let (s, b) = register_puppet(&server.base, "outsider").await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_EXCLUSIVE")),
        "{b}"
    );
    let (s, b) = anon
        .post(
            "/_matrix/client/v3/register",
            json!({ "type": "m.login.application_service", "username": "_bridge_y" }),
        )
        .await;
    assert!(s == 401 || s == 403, "no as_token: {s} {b}");

    // Identity assertion: the sender by default, a namespaced user with `user_id`.
    let hs = &server.base;
    let (s, b) = as_client(hs, None)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, b["user_id"].as_str()),
        (200, Some("@bridge_bot:localhost")),
        "{b}"
    );
    assert!(b.get("device_id").is_none(), "{b}");
    let puppet = "@_bridge_alice:localhost";
    let (s, b) = as_client(hs, None)
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc(puppet)
        ))
        .await;
    assert_eq!((s, b["user_id"].as_str()), (200, Some(puppet)), "{b}");
    let alice = server.register("alice").await;
    let (s, b) = as_client(hs, None)
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "outside the namespace: {b}"
    );
    let (s, b) = as_client(hs, None)
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}",
            enc("@_bridge_nobody:localhost")
        ))
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "unregistered puppet: {b}"
    );
    // The token in the query string works too.
    let (s, b) = server
        .anon()
        .get(&format!(
            "/_matrix/client/v3/account/whoami?access_token={AS_TOKEN}"
        ))
        .await;
    assert_eq!(
        (s, b["user_id"].as_str()),
        (200, Some("@bridge_bot:localhost")),
        "{b}"
    );

    // m.login.application_service login opens a device; the device can then be asserted.
    let (s, b) = as_client(hs, None)
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.application_service", "identifier": { "type": "m.id.user", "user": "_bridge_alice" }, "device_id": "PUPPETDEV" }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["device_id"], "PUPPETDEV");
    let (s, b) = as_client(hs, None)
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}&org.matrix.msc3202.device_id=PUPPETDEV",
            enc(puppet)
        ))
        .await;
    assert_eq!(
        (s, b["device_id"].as_str()),
        (200, Some("PUPPETDEV")),
        "{b}"
    );
    let (s, _) = as_client(hs, None)
        .get(&format!(
            "/_matrix/client/v3/account/whoami?user_id={}&device_id=NOPE",
            enc(puppet)
        ))
        .await;
    assert_eq!(s, 403);
    let (s, b) = alice
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.application_service", "identifier": { "type": "m.id.user", "user": "_bridge_alice" } }))
        .await;
    assert_eq!(s, 403, "a user token cannot use the appservice login: {b}");
    let (_, b) = anon.get("/_matrix/client/v3/login").await;
    assert!(b.to_string().contains("m.login.application_service"), "{b}");

    // Aliases in an exclusive namespace belong to the service.
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let (s, b) = alice
        .put(
            &format!(
                "/_matrix/client/v3/directory/room/{}",
                enc("#_bridge_mine:localhost")
            ),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_EXCLUSIVE")),
        "{b}"
    );
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "room_alias_name": "_bridge_other" }),
        )
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (400, Some("M_EXCLUSIVE")),
        "{b}"
    );

    // Timestamp massaging is for application services only.
    let (s, b) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            json!({ "user_id": puppet }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let puppet_c = as_client(hs, Some(puppet));
    let (s, b) = puppet_c
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?user_id={}",
                enc(&room),
                enc(puppet)
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = puppet_c
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t1?user_id={}&ts=1234567890",
                enc(&room),
                enc(puppet)
            ),
            json!({ "msgtype": "m.text", "body": "from the past" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let imported = b["event_id"].as_str().unwrap().to_owned();
    let (_, ev) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&imported)
        ))
        .await;
    assert_eq!(ev["origin_server_ts"], 1234567890, "{ev}");
    assert_eq!(ev["sender"], puppet);
    let (_, b) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t2?ts=5",
                enc(&room)
            ),
            json!({ "msgtype": "m.text", "body": "now" }),
        )
        .await;
    let (_, ev) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(b["event_id"].as_str().unwrap())
        ))
        .await;
    assert_ne!(
        ev["origin_server_ts"], 5,
        "a user cannot set the timestamp: {ev}"
    );

    // Queries: an unknown user or alias in the namespace is asked of the service.
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            enc("@_bridge_newcomer:localhost")
        ))
        .await;
    assert_eq!(s, 200, "the service created the user on query: {b}");
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            enc("@nobody:localhost")
        ))
        .await;
    assert_eq!(s, 404, "{b}");
    alice.join("#_bridge_lobby:localhost").await;
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            enc("#_bridge_lobby:localhost")
        ))
        .await;
    assert_eq!(s, 200, "{b}");

    // Ping, the appservice directory and third-party lookups.
    let (s, b) = as_client(hs, None)
        .post(
            "/_matrix/client/v1/appservice/bridge/ping",
            json!({ "transaction_id": "ping1" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["duration_ms"].is_u64(), "{b}");
    assert_eq!(seen.pings.load(Ordering::SeqCst), 1);
    let (s, b) = as_client(hs, None)
        .post("/_matrix/client/v1/appservice/other/ping", json!({}))
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{b}"
    );
    let (s, b) = alice
        .post("/_matrix/client/v1/appservice/bridge/ping", json!({}))
        .await;
    assert_eq!(s, 403, "a user cannot ping: {b}");
    let (s, b) = as_client(hs, None)
        .put(
            &format!(
                "/_matrix/client/v3/directory/list/appservice/chat/{}",
                enc(&room)
            ),
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = alice.get("/_matrix/client/v3/publicRooms").await;
    assert!(b.to_string().contains(&room), "{b}");
    let (s, b) = alice.get("/_matrix/client/v3/thirdparty/protocols").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["chat"]["user_fields"], json!(["nick"]), "{b}");
    let (s, _) = alice
        .get("/_matrix/client/v3/thirdparty/protocol/nope")
        .await;
    assert_eq!(s, 404);
    assert_eq!(seen.bad_auth.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn transactions_in_order_with_ephemeral_data() {
    let (seen, url) = start_appservice().await;
    let server = start_with_bridge(tempfile::tempdir().unwrap(), &url).await;
    *seen.hs.lock().unwrap() = server.base.clone();
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (s, _) = register_puppet(&server.base, "_bridge_carol").await;
    assert_eq!(s, 200);
    let puppet = "@_bridge_carol:localhost";

    // A room without the service's users is not its business.
    let private = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    alice.send_text(&private, "p1", "private").await;

    let room = alice.create_room(json!({ "invite": [puppet] })).await;
    let puppet_c = as_client(&server.base, Some(puppet));
    let (s, b) = puppet_c
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?user_id={}",
                enc(&room),
                enc(puppet)
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let sent: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    for (i, text) in sent.iter().enumerate() {
        alice.send_text(&room, &format!("t{i}"), text).await;
    }
    eventually("all messages delivered", || {
        delivered_bodies(&seen, &room).len() >= sent.len()
    })
    .await;
    assert_eq!(
        delivered_bodies(&seen, &room),
        sent,
        "in order, exactly once"
    );
    assert!(
        delivered_bodies(&seen, &private).is_empty(),
        "no events of uninterested rooms"
    );
    // The invite and the join of the puppet were delivered too.
    assert!(delivered(&seen).iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == puppet
        && e["content"]["membership"] == "invite"));

    // Typing and receipts ride along as ephemeral data.
    alice.start_typing(&room).await;
    let last = alice.send_text(&room, "tx", "last").await;
    alice.read_up_to(&room, &last).await;
    eventually("typing and receipt delivered", || {
        let acc = seen.accepted.lock().unwrap();
        let eph: Vec<Value> = acc
            .iter()
            .flat_map(|(_, b)| b["ephemeral"].as_array().cloned().unwrap_or_default())
            .collect();
        eph.iter().any(|e| {
            e["type"] == "m.typing"
                && e["room_id"] == room
                && e["content"]["user_ids"][0] == alice.user_id
        }) && eph.iter().any(|e| {
            e["type"] == "m.receipt" && e["content"][&last]["m.read"][&alice.user_id].is_object()
        })
    })
    .await;

    // To-device messages for the service's users arrive in the transaction (MSC2409/MSC4203).
    let (s, b) = as_client(&server.base, None)
        .post("/_matrix/client/v3/login", json!({ "type": "m.login.application_service", "identifier": { "type": "m.id.user", "user": "_bridge_carol" }, "device_id": "CAROLDEV" }))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test.ping/td1",
            json!({ "messages": { puppet: { "CAROLDEV": { "hello": "device" } } } }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    eventually("to-device delivered", || {
        let acc = seen.accepted.lock().unwrap();
        acc.iter()
            .flat_map(|(_, b)| {
                b["de.sorunome.msc2409.to_device"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .any(|e| {
                e["type"] == "m.test.ping"
                    && e["to_user_id"] == puppet
                    && e["to_device_id"] == "CAROLDEV"
                    && e["sender"] == alice.user_id
                    && e["content"]["hello"] == "device"
            })
    })
    .await;

    // Transaction ids are distinct and increasing.
    let ids: Vec<u64> = seen
        .accepted
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(seen.bad_auth.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn transactions_retry_and_resume_after_restart() {
    let (seen, url) = start_appservice().await;
    let server = start_with_bridge(tempfile::tempdir().unwrap(), &url).await;
    *seen.hs.lock().unwrap() = server.base.clone();
    let alice = server.register("alice").await;
    let (s, _) = register_puppet(&server.base, "_bridge_dave").await;
    assert_eq!(s, 200);
    let puppet = "@_bridge_dave:localhost";
    let room = alice.create_room(json!({ "invite": [puppet] })).await;
    eventually("the invite is delivered", || {
        delivered(&seen).iter().any(|e| e["state_key"] == puppet)
    })
    .await;

    // The service goes down: the same transaction is retried until it comes back.
    seen.down.store(true, Ordering::SeqCst);
    alice.send_text(&room, "a1", "one").await;
    alice.send_text(&room, "a2", "two").await;
    eventually("two refused attempts", || {
        seen.refused.lock().unwrap().len() >= 2
    })
    .await;
    let first_refused = seen.refused.lock().unwrap()[0].clone();
    assert!(
        seen.refused
            .lock()
            .unwrap()
            .iter()
            .all(|t| *t == first_refused),
        "one transaction id across retries"
    );
    seen.down.store(false, Ordering::SeqCst);
    eventually("delivery after the service is back", || {
        delivered_bodies(&seen, &room).len() >= 2
    })
    .await;
    assert_eq!(delivered_bodies(&seen, &room), ["one", "two"]);
    assert!(seen
        .accepted
        .lock()
        .unwrap()
        .iter()
        .any(|(t, _)| *t == first_refused));

    // Down again, and the homeserver restarts with a transaction pending.
    seen.down.store(true, Ordering::SeqCst);
    seen.refused.lock().unwrap().clear();
    alice.send_text(&room, "a3", "three").await;
    alice.send_text(&room, "a4", "four").await;
    eventually("a refused attempt before the restart", || {
        !seen.refused.lock().unwrap().is_empty()
    })
    .await;
    let pending = seen.refused.lock().unwrap()[0].clone();
    let dir = server.stop().await;
    seen.refused.lock().unwrap().clear();
    let server = Server::start_in(dir, |_| {}).await;
    *seen.hs.lock().unwrap() = server.base.clone();
    eventually("a retry after the restart", || {
        !seen.refused.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(
        seen.refused.lock().unwrap()[0],
        pending,
        "the pending transaction keeps its id across the restart"
    );
    // A message sent after the restart follows the pending ones.
    let alice = Client {
        base: server.base.clone(),
        ..alice
    };
    alice.send_text(&room, "a5", "five").await;
    seen.down.store(false, Ordering::SeqCst);
    eventually("everything delivered", || {
        delivered_bodies(&seen, &room).len() >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        delivered_bodies(&seen, &room),
        ["one", "two", "three", "four", "five"],
        "nothing lost, nothing twice"
    );
    assert_eq!(seen.bad_auth.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn registration_files_are_validated_and_picked_up_at_run_time() {
    let (seen, url) = start_appservice().await;
    let server = Server::start().await;
    *seen.hs.lock().unwrap() = server.base.clone();
    // Unknown until registered.
    let (s, b) = as_client(&server.base, None)
        .get("/_matrix/client/v3/account/whoami")
        .await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{b}"
    );

    let dir = server.dir.path().join("appservices");
    let file = server.dir.path().join("bridge-registration.yaml");
    std::fs::write(&file, registration(&url)).unwrap();
    let registered =
        sandcat_appservice::registry::register_file(&dir, &file, "localhost".try_into().unwrap())
            .expect("valid registration");
    assert!(registered.exists());
    let mut picked_up = false;
    for _ in 0..200 {
        if as_client(&server.base, None)
            .get("/_matrix/client/v3/account/whoami")
            .await
            .0
            == 200
        {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(picked_up, "the running server picks the registration up");

    // A second file with the same token, an overlapping namespace or a bad regex is refused.
    let clash = server.dir.path().join("clash.yaml");
    std::fs::write(
        &clash,
        registration(&url).replace("id: bridge", "id: clash"),
    )
    .unwrap();
    let err =
        sandcat_appservice::registry::register_file(&dir, &clash, "localhost".try_into().unwrap())
            .expect_err("duplicate token");
    assert!(err.to_string().contains("token"), "{err}");
    let overlap = registration(&url)
        .replace("id: bridge", "id: overlap")
        .replace(AS_TOKEN, "as_token_other_0123456789")
        .replace(HS_TOKEN, "hs_token_other_0123456789")
        .replace(
            "sender_localpart: bridge_bot",
            "sender_localpart: other_bot",
        )
        .replace("@_bridge_.*:localhost", "@_bridge_x.*");
    std::fs::write(&clash, overlap).unwrap();
    let err =
        sandcat_appservice::registry::register_file(&dir, &clash, "localhost".try_into().unwrap())
            .expect_err("overlapping exclusive namespaces");
    assert!(err.to_string().contains("overlap"), "{err}");
    std::fs::write(
        &clash,
        registration(&url).replace("@_bridge_.*:localhost", "@_bridge_("),
    )
    .unwrap();
    let err =
        sandcat_appservice::registry::register_file(&dir, &clash, "localhost".try_into().unwrap())
            .expect_err("bad regex");
    assert!(err.to_string().contains("regex"), "{err}");
    server.stop().await;
}
