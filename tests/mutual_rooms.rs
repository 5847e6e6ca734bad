//! Mutual rooms (`/_matrix/client/v1/mutual_rooms`, spec 1.19): the rooms both users are
//! joined to — not those one is only invited to or has left — paged by `next_batch` with the
//! whole `count`; asking about oneself or with a bad token is `M_INVALID_PARAM`. Runs on the
//! embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Client, Server};
use serde_json::{json, Value};

async fn mutual(client: &Client, other: &str, from: Option<&str>) -> (u16, Value) {
    let mut path = format!("/_matrix/client/v1/mutual_rooms?user_id={}", enc(other));
    if let Some(f) = from {
        path.push_str(&format!("&from={}", enc(f)));
    }
    client.get(&path).await
}

#[tokio::test]
async fn the_rooms_two_users_share() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;
    let mut shared = Vec::new();
    for _ in 0..3 {
        let room = alice.create_room(json!({ "preset": "public_chat" })).await;
        bob.join(&room).await;
        shared.push(room);
    }
    // Not shared: alice's alone, one bob is only invited to, one bob left.
    alice.create_room(json!({})).await;
    alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let left = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&left).await;
    let (s, _) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&left)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);

    let (s, page) = mutual(&alice, &bob.user_id, None).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["count"], 3);
    let mut got: Vec<String> = serde_json::from_value(page["joined"].clone()).unwrap();
    got.sort();
    shared.sort();
    assert_eq!(got, shared);
    assert!(page.get("next_batch").is_none(), "one page: {page}");
    // Both ways alike; nobody shares a room with carol.
    let (_, theirs) = mutual(&bob, &alice.user_id, None).await;
    assert_eq!(theirs["count"], 3);
    let (_, none) = mutual(&alice, &carol.user_id, None).await;
    assert_eq!(
        (
            none["count"].as_u64(),
            none["joined"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    // A page from a token starts after it.
    let (s, rest) = mutual(&alice, &bob.user_id, Some(&shared[0])).await;
    assert_eq!(s, 200);
    assert_eq!(rest["joined"].as_array().unwrap().len(), 2, "{rest}");

    for (who, from) in [
        (alice.user_id.as_str(), None),
        (bob.user_id.as_str(), Some("not a token")),
    ] {
        let (s, err) = mutual(&alice, who, from).await;
        assert_eq!(
            (s, err["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{err}"
        );
    }
}
