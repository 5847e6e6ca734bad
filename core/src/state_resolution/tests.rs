//! The published state-resolution scenarios (those Synapse's v2 tests use), on room versions
//! 10 (state resolution v2) and 12 (v2.1), through [`resolve`] as the room log calls it.
//!
//! A scenario is a room that starts with the same events (create, Alice's join and power
//! levels, public join rules, Bob, Charlie and Zara joining, a message), then forks: each chain
//! of `edges` runs from `END` back to an event already there. Every event's state before it is
//! the resolution of its prev events' states, and its auth events are chosen from that state, as
//! a server building the room would; `END` checks the state its prev events resolve to.

use std::collections::HashMap;

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId,
    UInt,
};
use serde_json::{json, Value};

use super::*;

const ALICE: &str = "@alice:example.com";
const BOB: &str = "@bob:example.com";
const CHARLIE: &str = "@charlie:example.com";
const EVELYN: &str = "@evelyn:example.com";
const ZARA: &str = "@zara:example.com";

/// One event of a scenario: `(name, sender, type, state key, content)`.
type Spec = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Value,
);

struct Room {
    version: RoomVersionId,
    rules: RoomVersionRules,
    room_id: OwnedRoomId,
    graph: AuthGraph,
    state_after: HashMap<OwnedEventId, StateIds>,
    ts: u64,
}

fn id(name: &str) -> OwnedEventId {
    OwnedEventId::try_from(format!("${name}")).unwrap()
}

impl Room {
    /// The events every scenario starts from, in one chain.
    fn new(version: RoomVersionId) -> Self {
        let rules = version.rules().unwrap();
        // A v12 room is named after its create event.
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            OwnedRoomId::try_from("!CREATE").unwrap()
        } else {
            OwnedRoomId::try_from("!room:example.com").unwrap()
        };
        let mut room = Room {
            version,
            rules,
            room_id,
            graph: AuthGraph::default(),
            state_after: HashMap::new(),
            ts: 0,
        };
        let create = if room.creators_are_privileged() {
            json!({ "room_version": room.version.as_str() })
        } else {
            json!({ "creator": ALICE, "room_version": room.version.as_str() })
        };
        let initial: Vec<Spec> = vec![
            ("CREATE", ALICE, "m.room.create", Some(""), create),
            ("IMA", ALICE, "m.room.member", Some(ALICE), join()),
            power("IPOWER", ALICE, room.power(&[])),
            (
                "IJR",
                ALICE,
                "m.room.join_rules",
                Some(""),
                json!({ "join_rule": "public" }),
            ),
            ("IMB", BOB, "m.room.member", Some(BOB), join()),
            ("IMC", CHARLIE, "m.room.member", Some(CHARLIE), join()),
            ("IMZ", ZARA, "m.room.member", Some(ZARA), join()),
            (
                "START",
                ZARA,
                "m.room.message",
                None,
                json!({ "body": "start" }),
            ),
        ];
        let mut prev: Vec<OwnedEventId> = Vec::new();
        for spec in &initial {
            room.add(spec, &prev);
            prev = vec![id(spec.0)];
        }
        room
    }

    /// Room version 12 gives the creator unlimited power and keeps it out of `users`.
    fn creators_are_privileged(&self) -> bool {
        self.rules.authorization.explicitly_privilege_room_creators
    }

    /// Power levels content giving `users` their levels, and Alice, the creator, 100.
    fn power(&self, users: &[(&str, i64)]) -> Value {
        let mut map = serde_json::Map::new();
        if !self.creators_are_privileged() {
            map.insert(ALICE.into(), json!(100));
        }
        for (u, l) in users {
            map.insert((*u).into(), json!(l));
        }
        json!({ "users": map })
    }

    fn state_before(&self, prev: &[OwnedEventId]) -> StateIds {
        let states: Vec<StateIds> = prev.iter().map(|p| self.state_after[p].clone()).collect();
        resolve(&self.rules, &states, &self.graph).expect("resolution runs")
    }

    fn add(&mut self, spec: &Spec, prev: &[OwnedEventId]) {
        let (name, sender, kind, state_key, content) = spec;
        let before = self.state_before(prev);
        let content_raw = serde_json::value::to_raw_value(content).unwrap();
        let kind = TimelineEventType::from(*kind);
        let sender = OwnedUserId::try_from(*sender).unwrap();
        let auth_types = state_res::auth_types_for_event(
            &kind,
            &sender,
            *state_key,
            &content_raw,
            &self.rules.authorization,
        )
        .unwrap();
        let auth_events: Vec<OwnedEventId> = auth_types
            .iter()
            .filter(|(t, _)| {
                *t != StateEventType::RoomCreate
                    || self.rules.event_format.allow_room_create_in_auth_events
            })
            .filter_map(|k| before.get(k).cloned())
            .collect();
        self.ts += 1;
        let depth = prev
            .iter()
            .filter_map(|p| self.graph.get(p))
            .map(|p| u64::from(p.depth))
            .max()
            .map_or(0, |d| d + 1);
        let pdu = Pdu {
            event_id: id(name),
            room_id: Some(self.room_id.clone()),
            sender,
            origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(self.ts).unwrap()),
            kind: kind.clone(),
            content: content_raw,
            state_key: state_key.map(str::to_owned),
            prev_events: prev.to_vec(),
            auth_events,
            depth: UInt::new(depth).unwrap(),
            redacts: None,
            hashes: Default::default(),
            signatures: Default::default(),
        };
        let mut after = before;
        if let Some(k) = state_key {
            after.insert((kind.to_string().into(), (*k).to_owned()), id(name));
        }
        self.graph.insert(pdu);
        self.state_after.insert(id(name), after);
    }

    /// Adds `events` along `edges` (chains from `END` back to a known event) and answers the
    /// state `END` would have.
    fn fork(&mut self, events: &[Spec], edges: &[&[&str]]) -> StateIds {
        let mut prevs: HashMap<&str, Vec<OwnedEventId>> = HashMap::new();
        for chain in edges {
            for pair in chain.windows(2) {
                let slot = prevs.entry(pair[0]).or_default();
                if !slot.contains(&id(pair[1])) {
                    slot.push(id(pair[1]));
                }
            }
        }
        // In the order listed, each once its prev events are in (the listed order is the
        // order of their timestamps).
        let mut left: Vec<&Spec> = events.iter().collect();
        while !left.is_empty() {
            let ready = left
                .iter()
                .position(|s| prevs[s.0].iter().all(|p| self.state_after.contains_key(p)))
                .expect("the scenario's graph has no cycle");
            let spec = left.remove(ready);
            let prev = prevs[spec.0].clone();
            self.add(spec, &prev);
        }
        let end = &prevs["END"];
        let resolved = self.state_before(end);
        let mut reversed = end.clone();
        reversed.reverse();
        assert_eq!(
            self.state_before(&reversed),
            resolved,
            "the order of the forks does not matter"
        );
        resolved
    }

    /// The state after `START` with the entries of `changed` put in.
    fn expect(&self, changed: &[&str]) -> StateIds {
        let mut state = self.state_after[&id("START")].clone();
        for name in changed {
            let pdu = self.graph.get(&id(name)).unwrap();
            let key = (pdu.kind.to_string().into(), pdu.state_key.clone().unwrap());
            state.insert(key, id(name));
        }
        state
    }
}

fn join() -> Value {
    json!({ "membership": "join" })
}

fn versions() -> [RoomVersionId; 2] {
    [RoomVersionId::V10, RoomVersionId::V12]
}

/// Alice bans Bob while Bob, still a moderator on his side, changes the power levels: the ban
/// wins, and with it the power levels Bob could no longer send.
#[test]
fn ban_vs_power_levels() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let pl = room.power(&[(BOB, 50)]);
        let events: Vec<Spec> = vec![
            power("PA", ALICE, pl.clone()),
            ("MA", ALICE, "m.room.member", Some(ALICE), join()),
            (
                "MB",
                ALICE,
                "m.room.member",
                Some(BOB),
                json!({ "membership": "ban" }),
            ),
            power("PB", BOB, pl),
        ];
        let got = room.fork(
            &events,
            &[&["END", "MB", "MA", "PA", "START"], &["END", "PB", "PA"]],
        );
        assert_eq!(got, room.expect(&["PA", "MA", "MB"]), "room version {v}");
    }
}

/// Bob sets a topic while a moderator; Alice bans him on the other side: the topic from
/// before Bob's goes back in.
#[test]
fn topic_reset() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let events: Vec<Spec> = vec![
            topic("T1", ALICE, "one"),
            power("PA", ALICE, room.power(&[(BOB, 50)])),
            topic("T2", BOB, "two"),
            (
                "MB",
                ALICE,
                "m.room.member",
                Some(BOB),
                json!({ "membership": "ban" }),
            ),
        ];
        let got = room.fork(
            &events,
            &[&["END", "MB", "T2", "PA", "T1", "START"], &["END", "T1"]],
        );
        assert_eq!(got, room.expect(&["T1", "MB", "PA"]), "room version {v}");
    }
}

/// Evelyn joins while the room is public on her side; Alice makes it invite-only on the
/// other: the join rules win and Evelyn's join does not stand.
#[test]
fn join_rule_evasion() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let events: Vec<Spec> = vec![
            (
                "JR",
                ALICE,
                "m.room.join_rules",
                Some(""),
                json!({ "join_rule": "invite" }),
            ),
            ("ME", EVELYN, "m.room.member", Some(EVELYN), join()),
        ];
        let got = room.fork(&events, &[&["END", "JR", "START"], &["END", "ME", "START"]]);
        assert_eq!(got, room.expect(&["JR"]), "room version {v}");
    }
}

/// Bob, a moderator, raises Charlie; Charlie lowers himself on that branch: the power levels
/// after Charlie's change stand, over Alice's unchanged ones on the other branch.
#[test]
fn offtopic_power_levels() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let events: Vec<Spec> = vec![
            power("PA", ALICE, room.power(&[(BOB, 50)])),
            power("PB", BOB, room.power(&[(BOB, 50), (CHARLIE, 50)])),
            power("PC", CHARLIE, room.power(&[(BOB, 50), (CHARLIE, 0)])),
        ];
        let got = room.fork(
            &events,
            &[&["END", "PC", "PB", "PA", "START"], &["END", "PA"]],
        );
        assert_eq!(got, room.expect(&["PC"]), "room version {v}");
    }
}

fn topic(name: &'static str, sender: &'static str, text: &str) -> Spec {
    (
        name,
        sender,
        "m.room.topic",
        Some(""),
        json!({ "topic": text }),
    )
}

fn power(name: &'static str, sender: &'static str, content: Value) -> Spec {
    (name, sender, "m.room.power_levels", Some(""), content)
}

/// Alice sets a topic, makes Bob a moderator, sets another topic and changes the power levels
/// again (`pa2`); Bob, on his side after his promotion, re-sends the power levels and sets a
/// topic of his own.
fn topics_around_power_changes(room: &Room, pa2: Value) -> Vec<Spec> {
    vec![
        topic("T1", ALICE, "1"),
        power("PA1", ALICE, room.power(&[(BOB, 50)])),
        topic("T2", ALICE, "2"),
        power("PA2", ALICE, pa2),
        power("PB", BOB, room.power(&[(BOB, 50)])),
        topic("T3", BOB, "3"),
    ]
}

/// Topics on both sides of a demotion: Alice's topic after she demotes Bob wins over Bob's
/// topic from before it.
#[test]
fn topic_basic() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let events = topics_around_power_changes(&room, room.power(&[(BOB, 0)]));
        let got = room.fork(
            &events,
            &[
                &["END", "PA2", "T2", "PA1", "T1", "START"],
                &["END", "T3", "PB", "PA1"],
            ],
        );
        assert_eq!(got, room.expect(&["PA2", "T2"]), "room version {v}");
    }
}

/// As `topic_basic`, with a message joining the branches and a later topic of Alice's: her
/// demotion of Bob and her last topic stand.
#[test]
fn topic_setting() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let mut events = topics_around_power_changes(&room, room.power(&[(BOB, 0)]));
        events.push(("MZ1", ZARA, "m.room.message", None, json!({ "body": "hi" })));
        events.push(topic("T4", ALICE, "4"));
        let got = room.fork(
            &events,
            &[
                &["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"],
                &["END", "MZ1", "T3", "PB", "PA1"],
            ],
        );
        assert_eq!(got, room.expect(&["T4", "PA2"]), "room version {v}");
    }
}

/// Two topics, each after power levels of Alice's: the mainline (the chain of power levels
/// the resolved state rests on) orders them, so the topic after the later power levels wins
/// even though the other topic is newer.
#[test]
fn mainline_sort() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let mut pa2 = room.power(&[(BOB, 50)]);
        pa2["events"] = json!({ "m.room.power_levels": 100 });
        let mut events = topics_around_power_changes(&room, pa2);
        events.push(topic("T4", ALICE, "4"));
        let got = room.fork(
            &events,
            &[
                &["END", "T3", "PA2", "T2", "PA1", "T1", "START"],
                &["END", "T4", "PB", "PA1"],
            ],
        );
        assert_eq!(got, room.expect(&["T3", "PA2"]), "room version {v}");
    }
}

/// Resolving one state, or states that agree, changes nothing and reads no event.
#[test]
fn agreeing_states_are_their_own_resolution() {
    let room = Room::new(RoomVersionId::V10);
    let state = room.state_after[&id("START")].clone();
    let empty = AuthGraph::default();
    let rules = RoomVersionId::V10.rules().unwrap();
    assert_eq!(
        resolve(&rules, std::slice::from_ref(&state), &empty).unwrap(),
        state
    );
    assert_eq!(
        resolve(&rules, &[state.clone(), state.clone()], &empty).unwrap(),
        state
    );
    assert!(resolve(&rules, &[], &empty).unwrap().is_empty());
}

/// The conflicted state subgraph holds the events on auth paths from one conflicted event to
/// another, ends included, and nothing below the lowest or off the paths.
#[test]
fn conflicted_subgraph_is_the_paths_between_conflicted_events() {
    let mut room = Room::new(RoomVersionId::V12);
    let events: Vec<Spec> = vec![
        power("PA", ALICE, room.power(&[(BOB, 50)])),
        (
            "MB",
            BOB,
            "m.room.member",
            Some(BOB),
            json!({ "membership": "join", "displayname": "b" }),
        ),
        power("PB", BOB, room.power(&[(BOB, 50), (CHARLIE, 10)])),
    ];
    room.fork(
        &events,
        &[&["END", "PB", "MB", "PA", "START"], &["END", "START"]],
    );
    // PB authorizes by PA (power levels) and MB (Bob's membership), which rests on PA too.
    let pb = room.graph.get(&id("PB")).unwrap();
    assert!(pb.auth_events.contains(&id("PA")) && pb.auth_events.contains(&id("MB")));
    let ipower = id("IPOWER");
    let pb_id = id("PB");
    let conflicted: HashSet<&OwnedEventId> = [&ipower, &pb_id].into_iter().collect();
    let sub = room.graph.conflicted_subgraph(&conflicted);
    let mut names: Vec<&str> = sub.iter().map(|e| &e.as_str()[1..]).collect();
    names.sort_unstable();
    // From PB down to IPOWER: PA and MB lie between; IMB (Bob's first join, under MB) also
    // rests on IPOWER. The create event and Alice's join are below IPOWER: not included.
    assert_eq!(names, ["IJR", "IMB", "IPOWER", "MB", "PA", "PB"]);
}

/// MSC4297's first problem, which state resolution v2.1 (room version 12) fixes: Alice raises
/// Bob to moderator, then leaves. Two states hold her leave, one with the first power levels
/// and one with hers. Version 2 checks the conflicted power levels starting from the
/// unconflicted state, where Alice has left, so it rejects both and the room loses its power
/// levels (a state reset); version 2.1 starts from nothing, and her later power levels stand.
#[test]
fn power_levels_are_not_reset_by_a_later_leave() {
    for v in versions() {
        let mut room = Room::new(v.clone());
        let pl = room.power(&[(BOB, 50)]);
        room.add(&power("PA", ALICE, pl), &[id("START")]);
        let leave = json!({ "membership": "leave" });
        room.add(
            &("LA", ALICE, "m.room.member", Some(ALICE), leave),
            &[id("PA")],
        );
        let key = ("m.room.power_levels".into(), String::new());
        let with_pa = room.state_after[&id("LA")].clone();
        let mut with_first = with_pa.clone();
        with_first.insert(key.clone(), id("IPOWER"));

        let got = resolve(
            &room.rules,
            &[with_pa.clone(), with_first.clone()],
            &room.graph,
        )
        .expect("resolution runs");
        let reversed =
            resolve(&room.rules, &[with_first, with_pa], &room.graph).expect("resolution runs");
        assert_eq!(got, reversed, "room version {v}");
        let expected = room
            .rules
            .state_res
            .v2_rules()
            .map(|r| r.begin_iterative_auth_checks_with_empty_state_map);
        match expected {
            Some(true) => assert_eq!(got.get(&key), Some(&id("PA")), "room version {v}"),
            _ => assert_eq!(got.get(&key), None, "room version {v}: the v2 reset"),
        }
        assert_eq!(
            got.get(&("m.room.member".into(), ALICE.to_owned())),
            Some(&id("LA")),
            "room version {v}"
        );
    }
}
