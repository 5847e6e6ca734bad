//! The stream under concurrent writers: several writers (instances, on PostgreSQL) append to
//! many rooms at once with random pauses, some are killed mid-write, and readers follow the
//! stream the whole time. Every view a reader reports is a prefix of the final stream:
//! nothing skipped, nothing twice.

use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId};
use sqlx::{Connection, Executor};

use super::*;

on_both_backends!(concurrent_writers_leave_readers_a_prefix);

/// A small xorshift: interleavings that differ per seed, without a dependency.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn room_batch(room: &OwnedRoomId, user: &OwnedUserId) -> RoomBatch {
    let mut batch = create_batch();
    batch.room_id = room.clone();
    for ev in &mut batch.events {
        ev.sender = user.clone();
        if ev.state_key.as_deref() == Some("@alice:localhost") {
            ev.state_key = Some(user.to_string());
        }
    }
    batch.events[2].content = json!({ "users": { user.as_str(): 100 } });
    batch
}

/// Message `n` of a room, sent with a transaction id as a client does.
fn numbered(room: &OwnedRoomId, user: &OwnedUserId, n: u64) -> RoomBatch {
    let mut ev = EventIntent::new(
        user.clone(),
        "m.room.message".into(),
        None,
        json!({ "body": "x", "n": n }),
    );
    ev.txn = Some(("DEVICE".into(), format!("{room}/{n}")));
    RoomBatch {
        room_id: room.clone(),
        create_version: None,
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
        events: vec![ev],
    }
}

/// Follows the stream until `stop`: each step reads what lies between the last position it
/// saw and the current one. Returns the positions read, in the order they were read.
async fn follow(store: Arc<SqlStore>, stop: Arc<std::sync::atomic::AtomicBool>) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut at = store.current_pos();
    let start = at;
    loop {
        let done = stop.load(std::sync::atomic::Ordering::SeqCst);
        store.refresh().await.unwrap();
        let now = store.current_pos();
        assert!(now >= at, "the stream never goes back");
        let evs = store.events_between(at, now, 100_000).await.unwrap();
        seen.extend(evs.iter().map(|e| e.pos));
        at = now;
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    seen.insert(0, start);
    seen
}

async fn concurrent_writers_leave_readers_a_prefix(db: Db) {
    // On PostgreSQL each writer is an instance with its own pool; SQLite has one process.
    let instances = match db {
        Db::Sqlite(_) => vec![db.open().await],
        Db::Postgres(_) => vec![db.open().await, db.open().await, db.open().await],
    };
    let writers = 6;
    let mut rooms = Vec::new();
    for w in 0..writers {
        let store = instances[w % instances.len()].clone();
        let seq = sequencer(store.clone());
        let user: OwnedUserId = format!("@w{w}:localhost").try_into().unwrap();
        for r in 0..3 {
            let room: OwnedRoomId = format!("!w{w}r{r}:localhost").try_into().unwrap();
            seq.handle(room_batch(&room, &user)).await.unwrap();
            rooms.push((seq.clone(), room, user.clone()));
        }
    }
    for s in &instances {
        s.refresh().await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = instances
        .iter()
        .map(|s| tokio::spawn(follow(s.clone(), stop.clone())))
        .collect();

    // Each room gets 20 messages from a task of its own; some sends are cut short by killing
    // the task mid-write, and are then sent again (as a client retries).
    let mut tasks = Vec::new();
    for (i, (seq, room, user)) in rooms.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ ((i as u64 + 1) * 0x2545_f491));
            let mut n = 0;
            while n < 20 {
                if dice.below(4) == 0 {
                    let (s, r, u) = (seq.clone(), room.clone(), user.clone());
                    let cut = tokio::spawn(async move { s.handle(numbered(&r, &u, n)).await });
                    tokio::time::sleep(Duration::from_micros(dice.below(3_000))).await;
                    cut.abort();
                    let _ = cut.await;
                    // Killed mid-write, perhaps after its commit: the retry with the same
                    // transaction id appends it once either way.
                    while seq.handle(numbered(&room, &user, n)).await.is_err() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    n += 1;
                    continue;
                }
                seq.handle(numbered(&room, &user, n)).await.unwrap();
                if dice.below(3) == 0 {
                    tokio::time::sleep(Duration::from_micros(dice.below(2_000))).await;
                }
                n += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in &instances {
        s.refresh().await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let views: Vec<Vec<i64>> = futures::future::join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let store = &instances[0];
    let head = store.current_pos();
    let all: Vec<i64> = store
        .events_between(0, head, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.pos)
        .collect();
    for view in views {
        let (start, read) = view.split_first().unwrap();
        let expected: Vec<i64> = all.iter().copied().filter(|p| p > start).collect();
        assert_eq!(
            read,
            &expected[..],
            "a reader saw the stream out of order or with holes"
        );
    }
    for (_, room, _) in &rooms {
        let got: Vec<u64> = store
            .timeline(room, 0, i64::MAX, Direction::Forward, 1_000)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e.pdu.content_value()["n"].as_u64())
            .collect();
        assert_eq!(
            got,
            (0..20).collect::<Vec<_>>(),
            "{room}: every message once, in order"
        );
    }
}

/// A writer of another instance holds a position in an open transaction: no reader passes it
/// while the transaction runs. Its connection is then killed (the instance died): readers go
/// on, and the position stays a hole.
#[tokio::test]
async fn postgres_a_killed_writer_holds_readers_back_until_it_is_gone() {
    let db = Db::postgres().await;
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    let store = db.open().await;
    let seq = sequencer(store.clone());
    seq.handle(create_batch()).await.unwrap();

    let other = db.open().await;
    let mut holder = sqlx::PgConnection::connect(url).await.unwrap();
    holder
        .execute("SET application_name = 'sandcat'")
        .await
        .unwrap();
    holder.execute("BEGIN").await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT p FROM stream_take(1) AS p")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();

    // A write after the held position commits, but it cannot be shown yet.
    let before = other.current_pos();
    assert!(before < held);
    let seq_b = sequencer(store.clone());
    let writing = tokio::spawn(async move { seq_b.handle(message("after the hole")).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Catching up waits for the open writes to end: this one does not end by itself.
    let waited = tokio::time::timeout(Duration::from_millis(300), other.refresh()).await;
    assert!(
        waited.is_err(),
        "catching up waits while a position is held"
    );
    assert!(
        other.current_pos() < held,
        "a reader passed a position still held"
    );
    assert!(
        !writing.is_finished(),
        "the write waits for its position to be shown"
    );

    let mut killer = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&mut killer)
        .await
        .unwrap();
    let written = writing.await.unwrap().unwrap();
    assert!(written[0].pos > held);
    for _ in 0..100 {
        other.refresh().await.unwrap();
        if other.current_pos() >= written[0].pos {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        other.current_pos() >= written[0].pos,
        "readers go on once the writer is gone"
    );
    let evs = other
        .events_between(before, other.current_pos(), 100)
        .await
        .unwrap();
    assert!(
        evs.iter().all(|e| e.pos != held),
        "the killed write left nothing"
    );
    assert!(evs.iter().any(|e| e.pos == written[0].pos));
}

/// Another program's open transaction on the same server holds no position: it delays
/// readers a little, never for long.
#[tokio::test]
async fn postgres_other_programs_transactions_do_not_stall_the_stream() {
    let db = Db::postgres().await;
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    let store = db.open().await;
    let mut other = sqlx::PgConnection::connect(url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    other.execute("SELECT pg_current_xact_id()").await.unwrap();
    let seq = sequencer(store.clone());
    let done = tokio::time::timeout(Duration::from_secs(3), seq.handle(create_batch()))
        .await
        .expect("the write is shown although another program's transaction stays open")
        .unwrap();
    assert_eq!(store.current_pos(), done[3].pos);
    other.execute("ROLLBACK").await.unwrap();
}

/// Writes cut short at every point (as a client that disconnects cuts its request's write)
/// leave no transaction open on the connection they used: the next statement on it runs in a
/// transaction of its own, and every write that returned stays written.
#[tokio::test]
async fn postgres_writes_cut_short_leave_no_transaction_open() {
    let db = Db::postgres().await;
    let Db::Postgres(url) = &db else {
        unreachable!()
    };
    // One connection: whatever a cut write leaves on it, the next user meets.
    let store = SqlStore::postgres(url, 1).await.unwrap();
    let alice = user_id!("@alice:localhost");
    let mut dice = Dice(0x2545_f491_4f6c_dd1d);
    let (mut cut, mut last_done) = (0, None);
    for n in 0..300i64 {
        let wait = Duration::from_micros(dice.below(6_000));
        let content = json!({ "n": n });
        let write = store.set_account_data(alice, None, "n", &content);
        match tokio::time::timeout(wait, write).await {
            Ok(done) => last_done = Some((n, done.unwrap())),
            Err(_) => cut += 1,
        }
        // A savepoint can only be set inside a transaction.
        let outside = sqlx::query("SAVEPOINT probe")
            .execute(store.pool())
            .await
            .is_err_and(|e| e.to_string().contains("transaction block"));
        assert!(
            outside,
            "write {n} left its connection inside a transaction"
        );
    }
    assert!(cut > 0, "some writes were cut short");
    eprintln!("{cut} of 300 writes cut short");
    let other = SqlStore::postgres(url, 1).await.unwrap();
    other.refresh().await.unwrap();
    let seen = other.account_data_since(alice, 0).await.unwrap();
    let (n, pos) = last_done.expect("some writes were not cut");
    assert_eq!(seen.len(), 1, "one value per type");
    let kept = seen[0].2["n"].as_i64().unwrap();
    assert!(
        kept >= n && other.current_pos() >= pos,
        "the last write that returned ({n}) is kept, or a later one: {kept}"
    );
}
