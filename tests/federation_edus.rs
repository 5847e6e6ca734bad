//! Typing, read receipts and presence across servers, over loopback TLS: what a user of one server does
//! in a shared room reaches the other server's user through `/sync`. Runs on the embedded
//! profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    federation::{heard, shared_room, sync_find, SharedRoom},
    Client,
};
use serde_json::{json, Value};

/// The first ephemeral event of `kind` in `room` that `pred` accepts, through `client`'s
/// `/sync` long-polls (a few seconds at most).
async fn ephemeral(
    client: &Client,
    room: &str,
    kind: &str,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    sync_find(client, |sync| {
        sync["rooms"]["join"][room]["ephemeral"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["type"] == kind && pred(e))
            .cloned()
    })
    .await
}

#[tokio::test]
async fn typing_and_receipts_reach_the_other_server() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b: _b,
        alice,
        bob,
        room,
        ..
    } = shared_room(certs.path()).await;

    // Bob types on B; Alice sees it on A.
    let (status, body) = bob
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/typing/{}",
                enc(&bob.user_id)
            ),
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let typing = ephemeral(&alice, &room, "m.typing", |e| {
        e["content"]["user_ids"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u == bob.user_id.as_str()))
    })
    .await;
    assert!(typing.is_some(), "A never showed Bob typing");

    // Alice reads Bob's message on A; Bob sees her receipt on B.
    let said = bob.send_text(&room, "t1", "read me").await;
    assert!(heard(&alice, &room, "read me").await);
    let (status, body) = alice
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{room}/receipt/m.read/{}",
                enc(&said)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let receipt = ephemeral(&bob, &room, "m.receipt", |e| {
        e["content"][said.as_str()]["m.read"]
            .get(alice.user_id.as_str())
            .is_some()
    })
    .await;
    assert!(receipt.is_some(), "B never showed Alice's receipt");
}

/// The first presence event of `user` in `client`'s `/sync` long-polls that `pred` accepts.
async fn presence_of(client: &Client, user: &str, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    sync_find(client, |sync| {
        sync["presence"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["sender"] == user && pred(&e["content"]))
            .cloned()
    })
    .await
}

#[tokio::test]
async fn presence_reaches_the_other_server() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b: _b,
        alice,
        bob,
        ..
    } = shared_room(certs.path()).await;

    // Alice sets hers on A; Bob sees it, with her status, on B.
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            json!({ "presence": "online", "status_msg": "at lunch" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let seen = presence_of(&bob, &alice.user_id, |c| {
        c["presence"] == "online" && c["status_msg"] == "at lunch"
    })
    .await;
    assert!(seen.is_some(), "B never showed Alice's presence");

    // Bob's /sync says he is away (`set_presence`); Alice sees it on A.
    let _ = bob
        .get("/_matrix/client/v3/sync?timeout=0&set_presence=unavailable")
        .await;
    let seen = presence_of(&alice, &bob.user_id, |c| c["presence"] == "unavailable").await;
    assert!(seen.is_some(), "A never showed Bob away");
}
