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
    ports::{EventBus, Inbox, InboxEntry, InboxItem, InboxSeqs, SeqRange, StreamPosition},
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

/// The test MongoDB (`scripts/services.sh`). A test server busy with another test may take
/// a few seconds to answer a new client; a missing one still fails, after 30 s.
const TEST_MONGO: &str = "mongodb://127.0.0.1:27017/?serverSelectionTimeoutMS=30000";

async fn mongodb() -> Backend {
    Backend {
        inbox: fresh_mongo_inbox().await.0,
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
    each_user_counts_received_and_sent_without_gaps,
    a_repeated_step_numbers_nothing_twice,
    the_indexed_position_only_moves_forward,
    deleting_entries_keeps_the_counters,
    redactions_and_deletions_remove_entries,
    the_indexer_copies_messages_to_members,
);

fn item(user: &str, pos: i64, sent: bool) -> InboxItem {
    InboxItem {
        user: user.into(),
        pos,
        room: "!r:localhost".into(),
        event_id: format!("$e{pos}"),
        sent,
        event: format!(r#"{{"n":{pos},"content":{{"m.relates_to":{{}},"a.b":"ü"}}}}"#).into(),
        ts: 1_700_000_000_000 + pos,
    }
}

/// `(pos, sent, seq)` of entries.
fn numbered(v: &[InboxEntry]) -> Vec<(i64, bool, i64)> {
    v.iter().map(|e| (e.item.pos, e.item.sent, e.seq)).collect()
}

async fn all(inbox: &Arc<dyn Inbox>, user: &str) -> Vec<InboxEntry> {
    inbox
        .pull(user, SeqRange::ALL, SeqRange::ALL, 1000)
        .await
        .unwrap()
}

async fn each_user_counts_received_and_sent_without_gaps(inbox: Arc<dyn Inbox>) {
    let (a, b) = ("@a:localhost", "@b:localhost");
    inbox
        .append(
            &[item(a, 3, false), item(b, 3, true), item(a, 5, true)],
            &[],
            5,
        )
        .await
        .unwrap();
    inbox
        .append(&[item(a, 7, false), item(a, 8, false)], &[], 8)
        .await
        .unwrap();
    let got = all(&inbox, a).await;
    assert_eq!(
        numbered(&got),
        vec![(3, false, 1), (5, true, 1), (7, false, 2), (8, false, 3)],
        "received and sent are two sequences, each from 1, in stream order"
    );
    assert_eq!(got[0].item, item(a, 3, false), "stored as given");
    assert_eq!(numbered(&all(&inbox, b).await), vec![(3, true, 1)]);
    assert_eq!(
        inbox.latest(a).await.unwrap(),
        InboxSeqs {
            seq: 3,
            send_seq: 1
        }
    );
    let window = inbox
        .pull(a, SeqRange::new(1, 3), SeqRange::NONE, 100)
        .await
        .unwrap();
    assert_eq!(numbered(&window), vec![(7, false, 2), (8, false, 3)]);
    let sent = inbox
        .pull(a, SeqRange::NONE, SeqRange::new(0, 1), 100)
        .await
        .unwrap();
    assert_eq!(numbered(&sent), vec![(5, true, 1)]);
    let limited = inbox
        .pull(a, SeqRange::ALL, SeqRange::ALL, 2)
        .await
        .unwrap();
    assert_eq!(numbered(&limited), vec![(3, false, 1), (5, true, 1)]);
    let live = inbox.since(a, 5, 10).await.unwrap();
    assert_eq!(numbered(&live), vec![(7, false, 2), (8, false, 3)]);
    assert_eq!(
        inbox.received(a, 2).await.unwrap().map(|e| e.item.pos),
        Some(7)
    );
    assert!(inbox.received(a, 4).await.unwrap().is_none());
    assert!(all(&inbox, "@nobody:localhost").await.is_empty());
    assert_eq!(
        inbox.latest("@nobody:localhost").await.unwrap(),
        InboxSeqs::default()
    );
}

async fn a_repeated_step_numbers_nothing_twice(inbox: Arc<dyn Inbox>) {
    let a = "@a:localhost";
    let first = vec![item(a, 2, false), item(a, 4, false)];
    inbox.append(&first, &[], 4).await.unwrap();
    // The next indexer repeats the step, with more of the stream behind it.
    let mut again = first.clone();
    again.push(item(a, 6, false));
    inbox.append(&again, &[], 6).await.unwrap();
    assert_eq!(
        numbered(&all(&inbox, a).await),
        vec![(2, false, 1), (4, false, 2), (6, false, 3)]
    );
}

async fn the_indexed_position_only_moves_forward(inbox: Arc<dyn Inbox>) {
    assert_eq!(inbox.indexed().await.unwrap(), 0, "nothing indexed yet");
    inbox.append(&[], &[], 12).await.unwrap();
    assert_eq!(inbox.indexed().await.unwrap(), 12);
    inbox
        .append(&[item("@a:localhost", 4, false)], &[], 4)
        .await
        .unwrap();
    assert_eq!(inbox.indexed().await.unwrap(), 12, "never back");
    assert!(
        all(&inbox, "@a:localhost").await.is_empty(),
        "what is at or below the indexed position was indexed already"
    );
}

async fn deleting_entries_keeps_the_counters(inbox: Arc<dyn Inbox>) {
    let a = "@a:localhost";
    inbox
        .append(&[item(a, 1, false), item(a, 2, false)], &[], 2)
        .await
        .unwrap();
    inbox.remove(a, &[1, 2]).await.unwrap();
    assert!(all(&inbox, a).await.is_empty());
    assert_eq!(
        inbox.latest(a).await.unwrap().seq,
        2,
        "deleting never lowers"
    );
    inbox.append(&[item(a, 3, false)], &[], 3).await.unwrap();
    assert_eq!(numbered(&all(&inbox, a).await), vec![(3, false, 3)]);
}

async fn redactions_and_deletions_remove_entries(inbox: Arc<dyn Inbox>) {
    let (a, b) = ("@a:localhost", "@b:localhost");
    inbox
        .append(
            &[
                item(a, 1, true),
                item(b, 1, false),
                item(a, 2, false),
                item(b, 2, true),
                item(a, 3, false),
            ],
            &[],
            3,
        )
        .await
        .unwrap();
    // A redaction of event 1 removes every user's copy.
    inbox.append(&[], &["$e1".to_owned()], 4).await.unwrap();
    let positions = |v: Vec<InboxEntry>| v.iter().map(|e| e.item.pos).collect::<Vec<_>>();
    assert_eq!(positions(all(&inbox, a).await), vec![2, 3]);
    assert_eq!(positions(all(&inbox, b).await), vec![2]);
    // A user deleting received messages removes them from their own inbox only.
    inbox.remove(a, &[1, 99]).await.unwrap();
    inbox.remove(a, &[]).await.unwrap();
    assert_eq!(positions(all(&inbox, a).await), vec![3]);
    assert_eq!(positions(all(&inbox, b).await), vec![2]);
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
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
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
        store.clone(),
        "localhost".try_into().unwrap(),
    );
    let alice = user_id!("@alice:localhost").to_owned();
    let bob = user_id!("@bob:localhost").to_owned();
    let carol = user_id!("@carol:localhost").to_owned();
    let room = room_id!("!room:localhost");
    bus.submit(RoomBatch {
        room_id: room.to_owned(),
        create_version: Some(RoomVersionId::V11),
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
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
    let bob_joined = append(&bus, join(&bob)).await;
    let m1 = append(&bus, text(&alice, "one")).await;
    let m2 = append(&bus, text(&bob, "two")).await;
    let redaction = json!({ "redacts": m1.pdu.event_id });
    append(&bus, intent(&alice, "m.room.redaction", None, redaction)).await;

    assert_eq!(indexer.step().await.unwrap(), store.current_pos());
    assert_eq!(inbox.indexed().await.unwrap(), store.current_pos());
    let of = |user: &OwnedUserId| {
        let inbox = inbox.clone();
        let user = user.to_string();
        async move { all(&inbox, &user).await }
    };
    let alices = of(&alice).await;
    // The room is a group to Sandcat (no friendship), so bob's joining is news to alice.
    assert_eq!(
        numbered(&alices),
        vec![(bob_joined.pos, false, 1), (m2.pos, false, 2)],
        "the redacted message is gone: {alices:?}"
    );
    assert_eq!(alices[1].item.event_id, m2.pdu.event_id.as_str());
    let back = alices[1].stored_event().unwrap();
    assert_eq!(back.pdu.content_value()["body"], "two");
    assert_eq!(back.pdu.room_id(), room);
    let bobs = of(&bob).await;
    assert_eq!(
        numbered(&bobs),
        vec![(bob_joined.pos, false, 1), (m2.pos, true, 1)],
        "bob is told of his own joining; his message is his send_seq 1"
    );
    assert!(of(&carol).await.is_empty(), "not a member");

    // Carol joins; a later message reaches her, earlier ones do not. A second indexer (after
    // a restart) continues where the first stopped.
    let carol_joined = append(&bus, join(&carol)).await;
    let m3 = append(&bus, text(&alice, "three")).await;
    let restarted = InboxIndexer::new(
        store.clone(),
        store.clone(),
        inbox.clone(),
        store.clone(),
        "localhost".try_into().unwrap(),
    );
    restarted.step().await.unwrap();
    assert_eq!(
        numbered(&of(&carol).await),
        vec![(carol_joined.pos, false, 1), (m3.pos, false, 2)]
    );
    assert_eq!(
        numbered(&of(&alice).await),
        vec![
            (bob_joined.pos, false, 1),
            (m2.pos, false, 2),
            (carol_joined.pos, false, 3),
            (m3.pos, true, 1)
        ],
        "nothing indexed twice; a message redacted before it was indexed takes no number"
    );
    assert_eq!(
        inbox.latest(alice.as_str()).await.unwrap(),
        InboxSeqs {
            seq: 3,
            send_seq: 1
        }
    );

    // The stream publishes a position once every write below it has ended, so a step can
    // read up to a position while later writes are already committed: Carol is kicked just
    // after a message the step covers. She was a member at the message: it reaches her.
    let m4 = append(&bus, text(&alice, "four")).await;
    let kick = json!({ "membership": "leave", "reason": "bye" });
    append(
        &bus,
        intent(&alice, "m.room.member", Some(carol.as_str()), kick),
    )
    .await;
    let lagging = InboxIndexer::new(
        store.clone(),
        Arc::new(PublishedAt(m4.pos)),
        inbox.clone(),
        store.clone(),
        "localhost".try_into().unwrap(),
    );
    assert_eq!(lagging.step().await.unwrap(), m4.pos);
    let carols = numbered(&of(&carol).await);
    assert_eq!(carols.last(), Some(&(m4.pos, false, 3)), "{carols:?}");
    bus.shutdown().await;
}

/// A stream whose published position has stopped at a write: what an indexer sees while
/// later writes are committed but not yet published.
struct PublishedAt(i64);

impl StreamPosition for PublishedAt {
    fn current_pos(&self) -> i64 {
        self.0
    }
}

/// An inbox on a fresh MongoDB database, with the server's URL and the database's name.
async fn fresh_mongo_inbox() -> (Arc<dyn Inbox>, String, String) {
    let url = std::env::var("SANDCAT_TEST_MONGO").unwrap_or_else(|_| TEST_MONGO.into());
    let name = fresh_name();
    let inbox: Arc<dyn Inbox> =
        Arc::new(MongoInbox::connect(&url, &name).await.unwrap_or_else(|e| {
            panic!("MongoDB at {url} is needed ({e}); start it with scripts/services.sh")
        }));
    (inbox, url, name)
}

/// A step cut short on MongoDB (which has no transactions without a replica set): the next
/// step removes what no counter covers and numbers on without a gap or a repeat, even when
/// membership changed in between.
#[tokio::test]
async fn mongodb_a_step_cut_short_is_completed_without_gaps() {
    use ::mongodb::bson::{doc, Document};
    let (inbox, url, name) = fresh_mongo_inbox().await;
    let (a, b, c) = ("@a:localhost", "@b:localhost", "@c:localhost");
    inbox.append(&[item(a, 1, false)], &[], 1).await.unwrap();

    // A step up to 3 noted itself started, wrote a's and b's entries at 2 and a's counter,
    // then its process died.
    let db = ::mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&name);
    db.collection::<Document>("inbox_indexed")
        .update_one(
            doc! { "_id": "indexed" },
            doc! { "$set": { "started": 3_i64 } },
        )
        .await
        .unwrap();
    let doc_of = |user: &str, seq: i64| {
        let i = item(user, 2, false);
        doc! { "user": user, "sent": false, "seq": seq, "pos": 2_i64, "room": i.room,
        "event_id": i.event_id, "event": i.event.to_string(), "ts": i.ts }
    };
    db.collection::<Document>("inbox")
        .insert_many([doc_of(a, 2), doc_of(b, 1)])
        .await
        .unwrap();
    db.collection::<Document>("inbox_counters")
        .update_one(
            doc! { "_id": a },
            doc! { "$set": { "seq": 2_i64, "send_seq": 0_i64, "upto": 3_i64,
            "prev_seq": 1_i64, "prev_send_seq": 0_i64 } },
        )
        .upsert(true)
        .await
        .unwrap();
    assert_eq!(
        numbered(&all(&inbox, a).await),
        vec![(1, false, 1)],
        "half a step is not seen"
    );
    assert!(all(&inbox, b).await.is_empty());
    assert_eq!(inbox.latest(a).await.unwrap().seq, 1);

    // The next indexer repeats the step; meanwhile b left and c joined.
    inbox
        .append(
            &[item(a, 2, false), item(c, 2, false), item(a, 3, false)],
            &[],
            3,
        )
        .await
        .unwrap();
    // a's counter covers the step as first indexed (a got 2, not yet 3): that stands.
    assert_eq!(
        numbered(&all(&inbox, a).await),
        vec![(1, false, 1), (2, false, 2)]
    );
    assert!(
        all(&inbox, b).await.is_empty(),
        "what no counter covered is gone"
    );
    assert_eq!(numbered(&all(&inbox, c).await), vec![(2, false, 1)]);
    assert_eq!(inbox.latest(a).await.unwrap().seq, 2);
    assert_eq!(inbox.latest(b).await.unwrap().seq, 0);
    inbox
        .append(&[item(a, 5, false), item(b, 5, false)], &[], 5)
        .await
        .unwrap();
    assert_eq!(numbered(&all(&inbox, a).await)[2], (5, false, 3), "no gap");
    assert_eq!(numbered(&all(&inbox, b).await), vec![(5, false, 1)]);
}

/// Entries written before the counters (numbered by stream position, no `pos`) read back with
/// their number as their position, and the user's counters continue after them.
#[tokio::test]
async fn mongodb_entries_from_before_the_counters_are_kept() {
    use ::mongodb::bson::{doc, Document};
    let url = std::env::var("SANDCAT_TEST_MONGO").unwrap_or_else(|_| TEST_MONGO.into());
    let name = fresh_name();
    let client = ::mongodb::Client::with_uri_str(&url).await.unwrap();
    let db = client.database(&name);
    let old = item("@a:localhost", 40, false);
    db.collection::<Document>("inbox")
        .insert_one(doc! { "user": &old.user, "seq": 40_i64, "room": &old.room,
        "event_id": &old.event_id, "sent": false, "event": old.event.to_string(),
        "ts": old.ts })
        .await
        .unwrap_or_else(|e| {
            panic!("MongoDB at {url} is needed ({e}); start it with scripts/services.sh")
        });
    db.collection::<Document>("inbox_indexed")
        .insert_one(doc! { "_id": "indexed", "pos": 40_i64 })
        .await
        .unwrap();
    let inbox: Arc<dyn Inbox> = Arc::new(MongoInbox::connect(&url, &name).await.unwrap());
    assert_eq!(
        numbered(&all(&inbox, &old.user).await),
        vec![(40, false, 40)]
    );
    assert_eq!(inbox.latest(&old.user).await.unwrap().seq, 40);
    inbox
        .append(&[item(&old.user, 41, false)], &[], 41)
        .await
        .unwrap();
    assert_eq!(
        numbered(&all(&inbox, &old.user).await),
        vec![(40, false, 40), (41, false, 41)]
    );
}

/// An event's JSON is kept once, however many entries it has (a group's membership change has
/// one per member), and goes with its entries when the event is redacted.
#[tokio::test]
async fn mongodb_an_event_is_kept_once_for_all_its_entries() {
    use ::mongodb::bson::{doc, Document};
    let (inbox, url, name) = fresh_mongo_inbox().await;
    let users: Vec<String> = (0..20).map(|i| format!("@u{i}:localhost")).collect();
    let items: Vec<InboxItem> = users.iter().map(|u| item(u, 7, false)).collect();
    inbox.append(&items, &[], 7).await.unwrap();
    // The step repeated (an indexer taking over) keeps the one copy.
    inbox.append(&items, &[], 7).await.unwrap();
    let db = ::mongodb::Client::with_uri_str(&url)
        .await
        .unwrap()
        .database(&name);
    let entries = db.collection::<Document>("inbox");
    let events = db.collection::<Document>("inbox_events");
    assert_eq!(entries.count_documents(doc! {}).await.unwrap(), 20);
    assert_eq!(
        entries
            .count_documents(doc! { "event": { "$exists": true } })
            .await
            .unwrap(),
        0,
        "no entry carries a copy"
    );
    assert_eq!(events.count_documents(doc! {}).await.unwrap(), 1);
    for u in &users {
        let got = all(&inbox, u).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].item, item(u, 7, false), "read back with its event");
    }
    assert_eq!(
        inbox.received(&users[3], 1).await.unwrap().map(|e| e.item),
        Some(item(&users[3], 7, false))
    );
    inbox.append(&[], &["$e7".to_owned()], 8).await.unwrap();
    assert_eq!(entries.count_documents(doc! {}).await.unwrap(), 0);
    assert_eq!(
        events.count_documents(doc! {}).await.unwrap(),
        0,
        "the redacted event goes with its entries"
    );
}
