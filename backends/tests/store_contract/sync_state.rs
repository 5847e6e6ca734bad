//! What `/sync` tells of a room's state when state resolution, not the timeline, decides it:
//! an event of another server that loses to one already in the state is in the timeline, and
//! the state a client is told still holds the winner — in `state` (up to the timeline's
//! start) and in `state_after` (up to its end), which the client asks for with
//! `use_state_after`.

use ruma::OwnedEventId;
use sandcat_core::{
    ephemeral::Ephemeral,
    services::{
        sync::{StateSection, Sync, SyncRequest, SyncStores},
        Session,
    },
    StoredEvent,
};

use super::remote::T0;
use super::room_dag::{bob_joins, intent, received, room, shared_room, Shared, ALICE, BOB};
use super::*;

on_both_backends!(a_state_reset_reaches_sync);

fn ids(events: &[StoredEvent]) -> Vec<&OwnedEventId> {
    events.iter().map(|e| &e.pdu.event_id).collect()
}

async fn a_state_reset_reaches_sync(db: Db) {
    let Shared {
        store,
        peer,
        bus,
        head,
    } = shared_room(&db).await;
    let local = |ev: EventIntent| {
        let bus = &bus;
        async move { bus.submit(in_room(vec![ev])).await.unwrap().remove(0) }
    };
    let join = peer.send(&head, bob_joins(), T0).await;
    bus.submit(received(join)).await.unwrap();
    let pl = json!({ "users": { ALICE: 100, BOB: 50 } });
    let mod_bob = local(intent(ALICE, "m.room.power_levels", Some(""), pl)).await;
    let topic =
        |who: &str, text: &str| intent(who, "m.room.topic", Some(""), json!({ "topic": text }));
    let t_alice = local(topic(ALICE, "Alice's")).await;

    let sync = Sync::new(
        SyncStores {
            rooms: store.clone(),
            client: store.clone(),
            keys: store.clone(),
            stream: store.clone(),
            changes: store.changes(),
            connections: store.clone(),
        },
        Arc::new(Ephemeral::new(Notifier::default())),
        Notifier::default(),
        0,
    );
    let alice = Session::new(ALICE.try_into().unwrap(), "DEVICE".into());
    let first = sync.sync(&alice, SyncRequest::default()).await.unwrap();
    let since = Some(first.next_batch.clone());

    // Bob's topic, sent before Alice's, arrives now and loses to hers.
    let early = u64::from(t_alice.pdu.origin_server_ts.get()) - 60_000;
    let t_bob = peer.send(&mod_bob, topic(BOB, "Bob's"), early).await;
    let t_bob = bus.submit(received(t_bob)).await.unwrap().remove(0);

    let section = |after: bool| {
        let request = SyncRequest {
            since: since.clone(),
            use_state_after: after,
            ..SyncRequest::default()
        };
        let (sync, alice) = (&sync, &alice);
        async move {
            let mut out = sync.sync(alice, request).await.unwrap();
            out.joined.remove(&room()).expect("the room changed")
        }
    };
    // `state`: the timeline shows Bob's topic; the state says the room's topic is Alice's.
    let legacy = section(false).await;
    assert_eq!(ids(&legacy.timeline), [&t_bob.pdu.event_id]);
    match &legacy.state {
        StateSection::Before(state) => assert_eq!(ids(state), [&t_alice.pdu.event_id]),
        other => panic!("state expected: {other:?}"),
    }
    // `state_after`: the state at the timeline's end, whatever its events say.
    let after = section(true).await;
    assert_eq!(ids(&after.timeline), [&t_bob.pdu.event_id]);
    match &after.state {
        StateSection::After(state) => assert_eq!(ids(state), [&t_alice.pdu.event_id]),
        other => panic!("state_after expected: {other:?}"),
    }
}
