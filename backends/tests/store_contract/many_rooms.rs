//! Reads and writes of many rooms at once. Group commit: what waits on a sequencer lane is
//! appended in one transaction, and every batch still gets its own answer — a refusal, a
//! replay, a second batch of one room, and a stale head in the group change nothing for the
//! others. Overviews: what an initial sync reads for all its rooms in a few queries is what
//! the per-room reads give, and so is who shares a room with a user.

use ruma::{OwnedRoomId, OwnedUserId};

use super::*;

on_both_backends!(
    a_lane_appends_what_waits_together,
    overviews_match_the_per_room_reads
);

fn alice() -> OwnedUserId {
    user_id!("@alice:localhost").to_owned()
}

fn room(n: usize) -> OwnedRoomId {
    format!("!g{n}:localhost").try_into().unwrap()
}

fn said(room: &OwnedRoomId, sender: OwnedUserId, body: &str, txn: Option<&str>) -> RoomBatch {
    let mut ev = EventIntent::new(
        sender,
        "m.room.message".into(),
        None,
        json!({ "body": body }),
    );
    ev.txn = txn.map(|t| ("DEVICE".to_owned(), t.to_owned()));
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

async fn bodies(store: &SqlStore, room: &OwnedRoomId) -> Vec<String> {
    store
        .timeline(room, 0, i64::MAX, Direction::Forward, 100)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.pdu.content_value()["body"].as_str().map(str::to_owned))
        .collect()
}

async fn a_lane_appends_what_waits_together(db: Db) {
    let store = db.open().await;
    let seq = sequencer(store.clone());
    for n in 0..4 {
        let mut create = create_batch();
        create.room_id = room(n);
        seq.handle(create).await.unwrap();
    }
    let first = seq
        .handle(said(&room(3), alice(), "first", Some("t-replayed")))
        .await
        .unwrap();
    // Another instance appends to room 2: this sequencer's cached head of it is stale.
    sequencer(store.clone())
        .handle(said(&room(2), alice(), "elsewhere", None))
        .await
        .unwrap();
    store.refresh().await.unwrap();

    let eve = user_id!("@eve:localhost").to_owned();
    let jobs = vec![
        (None, said(&room(0), alice(), "a1", None)),
        (
            Some("batch-b1".to_owned()),
            said(&room(1), alice(), "b1", None),
        ),
        (None, said(&room(0), alice(), "a2", None)),
        (
            Some("batch-eve".to_owned()),
            said(&room(1), eve, "not a member", None),
        ),
        (None, said(&room(3), alice(), "first", Some("t-replayed"))),
    ];
    let results = seq.handle_group(jobs).await;
    assert_eq!(results.len(), 5, "one answer per batch");
    let pos = |i: usize| results[i].as_ref().unwrap()[0].pos;
    assert!(pos(0) < pos(2), "a room's batches keep their order");
    assert!(results[3].is_err(), "the refused batch is refused alone");
    assert_eq!(
        results[4].as_ref().unwrap()[0].pdu.event_id,
        first[0].pdu.event_id,
        "a retried transaction gets its first event"
    );
    assert_eq!(bodies(&store, &room(0)).await, ["a1", "a2"]);
    assert_eq!(bodies(&store, &room(1)).await, ["b1"]);

    // A group with a stale head fails as a whole; each batch then goes alone.
    let stale = seq
        .handle_group(vec![
            (None, said(&room(2), alice(), "c1", None)),
            (None, said(&room(0), alice(), "a3", None)),
        ])
        .await;
    assert!(stale.iter().all(Result::is_ok));
    assert_eq!(
        bodies(&store, &room(2)).await,
        ["elsewhere", "c1"],
        "a stale head is rebuilt, not forked"
    );
    assert_eq!(bodies(&store, &room(0)).await, ["a1", "a2", "a3"]);
    assert_eq!(bodies(&store, &room(3)).await, ["first"]);
    // Recorded outcomes answer redeliveries: the appended batch and the refusal alike.
    assert!(matches!(
        store.batch_outcome("batch-b1").await.unwrap(),
        Some(BatchOutcome::Appended(ids)) if ids == vec![results[1].as_ref().unwrap()[0].pdu.event_id.clone()]
    ));
    assert!(matches!(
        store.batch_outcome("batch-eve").await.unwrap(),
        Some(BatchOutcome::Refused(..))
    ));
    assert_eq!(store.current_pos(), stale[1].as_ref().unwrap()[0].pos);
}

/// `room_overviews` (what an initial sync reads for all rooms at once) answers what the
/// per-room reads answer: current state, the latest events, unread counts after a receipt.
async fn overviews_match_the_per_room_reads(db: Db) {
    let store = db.open().await;
    let seq = sequencer(store.clone());
    let bob = user_id!("@bob:localhost").to_owned();
    let mut rooms = Vec::new();
    for n in 0..5 {
        let mut create = create_batch();
        create.room_id = room(n);
        seq.handle(create).await.unwrap();
        // Bob is invited and joins: the room's messages notify him.
        for (sender, membership) in [(alice(), "invite"), (bob.clone(), "join")] {
            let mut batch = said(&room(n), sender, "", None);
            batch.events = vec![EventIntent::new(
                batch.events[0].sender.clone(),
                "m.room.member".into(),
                Some(bob.to_string()),
                json!({ "membership": membership }),
            )];
            seq.handle(batch).await.unwrap();
        }
        for i in 0..(n * 3) {
            seq.handle(said(&room(n), alice(), &format!("m{i}"), None))
                .await
                .unwrap();
        }
        rooms.push(room(n));
    }
    // Bob's read receipt in room 4 on its fifth message: seven of others' messages after it.
    let read = store
        .timeline(&room(4), 0, i64::MAX, Direction::Forward, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.pdu.kind.to_string() == "m.room.message")
        .nth(4)
        .unwrap();
    store
        .set_receipt(&sandcat_core::ports::Receipt {
            room_id: room(4),
            user_id: bob.clone(),
            receipt_type: "m.read".into(),
            thread_id: None,
            event_id: read.pdu.event_id.clone(),
            ts: 1,
            pos: 0,
        })
        .await
        .unwrap();
    let until = store.current_pos();
    let overviews = store.room_overviews(&rooms, &bob, until, 6).await.unwrap();
    let receipts = store.receipts_of(&rooms).await.unwrap();
    assert_eq!(overviews.len(), rooms.len());
    for r in &rooms {
        let o = &overviews[r];
        let ids = |evs: &[sandcat_core::StoredEvent]| {
            evs.iter()
                .map(|e| e.pdu.event_id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            ids(&o.state),
            ids(&store.current_state(r).await.unwrap()),
            "{r}: state"
        );
        let latest = store
            .timeline(r, 0, until, Direction::Backward, 6)
            .await
            .unwrap();
        assert_eq!(
            ids(&o.latest),
            ids(&latest),
            "{r}: latest events, newest first"
        );
        assert_eq!(
            o.unread,
            store.count_unread(r, &bob).await.unwrap(),
            "{r}: unread"
        );
        assert_eq!(
            receipts.get(r).map(Vec::len).unwrap_or(0),
            store.receipts_since(r, 0).await.unwrap().len(),
            "{r}: receipts"
        );
    }
    assert_eq!(overviews[&room(4)].unread.total().notifications, 7);
    assert_eq!(
        overviews[&room(3)].unread.total().notifications,
        9,
        "no receipt: every message of others since the join"
    );
    // Who shares a joined room with Bob: Alice and Bob, not Carol (in no room); and no other
    // server, since none is in these rooms.
    let carol = user_id!("@carol:localhost").to_owned();
    let sharing = store
        .sharing_rooms_with(&bob, &[alice(), carol, bob.clone()])
        .await
        .unwrap();
    assert_eq!(sharing, [alice(), bob.clone()].into_iter().collect());
    assert!(store
        .servers_sharing_rooms_with(&bob)
        .await
        .unwrap()
        .is_empty());
}
