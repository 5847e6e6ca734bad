//! A server that misbehaves is refused and changes nothing: in a transaction, a message from
//! a user of its own who never joined, one of a user of a third server that it signed alone,
//! one for a room this server does not know and one that is no event at all are each refused
//! or left out; a transaction of more than 50 PDUs and a body over 4 MiB are refused whole;
//! typing of a user who is not in the room is dropped. The room reads the same before and
//! after. Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the
//! pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    federation::{federating, joined_members, room_bodies, signed_pdu, signing_as},
    Client,
};
use ruma::{
    api::federation::{membership::prepare_join_event, transactions::send_transaction_message},
    serde::Raw,
    MilliSecondsSinceUnixEpoch, OwnedRoomId, RoomVersionId,
};
use serde_json::{json, value::RawValue, Value};

/// What `client` reads of `room`: its messages, oldest first, and its joined members.
async fn view(client: &Client, room: &str) -> (Vec<String>, Vec<String>) {
    (
        room_bodies(client, room).await,
        joined_members(client, room).await,
    )
}

fn transaction(
    txn: &str,
    origin: &ruma::OwnedServerName,
    pdus: Vec<Box<RawValue>>,
) -> send_transaction_message::v1::Request {
    let mut request = send_transaction_message::v1::Request::new(
        txn.into(),
        origin.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    request.pdus = pdus;
    request
}

#[tokio::test]
async fn a_misbehaving_server_is_refused_and_changes_nothing() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    alice
        .send_text(&room_id, "t1", "only alice speaks here")
        .await;
    let room: OwnedRoomId = room_id.as_str().try_into().unwrap();
    let key_file = b.dir.path().join("signing.key");
    let as_b = signing_as(
        &b_name,
        sandcat::signing_key::load_or_create(&key_file).unwrap(),
    );
    let b_key = sandcat::signing_key::load_or_create(&key_file).unwrap();
    let before = view(&alice, &room_id).await;

    // A template for Mallory of B gives the room's heads and auth events: what a forged
    // message would cite.
    let mallory = format!("@mallory:{b_name}");
    let mut ask =
        prepare_join_event::v1::Request::new(room.clone(), mallory.as_str().try_into().unwrap());
    ask.ver = vec![RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
    let template = as_b
        .send(&a_name, ask)
        .await
        .expect("a public room's template");
    let version = template.room_version.unwrap();
    let join: Value = serde_json::from_str(template.event.get()).unwrap();
    let message = |sender: &str, body: &str| {
        json!({
            "room_id": room,
            "sender": sender,
            "type": "m.room.message",
            "content": { "msgtype": "m.text", "body": body },
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "prev_events": join["prev_events"],
            "auth_events": join["auth_events"],
            "depth": join["depth"],
        })
    };
    let (outsider, outsider_pdu) =
        signed_pdu(&b_name, &b_key, &version, message(&mallory, "from outside"));
    let (third, third_pdu) = signed_pdu(
        &b_name,
        &b_key,
        &version,
        message("@eve:elsewhere.example", "in someone else's name"),
    );
    let mut elsewhere = message(&mallory, "to a room not here");
    elsewhere["room_id"] = json!("!nowhere:elsewhere.example");
    let (unknown, unknown_pdu) = signed_pdu(&b_name, &b_key, &version, elsewhere);
    let garbage = RawValue::from_string(r#"{"hello":"world"}"#.to_owned()).unwrap();
    let answer = as_b
        .send(
            &a_name,
            transaction(
                "t1",
                &b_name,
                vec![outsider_pdu.clone(), third_pdu, unknown_pdu, garbage],
            ),
        )
        .await
        .expect("a transaction is answered per PDU");
    assert!(
        matches!(answer.pdus.get(&outsider), Some(Err(_))),
        "{:?}",
        answer.pdus
    );
    assert!(
        matches!(answer.pdus.get(&third), Some(Err(_))),
        "{:?}",
        answer.pdus
    );
    assert!(!answer.pdus.contains_key(&unknown), "{:?}", answer.pdus);
    assert_eq!(
        answer.pdus.len(),
        2,
        "the rest is left out: {:?}",
        answer.pdus
    );

    // Too many PDUs, or too large a body: refused whole.
    let err = as_b
        .send(&a_name, transaction("t2", &b_name, vec![outsider_pdu; 51]))
        .await
        .expect_err("51 PDUs");
    assert!(err.to_string().contains("413"), "{err}");
    let mut huge = transaction("t3", &b_name, Vec::new());
    let pad = "x".repeat(5 * 1024 * 1024);
    let edu = json!({ "edu_type": "m.typing", "content": { "room_id": room, "user_id": mallory, "typing": true, "pad": pad } });
    huge.edus = vec![Raw::from_json(
        serde_json::value::to_raw_value(&edu).unwrap(),
    )];
    let err = as_b
        .send(&a_name, huge)
        .await
        .expect_err("a body over 4 MiB");
    assert!(err.to_string().contains("413"), "{err}");

    // Typing of a user who is not in the room reaches nobody.
    let mut typing = transaction("t4", &b_name, Vec::new());
    let edu = json!({ "edu_type": "m.typing", "content": { "room_id": room, "user_id": mallory, "typing": true } });
    typing.edus = vec![Raw::from_json(
        serde_json::value::to_raw_value(&edu).unwrap(),
    )];
    as_b.send(&a_name, typing)
        .await
        .expect("EDUs are answered as a whole");
    let sync = alice.sync(None, 1_000).await;
    let typing_now = sync["rooms"]["join"][&room_id]["ephemeral"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.typing")
        .flat_map(|e| {
            e["content"]["user_ids"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .count();
    assert_eq!(typing_now, 0, "{sync}");

    assert_eq!(
        view(&alice, &room_id).await,
        before,
        "the room reads the same"
    );
}
