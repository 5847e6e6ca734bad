//! Push: notification and highlight counts in `/sync` (threads apart when the filter asks),
//! reset by read receipts; `/notifications`; pushers; and a push gateway — a real HTTP server
//! in the test — receiving the notifications of a DM message and of a mention in a group,
//! with the user's unread count, the sound and highlight tweaks, and a rejected push key
//! removing its pusher. Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`,
//! on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use axum::{extract::State, http::StatusCode, routing::post, Json, Router};
use common::{enc, Client, Server};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// The counts of `room` in a sync response.
fn counts(sync: &Value, room: &str) -> (u64, u64) {
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].as_u64().unwrap_or(u64::MAX),
        unread["highlight_count"].as_u64().unwrap_or(u64::MAX),
    )
}

async fn send(client: &Client, room: &str, txn: &str, content: Value) -> String {
    let (s, b) = client
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                enc(room)
            ),
            content,
        )
        .await;
    assert_eq!(s, 200, "send: {b}");
    b["event_id"].as_str().unwrap().to_owned()
}

fn mention(of: &Client, body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body, "m.mentions": { "user_ids": [of.user_id] } })
}

#[tokio::test]
async fn counts_receipts_and_the_notification_list() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice
        .create_room(json!({ "preset": "public_chat", "name": "Group" }))
        .await;
    bob.join(&room).await;
    let hello = alice.send_text(&room, "t1", "hello").await;
    let look = send(&alice, &room, "t2", mention(&bob, "bob: look")).await;
    let reply = send(
        &alice,
        &room,
        "t3",
        json!({ "msgtype": "m.text", "body": "in a thread",
                "m.relates_to": { "rel_type": "m.thread", "event_id": hello } }),
    )
    .await;

    // All together, then the thread apart when the filter asks.
    let sync = bob.sync(None, 0).await;
    assert_eq!(
        counts(&sync, &room),
        (3, 1),
        "{}",
        sync["rooms"]["join"][&room]
    );
    let filter = enc(
        &json!({ "room": { "timeline": { "unread_thread_notifications": true } } }).to_string(),
    );
    let (s, threaded) = bob
        .get(&format!("/_matrix/client/v3/sync?filter={filter}"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(counts(&threaded, &room), (2, 1));
    let in_thread = &threaded["rooms"]["join"][&room]["unread_thread_notifications"][&hello];
    assert_eq!(in_thread["notification_count"], 1, "{threaded}");
    // The sender's own messages count for nobody: alice has nothing unread.
    assert_eq!(counts(&alice.sync(None, 0).await, &room), (0, 0));

    // A main-timeline receipt leaves the thread; an unthreaded one clears all.
    let (s, _) = bob
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&look)
            ),
            json!({ "thread_id": "main" }),
        )
        .await;
    assert_eq!(s, 200);
    let next = sync["next_batch"].as_str().unwrap();
    let after = bob.sync(Some(next), 5_000).await;
    assert_eq!(counts(&after, &room), (1, 0), "the thread's reply");
    bob.read_up_to(&room, &reply).await;
    assert_eq!(counts(&bob.sync(None, 0).await, &room), (0, 0));

    // The list: newest first, read, the mention alone among highlights, paged.
    let (s, list) = bob.get("/_matrix/client/v3/notifications").await;
    assert_eq!(s, 200, "{list}");
    let ids: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [reply.as_str(), look.as_str(), hello.as_str()]);
    let first = &list["notifications"][0];
    assert_eq!(
        (first["read"].as_bool(), first["room_id"].as_str()),
        (Some(true), Some(room.as_str()))
    );
    assert!(first["ts"].as_u64().unwrap() > 0 && first["actions"].is_array());
    let (_, highlights) = bob
        .get("/_matrix/client/v3/notifications?only=highlight")
        .await;
    assert_eq!(highlights["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(
        highlights["notifications"][0]["event"]["event_id"],
        look.as_str()
    );
    let (_, page) = bob.get("/_matrix/client/v3/notifications?limit=2").await;
    let token = page["next_token"].as_str().expect("a next page");
    let (_, rest) = bob
        .get(&format!(
            "/_matrix/client/v3/notifications?limit=2&from={}",
            enc(token)
        ))
        .await;
    assert_eq!(
        rest["notifications"][0]["event"]["event_id"],
        hello.as_str()
    );
    assert!(rest.get("next_token").is_none(), "{rest}");
    let (s, bad) = bob.get("/_matrix/client/v3/notifications?from=nope").await;
    assert_eq!((s, bad["errcode"].as_str()), (400, Some("M_INVALID_PARAM")));

    // Turning notifications off for the room's messages: the next one is not counted.
    let (s, _) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(s, 200);
    alice.send_text(&room, "t4", "muted").await;
    assert_eq!(counts(&bob.sync(None, 0).await, &room), (0, 0));
}

/// A push gateway on loopback: every notification it receives goes to the test, and `answer`
/// makes the reply (status and body) to it.
async fn gateway_answering(
    answer: impl Fn(&Value) -> (StatusCode, Value) + Clone + Send + Sync + 'static,
) -> (String, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app =
        Router::new()
            .route(
                "/_matrix/push/v1/notify",
                post(
                    move |State(tx): State<mpsc::UnboundedSender<Value>>,
                          Json(body): Json<Value>| async move {
                        let (status, reply) = answer(&body);
                        let _ = tx.send(body);
                        (status, Json(reply))
                    },
                ),
            )
            .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/_matrix/push/v1/notify",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

/// A push gateway that takes every notification; push keys in `reject` are answered as
/// rejected.
async fn gateway(reject: &'static str) -> (String, mpsc::UnboundedReceiver<Value>) {
    gateway_answering(move |body| {
        let rejected: Vec<Value> = body["notification"]["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["pushkey"] == reject)
            .map(|d| d["pushkey"].clone())
            .collect();
        (StatusCode::OK, json!({ "rejected": rejected }))
    })
    .await
}

/// A direct chat `alice` opens with `bob`, who joins it.
async fn dm(alice: &Client, bob: &Client) -> String {
    let dm = alice
        .create_room(
            json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id] }),
        )
        .await;
    bob.join(&dm).await;
    dm
}

/// The next notification the gateway receives of `event_id` (an invite's comes first when
/// the pusher's sender gets to it before the join).
async fn notification_of(rx: &mut mpsc::UnboundedReceiver<Value>, event_id: &str) -> Value {
    loop {
        let body = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("the gateway got the notification in time")
            .expect("the gateway is up");
        if body["notification"]["event_id"] == event_id {
            return body["notification"].clone();
        }
    }
}

async fn set_pusher(
    client: &Client,
    url: &str,
    pushkey: &str,
    format: Option<&str>,
) -> (u16, Value) {
    let mut data = json!({ "url": url });
    if let Some(f) = format {
        data["format"] = json!(f);
    }
    client
        .post(
            "/_matrix/client/v3/pushers/set",
            json!({
                "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
                "app_display_name": "Example", "device_display_name": "Phone",
                "lang": "en", "data": data,
            }),
        )
        .await
}

#[tokio::test]
async fn a_push_gateway_gets_dm_and_mention_notifications() {
    let srv = Server::start_with(|c| c.push.allow_private_gateways = true).await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;
    let (url, mut got) = gateway("rejected-key").await;

    // Bad pushers are refused clearly.
    for (bad_url, why) in [
        ("http://127.0.0.1:1/elsewhere", "the path"),
        ("not a url", "not a URL"),
        ("ftp://example.org/_matrix/push/v1/notify", "the scheme"),
    ] {
        let (s, err) = set_pusher(&bob, bad_url, "k", None).await;
        assert_eq!(
            (s, err["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{why}: {err}"
        );
    }
    let (s, err) = bob
        .post(
            "/_matrix/client/v3/pushers/set",
            json!({ "kind": "email", "app_id": "m.email", "pushkey": "bob@example.org",
                    "app_display_name": "Mail", "device_display_name": "Mail", "lang": "en",
                    "data": {} }),
        )
        .await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{err}"
    );

    let (s, b) = set_pusher(&bob, &url, "bob-phone", None).await;
    assert_eq!(s, 200, "{b}");
    let (_, listed) = bob.get("/_matrix/client/v3/pushers").await;
    assert_eq!(listed["pushers"][0]["pushkey"], "bob-phone", "{listed}");
    assert_eq!(listed["pushers"][0]["data"]["url"], url.as_str());

    // A DM: the message, with its content, sender, room and the unread count.
    let dm = dm(&alice, &bob).await;
    let hi = alice.send_text(&dm, "d1", "hi bob").await;
    let n = notification_of(&mut got, &hi).await;
    assert_eq!(
        (
            n["room_id"].as_str(),
            n["type"].as_str(),
            n["sender"].as_str()
        ),
        (
            Some(dm.as_str()),
            Some("m.room.message"),
            Some(alice.user_id.as_str())
        )
    );
    assert_eq!(n["content"]["body"], "hi bob");
    assert_eq!(n["counts"]["unread"], 1, "{n}");
    // `high` is the default priority, left out; a one-to-one room rings.
    assert!(n.get("prio").is_none_or(|p| p == "high"), "{n}");
    let device = &n["devices"][0];
    assert_eq!(
        (device["app_id"].as_str(), device["pushkey"].as_str()),
        (Some("org.example.app"), Some("bob-phone"))
    );
    assert!(device["data"].get("url").is_none(), "{device}");
    assert!(device["tweaks"]["sound"].is_string(), "{device}");

    // A mention in a group of three: highlighted; the DM is still unread, so two.
    let group = alice
        .create_room(json!({ "preset": "public_chat", "name": "Team" }))
        .await;
    bob.join(&group).await;
    carol.join(&group).await;
    let ping = send(&alice, &group, "g1", mention(&bob, "bob, the build")).await;
    let n = notification_of(&mut got, &ping).await;
    assert_eq!(n["room_name"], "Team");
    assert_eq!(n["counts"]["unread"], 2);
    assert_eq!(n["devices"][0]["tweaks"]["highlight"], true, "{n}");

    // The event_id_only format carries ids and counts alone.
    let (s, _) = set_pusher(&bob, &url, "bob-phone", Some("event_id_only")).await;
    assert_eq!(s, 200);
    bob.read_up_to(&dm, &hi).await;
    let quiet = alice.send_text(&dm, "d2", "second").await;
    let n = notification_of(&mut got, &quiet).await;
    assert!(
        n.get("content").is_none() && n.get("sender").is_none(),
        "{n}"
    );
    assert_eq!(
        n["counts"]["unread"], 2,
        "the mention and the second message"
    );
    assert_eq!(n["devices"][0]["data"]["format"], "event_id_only");

    // A push key the gateway rejects loses its pusher; deleting one works too.
    let (s, _) = set_pusher(&carol, &url, "rejected-key", None).await;
    assert_eq!(s, 200);
    let all = alice.send_text(&group, "g2", "for everyone").await;
    loop {
        let n = notification_of(&mut got, &all).await;
        if n["devices"][0]["pushkey"] == "rejected-key" {
            break;
        }
    }
    let mut gone = false;
    for _ in 0..100 {
        let (_, listed) = carol.get("/_matrix/client/v3/pushers").await;
        if listed["pushers"].as_array().is_some_and(Vec::is_empty) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the rejected pusher was removed");
    let (s, _) = bob
        .post(
            "/_matrix/client/v3/pushers/set",
            json!({ "kind": null, "app_id": "org.example.app", "pushkey": "bob-phone" }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, listed) = bob.get("/_matrix/client/v3/pushers").await;
    assert_eq!(listed["pushers"], json!([]));
}

#[tokio::test]
async fn a_notification_refused_for_too_long_is_dropped() {
    let srv = Server::start_with(|c| {
        c.push.allow_private_gateways = true;
        c.push.give_up_after_secs = 1;
    })
    .await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    // The gateway answers 500 to the message `stale`.
    let (url, mut got) =
        gateway_answering(
            |body| match body["notification"]["content"]["body"] == "stale" {
                true => (StatusCode::INTERNAL_SERVER_ERROR, json!({})),
                false => (StatusCode::OK, json!({ "rejected": [] })),
            },
        )
        .await;
    let (s, b) = set_pusher(&bob, &url, "bob-phone", None).await;
    assert_eq!(s, 200, "{b}");
    let dm = dm(&alice, &bob).await;

    // The gateway keeps refusing the first message: it is retried, then dropped, and the
    // pusher goes on with the next instead of waiting on it for ever.
    let stale = alice.send_text(&dm, "g1", "stale").await;
    let fresh = alice.send_text(&dm, "g2", "fresh").await;
    let mut stale_attempts = 0;
    loop {
        let body = tokio::time::timeout(Duration::from_secs(30), got.recv())
            .await
            .expect("the pusher went on in time")
            .expect("the gateway is up");
        let n = &body["notification"];
        if n["event_id"] == stale.as_str() {
            stale_attempts += 1;
        } else if n["event_id"] == fresh.as_str() {
            break;
        }
    }
    assert!(
        stale_attempts >= 2,
        "retried before dropped: {stale_attempts}"
    );
}
