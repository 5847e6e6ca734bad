//! The state after every event is kept, and a state change costs storage in proportion to the
//! change: rows per change grow with the logarithm of the number of changes, never with the
//! size of the room's state.

use std::collections::HashMap;

use futures::future::join_all;
use ruma::OwnedRoomId;
use sandcat_core::StoredEvent;
use sqlx::Row;

use super::*;

on_both_backends!(
    the_state_after_every_event_is_kept_in_skip_deltas,
    a_room_without_groups_starts_a_chain_from_its_current_state,
);

/// A deterministic pseudo-random sequence (no seed to chase when a run fails).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn room_batch(room: &OwnedRoomId) -> RoomBatch {
    RoomBatch {
        room_id: room.clone(),
        ..create_batch()
    }
}

/// A random batch of 1–4 events: state changes of 40 keys, invitations, messages.
fn random_batch(room: &OwnedRoomId, rng: &mut Lcg, n: usize) -> RoomBatch {
    let alice = user_id!("@alice:localhost").to_owned();
    let events = (0..1 + rng.next(4))
        .map(|i| match rng.next(10) {
            0..=5 => EventIntent::new(
                alice.clone(),
                "org.example.s".into(),
                Some(format!("k{}", rng.next(40))),
                json!({ "n": n, "i": i }),
            ),
            6 => EventIntent::new(
                alice.clone(),
                TimelineEventType::RoomMember,
                Some(format!("@u{}:localhost", rng.next(20))),
                json!({ "membership": "invite" }),
            ),
            _ => EventIntent::new(
                alice.clone(),
                "m.room.message".into(),
                None,
                json!({ "body": format!("m{n}.{i}") }),
            ),
        })
        .collect();
    RoomBatch {
        room_id: room.clone(),
        create_version: None,
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
        events,
    }
}

/// Checks `state_after` of each event of `log` from the `from`th on against the state
/// replayed from the whole log; the number of state changes.
async fn check_replay(store: &SqlStore, log: &[StoredEvent], from: usize) -> usize {
    let mut state: HashMap<(String, String), ruma::OwnedEventId> = HashMap::new();
    let mut changes = 0;
    for (i, ev) in log.iter().enumerate() {
        if let Some(key) = &ev.pdu.state_key {
            state.insert(
                (ev.pdu.kind.to_string(), key.clone()),
                ev.pdu.event_id.clone(),
            );
            changes += 1;
        }
        if i >= from {
            let stored = store.state_after(&ev.pdu.event_id).await.unwrap();
            assert_eq!(
                stored.as_ref(),
                Some(&state),
                "state after {}",
                ev.pdu.event_id
            );
        }
    }
    changes
}

async fn the_state_after_every_event_is_kept_in_skip_deltas(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    let rooms: Vec<OwnedRoomId> = ["!sa:localhost", "!sb:localhost"]
        .iter()
        .map(|r| (*r).try_into().unwrap())
        .collect();
    let mut logs: Vec<Vec<StoredEvent>> = Vec::new();
    for r in &rooms {
        logs.push(bus.submit(room_batch(r)).await.unwrap());
    }
    let mut rng = Lcg(7);
    // Rounds of one batch per room, submitted together so that lanes group them.
    for n in 0..150 {
        let batches: Vec<RoomBatch> = rooms.iter().map(|r| random_batch(r, &mut rng, n)).collect();
        let done = join_all(batches.into_iter().map(|b| bus.submit(b))).await;
        for (log, events) in logs.iter_mut().zip(done) {
            log.extend(events.unwrap());
        }
    }
    assert!(store
        .state_after(ruma::event_id!("$unknown"))
        .await
        .unwrap()
        .is_none());

    for (room, log) in rooms.iter().zip(&logs) {
        let changes = check_replay(&store, log, 0).await;
        // Storage: group rows and entries per change, against the log2 bound.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(group_id) + LENGTH(type) + LENGTH(state_key) + LENGTH(event_id)), 0) AS bytes \
             FROM state_group_entries WHERE group_id IN (SELECT group_id FROM state_groups WHERE room_id = $1)",
        )
        .bind(room.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
        let entries: i64 = row.try_get("n").unwrap();
        let bytes: i64 = row.try_get("bytes").unwrap();
        let groups: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM state_groups WHERE room_id = $1")
                .bind(room.as_str())
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!(groups as usize, changes, "one group per state change");
        // Reads: the longest chain of bases from any group down to the room's first.
        let longest: i64 = sqlx::query_scalar(
            "WITH RECURSIVE chain(base_id, n) AS ( \
               SELECT base_id, 1 FROM state_groups WHERE room_id = $1 \
               UNION ALL \
               SELECT g.base_id, c.n + 1 FROM state_groups g JOIN chain c ON g.group_id = c.base_id) \
             SELECT MAX(n) FROM chain",
        )
        .bind(room.as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
        let read_bound = (changes as f64).log2().ceil() as i64 + 1;
        assert!(
            longest <= read_bound,
            "a state read walks {longest} groups > {read_bound}"
        );
        let per_change = entries as f64 / changes as f64;
        let bound = (changes as f64).log2() / 2.0 + 2.0;
        eprintln!(
            "{room}: {changes} state changes, {entries} entries ({per_change:.2} per change, {} bytes per change)",
            bytes / changes as i64
        );
        assert!(
            per_change <= bound,
            "{per_change:.2} entries per change > {bound:.2}"
        );
        // A snapshot per change would hold the whole state (up to 64 keys here) every time.
        let final_state = store
            .state_after(&log.last().unwrap().pdu.event_id)
            .await
            .unwrap()
            .unwrap();
        assert!(final_state.len() > 30, "{}", final_state.len());
        assert!(per_change * 4.0 < final_state.len() as f64);
    }
}

async fn a_room_without_groups_starts_a_chain_from_its_current_state(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    let room: OwnedRoomId = "!old:localhost".try_into().unwrap();
    let mut log = bus.submit(room_batch(&room)).await.unwrap();
    let mut rng = Lcg(3);
    for n in 0..10 {
        log.extend(bus.submit(random_batch(&room, &mut rng, n)).await.unwrap());
    }
    // As a store written before state groups left it.
    for sql in [
        "DELETE FROM state_group_entries WHERE group_id IN (SELECT group_id FROM state_groups WHERE room_id = $1)",
        "DELETE FROM state_groups WHERE room_id = $1",
        "UPDATE events SET state_group = NULL WHERE room_id = $1",
    ] {
        sqlx::query(sql).bind(room.as_str()).execute(store.pool()).await.unwrap();
    }
    let old = log.last().unwrap().pdu.event_id.clone();
    assert!(
        store.state_after(&old).await.unwrap().is_none(),
        "unknown, not wrong"
    );
    // A sequencer that restarted on that store goes on, and the state is kept again.
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    let mut more = Vec::new();
    for n in 10..30 {
        more.extend(bus.submit(random_batch(&room, &mut rng, n)).await.unwrap());
    }
    let first_state = more.iter().position(|e| e.pdu.state_key.is_some()).unwrap();
    let from = log.len() + first_state;
    let mut replay = log;
    replay.extend(more);
    check_replay(&store, &replay, from).await;
}
