//! Contract tests of the storage ports, run against the SQLite backend on a real file.

use std::sync::Arc;

use ruma::{
    events::TimelineEventType, room_id, signatures::Ed25519KeyPair, user_id, RoomVersionId,
};
use sandcat_backends::{bus::InProcessBus, sqlite::SqliteStore};
use sandcat_core::{
    intent::{EventIntent, RoomBatch},
    notifier::Notifier,
    ports::{ClientStore, Direction, EventBus, RoomStore, StreamPosition},
    sequencer::{Sequencer, SigningKey},
};
use serde_json::json;

async fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
    (dir, Arc::new(store))
}

fn sequencer(store: Arc<SqliteStore>) -> Arc<Sequencer> {
    let key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap();
    let signing = Arc::new(SigningKey {
        server_name: "localhost".try_into().unwrap(),
        key,
    });
    Arc::new(Sequencer::new(store, signing, Notifier::default()))
}

fn create_batch() -> RoomBatch {
    let alice = user_id!("@alice:localhost").to_owned();
    let ev = |kind: TimelineEventType, key: Option<&str>, content| {
        EventIntent::new(alice.clone(), kind, key.map(str::to_owned), content)
    };
    RoomBatch {
        room_id: room_id!("!room:localhost").to_owned(),
        create_version: Some(RoomVersionId::V11),
        events: vec![
            ev(
                TimelineEventType::RoomCreate,
                Some(""),
                json!({ "room_version": "11" }),
            ),
            ev(
                TimelineEventType::RoomMember,
                Some("@alice:localhost"),
                json!({ "membership": "join" }),
            ),
            ev(
                TimelineEventType::RoomPowerLevels,
                Some(""),
                json!({ "users": { "@alice:localhost": 100 } }),
            ),
            ev(
                TimelineEventType::RoomJoinRules,
                Some(""),
                json!({ "join_rule": "invite" }),
            ),
        ],
    }
}

#[tokio::test]
async fn batches_append_all_or_nothing_in_stream_order() {
    let (_dir, store) = store().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 4);
    let before = store.current_pos();
    let evs = bus.submit(create_batch()).await.unwrap();
    assert_eq!(evs.len(), 4);
    assert!(
        evs.windows(2).all(|w| w[0].pos < w[1].pos),
        "positions increase within a batch"
    );
    assert_eq!(store.current_pos(), evs[3].pos);
    assert!(evs[0].pos > before);
    let room = room_id!("!room:localhost");
    assert_eq!(store.current_state(room).await.unwrap().len(), 4);

    // A batch whose second event fails authorisation leaves no trace.
    let eve = user_id!("@eve:localhost").to_owned();
    let bad = RoomBatch {
        room_id: room.to_owned(),
        create_version: None,
        events: vec![
            EventIntent::new(
                user_id!("@alice:localhost").to_owned(),
                "m.room.message".into(),
                None,
                json!({ "body": "ok" }),
            ),
            EventIntent::new(
                eve,
                "m.room.message".into(),
                None,
                json!({ "body": "not a member" }),
            ),
        ],
    };
    let pos = store.current_pos();
    assert!(bus.submit(bad).await.is_err());
    assert_eq!(store.current_pos(), pos, "nothing was committed");
    let timeline = store
        .timeline(room, 0, i64::MAX, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(timeline.len(), 4);
    // The room still takes writes after the refused batch.
    let ok = EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        "m.room.message".into(),
        None,
        json!({ "body": "after" }),
    );
    let evs = bus
        .submit(RoomBatch {
            room_id: room.to_owned(),
            create_version: None,
            events: vec![ok],
        })
        .await
        .unwrap();
    assert_eq!(
        evs[0].pdu.prev_events,
        vec![timeline[3].pdu.event_id.clone()],
        "the DAG stays linear"
    );
    bus.shutdown().await;
}

#[tokio::test]
async fn transaction_ids_make_sends_idempotent() {
    let (_dir, store) = store().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    bus.submit(create_batch()).await.unwrap();
    let room = room_id!("!room:localhost");
    let mut intent = EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        "m.room.message".into(),
        None,
        json!({ "body": "x" }),
    );
    intent.txn = Some(("DEV".into(), "t1".into()));
    let a = bus
        .submit(RoomBatch {
            room_id: room.to_owned(),
            create_version: None,
            events: vec![intent.clone()],
        })
        .await
        .unwrap();
    let b = bus
        .submit(RoomBatch {
            room_id: room.to_owned(),
            create_version: None,
            events: vec![intent],
        })
        .await
        .unwrap();
    assert_eq!(a[0].pdu.event_id, b[0].pdu.event_id);
    assert_eq!(
        store
            .timeline(room, 0, i64::MAX, Direction::Forward, 100)
            .await
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn a_restarted_sequencer_continues_the_room() {
    let (dir, store) = store().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 1);
    let evs = bus.submit(create_batch()).await.unwrap();
    bus.shutdown().await;
    drop(bus);
    drop(store);
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
    assert_eq!(
        store.current_pos(),
        evs[3].pos,
        "the stream position is recovered"
    );
    let bus = InProcessBus::new(sequencer(store.clone()), 1);
    let msg = EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        "m.room.message".into(),
        None,
        json!({ "body": "x" }),
    );
    let more = bus
        .submit(RoomBatch {
            room_id: room_id!("!room:localhost").to_owned(),
            create_version: None,
            events: vec![msg],
        })
        .await
        .unwrap();
    assert_eq!(more[0].pdu.prev_events, vec![evs[3].pdu.event_id.clone()]);
    assert_eq!(u64::from(more[0].pdu.depth), 5);
}

#[tokio::test]
async fn account_data_and_receipts_share_the_stream() {
    let (_dir, store) = store().await;
    let alice = user_id!("@alice:localhost");
    let p1 = store
        .set_account_data(alice, None, "a", &json!({ "n": 1 }))
        .await
        .unwrap();
    let p2 = store
        .set_account_data(alice, None, "b", &json!({ "n": 2 }))
        .await
        .unwrap();
    assert!(p2 > p1);
    assert_eq!(store.current_pos(), p2);
    let since = store.account_data_since(alice, p1).await.unwrap();
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].1, "b");
    let p3 = store
        .set_account_data(alice, None, "a", &json!({ "n": 3 }))
        .await
        .unwrap();
    let since = store.account_data_since(alice, p2).await.unwrap();
    assert_eq!((since.len(), since[0].2.clone()), (1, json!({ "n": 3 })));
    assert!(p3 > p2);
    let f = store
        .create_filter(alice, &json!({ "room": {} }))
        .await
        .unwrap();
    let g = store
        .create_filter(alice, &json!({ "presence": {} }))
        .await
        .unwrap();
    assert_ne!(f, g);
    assert_eq!(
        store.filter(alice, &g).await.unwrap(),
        Some(json!({ "presence": {} }))
    );
    assert_eq!(store.filter(alice, "999").await.unwrap(), None);
}
