//! Whether a verified event of another server joins the room, in the spec's order ("Checks
//! performed on receipt of a PDU", steps 3–6): the room version's rules that need no state,
//! then authorization against the event's own auth events, against the state before it, and
//! against the room's current state. Failing one of the first three rejects it (kept, never
//! served as state or timeline); failing only the last soft-fails it (kept, not sent to
//! clients, never a prev event of a local event). Pure: the caller has loaded the events.

use std::collections::HashMap;

use ruma::{room_version_rules::RoomVersionRules, state_res, EventId, OwnedEventId};

use crate::Pdu;

/// A room's state: `(type, state_key)` → the event.
pub type StateMap = HashMap<(String, String), Pdu>;

/// What becomes of an event of another server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It joins the room: timeline, state, and a prev event of what follows.
    Accepted,
    /// It fails against its own auth events or the state before it.
    Rejected(String),
    /// It passes those but fails against the room's current state.
    SoftFailed(String),
}

/// Checks `pdu` (signatures and hashes already verified) with `auth_events` (its auth events
/// by id: each it names must be there), `before` (the state before it, from its prev events)
/// and `current` (the room's current state).
pub fn admit(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    auth_events: &HashMap<OwnedEventId, Pdu>,
    before: &StateMap,
    current: &StateMap,
) -> Admission {
    if let Err(why) = check_against_auth_events(rules, pdu, auth_events) {
        return Admission::Rejected(why);
    }
    let in_state = |state: &StateMap| in_state(rules, pdu, state);
    if let Err(e) = in_state(before) {
        return Admission::Rejected(format!("against the state before it: {e}"));
    }
    match in_state(current) {
        Ok(()) => Admission::Accepted,
        Err(e) => Admission::SoftFailed(format!("against the current state: {e}")),
    }
}

/// The events `pdu` is authorized by: its auth events, and in room versions whose room id
/// names the create event (12 and later), that create event, which it no longer lists.
pub fn auth_event_ids(rules: &RoomVersionRules, pdu: &Pdu) -> Vec<OwnedEventId> {
    let mut ids = pdu.auth_events.clone();
    if rules.authorization.room_create_event_id_as_room_id
        && pdu.kind != ruma::events::TimelineEventType::RoomCreate
    {
        let localpart = pdu.room_id().as_str().trim_start_matches('!');
        if let Ok(create) = OwnedEventId::try_from(format!("${localpart}")) {
            if !ids.contains(&create) {
                ids.push(create);
            }
        }
    }
    ids
}

/// The checks an outlier gets (an event stored for what it authorizes, not as part of the
/// timeline), and the first ones of every event: the rules that need no state, then
/// authorization against its own auth events (each it names must be in `auth_events`, and
/// the create event too where the room id names it: see [`auth_event_ids`]).
pub fn check_against_auth_events(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    auth_events: &HashMap<OwnedEventId, Pdu>,
) -> Result<(), String> {
    if let Some(missing) = pdu
        .auth_events
        .iter()
        .find(|id| !auth_events.contains_key(*id))
    {
        return Err(format!("auth event {missing} is unknown"));
    }
    let by_id = |id: &EventId| auth_events.get(id);
    state_res::check_state_independent_auth_rules(&rules.authorization, pdu, by_id)?;
    // The state its auth events say: what its sender claims the room was.
    let claimed: StateMap = auth_event_ids(rules, pdu)
        .iter()
        .filter_map(|id| auth_events.get(id))
        .filter_map(|p| Some(((p.kind.to_string(), p.state_key.clone()?), p.clone())))
        .collect();
    in_state(rules, pdu, &claimed).map_err(|e| format!("against its auth events: {e}"))
}

fn in_state(rules: &RoomVersionRules, pdu: &Pdu, state: &StateMap) -> Result<(), String> {
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |ty, key| {
        state.get(&(ty.to_string(), key.to_owned()))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ruma::{
        events::TimelineEventType, owned_room_id, signatures::Ed25519KeyPair, OwnedRoomId,
        RoomVersionId,
    };
    use serde_json::{json, Value};

    use super::*;
    use crate::{
        intent::EventIntent,
        sequencer::{build_pdu, SigningKey},
    };

    /// A room of another server, built event by event with the auth events a sender would
    /// name, as that server would send them.
    struct Room {
        id: OwnedRoomId,
        rules: RoomVersionRules,
        key: SigningKey,
        events: HashMap<OwnedEventId, Pdu>,
        state: StateMap,
        last: Vec<OwnedEventId>,
        depth: u64,
    }

    const ALICE: &str = "@alice:remote.example";
    const BOB: &str = "@bob:remote.example";

    impl Room {
        fn new() -> Room {
            let doc = Ed25519KeyPair::generate();
            let mut room = Room {
                id: owned_room_id!("!r:remote.example"),
                rules: RoomVersionId::V11.rules().unwrap(),
                key: SigningKey {
                    server_name: "remote.example".try_into().unwrap(),
                    key: Ed25519KeyPair::from_der(&doc, "a_1".into()).unwrap(),
                },
                events: HashMap::new(),
                state: StateMap::new(),
                last: Vec::new(),
                depth: 0,
            };
            room.add(
                ALICE,
                "m.room.create",
                Some(""),
                json!({ "room_version": "11" }),
            );
            room.add(
                ALICE,
                "m.room.member",
                Some(ALICE),
                json!({ "membership": "join" }),
            );
            room.add(
                ALICE,
                "m.room.power_levels",
                Some(""),
                json!({ "users": { ALICE: 100 } }),
            );
            room.add(
                ALICE,
                "m.room.join_rules",
                Some(""),
                json!({ "join_rule": "public" }),
            );
            room.add(
                BOB,
                "m.room.member",
                Some(BOB),
                json!({ "membership": "join" }),
            );
            room
        }

        /// An event on the room's last event, naming the auth events its state gives.
        fn build(&self, sender: &str, kind: &str, key: Option<&str>, content: Value) -> Pdu {
            let kind: TimelineEventType = kind.into();
            let types = state_res::auth_types_for_event(
                &kind,
                &ruma::OwnedUserId::try_from(sender).unwrap(),
                key,
                &serde_json::value::to_raw_value(&content).unwrap(),
                &self.rules.authorization,
            )
            .unwrap();
            let auth: Vec<OwnedEventId> = types
                .iter()
                .filter_map(|(t, k)| self.state.get(&(t.to_string(), k.clone())))
                .map(|p| p.event_id.clone())
                .collect();
            let intent = EventIntent::new(
                sender.try_into().unwrap(),
                kind,
                key.map(str::to_owned),
                content,
            );
            build_pdu(
                &self.key,
                &self.id,
                &self.rules,
                &intent,
                self.last.clone(),
                auth,
                self.depth + 1,
            )
            .unwrap()
            .0
        }

        /// Builds an event and makes it part of the room.
        fn add(&mut self, sender: &str, kind: &str, key: Option<&str>, content: Value) -> Pdu {
            let pdu = self.build(sender, kind, key, content);
            self.accept(pdu.clone());
            pdu
        }

        fn accept(&mut self, pdu: Pdu) {
            if let Some(k) = &pdu.state_key {
                self.state
                    .insert((pdu.kind.to_string(), k.clone()), pdu.clone());
            }
            self.last = vec![pdu.event_id.clone()];
            self.depth += 1;
            self.events.insert(pdu.event_id.clone(), pdu);
        }

        fn admit(&self, pdu: &Pdu, before: &StateMap) -> Admission {
            admit(&self.rules, pdu, &self.events, before, &self.state)
        }
    }

    fn said(room: &Room, who: &str) -> Pdu {
        room.build(who, "m.room.message", None, json!({ "body": "hi" }))
    }

    #[test]
    fn a_member_s_message_is_accepted() {
        let room = Room::new();
        let msg = said(&room, BOB);
        assert_eq!(room.admit(&msg, &room.state), Admission::Accepted);
    }

    #[test]
    fn a_banned_sender_is_rejected_whatever_auth_events_it_names() {
        let mut room = Room::new();
        let at_join = room.state.clone();
        // Bob's message built while he was joined, naming his join...
        let early = said(&room, BOB);
        room.add(
            ALICE,
            "m.room.member",
            Some(BOB),
            json!({ "membership": "ban" }),
        );
        // ... sent again on the state after the ban: its auth events still say he is joined.
        let mut late = early.clone();
        late.prev_events = room.last.clone();
        assert!(
            matches!(room.admit(&late, &room.state), Admission::Rejected(why) if why.contains("before it"))
        );
        // Built honestly after the ban, it names the ban and fails against its auth events.
        let honest = said(&room, BOB);
        assert!(
            matches!(room.admit(&honest, &room.state), Admission::Rejected(why) if why.contains("auth events"))
        );
        // Sent on the state before the ban, it is fine there and soft-fails now.
        assert!(matches!(
            room.admit(&early, &at_join),
            Admission::SoftFailed(_)
        ));
    }

    #[test]
    fn raising_one_s_own_power_level_is_rejected() {
        let room = Room::new();
        let grab = room.build(
            BOB,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { ALICE: 100, BOB: 100 } }),
        );
        assert!(matches!(
            room.admit(&grab, &room.state),
            Admission::Rejected(_)
        ));
        // Alice may give it.
        let given = room.build(
            ALICE,
            "m.room.power_levels",
            Some(""),
            json!({ "users": { ALICE: 100, BOB: 50 } }),
        );
        assert_eq!(room.admit(&given, &room.state), Admission::Accepted);
    }

    #[test]
    fn an_unknown_or_foreign_auth_event_is_rejected() {
        let mut room = Room::new();
        let msg = said(&room, BOB);
        let (id, _) = room
            .events
            .iter()
            .find(|(_, p)| p.kind == TimelineEventType::RoomPowerLevels)
            .map(|(i, p)| (i.clone(), p.clone()))
            .unwrap();
        room.events.remove(&id);
        assert!(
            matches!(room.admit(&msg, &room.state), Admission::Rejected(why) if why.contains("unknown"))
        );
        // An auth event that is not the kind the rules allow (a message) is refused too.
        let mut room = Room::new();
        let chatter = room.add(BOB, "m.room.message", None, json!({ "body": "x" }));
        let mut odd = said(&room, BOB);
        odd.auth_events.push(chatter.event_id.clone());
        assert!(matches!(
            room.admit(&odd, &room.state),
            Admission::Rejected(_)
        ));
    }
}
