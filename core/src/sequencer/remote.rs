//! Events of other servers, added in the room's lane like local ones.
//!
//! Their signatures and hashes were checked where they arrived; here each is checked against
//! the room's state in the spec's order (its auth events, the state before it — the
//! resolution of its prev events' states — then the current state), and then appended with
//! its state, or held back as rejected or soft-failed. When it forks the room, the room's
//! current state becomes the resolution of its forward extremities' states.

use std::collections::HashMap;

use ruma::{room_version_rules::RoomVersionRules, EventId, OwnedEventId, RoomId};

use super::{Head, PushOn, Sequencer};
use crate::{
    error::ErrorCode,
    intent::{ReceivedPdu, RoomBatch},
    ports::{HeldEvent, HeldStatus, NewEvent, RemoteAppend, StateChange, OUTLIERS_BELOW},
    push::RulesOf,
    remote_auth::{admit, auth_event_ids, check_against_auth_events, Admission, StateMap},
    state_resolution::{events_to_load, resolve, state_ids, AuthGraph, StateIds},
    Error, Pdu, Result, StoredEvent,
};

/// The most events fetched to fill one gap before an event of another server.
const MAX_MISSING: usize = 20;

/// The most held events in a row that the state after an event is looked for through.
const MAX_HELD_CHAIN: usize = 20;

/// Where an event checked against its auth events alone is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Placement {
    /// Kept for what it authorizes: in no stream, no history, no state.
    Outlier,
    /// In the room's history, filled in later: not in the stream.
    Backfilled,
}

/// What became of one received event.
enum Outcome {
    Appended(Box<StoredEvent>),
    Held(HeldStatus, String),
}

impl Sequencer {
    /// Adds the received events of `batch`, one at a time: the events appended (or appended
    /// before), or the refusal of the first that is rejected. A soft-failed event is kept
    /// and answers nothing, as the spec has it: its sender learns nothing of it.
    pub(super) async fn sequence_remote(&self, batch: &RoomBatch) -> Result<Vec<StoredEvent>> {
        if !self.store.is_resident(&batch.room_id).await? {
            return Err(Error::forbidden(format!(
                "this server is not in {}",
                batch.room_id
            )));
        }
        let mut out = Vec::with_capacity(batch.remote.len());
        for received in &batch.remote {
            let pdu = Pdu::from_stored(
                &received.json,
                received.event_id.clone(),
                batch.room_id.clone(),
            )?;
            self.fill_gap(&batch.room_id, &pdu).await?;
            match self.add_remote(received, pdu).await? {
                Outcome::Appended(ev) => out.push(*ev),
                Outcome::Held(HeldStatus::Rejected, why) => {
                    return Err(Error::forbidden(format!(
                        "{} is rejected: {why}",
                        received.event_id
                    )))
                }
                Outcome::Held(HeldStatus::SoftFailed, _) => {}
            }
        }
        Ok(out)
    }

    /// Fetches and adds, oldest first, the events between the room's heads and `pdu` when
    /// the log lacks one of its prev events: they are asked of the server of its sender, as
    /// `/get_missing_events` asks. An event that cannot be added leaves its gap, and `pdu` is
    /// then refused for its unknown prev event.
    async fn fill_gap(&self, room_id: &RoomId, pdu: &Pdu) -> Result<()> {
        let mut complete = true;
        for prev in &pdu.prev_events {
            // An outlier is no place in the room's graph to build on; a held event is.
            complete &= self
                .store
                .event(prev)
                .await?
                .is_some_and(|e| e.pos > OUTLIERS_BELOW)
                || self.store.held(prev).await?.is_some();
        }
        if complete {
            return Ok(());
        }
        let earliest = self.extremities(room_id).await?;
        let fetched = self
            .fetch
            .missing_events(
                pdu.sender.server_name(),
                room_id,
                &earliest,
                std::slice::from_ref(&pdu.event_id),
                MAX_MISSING,
            )
            .await?;
        let mut by_depth: Vec<(Pdu, &ReceivedPdu)> = fetched
            .iter()
            .take(MAX_MISSING)
            .filter(|r| r.event_id != pdu.event_id)
            .filter_map(|r| {
                let p = Pdu::from_stored(&r.json, r.event_id.clone(), room_id.to_owned()).ok()?;
                Some((p, r))
            })
            .collect();
        by_depth.sort_by_key(|(p, _)| u64::from(p.depth));
        for (p, missing) in by_depth {
            if let Err(e) = self.add_remote(missing, p).await {
                tracing::debug!(event_id = %missing.event_id, error = %e, "a fetched event was not added");
            }
        }
        Ok(())
    }

    /// The room's forward extremities.
    async fn extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let slot = self.head_slot(room_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = self.load_head(room_id).await?;
        }
        match guard.as_ref() {
            Some(head) => Ok(head.extremities.clone()),
            None => Err(Error::not_found(format!("{room_id} is not known here"))),
        }
    }

    /// Fetches the auth events of `pdu` that the store lacks, and theirs, from its sender's
    /// server, and stores each as an outlier if it passes against its own auth events (else
    /// holds it as rejected). Oldest first, at most [`MAX_MISSING`]; what stays missing
    /// rejects `pdu` later, for its unknown auth event.
    pub(super) async fn fetch_auth_events(&self, room_id: &RoomId, pdu: &Pdu) -> Result<()> {
        let origin = pdu.sender.server_name();
        let mut todo: Vec<OwnedEventId> = pdu.auth_events.clone();
        let mut seen = std::collections::HashSet::new();
        let mut found: Vec<(Pdu, ReceivedPdu)> = Vec::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone())
                || self.store.event(&id).await?.is_some()
                || self.store.held(&id).await?.is_some()
            {
                continue;
            }
            if found.len() == MAX_MISSING {
                break;
            }
            let Some(got) = self.fetch.event(origin, room_id, &id).await? else {
                continue;
            };
            if got.event_id != id {
                continue;
            }
            let p = Pdu::from_stored(&got.json, got.event_id.clone(), room_id.to_owned())?;
            todo.extend(p.auth_events.iter().cloned());
            found.push((p, got));
        }
        if found.is_empty() {
            return Ok(());
        }
        let Some(version) = self.store.room_version(room_id).await? else {
            return Err(Error::not_found(format!("{room_id} is not known here")));
        };
        let rules = super::rules_for(&version)?;
        self.add_outside_stream(&rules, found, Placement::Outlier)
            .await?;
        Ok(())
    }

    /// Checks each of `found` against its own auth events, oldest first, and stores it as
    /// `placement` says, or holds it as rejected. Answers how many were stored.
    pub(super) async fn add_outside_stream(
        &self,
        rules: &RoomVersionRules,
        mut found: Vec<(Pdu, ReceivedPdu)>,
        placement: Placement,
    ) -> Result<usize> {
        found.sort_by_key(|(p, _)| u64::from(p.depth));
        let mut stored = 0;
        for (p, got) in found {
            let graph = AuthGraph::new(self.store.auth_graph(&auth_event_ids(rules, &p)).await?);
            let auth = auth_map(rules, &p, &graph);
            match check_against_auth_events(rules, &p, &auth) {
                Ok(()) => {
                    match placement {
                        Placement::Outlier => self.store.add_outlier(&p, &got.json).await?,
                        Placement::Backfilled => self.store.add_backfilled(&p, &got.json).await?,
                    }
                    stored += 1;
                }
                Err(reason) => {
                    self.store
                        .hold(&HeldEvent {
                            event_id: p.event_id.clone(),
                            room_id: p.room_id().to_owned(),
                            json: got.json,
                            status: HeldStatus::Rejected,
                            reason,
                        })
                        .await?
                }
            }
        }
        Ok(stored)
    }

    /// Checks and appends (or holds) `pdu`, as received in `received`.
    async fn add_remote(&self, received: &ReceivedPdu, pdu: Pdu) -> Result<Outcome> {
        let room_id = pdu.room_id().to_owned();
        let room_id = room_id.as_ref();
        self.fetch_auth_events(room_id, &pdu).await?;
        let slot = self.head_slot(room_id);
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            *guard = self.load_head(room_id).await?;
        }
        let Some(head) = guard.as_ref() else {
            return Err(Error::not_found(format!("{room_id} is not known here")));
        };
        // An outlier it was stored as is not in the timeline yet: the append moves it there.
        if let Some(ev) = self.store.event(&received.event_id).await? {
            if ev.pos > OUTLIERS_BELOW {
                return Ok(Outcome::Appended(Box::new(ev)));
            }
        }
        if let Some((status, why)) = self.store.held(&received.event_id).await? {
            return Ok(Outcome::Held(status, why));
        }
        if pdu.prev_events.is_empty() {
            return Err(Error::forbidden(
                "an event of an existing room names prev events",
            ));
        }
        let checked = self.check(head, &pdu).await?;
        let (before, first_prev, graph) = match checked {
            Checked::Admitted {
                before,
                first_prev,
                graph,
            } => (before, first_prev, graph),
            Checked::Held(status, reason) => {
                self.store
                    .hold(&HeldEvent {
                        event_id: pdu.event_id.clone(),
                        room_id: room_id.to_owned(),
                        json: received.json.clone(),
                        status,
                        reason: reason.clone(),
                    })
                    .await?;
                tracing::info!(event_id = %pdu.event_id, status = status.as_str(), %reason, "held an event of another server");
                return Ok(Outcome::Held(status, reason));
            }
        };
        let Admitted {
            event: mut new_event,
            moved,
        } = self
            .remote_new_event(head, pdu, received, (before, first_prev), graph)
            .await?;
        self.evaluate_push(
            PushOn::State(&head.version, &head.state),
            &mut new_event,
            &mut RulesOf::new(),
        )
        .await?;
        let positions = match self
            .store
            .append(std::slice::from_ref(&new_event), None)
            .await
        {
            Ok(positions) => positions,
            Err(e) => {
                *guard = None;
                return Err(e);
            }
        };
        match (guard.as_mut(), moved.state.is_some()) {
            (Some(head), true) => moved.apply(head, &new_event.pdu),
            _ => *guard = None,
        }
        drop(guard);
        self.notifier.notify();
        let pos = positions
            .first()
            .copied()
            .ok_or_else(|| Error::internal("an append answered no position"))?;
        Ok(Outcome::Appended(Box::new(StoredEvent {
            pos,
            pdu: new_event.pdu,
            unsigned: new_event.unsigned,
            redacted_because: None,
            txn: None,
        })))
    }

    /// The state before `pdu` (its prev events' states, resolved) and whether it is admitted.
    async fn check(&self, head: &Head, pdu: &Pdu) -> Result<Checked> {
        let mut prev_states = Vec::with_capacity(pdu.prev_events.len());
        for prev in &pdu.prev_events {
            prev_states.push(self.state_after(head, prev).await?);
        }
        let mut load = events_to_load(&prev_states);
        load.extend(auth_event_ids(&head.rules, pdu));
        let graph = AuthGraph::new(self.store.auth_graph(&load).await?);
        let before = resolve(&head.rules, &prev_states, &graph)?;
        let Some(first_prev) = prev_states.into_iter().next() else {
            return Err(Error::forbidden(
                "an event of an existing room names prev events",
            ));
        };
        let auth_events = auth_map(&head.rules, pdu, &graph);
        let before_events: StateMap = before
            .iter()
            .filter_map(|((kind, key), id)| {
                Some(((kind.to_string(), key.clone()), graph.get(id)?.clone()))
            })
            .collect();
        Ok(
            match admit(&head.rules, pdu, &auth_events, &before_events, &head.state) {
                Admission::Accepted => Checked::Admitted {
                    before,
                    first_prev,
                    graph,
                },
                Admission::Rejected(why) => Checked::Held(HeldStatus::Rejected, why),
                Admission::SoftFailed(why) => Checked::Held(HeldStatus::SoftFailed, why),
            },
        )
    }

    /// The state after a stored event. An event stored before the store kept the state at
    /// every event has none; while it is the room's only head, its state is the current one.
    async fn state_after(&self, head: &Head, event_id: &EventId) -> Result<StateIds> {
        self.state_after_within(head, event_id, MAX_HELD_CHAIN)
            .await
    }

    /// [`Self::state_after`], through at most `held` held events in a row.
    async fn state_after_within(
        &self,
        head: &Head,
        event_id: &EventId,
        held: usize,
    ) -> Result<StateIds> {
        if let Some(state) = self.store.state_after(event_id).await? {
            return Ok(state_ids(state));
        }
        if head.extremities.len() == 1 && head.extremities[0] == event_id {
            return Ok(head
                .state
                .iter()
                .map(|((kind, key), p)| ((kind.as_str().into(), key.clone()), p.event_id.clone()))
                .collect());
        }
        if held > 0 {
            if let Some(event) = self.store.held_pdu(event_id).await? {
                return Box::pin(self.state_after_held(head, event, held - 1)).await;
            }
        }
        Err(Error::matrix(
            ErrorCode::NotFound,
            format!("the prev event {event_id} is not known here"),
        ))
    }

    /// The state after a held event, for an event of another server built on it: the state
    /// before it (a rejected event changes nothing), with it in when it was only soft-failed
    /// (it passed against the state before it).
    async fn state_after_held(
        &self,
        head: &Head,
        event: HeldEvent,
        held: usize,
    ) -> Result<StateIds> {
        let pdu = Pdu::from_stored(&event.json, event.event_id, event.room_id)?;
        let mut states = Vec::with_capacity(pdu.prev_events.len());
        for prev in &pdu.prev_events {
            states.push(self.state_after_within(head, prev, held).await?);
        }
        let mut state = match states.len() {
            0 | 1 => states.pop().unwrap_or_default(),
            _ => {
                let graph = AuthGraph::new(self.store.auth_graph(&events_to_load(&states)).await?);
                resolve(&head.rules, &states, &graph)?
            }
        };
        if let (HeldStatus::SoftFailed, Some(key)) = (event.status, &pdu.state_key) {
            state.insert(
                (pdu.kind.to_string().into(), key.clone()),
                pdu.event_id.clone(),
            );
        }
        Ok(state)
    }

    /// The append of an admitted `pdu`: its state, and the room's new current state.
    /// `before` is the state before it, `first_prev` the state after its first prev event.
    async fn remote_new_event(
        &self,
        head: &Head,
        pdu: Pdu,
        received: &ReceivedPdu,
        (before, first_prev): (StateIds, StateIds),
        mut graph: AuthGraph,
    ) -> Result<Admitted> {
        let room_id = pdu.room_id().to_owned();
        let mut after = before.clone();
        let mut unsigned = None;
        if let Some(key) = &pdu.state_key {
            let k = (pdu.kind.to_string().into(), key.clone());
            if let Some(prev) = before.get(&k).and_then(|id| graph.get(id)) {
                unsigned = Some(serde_json::json!({
                    "prev_content": prev.content_value(),
                    "prev_sender": prev.sender,
                    "replaces_state": prev.event_id,
                }));
            }
            after.insert(k, pdu.event_id.clone());
        }
        // Its first prev event's state, unless the prev events' states had to be resolved or
        // the first is a held event, whose state no group holds.
        let first_held = match pdu.prev_events.first() {
            Some(first) => self.store.event(first).await?.is_none(),
            None => false,
        };
        let state_before = (before != first_prev || first_held).then(|| stored(&before));

        // The room's heads after it, and their states' resolution.
        let mut extremities: Vec<OwnedEventId> = head
            .extremities
            .iter()
            .filter(|e| !pdu.prev_events.contains(e))
            .cloned()
            .collect();
        extremities.insert(0, pdu.event_id.clone());
        graph.insert(pdu.clone());
        let current = if extremities.len() == 1 {
            after
        } else {
            let mut states = vec![after];
            for x in &extremities[1..] {
                states.push(self.state_after(head, x).await?);
            }
            let mut load = events_to_load(&states);
            load.retain(|id| graph.get(id).is_none());
            for p in self.store.auth_graph(&load).await? {
                graph.insert(p);
            }
            resolve(&head.rules, &states, &graph)?
        };
        let current_state = changes(&head.state, &current, &graph);
        let resets = resets_of(&pdu, &current_state, &head.state);
        // Every event now in the state is in the graph; were one not, the head is reloaded.
        let moved = HeadMove {
            state: current_state
                .iter()
                .map(|c| {
                    let key = (c.kind.clone(), c.state_key.clone());
                    match &c.to {
                        Some((id, _)) => graph.get(id).map(|p| (key, Some(p.clone()))),
                        None => Some((key, None)),
                    }
                })
                .collect(),
            extremities,
        };

        // A redaction of another server's redacts an event of its own server's, or any event
        // when its sender has the power to redact in the state before it.
        let sender_server = pdu.sender.server_name().to_owned();
        let level = |kind: &str| graph.get(before.get(&(kind.into(), String::new()))?);
        let (create, power) = (level("m.room.create"), level("m.room.power_levels"));
        let may_redact_any = crate::state::power_level(&head.version, create, power, &pdu.sender)
            >= crate::state::required_level(power, "redact", 50);
        let redaction = self
            .redaction_of(&room_id, &head.rules, &pdu, |target| {
                may_redact_any || target.sender.server_name() == sender_server
            })
            .await?;
        Ok(Admitted {
            event: NewEvent {
                pdu,
                json: received.json.clone(),
                unsigned,
                txn: None,
                room_version: None,
                redaction,
                state_before,
                remote: Some(RemoteAppend {
                    current_state,
                    resets,
                    whole_state: false,
                }),
                push: Vec::new(),
            },
            moved,
        })
    }
}

/// An admitted event of another server, ready to append, and how the room's head moves.
struct Admitted {
    event: NewEvent,
    moved: HeadMove,
}

/// The room's head after an event of another server: its forward extremities, newest first,
/// and the entries of its current state that changed (`None`: gone).
struct HeadMove {
    extremities: Vec<OwnedEventId>,
    /// `None` when an event of the new state was not at hand: the head is reloaded instead.
    state: Option<Vec<StateEntry>>,
}

/// An entry of a room's current state, and the event now in it (`None`: gone).
type StateEntry = ((String, String), Option<Pdu>);

impl HeadMove {
    /// Moves the cached head as the append moved the store, so the next local event needs
    /// no reload.
    fn apply(self, head: &mut Head, pdu: &Pdu) {
        head.extremities = self.extremities;
        head.depth = head.depth.max(u64::from(pdu.depth));
        for (key, to) in self.state.into_iter().flatten() {
            match to {
                Some(p) => head.set_state(key, p),
                None => head.remove_state(&key),
            }
        }
    }
}

enum Checked {
    Admitted {
        before: StateIds,
        /// The state after its first prev event.
        first_prev: StateIds,
        graph: AuthGraph,
    },
    Held(HeldStatus, String),
}

fn stored(state: &StateIds) -> crate::ports::StoredState {
    state
        .iter()
        .map(|((kind, key), id)| ((kind.to_string(), key.clone()), id.clone()))
        .collect()
}

/// The events `pdu` is authorized by (see [`auth_event_ids`]) that `graph` holds, by id.
pub(super) fn auth_map(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    graph: &AuthGraph,
) -> HashMap<OwnedEventId, Pdu> {
    auth_event_ids(rules, pdu)
        .into_iter()
        .filter_map(|id| graph.get(&id).map(|p| (id, p.clone())))
        .collect()
}

/// What of `changes` (made by appending `pdu` to a room whose current state `was`) the event
/// does not say itself: entries set to other events, and its own entry when resolution kept
/// another event there.
fn resets_of(
    pdu: &Pdu,
    changes: &[StateChange],
    was: &HashMap<(String, String), Pdu>,
) -> Vec<StateChange> {
    let mut out: Vec<StateChange> = changes
        .iter()
        .filter(|c| c.to.as_ref().is_none_or(|(id, _)| *id != pdu.event_id))
        .cloned()
        .collect();
    if let Some(key) = &pdu.state_key {
        let kind = pdu.kind.to_string();
        if !changes
            .iter()
            .any(|c| c.kind == kind && c.state_key == *key)
        {
            let to = was
                .get(&(kind.clone(), key.clone()))
                .map(|p| (p.event_id.clone(), p.membership()));
            out.push(StateChange {
                kind,
                state_key: key.clone(),
                to,
            });
        }
    }
    out
}

/// The entries of `current` that differ from the room's current state `was`.
fn changes(
    was: &HashMap<(String, String), Pdu>,
    current: &StateIds,
    graph: &AuthGraph,
) -> Vec<StateChange> {
    let mut out = Vec::new();
    for ((kind, key), id) in current {
        let k = (kind.to_string(), key.clone());
        if was.get(&k).map(|p| &p.event_id) != Some(id) {
            let membership = graph.get(id).and_then(Pdu::membership);
            out.push(StateChange {
                kind: k.0,
                state_key: k.1,
                to: Some((id.clone(), membership)),
            });
        }
    }
    for (kind, key) in was.keys() {
        if !current.contains_key(&(kind.as_str().into(), key.clone())) {
            out.push(StateChange {
                kind: kind.clone(),
                state_key: key.clone(),
                to: None,
            });
        }
    }
    out
}
