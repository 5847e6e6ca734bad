//! Push rule evaluation: what each local user's push rules ask of an event (ruma's `Ruleset`
//! evaluation, with the room's member count, the user's display name there and the power
//! levels). The room's sequencer evaluates every event on the state it holds and appends the
//! outcome with the event, so unread counts, `/notifications` and the pushers read one answer,
//! made once, that no crash can separate from its event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{
    events::room::{
        member::MembershipState,
        power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
    },
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
    OwnedEventId, OwnedServerName, OwnedUserId, RoomVersionId, ServerName, UInt, UserId,
};
use serde_json::Value;

use crate::{
    ports::{PushAction, PushStore},
    Pdu, Result,
};

/// A room's state as the sequencer holds it: `(type, state_key)` to the event.
pub type RoomState = HashMap<(String, String), Pdu>;

/// A user's push rules from their `m.push_rules` account data (`{"global": …}`); the server's
/// defaults when they have none or it does not parse.
pub fn rules_from_account_data(user: &UserId, data: Option<&Value>) -> Ruleset {
    data.and_then(|v| v.get("global"))
        .and_then(|g| serde_json::from_value(g.clone()).ok())
        .unwrap_or_else(|| Ruleset::server_default(user))
}

/// The thread an event is in: the root its `m.thread` relation names.
pub fn thread_of(event: &Pdu) -> Option<OwnedEventId> {
    let content = event.content_value();
    let rel = content.get("m.relates_to")?;
    if rel.get("rel_type")?.as_str()? != "m.thread" {
        return None;
    }
    OwnedEventId::try_from(rel.get("event_id")?.as_str()?).ok()
}

/// What push rules read of a room: its local joined members with their display names, its
/// member count and its power levels. Derived from the state once and kept by the sequencer
/// until the state changes, so that a message costs no walk over the members.
#[derive(Debug)]
pub struct PushRoom {
    /// The joined members of this server, sorted, with their display names (empty: none).
    local_members: Vec<(OwnedUserId, String)>,
    member_count: UInt,
    power: Option<PushConditionPowerLevelsCtx>,
}

impl PushRoom {
    pub fn new(version: &RoomVersionId, state: &RoomState, server: &ServerName) -> Self {
        let mut joined = 0u64;
        let mut local_members = Vec::new();
        for ((kind, key), p) in state {
            if kind != "m.room.member" {
                continue;
            }
            #[derive(serde::Deserialize)]
            struct Member {
                membership: MembershipState,
                displayname: Option<String>,
            }
            let Ok(m) = serde_json::from_str::<Member>(p.content.get()) else {
                continue;
            };
            if m.membership != MembershipState::Join {
                continue;
            }
            joined += 1;
            if let Ok(user) = OwnedUserId::try_from(key.as_str()) {
                if user.server_name() == server {
                    local_members.push((user, m.displayname.unwrap_or_default()));
                }
            }
        }
        local_members.sort();
        PushRoom {
            local_members,
            member_count: UInt::try_from(joined).unwrap_or(UInt::MAX),
            power: power_levels(version, state),
        }
    }

    /// The users of this server `event` may notify, with their display names: the joined
    /// members but its sender, and the user an invite names (`state` holds the invite).
    pub fn recipients(
        &self,
        event: &Pdu,
        state: &RoomState,
        server: &ServerName,
    ) -> Vec<(OwnedUserId, String)> {
        let mut users: Vec<(OwnedUserId, String)> = self
            .local_members
            .iter()
            .filter(|(u, _)| *u != event.sender)
            .cloned()
            .collect();
        if event.membership() == Some(MembershipState::Invite) {
            if let Some(invitee) = event
                .state_key
                .as_deref()
                .and_then(|k| OwnedUserId::try_from(k).ok())
            {
                if invitee.server_name() == server && !users.iter().any(|(u, _)| *u == invitee) {
                    let name = display_name(state, &invitee);
                    users.push((invitee, name));
                    users.sort();
                }
            }
        }
        users
    }
}

/// The power levels as push conditions read them (`sender_notification_permission`).
fn power_levels(version: &RoomVersionId, state: &RoomState) -> Option<PushConditionPowerLevelsCtx> {
    let rules = version.rules()?;
    let create = state.get(&("m.room.create".to_owned(), String::new()));
    let mut creators: Vec<OwnedUserId> = Vec::new();
    if rules.authorization.explicitly_privilege_room_creators {
        if let Some(create) = create {
            creators.push(create.sender.clone());
            if let Some(Value::Array(extra)) = create.content_value().get("additional_creators") {
                creators.extend(
                    extra
                        .iter()
                        .filter_map(|v| OwnedUserId::try_from(v.as_str()?).ok()),
                );
            }
        }
    }
    let source = match state.get(&("m.room.power_levels".to_owned(), String::new())) {
        Some(p) => RoomPowerLevelsSource::Original(
            serde_json::from_value::<RoomPowerLevelsEventContent>(p.content_value()).ok()?,
        ),
        None => RoomPowerLevelsSource::None,
    };
    Some(RoomPowerLevels::new(source, &rules.authorization, creators).into())
}

/// The display name `user` has in the room, empty when none.
fn display_name(state: &RoomState, user: &UserId) -> String {
    state
        .get(&("m.room.member".to_owned(), user.to_string()))
        .and_then(|p| {
            p.content_value()
                .get("displayname")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Push rule evaluation for a room's sequencer: the rules of the users an event may notify,
/// read from the store (one query for all of them), each parsed once per change and kept,
/// then evaluated on the event flattened once.
///
/// Whether a kept rule set is still current: with a store only this process writes, every
/// change goes through [`PushRules::changed`], so kept rules are used without asking the
/// store; with a store other instances write too, each batch asks the store for the
/// positions of its users' rules and parses again those that moved.
pub struct PushRules {
    store: Arc<dyn PushStore>,
    server: OwnedServerName,
    /// Whether rules are kept until [`PushRules::changed`] (the store has no other writer).
    kept: bool,
    parsed: Mutex<Parsed>,
}

/// The parsed rule sets, and how many changes were announced (a read that started before a
/// change does not keep what it read).
#[derive(Default)]
struct Parsed {
    rules: HashMap<OwnedUserId, ParsedRules>,
    changes: u64,
}

/// A user's rules as parsed, with the position of the account data they were parsed from
/// (`None`: the server's defaults).
type ParsedRules = (Option<i64>, Arc<Ruleset>);

/// The rules of the users met so far in one batch.
pub type RulesOf = HashMap<OwnedUserId, Arc<Ruleset>>;

/// The most users whose parsed rules are kept; past it the cache starts afresh.
const MAX_PARSED: usize = 10_000;

impl PushRules {
    /// `kept`: whether this process is the store's only writer, so that kept rules need no
    /// check against it (every change announced by [`PushRules::changed`]).
    pub fn new(store: Arc<dyn PushStore>, server: OwnedServerName, kept: bool) -> Self {
        PushRules {
            store,
            server,
            kept,
            parsed: Mutex::default(),
        }
    }

    /// The user's push rules changed (after the change is stored).
    pub fn changed(&self, user: &UserId) {
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        parsed.rules.remove(user);
        parsed.changes = parsed.changes.wrapping_add(1);
    }

    /// Reads the rules of `users` into `known`, parsing only those changed since last read.
    async fn load(&self, users: &[OwnedUserId], known: &mut RulesOf) -> Result<()> {
        let (asked, changes) = {
            let parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
            let asked: Vec<OwnedUserId> = match self.kept {
                true => users
                    .iter()
                    .filter(|u| match parsed.rules.get(*u) {
                        Some((_, rules)) => {
                            known.insert((*u).clone(), rules.clone());
                            false
                        }
                        None => true,
                    })
                    .cloned()
                    .collect(),
                false => users.to_vec(),
            };
            (asked, parsed.changes)
        };
        if asked.is_empty() {
            return Ok(());
        }
        let mut stored = self.store.push_rules_of(&asked).await?;
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        // A change announced during the read may not be in what was read: use it for this
        // batch (it was appended before the change), keep none of it.
        let keep = parsed.changes == changes;
        if parsed.rules.len() > MAX_PARSED {
            parsed.rules.clear();
        }
        for user in asked {
            let found = stored.remove(&user);
            let pos = found.as_ref().map(|r| r.pos);
            let rules = match parsed.rules.get(&user) {
                Some((at, rules)) if *at == pos => rules.clone(),
                _ => {
                    let data = found.and_then(|r| serde_json::from_str::<Value>(&r.json).ok());
                    let rules = Arc::new(rules_from_account_data(&user, data.as_ref()));
                    if keep {
                        parsed.rules.insert(user.clone(), (pos, rules.clone()));
                    }
                    rules
                }
            };
            known.insert(user, rules);
        }
        Ok(())
    }

    /// What `event` (signed JSON `json`) asks of each local user it may notify, in `room`
    /// (derived from `state`, the room's state with the event); rules are read into `known`
    /// for the users not there yet.
    pub async fn evaluate(
        &self,
        room: &PushRoom,
        state: &RoomState,
        event: &Pdu,
        json: &str,
        known: &mut RulesOf,
    ) -> Result<Vec<PushAction>> {
        let users = room.recipients(event, state, &self.server);
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let missing: Vec<OwnedUserId> = users
            .iter()
            .filter(|(u, _)| !known.contains_key(u))
            .map(|(u, _)| u.clone())
            .collect();
        if !missing.is_empty() {
            self.load(&missing, known).await?;
        }
        let raw: Raw<Value> =
            Raw::from_json(serde_json::value::RawValue::from_string(json.to_owned())?);
        let flat = FlattenedJson::from_raw(&raw);
        let thread = thread_of(event);
        let mut out = Vec::new();
        for (user, name) in users {
            let Some(rules) = known.get(&user) else {
                continue;
            };
            let mut ctx = PushConditionRoomCtx::new(
                event.room_id().to_owned(),
                room.member_count,
                user.clone(),
                name,
            );
            ctx.power_levels = room.power.clone();
            // The first rule that applies decides (what `Ruleset::get_actions` does, on the
            // event flattened once for every user).
            let mut actions: &[Action] = &[];
            for rule in rules.as_ref() {
                if rule.applies(&flat, &ctx).await {
                    actions = rule.actions();
                    break;
                }
            }
            if !actions.iter().any(Action::should_notify) {
                continue;
            }
            out.push(PushAction {
                highlight: actions.iter().any(Action::is_highlight),
                thread: thread.clone(),
                actions: actions.to_vec(),
                user_id: user,
            });
        }
        Ok(out)
    }
}
