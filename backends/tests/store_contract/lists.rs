//! Reads that return lists: every list in the order its port promises, every column intact
//! (transaction ids, the redaction of a redacted event, text that JSON or SQL quoting has to
//! escape), and an empty list as empty.

use ruma::{events::room::member::MembershipState, OwnedEventId};
use sandcat_core::ports::Receipt;

use super::*;

on_both_backends!(lists_keep_their_order_and_every_column);

fn message(body: &str, txn: Option<&str>) -> EventIntent {
    let mut ev = EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        "m.room.message".into(),
        None,
        json!({ "body": body }),
    );
    ev.txn = txn.map(|t| ("DEV".to_owned(), t.to_owned()));
    ev
}

async fn send(bus: &InProcessBus, ev: EventIntent) -> OwnedEventId {
    let evs = bus.submit(in_room(vec![ev])).await.unwrap();
    evs[0].pdu.event_id.clone()
}

async fn lists_keep_their_order_and_every_column(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    let room = room_id!("!room:localhost");
    let alice = user_id!("@alice:localhost");
    assert!(store
        .timeline(room, 0, i64::MAX, Direction::Forward, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.memberships(alice).await.unwrap().is_empty());
    assert!(store.receipts_since(room, 0).await.unwrap().is_empty());

    bus.submit(create_batch()).await.unwrap();
    let odd = "quotes \" backslash \\ newline \n tab \t nul-free \u{1f} é 猫 \u{10ffff}";
    let first = send(&bus, message(odd, Some("txn \"1\""))).await;
    let second = send(&bus, message("to be redacted", None)).await;
    let mut redaction = EventIntent::new(
        alice.to_owned(),
        "m.room.redaction".into(),
        None,
        json!({ "reason": "test" }),
    );
    redaction.redacts = Some(second.clone());
    let redaction = send(&bus, redaction).await;

    let forward = store
        .timeline(room, 0, i64::MAX, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(forward.len(), 7);
    assert!(forward.windows(2).all(|w| w[0].pos < w[1].pos));
    let backward = store
        .timeline(room, 0, i64::MAX, Direction::Backward, 3)
        .await
        .unwrap();
    let ids: Vec<_> = backward.iter().map(|e| e.pdu.event_id.clone()).collect();
    assert_eq!(ids, vec![redaction.clone(), second.clone(), first.clone()]);

    let odd_event = &backward[2];
    assert_eq!(odd_event.pdu.content_value()["body"], odd);
    assert_eq!(
        odd_event.txn,
        Some((alice.to_owned(), "DEV".to_owned(), "txn \"1\"".to_owned()))
    );
    let redacted = &backward[1];
    let because = redacted
        .redacted_because
        .as_ref()
        .expect("the redaction is attached");
    assert_eq!(because.pdu.event_id, redaction);
    assert!(
        redacted.pdu.content_value().get("body").is_none(),
        "the content is redacted"
    );
    assert_eq!(
        store
            .event(&second)
            .await
            .unwrap()
            .unwrap()
            .redacted_because
            .map(|e| e.pdu.event_id),
        Some(redaction.clone())
    );

    let state = store.current_state(room).await.unwrap();
    assert_eq!(state.len(), 4);
    assert!(state.windows(2).all(|w| w[0].pos < w[1].pos));
    let memberships = store.memberships(alice).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].membership, MembershipState::Join);
    assert_eq!(memberships[0].room_id, room);
    assert_eq!(
        store.members(room).await.unwrap(),
        vec![(alice.to_owned(), MembershipState::Join)]
    );
    store
        .set_account_data(alice, Some(room), "m.tag", &json!({ "tags": { odd: {} } }))
        .await
        .unwrap();
    store
        .set_account_data(alice, None, "m.direct", &json!({}))
        .await
        .unwrap();
    let data = store.account_data_since(alice, 0).await.unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0].0.as_deref(), Some(room));
    assert_eq!(data[0].2["tags"][odd], json!({}));
    assert_eq!((data[1].0.clone(), data[1].1.as_str()), (None, "m.direct"));
    let between = store.events_between(0, i64::MAX, 100).await.unwrap();
    assert_eq!(
        between.iter().map(|e| e.pos).collect::<Vec<_>>(),
        forward.iter().map(|e| e.pos).collect::<Vec<_>>()
    );

    for (user, event, ts) in [
        ("@bob:localhost", &first, 5),
        ("@alice:localhost", &second, 7),
    ] {
        store
            .set_receipt(&Receipt {
                room_id: room.to_owned(),
                user_id: user.try_into().unwrap(),
                receipt_type: "m.read".into(),
                thread_id: None,
                event_id: event.clone(),
                ts,
                pos: 0,
            })
            .await
            .unwrap();
    }
    let receipts = store.receipts_since(room, 0).await.unwrap();
    assert_eq!(receipts.len(), 2);
    assert!(receipts[0].pos < receipts[1].pos);
    assert_eq!(
        (
            receipts[0].user_id.as_str(),
            receipts[0].ts,
            receipts[0].thread_id.clone()
        ),
        ("@bob:localhost", 5, None)
    );
    let by_room = store.receipts_of(&[room.to_owned()]).await.unwrap();
    assert_eq!(by_room[room].len(), 2);
    bus.shutdown().await;
}
