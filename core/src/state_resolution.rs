//! State resolution: the state of a room where its forks meet.
//!
//! `ruma::state_res::resolve` does the algorithm (v2, and v2.1 for room version 12); its
//! callbacks are synchronous, so the caller loads every event resolution may read first: the
//! events of the forks' states and their auth chains ([`AuthGraph`]). Auth chains and the
//! conflicted state subgraph are then computed here in memory, once per resolution.

use std::collections::{HashMap, HashSet};

use ruma::{
    events::StateEventType, room_version_rules::RoomVersionRules, state_res,
    state_res::utils::event_id_set::EventIdSet, EventId, OwnedEventId,
};

use crate::{Error, Pdu, Result};

/// A state: `(type, state_key) → event id`.
pub type StateIds = state_res::StateMap<OwnedEventId>;

/// The events a resolution reads, each with its auth events reachable in the same map.
#[derive(Default)]
pub struct AuthGraph {
    events: HashMap<OwnedEventId, Pdu>,
}

impl AuthGraph {
    pub fn new(events: impl IntoIterator<Item = Pdu>) -> Self {
        AuthGraph {
            events: events
                .into_iter()
                .map(|p| (p.event_id.clone(), p))
                .collect(),
        }
    }

    pub fn insert(&mut self, pdu: Pdu) {
        self.events.insert(pdu.event_id.clone(), pdu);
    }

    pub fn get(&self, id: &EventId) -> Option<&Pdu> {
        self.events.get(id)
    }

    /// Every event reachable from `from` through `auth_events`, `from` excluded (unless one
    /// of them authorizes another). An event the graph lacks ends its branch.
    fn auth_chain(&self, from: &[&OwnedEventId]) -> HashSet<OwnedEventId> {
        let mut seen = HashSet::new();
        let mut todo: Vec<&OwnedEventId> = from
            .iter()
            .filter_map(|id| self.events.get(*id))
            .flat_map(|p| p.auth_events.iter())
            .collect();
        while let Some(id) = todo.pop() {
            if seen.insert(id.clone()) {
                if let Some(p) = self.events.get(id) {
                    todo.extend(p.auth_events.iter());
                }
            }
        }
        seen
    }

    /// The conflicted state subgraph (room version 12): the events that lie on an
    /// `auth_events` path from one conflicted event to another, both ends included.
    fn conflicted_subgraph(&self, conflicted: &HashSet<&OwnedEventId>) -> HashSet<OwnedEventId> {
        // Ancestors of some conflicted event, each with whether it descends from one.
        let mut memo: HashMap<&OwnedEventId, bool> = HashMap::new();
        let mut out = HashSet::new();
        let mut ancestors: Vec<&OwnedEventId> = conflicted.iter().copied().collect();
        let mut seen: HashSet<&OwnedEventId> = HashSet::new();
        while let Some(id) = ancestors.pop() {
            if !seen.insert(id) {
                continue;
            }
            if self.descends_from(id, conflicted, &mut memo) {
                out.insert(id.clone());
            }
            if let Some(p) = self.events.get(id) {
                ancestors.extend(p.auth_events.iter());
            }
        }
        out
    }

    /// Whether `id` is a conflicted event or has one in its auth chain (memoized; iterative,
    /// so that a long chain does not exhaust the stack; a cycle, only in damaged input, is cut).
    fn descends_from<'a>(
        &'a self,
        id: &'a OwnedEventId,
        conflicted: &HashSet<&OwnedEventId>,
        memo: &mut HashMap<&'a OwnedEventId, bool>,
    ) -> bool {
        let mut stack = vec![(id, false)];
        let mut open: HashSet<&OwnedEventId> = HashSet::new();
        while let Some((node, expanded)) = stack.pop() {
            if memo.contains_key(node) {
                continue;
            }
            if conflicted.contains(node) {
                memo.insert(node, true);
                continue;
            }
            let parents: &[OwnedEventId] = self
                .events
                .get(node)
                .map(|p| p.auth_events.as_slice())
                .unwrap_or_default();
            if expanded {
                let any = parents.iter().any(|p| memo.get(p) == Some(&true));
                memo.insert(node, any);
            } else if open.insert(node) {
                stack.push((node, true));
                stack.extend(
                    parents
                        .iter()
                        .filter(|p| !memo.contains_key(p) && !open.contains(p))
                        .map(|p| (p, false)),
                );
            }
        }
        memo.get(id) == Some(&true)
    }
}

/// The ids resolution needs loaded, with their auth chains, to resolve `states`: every event
/// of every state (the auth difference is taken over whole states' auth chains).
pub fn events_to_load(states: &[StateIds]) -> Vec<OwnedEventId> {
    let mut ids: HashSet<&OwnedEventId> = HashSet::new();
    for s in states {
        ids.extend(s.values());
    }
    ids.into_iter().cloned().collect()
}

/// Resolves the states of a room's forks into one, by the room version's rules. `graph` holds
/// every event of `states` and their auth chains.
pub fn resolve(
    rules: &RoomVersionRules,
    states: &[StateIds],
    graph: &AuthGraph,
) -> Result<StateIds> {
    match states {
        [] => return Ok(StateIds::new()),
        [one] => return Ok(one.clone()),
        _ => {}
    }
    let Some(res_rules) = rules.state_res.v2_rules() else {
        return Err(Error::internal("state resolution v1 is not supported"));
    };
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = states
        .iter()
        .map(|s| {
            let ids: Vec<&OwnedEventId> = s.values().collect();
            graph.auth_chain(&ids).into_iter().collect()
        })
        .collect();
    state_res::resolve(
        &rules.authorization,
        res_rules,
        states,
        auth_chains,
        |id| graph.get(id).cloned(),
        |conflicted| {
            let set: HashSet<&OwnedEventId> = conflicted.values().flatten().collect();
            Some(graph.conflicted_subgraph(&set).into_iter().collect())
        },
    )
    .map_err(|e| Error::internal(format!("state resolution failed: {e}")))
}

/// Turns stored `(type, state_key) → event id` pairs into a [`StateIds`].
pub fn state_ids(stored: HashMap<(String, String), OwnedEventId>) -> StateIds {
    stored
        .into_iter()
        .map(|((kind, key), id)| ((StateEventType::from(kind), key), id))
        .collect()
}

#[cfg(test)]
mod tests;
