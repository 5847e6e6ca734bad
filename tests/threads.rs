//! The threads list (`/rooms/{roomId}/threads`), as Element's threads panel reads it: roots
//! of `m.thread` replies, the most recently active first, each with its bundled summary
//! (reply count, latest reply, whether the reader took part), paged; only the threads the
//! reader took part in with `include=participated`; nothing for a user outside the room.
//! Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{Client, Server};
use serde_json::{json, Value};

async fn reply(client: &Client, room: &str, txn: &str, root: &str, body: &str) -> String {
    let (status, sent) = client
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            json!({
                "msgtype": "m.text",
                "body": body,
                "m.relates_to": {
                    "rel_type": "m.thread",
                    "event_id": root,
                    "is_falling_back": true,
                    "m.in_reply_to": { "event_id": root },
                },
            }),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    sent["event_id"].as_str().unwrap().to_owned()
}

async fn threads(client: &Client, room: &str, query: &str) -> Value {
    let (status, page) = client
        .get(&format!("/_matrix/client/v1/rooms/{room}/threads{query}"))
        .await;
    assert_eq!(status, 200, "{page}");
    page
}

/// The root bodies of a page, in order.
fn roots(page: &Value) -> Vec<&str> {
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_threads_of_a_room_by_latest_reply() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;

    let first = alice.send_text(&room, "r1", "first root").await;
    let second = alice.send_text(&room, "r2", "second root").await;
    alice.send_text(&room, "plain", "not a thread").await;
    reply(&bob, &room, "b1", &first, "bob in first").await;
    reply(&alice, &room, "a1", &second, "alice in second").await;
    reply(&alice, &room, "a2", &second, "alice again in second").await;
    let latest = reply(&bob, &room, "b2", &first, "bob again in first").await;

    // The first thread is the most recently active; each root carries its summary.
    let page = threads(&alice, &room, "").await;
    assert_eq!(roots(&page), ["first root", "second root"]);
    let summary = &page["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2, "{summary}");
    assert_eq!(summary["latest_event"]["event_id"], latest.as_str());
    assert_eq!(
        summary["latest_event"]["content"]["body"],
        "bob again in first"
    );
    assert_eq!(
        summary["current_user_participated"], true,
        "Alice wrote the root"
    );
    assert!(page.get("next_batch").is_none(), "{page}");

    // Bob took part in the first thread only.
    let his = threads(&bob, &room, "?include=participated").await;
    assert_eq!(roots(&his), ["first root"]);
    let all = threads(&bob, &room, "").await;
    assert_eq!(
        all["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        false
    );

    // A page at a time.
    let one = threads(&alice, &room, "?limit=1").await;
    assert_eq!(roots(&one), ["first root"]);
    let next = one["next_batch"].as_str().expect("a second page");
    let two = threads(&alice, &room, &format!("?limit=1&from={next}")).await;
    assert_eq!(roots(&two), ["second root"]);

    // Carol is not in the room.
    let (status, _) = carol
        .get(&format!("/_matrix/client/v1/rooms/{room}/threads"))
        .await;
    assert_eq!(status, 403);
}
