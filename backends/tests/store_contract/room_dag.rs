//! A room shared with another server: its events come in through the room's lane, fork the
//! room when they are concurrent with local ones, and the room's state is what state
//! resolution says; events that fail authorization are held back and never reach the
//! timeline that `/sync`, the Sandcat API and application services read.

use ruma::{
    events::{StateEventType, TimelineEventType},
    server_name, state_res, OwnedEventId, OwnedRoomId,
};
use sandcat_core::{
    intent::ReceivedPdu,
    ports::{HeldStatus, HistoryRange, RemoteFetch},
    remote_pdu::verify_pdu,
    services::server_keys::ServerKeys,
    Error, StoredEvent,
};

use super::remote::{key_service, RemoteServer, T0};
use super::*;

on_both_backends!(
    a_room_forks_and_resolves_with_another_server,
    missing_events_are_fetched_from_their_sender,
    unknown_auth_events_are_fetched_as_outliers,
);

pub(super) const ALICE: &str = "@alice:localhost";
pub(super) const BOB: &str = "@bob:remote.example";

pub(super) fn room() -> OwnedRoomId {
    room_id!("!room:localhost").to_owned()
}

pub(super) fn intent(
    sender: &str,
    kind: &str,
    key: Option<&str>,
    content: serde_json::Value,
) -> EventIntent {
    EventIntent::new(
        sender.try_into().unwrap(),
        TimelineEventType::from(kind),
        key.map(str::to_owned),
        content,
    )
}

/// A public room of Alice's, which Bob's server can join.
fn public_room() -> RoomBatch {
    let ev = |kind, key, content| intent(ALICE, kind, key, content);
    RoomBatch {
        room_id: room(),
        create_version: Some(RoomVersionId::V11),
        remote: Vec::new(),
        join: None,
        backfill: Vec::new(),
        outside: None,
        events: vec![
            ev("m.room.create", Some(""), json!({ "room_version": "11" })),
            ev(
                "m.room.member",
                Some(ALICE),
                json!({ "membership": "join" }),
            ),
            ev(
                "m.room.power_levels",
                Some(""),
                json!({ "users": { ALICE: 100 } }),
            ),
            ev(
                "m.room.join_rules",
                Some(""),
                json!({ "join_rule": "public" }),
            ),
        ],
    }
}

/// The other server and what it knows of the room.
pub(super) struct Peer {
    server: Arc<RemoteServer>,
    keys: ServerKeys,
    store: Arc<SqlStore>,
}

impl Peer {
    /// An event of Bob's on `prev` (one event), its auth events chosen from the state after
    /// `prev` as his server would, checked on arrival as the federation API will.
    pub(super) async fn send(&self, prev: &StoredEvent, ev: EventIntent, ts: u64) -> ReceivedPdu {
        let prev_id = (prev.pdu.event_id.clone(), u64::from(prev.pdu.depth));
        self.send_on(&prev.pdu.event_id, prev_id, ev, ts).await
    }

    /// An event of Bob's on `prev` (`(id, depth)`), which this server may not have yet, its
    /// auth events chosen from the state after `state_at`.
    async fn send_on(
        &self,
        state_at: &OwnedEventId,
        prev: (OwnedEventId, u64),
        ev: EventIntent,
        ts: u64,
    ) -> ReceivedPdu {
        let state = self.store.state_after(state_at).await.unwrap().unwrap();
        let rules = RoomVersionId::V11.rules().unwrap();
        let types = state_res::auth_types_for_event(
            &ev.kind,
            &ev.sender,
            ev.state_key.as_deref(),
            &serde_json::value::to_raw_value(&ev.content).unwrap(),
            &rules.authorization,
        )
        .unwrap();
        let auth: Vec<OwnedEventId> = types
            .iter()
            .filter_map(|(t, k): &(StateEventType, String)| {
                state.get(&(t.to_string(), k.clone())).cloned()
            })
            .collect();
        let (_, json) = self.server.event_on(
            &room(),
            &RoomVersionId::V11,
            ev,
            vec![prev.0],
            auth,
            prev.1 + 1,
            ts,
        );
        verify_pdu(&self.keys, &RoomVersionId::V11, &room(), &json)
            .await
            .unwrap()
            .into()
    }
}

pub(super) fn received(pdu: ReceivedPdu) -> RoomBatch {
    RoomBatch {
        room_id: room(),
        create_version: None,
        events: Vec::new(),
        remote: vec![pdu],
        join: None,
        backfill: Vec::new(),
        outside: None,
    }
}

async fn topic(store: &SqlStore) -> OwnedEventId {
    store
        .state_event(&room(), "m.room.topic", "")
        .await
        .unwrap()
        .unwrap()
        .pdu
        .event_id
}

async fn in_timeline(store: &SqlStore, id: &OwnedEventId) -> bool {
    let all = store.events_between(0, i64::MAX, 10_000).await.unwrap();
    all.iter().any(|e| &e.pdu.event_id == id)
}

/// Alice's public room, on a sequencer that fetches what its log lacks from Bob's server.
pub(super) struct Shared {
    pub(super) store: Arc<SqlStore>,
    pub(super) peer: Peer,
    pub(super) bus: InProcessBus,
    /// The room's last event.
    pub(super) head: StoredEvent,
}

pub(super) async fn shared_room(db: &Db) -> Shared {
    let store = db.open().await;
    let remote = RemoteServer::new(server_name!("remote.example"));
    let peer = Peer {
        keys: key_service(store.clone(), &remote),
        server: remote.clone(),
        store: store.clone(),
    };
    let fetcher = Arc::new(Fetcher {
        server: remote.clone(),
        keys: key_service(store.clone(), &remote),
        version: RoomVersionId::V11,
    });
    let key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap();
    let signing = Arc::new(SigningKey {
        server_name: "localhost".try_into().unwrap(),
        key,
    });
    let seq = Sequencer::new(store.clone(), signing, Notifier::default()).with_fetch(fetcher);
    let bus = InProcessBus::new(Arc::new(seq), 2);
    let head = bus.submit(public_room()).await.unwrap().pop().unwrap();
    Shared {
        store,
        peer,
        bus,
        head,
    }
}

pub(super) fn bob_joins() -> EventIntent {
    intent(
        BOB,
        "m.room.member",
        Some(BOB),
        json!({ "membership": "join" }),
    )
}

async fn a_room_forks_and_resolves_with_another_server(db: Db) {
    let Shared {
        store,
        peer,
        bus,
        head,
    } = shared_room(&db).await;
    let head = &head;
    let local = |ev: EventIntent| {
        let bus = &bus;
        async move { bus.submit(in_room(vec![ev])).await.unwrap().remove(0) }
    };

    // Bob's server joins him: the event is appended in the room's lane, with a position.
    let join = peer.send(head, bob_joins(), T0).await;
    let joined = bus.submit(received(join.clone())).await.unwrap().remove(0);
    assert_eq!(joined.pdu.event_id, join.event_id);
    assert!(joined.pos > head.pos);
    let bob = user_id!("@bob:remote.example");
    assert_eq!(
        store
            .membership(&room(), bob)
            .await
            .unwrap()
            .unwrap()
            .membership,
        ruma::events::room::member::MembershipState::Join
    );
    assert_eq!(extremities(&store).await, vec![join.event_id.to_string()]);
    // Received again (a retried transaction): the same event, not a second one.
    let again = bus.submit(received(join.clone())).await.unwrap().remove(0);
    assert_eq!(again.pos, joined.pos);

    // Alice makes Bob a moderator; then both set the topic at once, on the same event. Bob's
    // arrives second but was sent earlier: the room forks, and resolution orders the two
    // topics by the power levels they rest on, then by time: Alice's stands.
    let pl = json!({ "users": { ALICE: 100, BOB: 50 } });
    let mod_bob = local(intent(ALICE, "m.room.power_levels", Some(""), pl)).await;
    let t_alice = local(intent(
        ALICE,
        "m.room.topic",
        Some(""),
        json!({ "topic": "Alice's" }),
    ))
    .await;
    let early = u64::from(t_alice.pdu.origin_server_ts.get()) - 60_000;
    let t_bob = peer
        .send(
            &mod_bob,
            intent(BOB, "m.room.topic", Some(""), json!({ "topic": "Bob's" })),
            early,
        )
        .await;
    let t_bob = bus.submit(received(t_bob)).await.unwrap().remove(0);
    let mut forked = vec![
        t_alice.pdu.event_id.to_string(),
        t_bob.pdu.event_id.to_string(),
    ];
    forked.sort();
    assert_eq!(extremities(&store).await, forked, "the room has two heads");
    assert_eq!(topic(&store).await, t_alice.pdu.event_id);
    assert!(
        in_timeline(&store, &t_bob.pdu.event_id).await,
        "Bob's topic is history"
    );
    // A reader of the stream is told so: at Bob's topic's position, the topic is Alice's
    // (a state reset), and the state changes since Alice's topic answer hers, not the
    // latest topic event.
    let resets = store
        .state_resets(&room(), t_alice.pos, t_bob.pos)
        .await
        .unwrap();
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(
        (resets[0].pos, resets[0].kind.as_str()),
        (t_bob.pos, "m.room.topic")
    );
    assert_eq!(
        resets[0].event.as_ref().map(|e| &e.pdu.event_id),
        Some(&t_alice.pdu.event_id)
    );
    let changed = store
        .state_changes(&room(), mod_bob.pos, t_bob.pos)
        .await
        .unwrap();
    let ids: Vec<&OwnedEventId> = changed.iter().map(|e| &e.pdu.event_id).collect();
    assert_eq!(ids, [&t_alice.pdu.event_id]);
    // Events of this server's alone leave none.
    assert!(store
        .state_resets(&room(), 0, t_alice.pos)
        .await
        .unwrap()
        .is_empty());

    // Alice's next message merges the fork: it names both heads and is deeper than either;
    // the state after it is the resolved one.
    let merged = local(intent(
        ALICE,
        "m.room.message",
        None,
        json!({ "body": "hi" }),
    ))
    .await;
    let mut prevs: Vec<String> = merged
        .pdu
        .prev_events
        .iter()
        .map(|e| e.to_string())
        .collect();
    prevs.sort();
    assert_eq!(prevs, forked);
    assert_eq!(
        u64::from(merged.pdu.depth),
        u64::from(t_alice.pdu.depth).max(u64::from(t_bob.pdu.depth)) + 1
    );
    assert_eq!(
        extremities(&store).await,
        vec![merged.pdu.event_id.to_string()]
    );
    let after = store
        .state_after(&merged.pdu.event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after[&("m.room.topic".to_owned(), String::new())],
        t_alice.pdu.event_id
    );

    // Alice demotes Bob; Bob, not knowing, sets the topic on the event before: fine before
    // the demotion, not after it. Soft-failed: kept, never in the timeline, not a head.
    let demote = json!({ "users": { ALICE: 100, BOB: 0 } });
    let demoted = local(intent(ALICE, "m.room.power_levels", Some(""), demote)).await;
    let late_topic = peer
        .send(
            &merged,
            intent(BOB, "m.room.topic", Some(""), json!({ "topic": "mine" })),
            T0,
        )
        .await;
    let answer = bus.submit(received(late_topic.clone())).await.unwrap();
    assert!(answer.is_empty(), "a soft-failed event answers nothing");
    assert_eq!(
        store.held(&late_topic.event_id).await.unwrap().map(|h| h.0),
        Some(HeldStatus::SoftFailed)
    );
    assert!(!in_timeline(&store, &late_topic.event_id).await);
    assert_eq!(
        extremities(&store).await,
        vec![demoted.pdu.event_id.to_string()]
    );
    assert_eq!(topic(&store).await, t_alice.pdu.event_id);

    // Bob raises himself back, on the demotion: rejected against the state before it.
    let raise = json!({ "users": { ALICE: 100, BOB: 100 } });
    let raised = peer
        .send(
            &demoted,
            intent(BOB, "m.room.power_levels", Some(""), raise),
            T0,
        )
        .await;
    let refused = bus.submit(received(raised.clone())).await;
    assert!(matches!(refused, Err(Error::Matrix { .. })), "{refused:?}");
    assert_eq!(
        store.held(&raised.event_id).await.unwrap().map(|h| h.0),
        Some(HeldStatus::Rejected)
    );
    // Bob's server, which accepted his raise, goes on from it: his next words are admitted,
    // with the state before the raise, which changed nothing here.
    let depth = u64::from(demoted.pdu.depth) + 1;
    let on_raise = peer
        .send_on(
            &demoted.pdu.event_id,
            (raised.event_id.clone(), depth),
            intent(
                BOB,
                "m.room.message",
                None,
                json!({ "body": "on my raise" }),
            ),
            T0,
        )
        .await;
    let admitted = bus.submit(received(on_raise.clone())).await.unwrap();
    assert_eq!(admitted.len(), 1, "built on a rejected event, admitted");
    let state = store
        .state_after(&on_raise.event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state[&("m.room.power_levels".to_owned(), String::new())],
        demoted.pdu.event_id
    );

    // Alice bans Bob; what Bob says after his ban is rejected.
    let ban = json!({ "membership": "ban" });
    let banned = local(intent(ALICE, "m.room.member", Some(BOB), ban)).await;
    let said = peer
        .send(
            &banned,
            intent(BOB, "m.room.message", None, json!({ "body": "still here" })),
            T0,
        )
        .await;
    assert!(bus.submit(received(said.clone())).await.is_err());
    assert_eq!(
        store.held(&said.event_id).await.unwrap().map(|h| h.0),
        Some(HeldStatus::Rejected)
    );
    for held in [&late_topic.event_id, &raised.event_id, &said.event_id] {
        assert!(
            !in_timeline(&store, held).await,
            "{held} reached the timeline"
        );
        assert!(store.event(held).await.unwrap().is_none());
    }
    assert_eq!(
        extremities(&store).await,
        vec![banned.pdu.event_id.to_string()]
    );
    // The room goes on from its heads.
    let next = local(intent(
        ALICE,
        "m.room.message",
        None,
        json!({ "body": "bye" }),
    ))
    .await;
    assert_eq!(next.pdu.prev_events, vec![banned.pdu.event_id.clone()]);
}

/// The other server's side of `/get_missing_events`, `/event` and `/backfill`: its events,
/// checked on arrival as the federation client checks what it fetches.
pub(super) struct Fetcher {
    pub(super) server: Arc<RemoteServer>,
    pub(super) keys: ServerKeys,
    /// The room version of the rooms it is asked about.
    pub(super) version: RoomVersionId,
}

#[async_trait::async_trait]
impl RemoteFetch for Fetcher {
    async fn missing_events(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
    ) -> sandcat_core::Result<Vec<ReceivedPdu>> {
        assert_eq!(origin, self.server.name, "asked of the sender's server");
        let mut out = Vec::new();
        for json in self
            .server
            .missing(earliest, latest)
            .into_iter()
            .take(limit)
        {
            let verified = verify_pdu(&self.keys, &self.version, room_id, &json).await?;
            out.push(verified.into());
        }
        Ok(out)
    }

    async fn event(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
    ) -> sandcat_core::Result<Option<ReceivedPdu>> {
        assert_eq!(origin, self.server.name, "asked of the sender's server");
        let json = match self.server.built.lock().unwrap().get(event_id) {
            Some((_, json)) => json.clone(),
            None => return Ok(None),
        };
        let verified = verify_pdu(&self.keys, &self.version, room_id, &json).await?;
        Ok(Some(verified.into()))
    }

    async fn backfill(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> sandcat_core::Result<Vec<ReceivedPdu>> {
        assert_eq!(origin, self.server.name, "asked of a server in the room");
        // An event that fails its checks is dropped, as the federation client drops it.
        let mut out = Vec::new();
        for json in self.server.backfill(from, limit) {
            if let Ok(verified) = verify_pdu(&self.keys, &self.version, room_id, &json).await {
                out.push(verified.into());
            }
        }
        Ok(out)
    }
}

async fn missing_events_are_fetched_from_their_sender(db: Db) {
    let Shared {
        store,
        peer,
        bus,
        head,
    } = shared_room(&db).await;
    let head = &head;
    let join = peer.send(head, bob_joins(), T0).await;
    let joined = bus.submit(received(join)).await.unwrap().remove(0);

    // Bob says three things; only the last reaches this server.
    let say = |body: &str| intent(BOB, "m.room.message", None, json!({ "body": body }));
    let at = &joined.pdu.event_id;
    let depth = u64::from(joined.pdu.depth);
    let one = peer.send_on(at, (at.clone(), depth), say("one"), T0).await;
    let two = peer
        .send_on(at, (one.event_id.clone(), depth + 1), say("two"), T0)
        .await;
    let three = peer
        .send_on(at, (two.event_id.clone(), depth + 2), say("three"), T0)
        .await;
    let answer = bus.submit(received(three.clone())).await.unwrap();
    assert_eq!(answer.len(), 1);
    // The two it lacked were fetched from Bob's server and appended first, in order.
    let timeline = store
        .events_between(joined.pos, i64::MAX, 100)
        .await
        .unwrap();
    let ids: Vec<&OwnedEventId> = timeline.iter().map(|e| &e.pdu.event_id).collect();
    assert_eq!(ids, [&one.event_id, &two.event_id, &three.event_id]);
    assert_eq!(extremities(&store).await, vec![three.event_id.to_string()]);

    // A gap its sender cannot fill: the event is refused, and nothing is appended.
    let unknown: OwnedEventId = "$never-sent".try_into().unwrap();
    let orphan = peer
        .send_on(at, (unknown, depth + 5), say("from nowhere"), T0)
        .await;
    let refused = bus.submit(received(orphan.clone())).await;
    assert!(
        matches!(&refused, Err(Error::Matrix { message, .. }) if message.contains("not known")),
        "{refused:?}"
    );
    assert!(store.event(&orphan.event_id).await.unwrap().is_none());
    assert_eq!(extremities(&store).await, vec![three.event_id.to_string()]);

    // Alice says three things; Bob, who has not seen them, answers his own last message. His
    // answer comes last in the stream, but history (`/messages`) reads the room in
    // topological order: it sits beside Alice's first, one deeper than Bob's "three".
    let alice_says = |body: &str| {
        in_room(vec![intent(
            ALICE,
            "m.room.message",
            None,
            json!({ "body": body }),
        )])
    };
    let mut alice = Vec::new();
    for body in ["a1", "a2", "a3"] {
        alice.push(bus.submit(alice_says(body)).await.unwrap().remove(0));
    }
    let late = peer
        .send_on(at, (three.event_id.clone(), depth + 3), say("late"), T0)
        .await;
    let late = bus.submit(received(late)).await.unwrap().remove(0);
    assert!(late.pos > alice[2].pos);
    let everything = HistoryRange {
        floor: joined.pos,
        until: i64::MAX,
        from: None,
        to: None,
    };
    let page = |range, dir| {
        let store = store.clone();
        async move {
            let events = store.history(&room(), range, dir, 100).await.unwrap();
            events
                .iter()
                .map(|e| e.pdu.content_value()["body"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page(everything, Direction::Backward).await,
        ["a3", "a2", "late", "a1", "three", "two", "one"]
    );
    // Pages go on strictly beyond a point: from Alice's "a2", backwards and forwards.
    let a2 = sandcat_core::services::rooms::HistoryToken::point_of(&alice[1]);
    let from_a2 = HistoryRange {
        from: Some(a2),
        ..everything
    };
    assert_eq!(
        page(from_a2, Direction::Backward).await,
        ["late", "a1", "three", "two", "one"]
    );
    assert_eq!(page(from_a2, Direction::Forward).await, ["a3"]);
    // And stop before a point.
    let a1 = sandcat_core::services::rooms::HistoryToken::point_of(&alice[0]);
    let to_a1 = HistoryRange {
        to: Some(a1),
        ..from_a2
    };
    assert_eq!(page(to_a1, Direction::Backward).await, ["late"]);
}

async fn unknown_auth_events_are_fetched_as_outliers(db: Db) {
    let Shared {
        store,
        peer,
        bus,
        head,
    } = shared_room(&db).await;
    let join = peer.send(&head, bob_joins(), T0).await;
    let joined = bus.submit(received(join)).await.unwrap().remove(0);
    let at = joined.pdu.event_id.clone();
    let depth = u64::from(joined.pdu.depth);

    // On a branch this server never sees, Bob renames himself; then, on the room's head, he
    // speaks with that membership as his authority.
    let renamed = peer
        .send_on(
            &at,
            (at.clone(), depth),
            intent(
                BOB,
                "m.room.member",
                Some(BOB),
                json!({ "membership": "join", "displayname": "Bobby" }),
            ),
            T0,
        )
        .await;
    let state = store.state_after(&at).await.unwrap().unwrap();
    let key = |t: &str, k: &str| state[&(t.to_owned(), k.to_owned())].clone();
    let auth = vec![
        key("m.room.create", ""),
        key("m.room.power_levels", ""),
        renamed.event_id.clone(),
    ];
    let say = |body: &str| intent(BOB, "m.room.message", None, json!({ "body": body }));
    let send_with = |auth: Vec<OwnedEventId>, body: &str| {
        let (_, json) = peer.server.event_on(
            &room(),
            &RoomVersionId::V11,
            say(body),
            vec![at.clone()],
            auth,
            depth + 1,
            T0,
        );
        let keys = &peer.keys;
        async move {
            let v = verify_pdu(keys, &RoomVersionId::V11, &room(), &json)
                .await
                .unwrap();
            ReceivedPdu::from(v)
        }
    };
    let spoken = send_with(auth.clone(), "as Bobby").await;
    let answer = bus.submit(received(spoken.clone())).await.unwrap();
    assert_eq!(answer.len(), 1, "admitted with its auth event fetched");

    // The rename is kept as an outlier: known, below every stream position, in no timeline,
    // no history and no state.
    let outlier = store
        .event(&renamed.event_id)
        .await
        .unwrap()
        .expect("stored");
    assert!(outlier.pos < 0, "{}", outlier.pos);
    assert!(!in_timeline(&store, &renamed.event_id).await);
    let history = store
        .history(
            &room(),
            HistoryRange {
                floor: 0,
                until: i64::MAX,
                from: None,
                to: None,
            },
            Direction::Backward,
            100,
        )
        .await
        .unwrap();
    assert!(history.iter().all(|e| e.pdu.event_id != renamed.event_id));
    assert!(history.iter().any(|e| e.pdu.event_id == spoken.event_id));
    let bob = store
        .state_event(&room(), "m.room.member", BOB)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.pdu.event_id, joined.pdu.event_id);

    // An auth event its sender does not have either: rejected, and held.
    let nowhere: OwnedEventId = "$nowhere".try_into().unwrap();
    let mut bad_auth = auth;
    bad_auth[2] = nowhere;
    let unfounded = send_with(bad_auth, "on nothing").await;
    assert!(bus.submit(received(unfounded.clone())).await.is_err());
    assert_eq!(
        store.held(&unfounded.event_id).await.unwrap().map(|h| h.0),
        Some(HeldStatus::Rejected)
    );
}
