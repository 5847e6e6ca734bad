//! Message search (`POST /search`), as Element's search box asks it: the words of a term in
//! the messages of the user's rooms, best match or newest first, paged with `next_batch`,
//! limited to some rooms, with the events around each result and their senders' profiles,
//! never a room the user is not in or history they may not read, never a redacted message.
//! Runs on the embedded profile (SQLite FTS5) and, with `SANDCAT_TEST_PROFILE=pipeline`, on
//! PostgreSQL (`tsvector`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Client, Server};
use serde_json::{json, Value};

async fn search(client: &Client, criteria: Value, next: Option<&str>) -> Value {
    let path = match next {
        Some(n) => format!("/_matrix/client/v3/search?next_batch={}", enc(n)),
        None => "/_matrix/client/v3/search".to_owned(),
    };
    let (s, body) = client
        .post(
            &path,
            json!({ "search_categories": { "room_events": criteria } }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    body["search_categories"]["room_events"].clone()
}

fn bodies(found: &Value) -> Vec<&str> {
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"]["content"]["body"].as_str().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn messages_are_found_by_their_words() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let other = alice.create_room(json!({})).await;
    let secret = carol.create_room(json!({})).await;

    alice.send_text(&room, "1", "the quick brown fox").await;
    bob.send_text(&room, "2", "a lazy dog sleeps").await;
    let third = alice
        .send_text(&room, "3", "Foxes and dogs: a quick story")
        .await;
    alice.send_text(&room, "4", "nothing to see").await;
    alice.send_text(&other, "5", "a quick note elsewhere").await;
    carol
        .send_text(&secret, "6", "quick secrets of carol")
        .await;
    let gone = alice.send_text(&room, "7", "quick but redacted").await;
    let (s, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&gone)
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);

    // Every word must be there; case does not matter; carol's room and the redacted
    // message are never found.
    let found = search(&alice, json!({ "search_term": "QUICK" }), None).await;
    assert_eq!(found["count"], 3, "{found}");
    let mut got = bodies(&found);
    got.sort();
    assert_eq!(
        got,
        [
            "Foxes and dogs: a quick story",
            "a quick note elsewhere",
            "the quick brown fox"
        ]
    );
    assert_eq!(found["highlights"], json!(["quick"]));
    let found = search(&alice, json!({ "search_term": "quick fox" }), None).await;
    assert_eq!(bodies(&found), ["the quick brown fox"], "{found}");

    // Newest first, a page at a time.
    let criteria =
        json!({ "search_term": "quick", "order_by": "recent", "filter": { "limit": 2 } });
    let first = search(&alice, criteria.clone(), None).await;
    assert_eq!(
        bodies(&first),
        ["a quick note elsewhere", "Foxes and dogs: a quick story"]
    );
    let next = first["next_batch"].as_str().expect("a next page");
    let second = search(&alice, criteria, Some(next)).await;
    assert_eq!(bodies(&second), ["the quick brown fox"], "{second}");

    // Only some rooms; with the events around each result and who sent them.
    let found = search(
        &alice,
        json!({
            "search_term": "story",
            "filter": { "rooms": [room] },
            "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true },
        }),
        None,
    )
    .await;
    let result = &found["results"][0];
    assert_eq!(result["result"]["event_id"], third.as_str());
    assert!(result["rank"].is_number());
    let context = &result["context"];
    assert_eq!(
        context["events_before"][0]["content"]["body"], "a lazy dog sleeps",
        "{context}"
    );
    assert_eq!(
        context["events_after"][0]["content"]["body"],
        "nothing to see"
    );
    assert_eq!(context["profile_info"][&bob.user_id]["displayname"], "bob");
    let none = search(&alice, json!({ "search_term": "quick", "filter": { "rooms": [other] }, "keys": ["content.topic"] }), None).await;
    assert_eq!(none["count"], 0);

    // Bob reads only the room he is in.
    let found = search(&bob, json!({ "search_term": "quick" }), None).await;
    assert_eq!(found["count"], 2, "{found}");

    // Nonsense tokens and terms too long are refused; a term without words finds nothing.
    let (s, err) = alice
        .post(
            "/_matrix/client/v3/search?next_batch=zzz",
            json!({ "search_categories": { "room_events": { "search_term": "quick" } } }),
        )
        .await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{err}"
    );
    let (s, _) = alice
        .post(
            "/_matrix/client/v3/search",
            json!({ "search_categories": { "room_events": { "search_term": "x".repeat(5000) } } }),
        )
        .await;
    assert_eq!(s, 400);
    let found = search(&alice, json!({ "search_term": "\"*()" }), None).await;
    assert_eq!(found["count"], 0);
}

#[tokio::test]
async fn results_come_grouped_and_with_their_rooms_state_when_asked() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice
        .create_room(json!({ "preset": "public_chat", "name": "Garden" }))
        .await;
    bob.join(&room).await;
    let other = alice.create_room(json!({ "name": "Kitchen" })).await;
    let a1 = alice.send_text(&room, "1", "tomato one").await;
    let b1 = bob.send_text(&room, "2", "tomato two").await;
    let a2 = alice.send_text(&other, "3", "tomato three").await;

    let found = search(
        &alice,
        json!({
            "search_term": "tomato",
            "order_by": "recent",
            "include_state": true,
            "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
        }),
        None,
    )
    .await;
    assert_eq!(found["count"], 3, "{found}");
    // Newest first: the kitchen's message, then bob's and alice's in the garden.
    let by_room = &found["groups"]["room_id"];
    assert_eq!(by_room[&other]["results"], json!([a2]), "{found}");
    assert_eq!(by_room[&other]["order"], 1);
    assert_eq!(by_room[&room]["results"], json!([b1, a1]));
    assert_eq!(by_room[&room]["order"], 2);
    let by_sender = &found["groups"]["sender"];
    assert_eq!(by_sender[&alice.user_id]["results"], json!([a2, a1]));
    assert_eq!(by_sender[&bob.user_id]["results"], json!([b1]));
    // Each room's current state, as /rooms/{roomId}/state answers it.
    let name_of = |room: &str| {
        found["state"][room]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.name")
            .map(|e| e["content"]["name"].clone())
    };
    assert_eq!(name_of(&room), Some(json!("Garden")));
    assert_eq!(name_of(&other), Some(json!("Kitchen")));

    // Not asked: neither.
    let plain = search(&alice, json!({ "search_term": "tomato" }), None).await;
    assert!(
        plain.get("groups").is_none() && plain.get("state").is_none(),
        "{plain}"
    );
}
