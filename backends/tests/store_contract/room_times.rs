//! Events by time: the first event at or after a moment, the last at or before it, within
//! the positions a reader may see; both dialects read the timestamp out of the event JSON.

use sandcat_core::ports::RoomTimes;

use super::*;

on_both_backends!(events_are_found_by_their_time);

async fn events_are_found_by_their_time(db: Db) {
    let store = db.open().await;
    let bus = InProcessBus::new(sequencer(store.clone()), 2);
    bus.submit(create_batch()).await.unwrap();
    let room = room_id!("!room:localhost");
    let mut sent = Vec::new();
    // Later than the room's creation, which happened now.
    let later = sandcat_core::now_ms() + 1_000_000;
    for (i, ts) in [later, later + 500].into_iter().enumerate() {
        let mut ev = EventIntent::new(
            user_id!("@alice:localhost").to_owned(),
            "m.room.message".into(),
            None,
            json!({ "body": i }),
        );
        ev.origin_server_ts = ts;
        let stored = bus.submit(in_room(vec![ev])).await.unwrap();
        sent.push((stored[0].pdu.event_id.clone(), stored[0].pos, ts));
    }
    let (first, first_pos, t1) = sent[0].clone();
    let (second, _, t2) = sent[1].clone();
    let at = |ts, dir, until| {
        let store = store.clone();
        async move { store.event_at_time(room, ts, dir, 0, until).await.unwrap() }
    };
    assert_eq!(
        at(t1 + 1, Direction::Forward, i64::MAX).await,
        Some((second.clone(), t2))
    );
    assert_eq!(
        at(t1, Direction::Forward, i64::MAX).await,
        Some((first.clone(), t1))
    );
    assert_eq!(
        at(t2 - 1, Direction::Backward, i64::MAX).await,
        Some((first, t1))
    );
    assert_eq!(at(t2 + 1, Direction::Forward, i64::MAX).await, None);
    // What the reader may not see is not found.
    assert_eq!(at(t1 + 1, Direction::Forward, first_pos).await, None);
}
