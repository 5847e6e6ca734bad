//! What keeps other servers in bounds, over loopback TLS. Server ACLs: once a room's
//! `m.room.server_acl` refuses
//! other servers, they can no longer read the room nor have their users join it through this
//! server, while this server's users carry on. Runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::federation::{federating, federating_with, heard, join_via, signing_as};
use ruma::{api::federation::event::get_event, OwnedEventId};
use serde_json::json;

#[tokio::test]
async fn a_server_refused_by_the_acl_is_kept_out() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let (c, _) = federating(certs.path()).await;
    let carol = c.register("carol").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let (status, body) = join_via(&bob, &room, &a_name).await;
    assert_eq!(status, 200, "{body}");
    bob.send_text(&room, "t0", "before the ACL").await;
    assert!(heard(&alice, &room, "before the ACL").await);
    let said: OwnedEventId = alice
        .send_text(&room, "t1", "still here")
        .await
        .try_into()
        .unwrap();

    // B reads the room while it may.
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();
    let as_b = signing_as(&b_name, b_key);
    assert!(as_b
        .send(&a_name, get_event::v1::Request::new(said.clone()))
        .await
        .is_ok());

    // The room refuses B's host (ACLs match hosts, not ports).
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.server_acl/"),
            json!({ "allow": ["*"], "deny": [b_name.host()], "allow_ip_literals": false }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // B can no longer read it, and Carol of C (the same host) cannot join through A.
    let refused = as_b
        .send(&a_name, get_event::v1::Request::new(said))
        .await
        .expect_err("a refused server reads nothing");
    assert!(refused.to_string().contains("403"), "{refused}");
    let (status, body) = join_via(&carol, &room, &a_name).await;
    assert_ne!(status, 200, "{body}");
    // Alice's own words still go in.
    alice.send_text(&room, "t2", "after the ACL").await;
    assert!(heard(&alice, &room, "after the ACL").await);
}

#[tokio::test]
async fn another_server_over_its_rate_limit_gets_429() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating_with(certs.path(), |c| {
        c.federation.rate_limit_per_second = 0.01;
        c.federation.rate_limit_burst = 3;
    })
    .await;
    let (b, b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let room = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" }
            }]
        }))
        .await;
    let said: OwnedEventId = alice
        .send_text(&room, "t1", "hello")
        .await
        .try_into()
        .unwrap();
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();
    let as_b = signing_as(&b_name, b_key);
    for _ in 0..3 {
        as_b.send(&a_name, get_event::v1::Request::new(said.clone()))
            .await
            .expect("within the burst");
    }
    let over = as_b
        .send(&a_name, get_event::v1::Request::new(said))
        .await
        .expect_err("past the burst");
    assert!(over.to_string().contains("429"), "{over}");
}
