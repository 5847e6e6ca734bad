//! Live and offline delivery to Sandcat clients, counted as the real client counts: its two
//! sequences without gaps over several devices, and a group's whole life pulled in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    native::{befriend, pull_all, sandcat_user, send_frame, text, SeqTracker},
    Server,
};
use serde_json::json;

#[tokio::test]
async fn live_delivery_never_makes_the_client_pull() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let bob = sandcat_user(&server, "bob").await;
    befriend(&alice, &bob).await;
    let mut alice_ws = alice.connect(0).await;
    let mut bob_desktop = bob.connect(0).await;
    let mut bob_mobile = bob.connect(1).await;
    let mut alice_seqs = SeqTracker::of(&alice).await;
    let mut desktop_seqs = SeqTracker::of(&bob).await;
    let mut mobile_seqs = SeqTracker::of(&bob).await;

    const N: usize = 8;
    for i in 0..N {
        let to_bob = text(&alice.id, &bob.id, &format!("a{i}"), &format!("a {i}"), 0);
        send_frame(&mut alice_ws, &to_bob).await;
        let to_alice = text(&bob.id, &alice.id, &format!("b{i}"), &format!("b {i}"), 0);
        send_frame(&mut bob_mobile, &to_alice).await;
    }
    // Alice: her acks and Bob's messages. Bob's desktop: Alice's messages, and the mobile's
    // messages with their acks. Bob's mobile: Alice's messages and its acks.
    alice_seqs.read(&mut alice_ws, N, N).await;
    desktop_seqs.read(&mut bob_desktop, 2 * N, N).await;
    mobile_seqs.read(&mut bob_mobile, N, N).await;
    for (who, t) in [
        ("alice", &alice_seqs),
        ("bob's desktop", &desktop_seqs),
        ("bob's mobile", &mobile_seqs),
    ] {
        assert_eq!(t.pulls, 0, "{who} saw a gap: {t:?}");
    }
    let (alice_now, bob_now) = (SeqTracker::of(&alice).await, SeqTracker::of(&bob).await);
    assert_eq!(
        (alice_seqs.seq, alice_seqs.send_seq),
        (alice_now.seq, alice_now.send_seq),
        "Alice's device ends where the server is"
    );
    for t in [&desktop_seqs, &mobile_seqs] {
        assert_eq!((t.seq, t.send_seq), (bob_now.seq, bob_now.send_seq));
    }
    assert_eq!((bob_now.seq, bob_now.send_seq), (N as i64, N as i64));
}

#[tokio::test]
async fn an_offline_member_learns_of_a_group_and_its_end() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let bob = sandcat_user(&server, "bob").await;
    let carol_mx = server.register("carol").await;
    // Bob is offline throughout: Alice makes a group with him, renames it, Carol joins it from
    // Matrix and talks, and Alice dismisses it.
    let (s, inv) = alice
        .call(reqwest::Method::POST, &format!("/group/{}", alice.id), Some(json!({ "id": "", "owner": alice.id, "avatar": "", "group_name": "Cats", "members_id": [bob.id] })))
        .await;
    assert_eq!(s, 200, "{inv}");
    let group = inv["info"]["id"].as_str().unwrap().to_owned();
    let (s, _) = alice
        .call(reqwest::Method::PUT, &format!("/group/{}", alice.id), Some(json!({ "id": group, "name": "Big cats", "avatar": "", "description": "", "announcement": "" })))
        .await;
    assert_eq!(s, 200);
    let (s, _) = alice
        .call(
            reqwest::Method::PUT,
            "/group/invite",
            Some(json!({ "user_id": alice.id, "group_id": group, "members": ["carol"] })),
        )
        .await;
    assert_eq!(s, 200);
    carol_mx.send_text(&group, "c1", "hello from matrix").await;
    let (s, _) = alice
        .call(
            reqwest::Method::DELETE,
            "/group",
            Some(json!({ "user_id": alice.id, "group_id": group, "is_dismiss": true })),
        )
        .await;
    assert_eq!(s, 200);

    let frames = pull_all(&bob).await;
    let seen: Vec<(i32, i64)> = frames.iter().map(|m| (m.msg_type, m.seq)).collect();
    assert_eq!(
        seen,
        [(3, 1), (9, 2), (3, 3), (1, 4), (6, 5)],
        "joined, renamed, Carol joined, her message, dismissed — numbered 1 to 5: {frames:?}"
    );
    assert!(frames.iter().all(|m| m.group_id == group));
    assert_eq!(
        bincode::deserialize::<Vec<String>>(&frames[2].content).unwrap(),
        ["carol"],
        "a member added is announced before her messages"
    );
    assert_eq!(frames[3].send_id, "carol");
    let renamed: serde_json::Value = {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Info {
            id: String,
            owner: String,
            name: String,
        }
        let info: Info = bincode::deserialize(&frames[1].content).expect("GroupFromServer");
        json!({ "id": info.id, "name": info.name })
    };
    assert_eq!(renamed, json!({ "id": group, "name": "Big cats" }));

    // A change made from Matrix reaches the members too.
    let (s, inv) = alice
        .call(reqwest::Method::POST, &format!("/group/{}", alice.id), Some(json!({ "id": "", "owner": alice.id, "avatar": "", "group_name": "Dogs", "members_id": ["carol", bob.id] })))
        .await;
    assert_eq!(s, 200, "{inv}");
    let dogs = inv["info"]["id"].as_str().unwrap().to_owned();
    let (s, r) = carol_mx
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&dogs)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let frames = pull_all(&bob).await;
    let tail: Vec<(i32, String)> = frames[5..]
        .iter()
        .map(|m| (m.msg_type, m.send_id.clone()))
        .collect();
    assert_eq!(
        tail,
        [(3, bob.id.clone()), (4, "carol".to_owned())],
        "added to Dogs (after Carol, so her joining is no news), Carol left from Matrix: {frames:?}"
    );
}
