//! Another server goes down while this one's users talk in a room they share; when it is
//! back (the same name, its data kept), it has every message once, in the order sent: the
//! transactions waited, persisted, and were retried — at once when that server makes a
//! request here again. Runs on the embedded profile.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    federation::{federating_in, heard, room_bodies, shared_room, SharedRoom},
    Client,
};

#[tokio::test]
async fn a_server_that_was_down_gets_every_message_once_in_order() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b,
        b_name,
        alice,
        bob,
        room,
        ..
    } = shared_room(certs.path()).await;
    alice.send_text(&room, "t0", "before").await;
    assert!(heard(&bob, &room, "before").await);

    let data = b.stop().await;
    let away: Vec<String> = (0..8).map(|i| format!("while away {i}")).collect();
    for (i, body) in away.iter().enumerate() {
        alice.send_text(&room, &format!("t{}", i + 1), body).await;
    }

    let port = b_name.port().unwrap();
    let b = federating_in(certs.path(), data, port, |_| {}).await;
    let bob = Client {
        base: b.base.clone(),
        ..bob
    };
    // Bob speaks first: his server's transaction tells A that it is back.
    bob.send_text(&room, "b1", "back").await;
    assert!(
        heard(&bob, &room, away.last().unwrap()).await,
        "the server back up never got the last message"
    );
    assert!(heard(&alice, &room, "back").await);
    let mut got = room_bodies(&bob, &room).await;
    // Bob's message is concurrent with those sent while he was away: it may sit anywhere
    // after "before"; the rest keep their order.
    got.retain(|b| b != "back");
    let mut expected = vec!["before".to_owned()];
    expected.extend(away);
    assert_eq!(got, expected);
    let mut theirs = room_bodies(&alice, &room).await;
    theirs.retain(|b| b != "back");
    assert_eq!(theirs, expected, "both servers agree");
}
