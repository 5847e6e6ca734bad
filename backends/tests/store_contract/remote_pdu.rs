//! Events from another server are checked as the spec orders before anything reads them: size
//! and format, room, the signatures of every server that must sign them (keys fetched once),
//! then the content hash, whose mismatch keeps only the redacted event.

use ruma::{events::TimelineEventType, server_name, OwnedEventId, RoomId};
use sandcat_core::{
    remote_pdu::{verify_pdu, VerifiedPdu},
    sequencer::room_id_from_create,
    Error, ErrorCode,
};
use serde_json::Value;

use super::remote::{key_service, new_key, RemoteServer, T0};
use super::*;

on_both_backends!(remote_events_are_verified_in_the_spec_order);

fn message(sender: &str, body: &str) -> EventIntent {
    EventIntent::new(
        sender.try_into().unwrap(),
        TimelineEventType::RoomMessage,
        None,
        json!({ "msgtype": "m.text", "body": body }),
    )
}

fn code(r: Result<VerifiedPdu, Error>) -> ErrorCode {
    match r {
        Err(Error::Matrix { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn edit(json: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(json).unwrap();
    f(&mut v);
    v.to_string()
}

async fn remote_events_are_verified_in_the_spec_order(db: Db) {
    let store = db.open().await;
    let remote = RemoteServer::new(server_name!("remote.example"));
    let keys = key_service(store.clone(), &remote);
    let v = RoomVersionId::V11;
    let room = room_id!("!room:remote.example");
    let prev: OwnedEventId = "$prev".try_into().unwrap();
    let (pdu, json) = remote.event(
        room,
        &v,
        message("@bob:remote.example", "hello"),
        vec![prev.clone()],
        T0,
    );

    // Intact: its id is its reference hash, and it is kept as signed.
    let ok = verify_pdu(&keys, &v, room, &json).await.unwrap();
    assert_eq!(ok.event_id(), &pdu.event_id);
    assert!(!ok.redacted);
    assert_eq!(ok.pdu.prev_events, vec![prev.clone()]);
    assert_eq!(ok.pdu.content_value()["body"], "hello");
    assert_eq!(remote.asked.load(std::sync::atomic::Ordering::SeqCst), 1);

    // `unsigned` is nobody's signed word: dropped.
    let with_unsigned = edit(&json, |e| {
        e["unsigned"] = json!({ "redacted_because": { "x": 1 } })
    });
    let ok = verify_pdu(&keys, &v, room, &with_unsigned).await.unwrap();
    assert!(!ok.json.contains("unsigned"), "{}", ok.json);

    // Content that does not match its hash: the event is kept redacted, under the same id.
    let altered = edit(&json, |e| {
        e["content"]["body"] = json!("changed in transit")
    });
    let red = verify_pdu(&keys, &v, room, &altered).await.unwrap();
    assert!(red.redacted);
    assert_eq!(red.event_id(), &pdu.event_id);
    assert_eq!(red.pdu.content_value(), json!({}));

    // A field that is signed, altered: the signature fails.
    let late = edit(&json, |e| e["origin_server_ts"] = json!(T0 + 1));
    assert_eq!(
        code(verify_pdu(&keys, &v, room, &late).await),
        ErrorCode::Forbidden
    );

    // Signed with a key the server does not publish (under the id of one it does).
    let real = std::mem::replace(
        &mut *remote.signing.lock().unwrap(),
        new_key(&remote.name, "a_one"),
    );
    let (_, wrong_key) = remote.event(
        room,
        &v,
        message("@bob:remote.example", "forged"),
        vec![prev.clone()],
        T0,
    );
    *remote.signing.lock().unwrap() = real;
    assert_eq!(
        code(verify_pdu(&keys, &v, room, &wrong_key).await),
        ErrorCode::Forbidden
    );

    // A sender of another server, signed only by this one: that server's signature is needed,
    // and its keys cannot be had.
    let (_, spoofed) = remote.event(
        room,
        &v,
        message("@mallory:evil.example", "hi"),
        vec![prev.clone()],
        T0,
    );
    assert!(matches!(
        code(verify_pdu(&keys, &v, room, &spoofed).await),
        ErrorCode::Forbidden | ErrorCode::Unauthorized
    ));
    // Not signed at all.
    let unsigned = edit(&json, |e| {
        e.as_object_mut().unwrap().remove("signatures");
    });
    assert!(matches!(
        code(verify_pdu(&keys, &v, room, &unsigned).await),
        ErrorCode::Forbidden | ErrorCode::BadJson
    ));

    // Of another room; malformed; too large; not JSON.
    let other: &RoomId = room_id!("!other:remote.example");
    assert_eq!(
        code(verify_pdu(&keys, &v, other, &json).await),
        ErrorCode::InvalidParam
    );
    let no_prev = edit(&json, |e| {
        e.as_object_mut().unwrap().remove("prev_events");
    });
    assert_eq!(
        code(verify_pdu(&keys, &v, room, &no_prev).await),
        ErrorCode::BadJson
    );
    let huge = edit(&json, |e| e["content"]["body"] = json!("x".repeat(70_000)));
    assert_eq!(
        code(verify_pdu(&keys, &v, room, &huge).await),
        ErrorCode::TooLarge
    );
    assert_eq!(
        code(verify_pdu(&keys, &v, room, "{\"type\":").await),
        ErrorCode::BadJson
    );

    // A version 12 create event names no room: its id is the room's.
    let v12 = RoomVersionId::V12;
    let create = EventIntent::new(
        "@bob:remote.example".try_into().unwrap(),
        TimelineEventType::RoomCreate,
        Some(String::new()),
        json!({ "room_version": "12" }),
    );
    let placeholder = room_id!("!placeholder");
    let (made, create_json) = remote.event(placeholder, &v12, create, Vec::new(), T0);
    let room12 = room_id_from_create(&made.event_id).unwrap();
    let ok = verify_pdu(&keys, &v12, &room12, &create_json)
        .await
        .unwrap();
    assert_eq!(ok.event_id(), &made.event_id);
    assert_eq!(
        code(verify_pdu(&keys, &v12, room, &create_json).await),
        ErrorCode::InvalidParam
    );
    // Keys were fetched once for all of it.
    assert_eq!(remote.asked.load(std::sync::atomic::Ordering::SeqCst), 1);
}
