//! What sliding sync reads and keeps: each room's latest activity and chosen state kinds for
//! many rooms at once, and a connection's positions (the latest and the one before, none of
//! another connection's, none past their time).

use ruma::{owned_room_id, OwnedRoomId};
use sandcat_core::ports::{ConnectionKey, RoomLists, SlidingConnections, POSITION_KEPT_MS};

use super::*;

on_both_backends!(
    room_lists_read_many_rooms_at_once,
    a_connection_keeps_its_latest_two_positions
);

async fn room_lists_read_many_rooms_at_once(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    bus.submit(create_batch()).await.unwrap();
    let room: OwnedRoomId = owned_room_id!("!room:localhost");
    let unknown: OwnedRoomId = owned_room_id!("!none:localhost");
    let rooms = [room.clone(), unknown.clone()];
    // The create event is the room's first activity.
    let stamps = store.bump_stamps(&rooms, i64::MAX).await.unwrap();
    let created = stamps[&room];
    assert!(!stamps.contains_key(&unknown));
    let sent = bus.submit(message("hello")).await.unwrap()[0].pos;
    assert!(sent > created);
    // A topic is no activity; a bound hides what came after it.
    bus.submit(in_room(vec![EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        TimelineEventType::RoomTopic,
        Some(String::new()),
        json!({ "topic": "t" }),
    )]))
    .await
    .unwrap();
    assert_eq!(
        store.bump_stamps(&rooms, i64::MAX).await.unwrap()[&room],
        sent
    );
    assert_eq!(
        store.bump_stamps(&rooms, sent - 1).await.unwrap()[&room],
        created
    );

    let kinds = |events: Vec<sandcat_core::StoredEvent>| -> Vec<String> {
        events.iter().map(|e| e.pdu.kind.to_string()).collect()
    };
    let some = store
        .state_of_rooms(&rooms, &["m.room.create", "m.room.topic"])
        .await
        .unwrap();
    assert_eq!(kinds(some), ["m.room.create", "m.room.topic"]);
    let all = kinds(store.state_of_rooms(&rooms, &[]).await.unwrap());
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(store
        .state_of_rooms(&[unknown], &[])
        .await
        .unwrap()
        .is_empty());
}

async fn a_connection_keeps_its_latest_two_positions(db: Db) {
    let store = db.open().await;
    let alice = user_id!("@alice:localhost");
    let conn = ConnectionKey {
        user_id: alice,
        device_id: "DEV",
        conn_id: "room-list",
    };
    let other = ConnectionKey {
        conn_id: "encryption",
        ..conn
    };
    let now = 1_000_000_000_000;
    let get = |c, p: &'static str| {
        let store = store.clone();
        async move { store.connection_position(c, p).await.unwrap() }
    };
    store
        .save_connection_position(conn, "p1", None, "{\"a\":1}", now)
        .await
        .unwrap();
    store
        .save_connection_position(other, "q1", None, "{}", now)
        .await
        .unwrap();
    assert_eq!(get(conn, "p1").await.as_deref(), Some("{\"a\":1}"));
    assert_eq!(get(other, "p1").await, None, "positions are per connection");
    // Answering p1 with p2 keeps p1 (the request may be retried)…
    store
        .save_connection_position(conn, "p2", Some("p1"), "{\"a\":2}", now)
        .await
        .unwrap();
    assert!(get(conn, "p1").await.is_some() && get(conn, "p2").await.is_some());
    // …answering p2 with p3 drops p1.
    store
        .save_connection_position(conn, "p3", Some("p2"), "{}", now)
        .await
        .unwrap();
    assert_eq!(get(conn, "p1").await, None);
    assert!(get(conn, "p2").await.is_some() && get(conn, "q1").await.is_none());
    assert!(get(other, "q1").await.is_some());
    // A connection started afresh forgets the old ones.
    store
        .save_connection_position(conn, "p4", None, "{}", now)
        .await
        .unwrap();
    assert_eq!(get(conn, "p3").await, None);
    // Positions unused for too long go, whoever saves next.
    store
        .save_connection_position(conn, "p5", Some("p4"), "{}", now + POSITION_KEPT_MS + 1)
        .await
        .unwrap();
    assert_eq!(get(other, "q1").await, None);
    assert!(get(conn, "p5").await.is_some());
}
