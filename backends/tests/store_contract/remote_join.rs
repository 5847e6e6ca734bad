//! A room of another server, joined through it: the state it answers is kept as outliers,
//! the join is the room's first event here, and the room's past is filled in (backfilled)
//! when a reader pages back to it, into history but not into the stream.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
};

use ruma::{
    events::{room::member::MembershipState, StateEventType},
    owned_room_id, server_name, state_res, OwnedEventId, OwnedRoomId,
};
use sandcat_core::{
    intent::{ReceivedPdu, RemoteJoin},
    ports::{HeldStatus, HistoryRange, HISTORY_START, OUTLIERS_BELOW},
    remote_pdu::verify_pdu,
    sequencer::build_pdu,
    services::{rooms::Rooms, server_keys::ServerKeys},
    ServerConfig,
};

use super::remote::{key_service, new_key, RemoteServer, T0};
use super::room_dag::{intent, Fetcher};
use super::*;

on_both_backends!(a_room_joined_through_another_server_fills_in_its_past);

const ALICE: &str = "@alice:localhost";
const BOB: &str = "@bob:remote.example";

fn bobs_room() -> OwnedRoomId {
    owned_room_id!("!bobs:remote.example")
}

/// Bob's room as his server keeps it: a line of events, and its state.
struct History {
    server: Arc<RemoteServer>,
    state: HashMap<(String, String), OwnedEventId>,
    last: Option<(OwnedEventId, u64)>,
}

impl History {
    /// The auth events of `ev` in the room's state now.
    fn auth_for(&self, ev: &EventIntent) -> Vec<OwnedEventId> {
        let rules = RoomVersionId::V11.rules().unwrap();
        state_res::auth_types_for_event(
            &ev.kind,
            &ev.sender,
            ev.state_key.as_deref(),
            &serde_json::value::to_raw_value(&ev.content).unwrap(),
            &rules.authorization,
        )
        .unwrap()
        .iter()
        .filter_map(|(t, k): &(StateEventType, String)| {
            self.state.get(&(t.to_string(), k.clone())).cloned()
        })
        .collect()
    }

    /// Bob's server adds `ev` to the room, whoever sends it.
    fn add(&mut self, ev: EventIntent) -> OwnedEventId {
        let auth = self.auth_for(&ev);
        let (prev, depth) = match &self.last {
            Some((id, depth)) => (vec![id.clone()], depth + 1),
            None => (Vec::new(), 1),
        };
        let (pdu, _) =
            self.server
                .event_on(&bobs_room(), &RoomVersionId::V11, ev, prev, auth, depth, T0);
        if let Some(key) = &pdu.state_key {
            self.state
                .insert((pdu.kind.to_string(), key.clone()), pdu.event_id.clone());
        }
        self.last = Some((pdu.event_id.clone(), depth));
        pdu.event_id
    }

    /// Its events `ids`, as this server receives them (checked on arrival).
    async fn received(&self, keys: &ServerKeys, ids: &[&OwnedEventId]) -> Vec<ReceivedPdu> {
        let mut out = Vec::new();
        for id in ids {
            let json = self.server.built.lock().unwrap()[*id].1.clone();
            let v = verify_pdu(keys, &RoomVersionId::V11, &bobs_room(), &json)
                .await
                .unwrap();
            out.push(v.into());
        }
        out
    }
}

async fn a_room_joined_through_another_server_fills_in_its_past(db: Db) {
    let store = db.open().await;
    let remote = RemoteServer::new(server_name!("remote.example"));
    let keys = key_service(store.clone(), &remote);
    let fetcher = Arc::new(Fetcher {
        server: remote.clone(),
        keys: key_service(store.clone(), &remote),
        version: RoomVersionId::V11,
    });
    let signing = Arc::new(new_key(server_name!("localhost"), "a_own"));
    let seq =
        Sequencer::new(store.clone(), signing.clone(), Notifier::default()).with_fetch(fetcher);
    let bus = Arc::new(InProcessBus::new(Arc::new(seq), 2));
    let room = bobs_room();

    // Bob's public room, with a few words, and a message of Carol's, who never joined: an
    // event Bob's server should not have accepted.
    let mut bob = History {
        server: remote.clone(),
        state: HashMap::new(),
        last: None,
    };
    let say = |who: &str, body: &str| intent(who, "m.room.message", None, json!({ "body": body }));
    let create = bob.add(intent(
        BOB,
        "m.room.create",
        Some(""),
        json!({ "room_version": "11" }),
    ));
    let bob_join = bob.add(intent(
        BOB,
        "m.room.member",
        Some(BOB),
        json!({ "membership": "join" }),
    ));
    let power = bob.add(intent(
        BOB,
        "m.room.power_levels",
        Some(""),
        json!({ "users": { BOB: 100 } }),
    ));
    let rules = bob.add(intent(
        BOB,
        "m.room.join_rules",
        Some(""),
        json!({ "join_rule": "public" }),
    ));
    bob.add(say(BOB, "one"));
    let carol = bob.add(say("@carol:remote.example", "uninvited"));
    bob.add(say(BOB, "two"));
    bob.add(say(BOB, "three"));

    // Alice joins through Bob's server: her join event, signed here, on the room's head.
    let join_intent = intent(
        ALICE,
        "m.room.member",
        Some(ALICE),
        json!({ "membership": "join" }),
    );
    let (prev, depth) = bob.last.clone().unwrap();
    let (join_pdu, join_json) = build_pdu(
        &signing,
        &room,
        &RoomVersionId::V11.rules().unwrap(),
        &join_intent,
        vec![prev],
        bob.auth_for(&join_intent),
        depth + 1,
    )
    .unwrap();
    // Bob's server keeps the join it sent on.
    remote.built.lock().unwrap().insert(
        join_pdu.event_id.clone(),
        (join_pdu.clone(), join_json.clone()),
    );
    let answer = RemoteJoin {
        room_version: RoomVersionId::V11,
        state: bob
            .received(&keys, &[&create, &bob_join, &power, &rules])
            .await,
        auth_chain: bob.received(&keys, &[&create, &bob_join, &power]).await,
        event: ReceivedPdu {
            event_id: join_pdu.event_id.clone(),
            json: join_json,
        },
    };
    let joined = bus
        .submit(RoomBatch {
            join: Some(Box::new(answer)),
            ..RoomBatch::intents(room.clone(), Vec::new())
        })
        .await
        .unwrap();
    assert_eq!(joined.len(), 1);
    let join = &joined[0];
    assert_eq!(join.pdu.event_id, join_pdu.event_id);
    assert!(join.pos > 0, "the join is in the stream: {}", join.pos);

    // The room's state is the answer's and the join; its events are outliers.
    let alice = ruma::UserId::parse(ALICE).unwrap();
    let membership = store.membership(&room, &alice).await.unwrap().unwrap();
    assert_eq!(membership.membership, MembershipState::Join);
    let state = store.current_state(&room).await.unwrap();
    assert_eq!(state.len(), 5, "{state:?}");
    for id in [&create, &bob_join, &power, &rules] {
        let outlier = store.event(id).await.unwrap().expect("stored");
        assert!(outlier.pos < OUTLIERS_BELOW, "{id} at {}", outlier.pos);
    }
    let whole = HistoryRange {
        floor: HISTORY_START,
        until: i64::MAX,
        from: None,
        to: None,
    };
    let history = store
        .history(&room, whole, Direction::Backward, 100)
        .await
        .unwrap();
    let ids: Vec<&OwnedEventId> = history.iter().map(|e| &e.pdu.event_id).collect();
    assert_eq!(ids, [&join.pdu.event_id]);

    // Alice speaks: on the join, one deeper.
    let said = bus
        .submit(RoomBatch::intents(room.clone(), vec![say(ALICE, "hello")]))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(said.pdu.prev_events, vec![join.pdu.event_id.clone()]);
    assert_eq!(u64::from(said.pdu.depth), depth + 2);

    // Paging back past the join asks Bob's server for the room's past, once.
    let rooms = Rooms::new(
        store.clone(),
        store.clone(),
        bus.clone(),
        signing.clone(),
        Arc::new(ServerConfig::for_tests("localhost")),
    );
    let page = rooms
        .messages(&alice, &room, None, None, Direction::Backward, 50)
        .await
        .unwrap();
    let bodies: Vec<String> = page
        .events
        .iter()
        .map(|e| {
            let c = e.pdu.content_value();
            c["body"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| e.pdu.kind.to_string())
        })
        .collect();
    assert_eq!(
        bodies,
        [
            "hello",
            "m.room.member",
            "three",
            "two",
            "one",
            "m.room.join_rules",
            "m.room.power_levels",
            "m.room.member",
            "m.room.create"
        ]
    );
    assert!(page.end.is_none(), "the room's beginning is reached");
    assert_eq!(remote.backfills.load(Ordering::SeqCst), 1);
    // Carol's message failed its auth events: held, in no history.
    assert_eq!(
        store.held(&carol).await.unwrap().map(|h| h.0),
        Some(HeldStatus::Rejected)
    );
    // The past is history, not news: the stream holds what it held.
    let stream: Vec<OwnedEventId> = store
        .events_between(0, i64::MAX, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.pdu.event_id)
        .collect();
    assert_eq!(
        stream,
        [join.pdu.event_id.clone(), said.pdu.event_id.clone()]
    );
    let backfilled = store.event(&create).await.unwrap().unwrap();
    assert!(
        backfilled.pos < 0 && backfilled.pos > OUTLIERS_BELOW,
        "{}",
        backfilled.pos
    );
    // And the beginning, once reached, is not asked for again.
    rooms
        .messages(&alice, &room, None, None, Direction::Backward, 50)
        .await
        .unwrap();
    assert_eq!(remote.backfills.load(Ordering::SeqCst), 1);
    let earliest = store.earliest_events(&room).await.unwrap();
    assert_eq!(earliest.len(), 1);
    assert_eq!(earliest[0].pdu.event_id, create);

    // Bob, whose power reaches the redaction level, redacts Alice's words: an event of
    // another server's, applied all the same.
    let mut redaction = intent(BOB, "m.room.redaction", None, json!({}));
    redaction.redacts = Some(said.pdu.event_id.clone());
    let (_, json) = remote.event_on(
        &room,
        &RoomVersionId::V11,
        redaction.clone(),
        vec![said.pdu.event_id.clone()],
        bob.auth_for(&redaction),
        u64::from(said.pdu.depth) + 1,
        T0,
    );
    let verified = verify_pdu(&keys, &RoomVersionId::V11, &room, &json)
        .await
        .unwrap();
    bus.submit(RoomBatch::received(room.clone(), vec![verified.into()]))
        .await
        .unwrap();
    let redacted = store.event(&said.pdu.event_id).await.unwrap().unwrap();
    assert_eq!(redacted.pdu.content_value(), json!({}), "{redacted:?}");
}
