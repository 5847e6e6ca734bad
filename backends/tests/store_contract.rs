//! Contract tests of the storage ports, run against both SQL backends: SQLite on a real file
//! and PostgreSQL (a fresh schema per test on the server `SANDCAT_TEST_POSTGRES` names, by
//! default the one `scripts/services.sh` starts).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use ruma::{
    events::TimelineEventType, room_id, signatures::Ed25519KeyPair, user_id, RoomVersionId,
};
use sandcat_backends::{
    bus::InProcessBus,
    sql::{create_schema, SqlStore},
};
use sandcat_core::{
    intent::{EventIntent, RoomBatch},
    notifier::Notifier,
    ports::{
        BatchHandler, BatchOutcome, ClientStore, Direction, EventBus, RoomStore, StreamPosition,
    },
    push::PushRules,
    sequencer::{Sequencer, SigningKey},
};
use serde_json::json;

/// Where a test's database lives.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Db {
        let base = std::env::var("SANDCAT_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sandcat_test".into());
        let schema = format!(
            "t_{}",
            sandcat_core::token::random_string(12)
                .to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "")
        );
        let url = create_schema(&base, &schema).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is needed ({e}); start it with scripts/services.sh")
        });
        Db::Postgres(url)
    }

    /// Opens the store (again: a reopened store is a restarted instance).
    async fn open(&self) -> Arc<SqlStore> {
        Arc::new(match self {
            Db::Sqlite(dir) => SqlStore::open(&dir.path().join("t.db")).await.unwrap(),
            Db::Postgres(url) => SqlStore::postgres(url, 4).await.unwrap(),
        })
    }
}

/// Runs each listed contract test on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Db::sqlite()).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Db::postgres().await).await
            })*
        }
    };
}

#[path = "store_contract/federation_outbox.rs"]
mod federation_outbox;
#[path = "store_contract/lists.rs"]
mod lists;
#[path = "store_contract/many_rooms.rs"]
mod many_rooms;
#[path = "store_contract/push.rs"]
mod push;
#[path = "store_contract/remote.rs"]
mod remote;
#[path = "store_contract/remote_join.rs"]
mod remote_join;
#[path = "store_contract/remote_pdu.rs"]
mod remote_pdu;
#[path = "store_contract/room_dag.rs"]
mod room_dag;
#[path = "store_contract/room_times.rs"]
mod room_times;
#[path = "store_contract/server_keys.rs"]
mod server_keys;
#[path = "store_contract/sliding.rs"]
mod sliding;
#[path = "store_contract/state_groups.rs"]
mod state_groups;
#[path = "store_contract/stream.rs"]
mod stream;
#[path = "store_contract/sync_state.rs"]
mod sync_state;

on_both_backends!(
    batches_append_all_or_nothing_in_stream_order,
    transaction_ids_make_sends_idempotent,
    a_restarted_sequencer_continues_the_room,
    a_local_event_names_every_forward_extremity,
    account_data_and_receipts_share_the_stream,
    redelivered_batches_are_sequenced_once,
);

/// A cluster-wide role is held by one instance at a time and passes on when it lets go.
#[tokio::test]
async fn postgres_one_instance_leads_at_a_time() {
    let db = Db::postgres().await;
    let (a, b) = (db.open().await, db.open().await);
    let mut lead = a.try_lead("pushers").await.unwrap().expect("a leads");
    assert!(lead.alive().await);
    assert!(
        b.try_lead("pushers").await.unwrap().is_none(),
        "b must wait"
    );
    assert!(
        b.try_lead("other-role").await.unwrap().is_some(),
        "roles are independent"
    );
    drop(lead);
    let mut taken = None;
    for _ in 0..50 {
        taken = b.try_lead("pushers").await.unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(taken.is_some(), "b takes over once a let go");
}

/// Several instances share one PostgreSQL database (one SQLite file has one process).
#[tokio::test]
async fn postgres_two_instances_append_to_one_room() {
    two_instances_append_to_one_room(Db::postgres().await).await
}

fn sequencer(store: Arc<SqlStore>) -> Arc<Sequencer> {
    let key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap();
    let signing = Arc::new(SigningKey {
        server_name: "localhost".try_into().unwrap(),
        key,
    });
    // Rules change straight in the store here: asked of it for every batch.
    let push = Arc::new(PushRules::new(
        store.clone(),
        "localhost".try_into().unwrap(),
        false,
    ));
    Arc::new(Sequencer::new(store, signing, Notifier::default()).with_push(push))
}

fn create_batch() -> RoomBatch {
    let alice = user_id!("@alice:localhost").to_owned();
    let ev = |kind: TimelineEventType, key: Option<&str>, content| {
        EventIntent::new(alice.clone(), kind, key.map(str::to_owned), content)
    };
    RoomBatch {
        room_id: room_id!("!room:localhost").to_owned(),
        create_version: Some(RoomVersionId::V11),
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
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

async fn batches_append_all_or_nothing_in_stream_order(db: Db) {
    let store = db.open().await;
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
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
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
    let evs = bus.submit(in_room(vec![ok])).await.unwrap();
    assert_eq!(
        evs[0].pdu.prev_events,
        vec![timeline[3].pdu.event_id.clone()],
        "the DAG stays linear"
    );
    bus.shutdown().await;
}

async fn transaction_ids_make_sends_idempotent(db: Db) {
    let store = db.open().await;
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
    let a = bus.submit(in_room(vec![intent.clone()])).await.unwrap();
    let b = bus.submit(in_room(vec![intent])).await.unwrap();
    assert_eq!(a[0].pdu.event_id, b[0].pdu.event_id);
    assert_eq!(
        store
            .timeline(room, 0, i64::MAX, Direction::Forward, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        store
            .txn_event(user_id!("@alice:localhost"), "DEV", room, "t1")
            .await
            .unwrap(),
        Some(a[0].pdu.event_id.clone())
    );
    assert_eq!(
        store
            .txn_event(
                user_id!("@alice:localhost"),
                "DEV",
                room_id!("!elsewhere:localhost"),
                "t1"
            )
            .await
            .unwrap(),
        None,
        "a transaction id belongs to one room"
    );
}

async fn a_restarted_sequencer_continues_the_room(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 1);
    let evs = bus.submit(create_batch()).await.unwrap();
    bus.shutdown().await;
    drop(bus);
    drop(store);
    let store = db.open().await;
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
    let more = bus.submit(in_room(vec![msg])).await.unwrap();
    assert_eq!(more[0].pdu.prev_events, vec![evs[3].pdu.event_id.clone()]);
    assert_eq!(u64::from(more[0].pdu.depth), 5);
}

/// The room's forward extremities, as stored.
async fn extremities(store: &SqlStore) -> Vec<String> {
    let mut x: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM room_extremities WHERE room_id = $1")
            .bind("!room:localhost")
            .fetch_all(store.pool())
            .await
            .unwrap();
    x.sort();
    x
}

async fn a_local_event_names_every_forward_extremity(db: Db) {
    let store = db.open().await;
    let first = InProcessBus::new(sequencer(store.clone()), 1);
    let evs = first.submit(create_batch()).await.unwrap();
    let said = |body: &str| {
        in_room(vec![EventIntent::new(
            user_id!("@alice:localhost").to_owned(),
            "m.room.message".into(),
            None,
            json!({ "body": body }),
        )])
    };
    let m1 = first.submit(said("one")).await.unwrap().remove(0);
    assert_eq!(extremities(&store).await, vec![m1.pdu.event_id.to_string()]);

    // The room forks: another branch ends at the power levels event (as events of another
    // server, built on an older event, would leave it).
    let branch = &evs[2].pdu.event_id;
    sqlx::query("INSERT INTO room_extremities (room_id, event_id, depth) VALUES ($1, $2, $3)")
        .bind("!room:localhost")
        .bind(branch.as_str())
        .bind(u64::from(evs[2].pdu.depth) as i64)
        .execute(store.pool())
        .await
        .unwrap();
    let second = InProcessBus::new(sequencer(store.clone()), 1);
    let m2 = second.submit(said("two")).await.unwrap().remove(0);
    // Newest first, and one deeper than the deepest: the fork is merged.
    assert_eq!(
        m2.pdu.prev_events,
        vec![m1.pdu.event_id.clone(), branch.clone()]
    );
    assert_eq!(u64::from(m2.pdu.depth), u64::from(m1.pdu.depth) + 1);
    assert_eq!(extremities(&store).await, vec![m2.pdu.event_id.to_string()]);
    let m3 = second.submit(said("three")).await.unwrap().remove(0);
    assert_eq!(m3.pdu.prev_events, vec![m2.pdu.event_id.clone()]);

    // The first sequencer still holds the heads it had before m2: its append on m1 is refused
    // and rebuilt on the room's heads now.
    let m4 = first.submit(said("four")).await.unwrap().remove(0);
    assert_eq!(m4.pdu.prev_events, vec![m3.pdu.event_id.clone()]);
    assert_eq!(extremities(&store).await, vec![m4.pdu.event_id.to_string()]);
}

async fn account_data_and_receipts_share_the_stream(db: Db) {
    let store = db.open().await;
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

/// A batch of `events` for the room `create_batch` makes.
fn in_room(events: Vec<EventIntent>) -> RoomBatch {
    RoomBatch {
        room_id: room_id!("!room:localhost").to_owned(),
        create_version: None,
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
        events,
    }
}

fn message(body: &str) -> RoomBatch {
    in_room(vec![EventIntent::new(
        user_id!("@alice:localhost").to_owned(),
        "m.room.message".into(),
        None,
        json!({ "body": body }),
    )])
}

async fn redelivered_batches_are_sequenced_once(db: Db) {
    let store = db.open().await;
    let seq = sequencer(store.clone());
    seq.handle_once("b-create", create_batch()).await.unwrap();
    let first = seq.handle_once("b-1", message("once")).await.unwrap();
    let pos = store.current_pos();
    // The same batch again (a bus redelivery): the recorded events, nothing appended.
    let again = seq.handle_once("b-1", message("once")).await.unwrap();
    assert_eq!(first[0].pdu.event_id, again[0].pdu.event_id);
    assert_eq!(store.current_pos(), pos, "nothing appended on redelivery");
    // Also from another sequencer that never saw it (the partition moved).
    let other = sequencer(store.clone());
    let third = other.handle_once("b-1", message("once")).await.unwrap();
    assert_eq!(first[0].pdu.event_id, third[0].pdu.event_id);
    assert_eq!(
        store.batch_outcome("b-1").await.unwrap(),
        Some(BatchOutcome::Appended(vec![first[0].pdu.event_id.clone()]))
    );
    // A refusal is recorded and given again.
    let mut bad = message("x");
    bad.events[0].sender = user_id!("@eve:localhost").to_owned();
    assert!(seq.handle_once("b-2", bad.clone()).await.is_err());
    assert!(matches!(
        store.batch_outcome("b-2").await.unwrap(),
        Some(BatchOutcome::Refused(..))
    ));
    assert!(other.handle_once("b-2", bad).await.is_err());
    assert_eq!(store.current_pos(), pos);
    let timeline = store
        .timeline(
            room_id!("!room:localhost"),
            0,
            i64::MAX,
            Direction::Forward,
            100,
        )
        .await
        .unwrap();
    assert_eq!(timeline.len(), 5);
}

/// Two instances, each with its own store handle and sequencer, append to one room in turn:
/// each notices the other's appends (a stale head is rebuilt, never forked), positions stay
/// unique and ordered, and each instance learns the other's changes before showing them.
async fn two_instances_append_to_one_room(db: Db) {
    let a = db.open().await;
    let b = db.open().await;
    let (seq_a, seq_b) = (sequencer(a.clone()), sequencer(b.clone()));
    seq_a.handle(create_batch()).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let seq = if i % 2 == 0 { &seq_a } else { &seq_b };
        let ev = seq.handle(message(&format!("m{i}"))).await.unwrap();
        ids.push(ev[0].pdu.event_id.clone());
    }
    b.refresh().await.unwrap();
    a.refresh().await.unwrap();
    assert_eq!(a.current_pos(), b.current_pos());
    let room = room_id!("!room:localhost");
    let timeline = a
        .timeline(room, 0, i64::MAX, Direction::Forward, 100)
        .await
        .unwrap();
    assert_eq!(timeline.len(), 10);
    assert!(
        timeline
            .windows(2)
            .all(|w| w[1].pdu.prev_events == vec![w[0].pdu.event_id.clone()]),
        "one linear DAG"
    );
    let got: Vec<_> = timeline[4..]
        .iter()
        .map(|e| e.pdu.event_id.clone())
        .collect();
    assert_eq!(got, ids, "in the order they were acknowledged");
    let changes = b.changes();
    let since = timeline[8].pos;
    assert!(
        changes.has_changed(&sandcat_core::changes::Change::Room(room.to_owned()), since),
        "the other instance's last append is known to this one"
    );
}
