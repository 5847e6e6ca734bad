//! Contract tests of the `Inbox` port and of the inbox indexer, run against each backend:
//! SQLite (a real file), PostgreSQL (a fresh schema per test on `SANDCAT_TEST_POSTGRES`) and
//! MongoDB (a fresh database per test on `SANDCAT_TEST_MONGO`), by default the servers
//! `scripts/services.sh` starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::sync::Arc;

use ruma::{room_id, signatures::Ed25519KeyPair, user_id, OwnedUserId, RoomVersionId};
use sandcat_backends::{
    bus::InProcessBus,
    mongo_inbox::MongoInbox,
    sql::{create_schema, SqlStore},
};
use sandcat_core::{
    inbox::InboxIndexer,
    intent::{EventIntent, RoomBatch},
    notifier::Notifier,
    ports::{EventBus, Inbox, InboxEntry, StreamPosition},
    sequencer::{Sequencer, SigningKey},
    token::random_string,
    StoredEvent,
};
use serde_json::json;

fn fresh_name() -> String {
    format!(
        "t_{}",
        random_string(12)
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    )
}

/// Keeps a SQLite inbox's directory alive for the test.
struct Backend {
    inbox: Arc<dyn Inbox>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open(&dir.path().join("t.db")).await.unwrap();
    Backend {
        inbox: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn postgres() -> Backend {
    let base = std::env::var("SANDCAT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/sandcat_test".into());
    let url = create_schema(&base, &fresh_name())
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is needed ({e}); start it with scripts/services.sh")
        });
    Backend {
        inbox: Arc::new(SqlStore::postgres(&url, 4).await.unwrap()),
        _dir: None,
    }
}

async fn mongodb() -> Backend {
    let url =
        std::env::var("SANDCAT_TEST_MONGO").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let inbox = MongoInbox::connect(&url, &fresh_name())
        .await
        .unwrap_or_else(|e| {
            panic!("MongoDB at {url} is needed ({e}); start it with scripts/services.sh")
        });
    Backend {
        inbox: Arc::new(inbox),
        _dir: None,
    }
}

/// Runs each listed contract test on every backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::sqlite().await.inbox).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::postgres().await.inbox).await
            })*
        }
        mod mongodb {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::mongodb().await.inbox).await
            })*
        }
    };
}

on_every_backend!(
    entries_are_kept_once_in_seq_order_per_user,
    the_indexed_position_only_moves_forward,
    latest_tells_received_from_sent,
    redactions_and_deletions_remove_entries,
    the_indexer_copies_messages_to_members,
);

fn entry(user: &str, seq: i64, sent: bool) -> InboxEntry {
    InboxEntry {
        user: user.into(),
        seq,
        room: "!r:localhost".into(),
        event_id: format!("$e{seq}"),
        sent,
        event: format!(r#"{{"n":{seq},"content":{{"m.relates_to":{{}},"a.b":"ü"}}}}"#),
        ts: 1_700_000_000_000 + seq,
    }
}

async fn entries_are_kept_once_in_seq_order_per_user(inbox: Arc<dyn Inbox>) {
    let a = "@a:localhost";
    let b = "@b:localhost";
    let first = vec![entry(a, 3, false), entry(b, 3, true), entry(a, 5, true)];
    inbox.put(&first, &[], 5).await.unwrap();
    // A repeated step (after a crash, or by the next indexer) writes some entries again.
    let mut again = first.clone();
    again.push(entry(a, 8, false));
    again.push(entry(a, 7, false));
    inbox.put(&again, &[], 8).await.unwrap();

    let got = inbox.pull(a, 0, i64::MAX, 100).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 5, 7, 8],
        "once each, in seq order"
    );
    assert_eq!(got[0], entry(a, 3, false), "stored as given");
    assert_eq!(
        inbox.pull(b, 0, i64::MAX, 100).await.unwrap(),
        vec![entry(b, 3, true)],
        "each user sees their own inbox"
    );
    let window = inbox.pull(a, 3, 7, 100).await.unwrap();
    assert_eq!(
        window.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![5, 7],
        "after < seq <= until"
    );
    let limited = inbox.pull(a, 0, i64::MAX, 2).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![3, 5]
    );
    assert!(inbox
        .pull("@nobody:localhost", 0, i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn the_indexed_position_only_moves_forward(inbox: Arc<dyn Inbox>) {
    assert_eq!(inbox.indexed().await.unwrap(), 0, "nothing indexed yet");
    inbox.put(&[], &[], 12).await.unwrap();
    assert_eq!(inbox.indexed().await.unwrap(), 12);
    inbox
        .put(&[entry("@a:localhost", 4, false)], &[], 4)
        .await
        .unwrap();
    assert_eq!(inbox.indexed().await.unwrap(), 12, "never back");
    assert_eq!(
        inbox.pull("@a:localhost", 0, 12, 10).await.unwrap().len(),
        1,
        "the entries of a late step are still kept"
    );
}

async fn latest_tells_received_from_sent(inbox: Arc<dyn Inbox>) {
    let a = "@a:localhost";
    assert_eq!(inbox.latest(a).await.unwrap(), (0, 0));
    inbox
        .put(
            &[
                entry(a, 2, true),
                entry(a, 4, false),
                entry(a, 9, true),
                entry(a, 6, false),
                entry("@b:localhost", 20, false),
            ],
            &[],
            20,
        )
        .await
        .unwrap();
    assert_eq!(inbox.latest(a).await.unwrap(), (6, 9));
}

async fn redactions_and_deletions_remove_entries(inbox: Arc<dyn Inbox>) {
    let (a, b) = ("@a:localhost", "@b:localhost");
    inbox
        .put(
            &[
                entry(a, 1, true),
                entry(b, 1, false),
                entry(a, 2, false),
                entry(b, 2, true),
                entry(a, 3, false),
            ],
            &[],
            3,
        )
        .await
        .unwrap();
    // A redaction of event 1 removes every user's copy.
    inbox.put(&[], &["$e1".to_owned()], 4).await.unwrap();
    let seqs = |v: Vec<InboxEntry>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(inbox.pull(a, 0, 9, 10).await.unwrap()), vec![2, 3]);
    assert_eq!(seqs(inbox.pull(b, 0, 9, 10).await.unwrap()), vec![2]);
    // A user deleting messages removes them from their own inbox only.
    inbox.remove(a, &[2, 99]).await.unwrap();
    inbox.remove(a, &[]).await.unwrap();
    assert_eq!(seqs(inbox.pull(a, 0, 9, 10).await.unwrap()), vec![3]);
    assert_eq!(seqs(inbox.pull(b, 0, 9, 10).await.unwrap()), vec![2]);
}

fn intent(
    sender: &OwnedUserId,
    kind: &str,
    key: Option<&str>,
    content: serde_json::Value,
) -> EventIntent {
    EventIntent::new(sender.clone(), kind.into(), key.map(str::to_owned), content)
}

fn join(user: &OwnedUserId) -> EventIntent {
    let content = json!({ "membership": "join" });
    intent(user, "m.room.member", Some(user.as_str()), content)
}

fn text(user: &OwnedUserId, body: &str) -> EventIntent {
    intent(
        user,
        "m.room.message",
        None,
        json!({ "msgtype": "m.text", "body": body }),
    )
}

/// Appends one event to the test room.
async fn append(bus: &InProcessBus, event: EventIntent) -> StoredEvent {
    let batch = RoomBatch {
        room_id: room_id!("!room:localhost").to_owned(),
        create_version: None,
        events: vec![event],
    };
    bus.submit(batch).await.unwrap().remove(0)
}

/// The indexer over a real room log (SQLite), writing to the inbox under test.
async fn the_indexer_copies_messages_to_members(inbox: Arc<dyn Inbox>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqlStore::open(&dir.path().join("rooms.db")).await.unwrap());
    let key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap();
    let signing = Arc::new(SigningKey {
        server_name: "localhost".try_into().unwrap(),
        key,
    });
    let bus = InProcessBus::new(
        Arc::new(Sequencer::new(store.clone(), signing, Notifier::default())),
        2,
    );
    let indexer = InboxIndexer::new(
        store.clone(),
        store.clone(),
        inbox.clone(),
        "localhost".try_into().unwrap(),
    );
    let alice = user_id!("@alice:localhost").to_owned();
    let bob = user_id!("@bob:localhost").to_owned();
    let carol = user_id!("@carol:localhost").to_owned();
    let room = room_id!("!room:localhost");
    bus.submit(RoomBatch {
        room_id: room.to_owned(),
        create_version: Some(RoomVersionId::V11),
        events: vec![
            intent(
                &alice,
                "m.room.create",
                Some(""),
                json!({ "room_version": "11" }),
            ),
            intent(
                &alice,
                "m.room.member",
                Some(alice.as_str()),
                json!({ "membership": "join" }),
            ),
            intent(
                &alice,
                "m.room.power_levels",
                Some(""),
                json!({ "users": { alice.as_str(): 100 } }),
            ),
            intent(
                &alice,
                "m.room.join_rules",
                Some(""),
                json!({ "join_rule": "public" }),
            ),
        ],
    })
    .await
    .unwrap();
    append(&bus, join(&bob)).await;
    let m1 = append(&bus, text(&alice, "one")).await;
    let m2 = append(&bus, text(&bob, "two")).await;
    let redaction = json!({ "redacts": m1.pdu.event_id });
    append(&bus, intent(&alice, "m.room.redaction", None, redaction)).await;

    assert_eq!(indexer.step().await.unwrap(), store.current_pos());
    assert_eq!(inbox.indexed().await.unwrap(), store.current_pos());
    let of = |user: &OwnedUserId| {
        let inbox = inbox.clone();
        let user = user.to_string();
        async move { inbox.pull(&user, 0, i64::MAX, 100).await.unwrap() }
    };
    let alices = of(&alice).await;
    assert_eq!(alices.len(), 1, "the redacted message is gone: {alices:?}");
    assert_eq!(
        (alices[0].seq, alices[0].sent, alices[0].event_id.as_str()),
        (m2.pos, false, m2.pdu.event_id.as_str())
    );
    let back = alices[0].stored_event().unwrap();
    assert_eq!(back.pdu.content_value()["body"], "two");
    assert_eq!(back.pdu.room_id(), room);
    let bobs = of(&bob).await;
    assert_eq!(bobs.len(), 1);
    assert!(bobs[0].sent, "bob's own copy is marked sent");
    assert!(of(&carol).await.is_empty(), "not a member");

    // Carol joins; a later message reaches her, earlier ones do not. A second indexer (after
    // a restart) continues where the first stopped.
    append(&bus, join(&carol)).await;
    let m3 = append(&bus, text(&alice, "three")).await;
    let restarted = InboxIndexer::new(
        store.clone(),
        store.clone(),
        inbox.clone(),
        "localhost".try_into().unwrap(),
    );
    restarted.step().await.unwrap();
    assert_eq!(
        of(&carol).await.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![m3.pos]
    );
    assert_eq!(
        of(&alice)
            .await
            .iter()
            .map(|e| (e.seq, e.sent))
            .collect::<Vec<_>>(),
        vec![(m2.pos, false), (m3.pos, true)],
        "nothing indexed twice"
    );
    assert_eq!(
        inbox.latest(alice.as_str()).await.unwrap(),
        (m2.pos, m3.pos)
    );
    bus.shutdown().await;
}
