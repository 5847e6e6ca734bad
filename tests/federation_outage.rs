//! Another server goes down while this one's users talk in a room they share; when it is
//! back (the same name, its data kept), it has every message once, in the order sent: the
//! transactions waited, persisted, and were retried — at once when that server makes a
//! request here again. And while one server is away, a user on each side changes the room's
//! topic: the fork resolves to the same state on both once they hear of each other. Runs on
//! the embedded profile. To-device messages, key changes and a read receipt sent while a
//! server is away reach it when it is back too: they wait with the room's events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use common::{
    federation::{
        device_keys, device_of, federating_in, heard, room_bodies, shared_room, sync_until,
        SharedRoom,
    },
    Client,
};
use serde_json::{json, Value};

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

/// `client`'s answer for `path` once it is 200 (a few seconds at most: another server's
/// event is on its way), else the last answer.
async fn once_there(client: &Client, path: &str) -> (u16, Value) {
    for _ in 0..100 {
        let (status, body) = client.get(path).await;
        if status == 200 {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.get(path).await
}

async fn set_topic(client: &Client, room: &str, topic: &str) -> String {
    let (status, body) = client
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            json!({ "topic": topic }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn concurrent_state_changes_on_two_servers_resolve_the_same_on_both() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a,
        a_name,
        b: _b,
        alice,
        bob,
        room,
        ..
    } = shared_room(certs.path()).await;

    // Alice lets Bob set the topic, and sets a first one; B hears of both.
    let power_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels/");
    let (_, mut power) = alice.get(&power_path).await;
    power["users"][&bob.user_id] = json!(50);
    let (status, body) = alice.put(&power_path, power).await;
    assert_eq!(status, 200, "{body}");
    let first = set_topic(&alice, &room, "first").await;
    let (status, _) = once_there(
        &bob,
        &format!("/_matrix/client/v3/rooms/{room}/event/{first}"),
    )
    .await;
    assert_eq!(status, 200, "B never had the first topic");

    // A goes away. Bob changes the topic; B's transaction waits, and its retries back off to
    // seconds apart.
    let data = a.stop().await;
    let his = set_topic(&bob, &room, "from B").await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A is back; Alice, who has not seen his change, makes her own: the room forks.
    let a = federating_in(certs.path(), data, a_name.port().unwrap(), |_| {}).await;
    let alice = Client {
        base: a.base.clone(),
        ..alice
    };
    let hers = set_topic(&alice, &room, "from A").await;
    let (_, event) = alice
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{hers}"))
        .await;
    assert_eq!(
        event["unsigned"]["replaces_state"], first,
        "Alice's topic replaced another than the first: no fork ({event})"
    );

    // Each server gets the other's change and resolves the fork: the same topic on both,
    // the later change (state resolution orders the two by time).
    let (status, _) = once_there(
        &alice,
        &format!("/_matrix/client/v3/rooms/{room}/event/{his}"),
    )
    .await;
    assert_eq!(status, 200, "A never had Bob's topic");
    let (status, _) = once_there(
        &bob,
        &format!("/_matrix/client/v3/rooms/{room}/event/{hers}"),
    )
    .await;
    assert_eq!(status, 200, "B never had Alice's topic");
    let topic_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    let (_, on_a) = alice.get(&topic_path).await;
    let (_, on_b) = bob.get(&topic_path).await;
    assert_eq!(on_a, on_b, "the servers resolved the fork differently");
    assert_eq!(on_a["topic"], "from A", "{on_a}");

    // The room goes on from the merged heads on both sides.
    alice.send_text(&room, "t1", "merged").await;
    assert!(heard(&bob, &room, "merged").await);
    bob.send_text(&room, "t2", "merged too").await;
    assert!(heard(&alice, &room, "merged too").await);
}

#[tokio::test]
async fn to_device_messages_and_key_changes_wait_for_a_server_that_is_down() {
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
    let bob_dev = device_of(&bob).await;
    let said = bob.send_text(&room, "r1", "read me later").await;
    assert!(heard(&alice, &room, "read me later").await);
    let since: String = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let data = b.stop().await;
    // Alice reads Bob's message: her receipt waits (an hour at most) for B.
    alice.read_up_to(&room, &said).await;
    // A room key for Bob's device, and a new device of Alice's: neither may be lost.
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/k1",
            json!({ "messages": { bob.user_id.as_str(): { bob_dev.as_str(): { "ciphertext": "room key" } } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice_dev = device_of(&alice).await;
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "device_keys": device_keys(&alice.user_id, &alice_dev, "ZWQyNTUxOSBrZXk") }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Long enough for a few attempts to fail: the EDUs must outlive them.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let b = federating_in(certs.path(), data, b_name.port().unwrap(), |_| {}).await;
    let bob = Client {
        base: b.base.clone(),
        ..bob
    };
    // Bob's message tells A that B is back.
    bob.send_text(&room, "b1", "back").await;
    let got = sync_until(&bob, Some(since.clone()), |s| {
        s["to_device"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["content"]["ciphertext"] == "room key"))
    })
    .await;
    let got = got.expect("the to-device message sent while B was down never arrived");
    let event = got["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["ciphertext"] == "room key")
        .unwrap();
    assert_eq!(event["sender"], alice.user_id.as_str());
    let told = sync_until(&bob, Some(since.clone()), |s| {
        s["device_lists"]["changed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|u| u == alice.user_id.as_str()))
    })
    .await;
    assert!(told.is_some(), "B never heard of Alice's new device keys");
    let receipt = sync_until(&bob, Some(since.clone()), |s| {
        s["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter().any(|e| {
                    e["type"] == "m.receipt"
                        && e["content"][said.as_str()]["m.read"]
                            .get(alice.user_id.as_str())
                            .is_some()
                })
            })
    })
    .await;
    assert!(receipt.is_some(), "B never got Alice's receipt");
    // Once only: the next sync from there has it no more.
    let next = got["next_batch"].as_str().unwrap().to_owned();
    let again = bob.sync(Some(&next), 0).await;
    assert!(
        again["to_device"]["events"]
            .as_array()
            .is_none_or(|e| e.iter().all(|e| e["content"]["ciphertext"] != "room key")),
        "{again}"
    );
}
