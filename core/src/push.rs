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
    OwnedEventId, OwnedServerName, OwnedUserId, RoomVersionId, UInt, UserId,
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

/// The users of this server an event may notify: the room's joined members but its sender,
/// and the user an invite names.
pub fn recipients(state: &RoomState, event: &Pdu, server: &ruma::ServerName) -> Vec<OwnedUserId> {
    let mut users: Vec<OwnedUserId> = state
        .iter()
        .filter(|((kind, _), p)| {
            kind == "m.room.member" && p.membership() == Some(MembershipState::Join)
        })
        .filter_map(|((_, key), _)| OwnedUserId::try_from(key.as_str()).ok())
        .filter(|u| u.server_name() == server && *u != event.sender)
        .collect();
    if event.membership() == Some(MembershipState::Invite) {
        if let Some(invitee) = event
            .state_key
            .as_deref()
            .and_then(|k| OwnedUserId::try_from(k).ok())
        {
            if invitee.server_name() == server && !users.contains(&invitee) {
                users.push(invitee);
            }
        }
    }
    users.sort();
    users
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
pub struct PushRules {
    store: Arc<dyn PushStore>,
    server: OwnedServerName,
    parsed: Mutex<HashMap<OwnedUserId, Parsed>>,
}

/// A user's rules as parsed, with the position of the account data they were parsed from
/// (`None`: the server's defaults).
type Parsed = (Option<i64>, Arc<Ruleset>);

/// The rules of the users met so far in one batch.
pub type RulesOf = HashMap<OwnedUserId, Arc<Ruleset>>;

/// The most users whose parsed rules are kept; past it the cache starts afresh.
const MAX_PARSED: usize = 10_000;

impl PushRules {
    pub fn new(store: Arc<dyn PushStore>, server: OwnedServerName) -> Self {
        PushRules {
            store,
            server,
            parsed: Mutex::default(),
        }
    }

    /// Reads the rules of `users` into `known`, parsing only those changed since last read.
    async fn load(&self, users: &[OwnedUserId], known: &mut RulesOf) -> Result<()> {
        let mut stored = self.store.push_rules_of(users).await?;
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if parsed.len() > MAX_PARSED {
            parsed.clear();
        }
        for user in users {
            let found = stored.remove(user);
            let pos = found.as_ref().map(|r| r.pos);
            let rules = match parsed.get(user) {
                Some((at, rules)) if *at == pos => rules.clone(),
                _ => {
                    let data = found.and_then(|r| serde_json::from_str::<Value>(&r.json).ok());
                    let rules = Arc::new(rules_from_account_data(user, data.as_ref()));
                    parsed.insert(user.clone(), (pos, rules.clone()));
                    rules
                }
            };
            known.insert(user.clone(), rules);
        }
        Ok(())
    }

    /// What `event` (signed JSON `json`) asks of each local user it may notify, on the room
    /// state `state`; rules are read into `known` for the users not there yet.
    pub async fn evaluate(
        &self,
        version: &RoomVersionId,
        state: &RoomState,
        event: &Pdu,
        json: &str,
        known: &mut RulesOf,
    ) -> Result<Vec<PushAction>> {
        let users = recipients(state, event, &self.server);
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let missing: Vec<OwnedUserId> = users
            .iter()
            .filter(|u| !known.contains_key(*u))
            .cloned()
            .collect();
        if !missing.is_empty() {
            self.load(&missing, known).await?;
        }
        let raw: Raw<Value> =
            Raw::from_json(serde_json::value::RawValue::from_string(json.to_owned())?);
        let flat = FlattenedJson::from_raw(&raw);
        let joined = state
            .iter()
            .filter(|((kind, _), p)| {
                kind == "m.room.member" && p.membership() == Some(MembershipState::Join)
            })
            .count();
        let member_count = UInt::try_from(joined as u64).unwrap_or(UInt::MAX);
        let power = power_levels(version, state);
        let thread = thread_of(event);
        let mut out = Vec::new();
        for user in users {
            let Some(rules) = known.get(&user) else {
                continue;
            };
            let mut ctx = PushConditionRoomCtx::new(
                event.room_id().to_owned(),
                member_count,
                user.clone(),
                display_name(state, &user),
            );
            ctx.power_levels = power.clone();
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
