//! The room sequencer: the only code that appends to a room's log.
//!
//! It receives batches of [`EventIntent`]s from the event bus (one sequencer lane per room at a
//! time), builds each PDU on the room's forward extremities (one while only this server writes
//! to the room, so the local DAG stays linear), hashes and signs it, checks it against the room
//! version's authorization rules (`ruma::state_res`), and persists the whole batch atomically.
//! Only then does the submitter get its event ids.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use ruma::{
    canonical_json::{redact, CanonicalJsonObject, CanonicalJsonValue},
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    serde::Base64,
    signatures::Ed25519KeyPair,
    state_res, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, RoomVersionId,
};
use serde_json::{json, Map, Value};

mod backfill;
mod join;
mod outside;
mod remote;

use crate::{
    error::ErrorCode,
    intent::{EventIntent, RoomBatch},
    notifier::Notifier,
    ports::{
        AppendBatch, BatchHandler, BatchOutcome, NewEvent, NoRemoteFetch, RemoteFetch, RoomStore,
        MAX_PREV_EVENTS,
    },
    push::{PushRoom, PushRules, RulesOf},
    Error, Pdu, Result, StoredEvent,
};

/// The server's signing identity.
pub struct SigningKey {
    pub server_name: OwnedServerName,
    pub key: Ed25519KeyPair,
}

impl SigningKey {
    /// The `ed25519:<version>` key id.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.key.version())
    }

    /// The public key, unpadded base64.
    pub fn public_key(&self) -> String {
        Base64::<ruma::serde::base64::Standard, _>::new(self.key.public_key().to_vec()).encode()
    }
}

type StateKey = (String, String);

/// What the sequencer keeps of a room between batches.
#[derive(Clone)]
struct Head {
    version: RoomVersionId,
    rules: RoomVersionRules,
    /// The forward extremities; empty before the create event.
    extremities: Vec<OwnedEventId>,
    /// The greatest depth in the room.
    depth: u64,
    state: HashMap<StateKey, Pdu>,
    /// What push rules read of the state, derived on first use after the state changed.
    push_room: Option<Arc<PushRoom>>,
}

impl Head {
    /// Puts `pdu` in the state (a state event) under `key`.
    fn set_state(&mut self, key: StateKey, pdu: Pdu) {
        self.state.insert(key, pdu);
        self.push_room = None;
    }

    /// Takes `key` out of the state.
    fn remove_state(&mut self, key: &StateKey) {
        self.state.remove(key);
        self.push_room = None;
    }

    /// What push rules read of the current state.
    fn push_room(&mut self, server: &ruma::ServerName) -> Arc<PushRoom> {
        let (version, state) = (&self.version, &self.state);
        self.push_room
            .get_or_insert_with(|| Arc::new(PushRoom::new(version, state, server)))
            .clone()
    }
}

/// The state an event's push rules are evaluated on.
enum PushOn<'a> {
    /// The room's head, whose derived [`PushRoom`] is kept.
    Head(&'a mut Head),
    /// A state the sequencer holds no head of (an invite from outside the room).
    State(&'a RoomVersionId, &'a HashMap<StateKey, Pdu>),
}

/// A batch built on its room's head, holding the head until it is appended or abandoned.
struct Built {
    guard: tokio::sync::OwnedMutexGuard<Option<Head>>,
    head: Head,
    new_events: Vec<NewEvent>,
    replies: Vec<Option<StoredEvent>>,
}

enum Prepared {
    /// Every event was a retried transaction: the events it got the first time.
    Replayed(Vec<StoredEvent>),
    Built(Built),
}

impl Built {
    /// The batch was appended at `positions`: the head moves on, the events are answered.
    fn finish(self, positions: Vec<i64>) -> Vec<StoredEvent> {
        let Built {
            mut guard,
            head,
            new_events,
            replies,
        } = self;
        *guard = Some(head);
        drop(guard);
        let mut fresh = new_events
            .into_iter()
            .zip(positions)
            .map(|(ne, pos)| StoredEvent {
                pos,
                pdu: ne.pdu,
                unsigned: ne.unsigned,
                redacted_because: None,
                txn: ne.txn,
            });
        replies
            .into_iter()
            .map(|r| r.or_else(|| fresh.next()))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    }

    /// The append failed: the head may be ahead of the store now, so it is reloaded on next use.
    fn abandon(self) {
        let mut guard = self.guard;
        *guard = None;
    }
}

pub struct Sequencer {
    store: Arc<dyn RoomStore>,
    signing: Arc<SigningKey>,
    notifier: Notifier,
    /// Where events of other servers that the log lacks are fetched from.
    fetch: Arc<dyn RemoteFetch>,
    heads: std::sync::Mutex<HashMap<OwnedRoomId, Arc<tokio::sync::Mutex<Option<Head>>>>>,
    /// Evaluates local users' push rules for every event; none: no notifications are kept.
    push: Option<Arc<PushRules>>,
}

impl Sequencer {
    pub fn new(store: Arc<dyn RoomStore>, signing: Arc<SigningKey>, notifier: Notifier) -> Self {
        Sequencer {
            store,
            signing,
            notifier,
            fetch: Arc::new(NoRemoteFetch),
            heads: Default::default(),
            push: None,
        }
    }

    /// Evaluates local users' push rules for every event it appends, keeping what they ask.
    pub fn with_push(mut self, push: Arc<PushRules>) -> Self {
        self.push = Some(push);
        self
    }

    /// Sets what push rules ask of local users for `ev`, on the room's state at it: the
    /// head's, or `state` of a room the head does not hold.
    async fn evaluate_push(
        &self,
        on: PushOn<'_>,
        ev: &mut NewEvent,
        known: &mut RulesOf,
    ) -> Result<()> {
        let Some(push) = &self.push else {
            return Ok(());
        };
        let (room, state) = match on {
            PushOn::Head(head) => (head.push_room(&self.signing.server_name), &head.state),
            PushOn::State(version, state) => (
                Arc::new(PushRoom::new(version, state, &self.signing.server_name)),
                state,
            ),
        };
        ev.push = push
            .evaluate(&room, state, &ev.pdu, &ev.json, known)
            .await?;
        Ok(())
    }

    /// Fetches the events other servers' events name and the log lacks from `fetch`.
    pub fn with_fetch(mut self, fetch: Arc<dyn RemoteFetch>) -> Self {
        self.fetch = fetch;
        self
    }

    fn head_slot(&self, room_id: &RoomId) -> Arc<tokio::sync::Mutex<Option<Head>>> {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads.entry(room_id.to_owned()).or_default().clone()
    }

    async fn load_head(&self, room_id: &RoomId) -> Result<Option<Head>> {
        let Some(snap) = self.store.load_room(room_id).await? else {
            return Ok(None);
        };
        let rules = rules_for(&snap.version)?;
        let state = snap
            .state
            .into_iter()
            .filter_map(|p| p.state_key.clone().map(|k| ((p.kind.to_string(), k), p)))
            .collect();
        Ok(Some(Head {
            version: snap.version,
            rules,
            extremities: snap.extremities,
            depth: snap.depth,
            state,
            push_room: None,
        }))
    }

    /// Sequences a batch, rebuilding it on a fresh head when another sequencer appended to the
    /// room first.
    async fn sequence_retrying(
        &self,
        batch: RoomBatch,
        batch_id: Option<&str>,
    ) -> Result<Vec<StoredEvent>> {
        let mut attempt = 0;
        loop {
            match self.sequence(&batch, batch_id).await {
                Err(Error::Conflict(why)) if attempt < 8 => {
                    attempt += 1;
                    tracing::debug!(room = %batch.room_id, %why, attempt, "room head moved; rebuilding the batch");
                }
                other => return other,
            }
        }
    }

    async fn sequence(
        &self,
        batch: &RoomBatch,
        batch_id: Option<&str>,
    ) -> Result<Vec<StoredEvent>> {
        if let Some(join) = &batch.join {
            return self.sequence_join(&batch.room_id, join).await;
        }
        if let Some(outside) = &batch.outside {
            return self.sequence_outside(&batch.room_id, outside).await;
        }
        if !batch.backfill.is_empty() {
            return self
                .sequence_backfill(&batch.room_id, &batch.backfill)
                .await;
        }
        if !batch.remote.is_empty() {
            return self.sequence_remote(batch).await;
        }
        let built = match self.prepare(batch, batch_id).await? {
            Prepared::Replayed(events) => return Ok(events),
            Prepared::Built(b) => b,
        };
        match self.store.append(&built.new_events, batch_id).await {
            Ok(positions) => {
                let events = built.finish(positions);
                self.notifier.notify();
                Ok(events)
            }
            Err(e) => {
                built.abandon();
                Err(e)
            }
        }
    }

    /// Builds and checks a batch on its room's head, which stays locked until the batch is
    /// appended or abandoned.
    async fn prepare(&self, batch: &RoomBatch, batch_id: Option<&str>) -> Result<Prepared> {
        let slot = self.head_slot(&batch.room_id);
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            *guard = self.load_head(&batch.room_id).await?;
        }
        let creating = batch.create_version.is_some();
        let mut head = match (guard.take(), &batch.create_version) {
            (Some(_), Some(_)) => {
                return Err(Error::matrix(ErrorCode::RoomInUse, "room already exists"))
            }
            (Some(h), None) => h,
            (None, Some(version)) => Head {
                version: version.clone(),
                rules: rules_for(version)?,
                extremities: Vec::new(),
                depth: 0,
                state: HashMap::new(),
                push_room: None,
            },
            (None, None) => {
                drop(guard);
                // Keep no slot for a room that does not exist.
                self.heads
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&batch.room_id);
                return Err(Error::not_found("unknown room"));
            }
        };
        let original = (!creating).then(|| head.clone());

        let mut new_events = Vec::with_capacity(batch.events.len());
        let mut replies: Vec<Option<StoredEvent>> = Vec::with_capacity(batch.events.len());
        let mut rules = RulesOf::new();
        let result: Result<()> = async {
            for intent in &batch.events {
                if let Some((device, txn)) = &intent.txn {
                    if let Some(existing) = self
                        .store
                        .txn_event(&intent.sender, device, &batch.room_id, txn)
                        .await?
                    {
                        let ev = self
                            .store
                            .event(&existing)
                            .await?
                            .ok_or_else(|| Error::internal("txn maps to a missing event"))?;
                        replies.push(Some(ev));
                        continue;
                    }
                }
                let mut ev = self
                    .build_and_check(&batch.room_id, &mut head, intent)
                    .await?;
                self.evaluate_push(PushOn::Head(&mut head), &mut ev, &mut rules)
                    .await?;
                new_events.push(ev);
                replies.push(None);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            *guard = original;
            return Err(e);
        }
        if new_events.is_empty() {
            *guard = Some(head);
            let replies: Vec<StoredEvent> = replies.into_iter().flatten().collect();
            if let Some(id) = batch_id {
                let ids = replies.iter().map(|e| e.pdu.event_id.clone()).collect();
                self.store
                    .record_batch_outcome(id, &BatchOutcome::Appended(ids))
                    .await?;
            }
            return Ok(Prepared::Replayed(replies));
        }
        Ok(Prepared::Built(Built {
            guard,
            head,
            new_events,
            replies,
        }))
    }

    /// Sequences batches of a lane together: each is built on its room's head, and all that
    /// were built are appended in one transaction (group commit). A batch of a room already
    /// in the group, and every batch when the group append fails, is sequenced on its own.
    async fn sequence_group(
        &self,
        jobs: Vec<(Option<String>, RoomBatch)>,
    ) -> Vec<Result<Vec<StoredEvent>>> {
        let mut results: Vec<Option<Result<Vec<StoredEvent>>>> =
            jobs.iter().map(|_| None).collect();
        let ids: Vec<String> = jobs.iter().filter_map(|(id, _)| id.clone()).collect();
        let mut rooms = std::collections::HashSet::new();
        if !ids.is_empty() {
            match self.store.batch_outcomes(&ids).await {
                Ok(known) => {
                    for (id, outcome) in known {
                        if let Some(i) = jobs.iter().position(|(j, _)| j.as_deref() == Some(&id)) {
                            results[i] = Some(outcome_events(self.store.as_ref(), outcome).await);
                        }
                    }
                }
                Err(e) => {
                    // Each batch asks again on its own.
                    tracing::debug!(error = %e, "reading batch outcomes failed");
                    let mut out = Vec::with_capacity(jobs.len());
                    for (id, batch) in jobs {
                        out.push(self.alone(id.as_deref(), batch).await);
                    }
                    return out;
                }
            }
        }
        let mut group: Vec<(usize, Built)> = Vec::new();
        for (i, (id, batch)) in jobs.iter().enumerate() {
            // Events of other servers are added one at a time, each on its own.
            if results[i].is_some()
                || !batch.remote.is_empty()
                || batch.join.is_some()
                || batch.outside.is_some()
                || !batch.backfill.is_empty()
                || !rooms.insert(batch.room_id.clone())
            {
                continue;
            }
            match self.prepare(batch, id.as_deref()).await {
                Ok(Prepared::Replayed(events)) => results[i] = Some(Ok(events)),
                Ok(Prepared::Built(b)) => group.push((i, b)),
                Err(Error::Conflict(_)) => {}
                Err(e) => results[i] = Some(self.refused(id.as_deref(), e).await),
            }
        }
        if !group.is_empty() {
            let batches: Vec<AppendBatch<'_>> = group
                .iter()
                .map(|(i, b)| AppendBatch {
                    events: &b.new_events,
                    batch_id: jobs[*i].0.as_deref(),
                })
                .collect();
            match self.store.append_group(&batches).await {
                Ok(positions) => {
                    for ((i, b), pos) in group.into_iter().zip(positions) {
                        results[i] = Some(Ok(b.finish(pos)));
                    }
                    self.notifier.notify();
                }
                Err(e) => {
                    tracing::debug!(error = %e, "group append failed; appending one batch at a time");
                    for (_, b) in group {
                        b.abandon();
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(jobs.len());
        for ((id, batch), done) in jobs.into_iter().zip(results) {
            out.push(match done {
                Some(r) => r,
                None => self.alone(id.as_deref(), batch).await,
            });
        }
        out
    }

    /// One batch on its own, as `handle` or `handle_once` would.
    async fn alone(&self, batch_id: Option<&str>, batch: RoomBatch) -> Result<Vec<StoredEvent>> {
        match batch_id {
            None => self.sequence_retrying(batch, None).await,
            Some(id) => self.handle_once(id, batch).await,
        }
    }

    /// Answers a refusal, recording it first for a batch that may be delivered again.
    async fn refused(&self, batch_id: Option<&str>, e: Error) -> Result<Vec<StoredEvent>> {
        if let (Some(id), Error::Matrix { code, message }) = (batch_id, &e) {
            self.store
                .record_batch_outcome(id, &BatchOutcome::Refused(*code, message.clone()))
                .await?;
        }
        Err(e)
    }

    async fn build_and_check(
        &self,
        room_id: &RoomId,
        head: &mut Head,
        intent: &EventIntent,
    ) -> Result<NewEvent> {
        let is_create = intent.kind == TimelineEventType::RoomCreate;
        if is_create != head.extremities.is_empty() {
            return Err(Error::forbidden(
                "m.room.create must be the first event of a room, and only it",
            ));
        }
        let rules = head.rules.clone();
        let auth_types = state_res::auth_types_for_event(
            &intent.kind,
            &intent.sender,
            intent.state_key.as_deref(),
            &serde_json::value::to_raw_value(&intent.content)?,
            &rules.authorization,
        )
        .map_err(Error::bad_json)?;
        let mut auth_events: Vec<OwnedEventId> = Vec::new();
        for (ty, key) in &auth_types {
            if *ty == StateEventType::RoomCreate
                && !rules.event_format.allow_room_create_in_auth_events
            {
                continue;
            }
            if let Some(p) = head.state.get(&(ty.to_string(), key.clone())) {
                if !auth_events.contains(&p.event_id) {
                    auth_events.push(p.event_id.clone());
                }
            }
        }
        let prev_events: Vec<OwnedEventId> = head
            .extremities
            .iter()
            .take(MAX_PREV_EVENTS)
            .cloned()
            .collect();
        let depth = head.depth + 1;
        // An event that merges forks: the state before it is the room's current state, their
        // resolution, which is no prev event's own.
        let state_before = (prev_events.len() > 1).then(|| {
            head.state
                .iter()
                .map(|(k, p)| (k.clone(), p.event_id.clone()))
                .collect()
        });
        let (pdu, json) = build_pdu(
            &self.signing,
            room_id,
            &rules,
            intent,
            prev_events,
            auth_events,
            depth,
        )?;

        // Authorization, against the current state of the room.
        let by_id: HashMap<&ruma::EventId, &Pdu> = head
            .state
            .values()
            .map(|p| (p.event_id.as_ref(), p))
            .collect();
        state_res::check_state_independent_auth_rules(&rules.authorization, &pdu, |id| {
            by_id.get(id).copied()
        })
        .map_err(Error::forbidden)?;
        state_res::check_state_dependent_auth_rules(&rules.authorization, &pdu, |ty, key| {
            head.state.get(&(ty.to_string(), key.to_owned()))
        })
        .map_err(Error::forbidden)?;

        let mut unsigned = None;
        let redaction = self.redaction_of(room_id, &rules, &pdu, |_| true).await?;
        if let Some(key) = &pdu.state_key {
            let k = (pdu.kind.to_string(), key.clone());
            if let Some(prev) = head.state.get(&k) {
                unsigned = Some(json!({
                    "prev_content": prev.content_value(),
                    "prev_sender": prev.sender,
                    "replaces_state": prev.event_id,
                }));
            }
            head.set_state(k, pdu.clone());
        }
        head.extremities.retain(|e| !pdu.prev_events.contains(e));
        head.extremities.insert(0, pdu.event_id.clone());
        head.depth = depth;
        let txn = intent
            .txn
            .as_ref()
            .map(|(d, t)| (intent.sender.clone(), d.clone(), t.clone()));
        let room_version = is_create.then(|| head.version.clone());
        Ok(NewEvent {
            pdu,
            json,
            unsigned,
            txn,
            room_version,
            redaction,
            state_before,
            remote: None,
            push: Vec::new(),
        })
    }
}

impl Sequencer {
    /// For a redaction of an event of the room that `may_redact` allows: the target and its
    /// redacted JSON.
    async fn redaction_of(
        &self,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdu: &Pdu,
        may_redact: impl Fn(&Pdu) -> bool,
    ) -> Result<Option<(OwnedEventId, String)>> {
        let Some(target) = pdu.redacted_event() else {
            return Ok(None);
        };
        let Some(ev) = self.store.event(&target).await? else {
            return Ok(None);
        };
        if ev.pdu.room_id() != room_id || !may_redact(&ev.pdu) {
            return Ok(None);
        }
        let obj: CanonicalJsonObject = serde_json::from_str(&serde_json::to_string(&ev.pdu)?)?;
        let redacted = redact(obj, &rules.redaction, None).map_err(Error::internal)?;
        Ok(Some((target, serde_json::to_string(&redacted)?)))
    }
}

#[async_trait]
impl BatchHandler for Sequencer {
    async fn handle(&self, batch: RoomBatch) -> Result<Vec<StoredEvent>> {
        self.sequence_retrying(batch, None).await
    }

    async fn handle_once(&self, batch_id: &str, batch: RoomBatch) -> Result<Vec<StoredEvent>> {
        if let Some(outcome) = self.store.batch_outcome(batch_id).await? {
            return outcome_events(self.store.as_ref(), outcome).await;
        }
        match self.sequence_retrying(batch, Some(batch_id)).await {
            // A refusal is final: a redelivery gets the same answer without re-checking.
            Err(e @ Error::Matrix { .. }) => self.refused(Some(batch_id), e).await,
            other => other,
        }
    }

    async fn handle_group(
        &self,
        jobs: Vec<(Option<String>, RoomBatch)>,
    ) -> Vec<Result<Vec<StoredEvent>>> {
        let mut jobs = jobs;
        if jobs.len() == 1 {
            if let Some((id, batch)) = jobs.pop() {
                return vec![self.alone(id.as_deref(), batch).await];
            }
        }
        self.sequence_group(jobs).await
    }

    fn reset(&self) {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The events (or the refusal) a recorded batch outcome stands for.
pub async fn outcome_events(
    store: &dyn RoomStore,
    outcome: BatchOutcome,
) -> Result<Vec<StoredEvent>> {
    match outcome {
        BatchOutcome::Refused(code, message) => Err(Error::Matrix { code, message }),
        BatchOutcome::Appended(ids) => {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(
                    store
                        .event(&id)
                        .await?
                        .ok_or_else(|| Error::internal("a recorded batch event is missing"))?,
                );
            }
            Ok(out)
        }
    }
}

pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version.rules().ok_or_else(|| {
        Error::matrix(
            ErrorCode::UnsupportedRoomVersion,
            format!("room version {version} is not supported"),
        )
    })
}

/// Builds, hashes and signs a PDU. Pure: the same inputs give the same event id, which is how a
/// v12 room id (the create event's reference hash) is known before the room exists.
pub fn build_pdu(
    signing: &SigningKey,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    intent: &EventIntent,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    depth: u64,
) -> Result<(Pdu, String)> {
    let is_create = intent.kind == TimelineEventType::RoomCreate;
    let mut content = intent.content.clone();
    let mut obj = Map::new();
    obj.insert("auth_events".into(), json!(auth_events));
    obj.insert("depth".into(), json!(depth));
    obj.insert("origin_server_ts".into(), json!(intent.origin_server_ts));
    obj.insert("prev_events".into(), json!(prev_events));
    if !is_create || rules.event_format.require_room_create_room_id {
        obj.insert("room_id".into(), json!(room_id));
    }
    obj.insert("sender".into(), json!(intent.sender));
    if let Some(k) = &intent.state_key {
        obj.insert("state_key".into(), json!(k));
    }
    obj.insert("type".into(), json!(intent.kind.to_string()));
    if let Some(r) = &intent.redacts {
        if rules.redaction.content_field_redacts {
            if let Value::Object(c) = &mut content {
                c.insert("redacts".into(), json!(r));
            }
        } else {
            obj.insert("redacts".into(), json!(r));
        }
    }
    obj.insert("content".into(), content);
    let canonical = CanonicalJsonValue::try_from(Value::Object(obj))
        .map_err(|e| Error::bad_json(format!("event is not canonical JSON: {e}")))?;
    let CanonicalJsonValue::Object(mut object) = canonical else {
        return Err(Error::internal("event object is not an object"));
    };
    ruma::signatures::hash_and_sign_event(
        signing.server_name.as_str(),
        &signing.key,
        &mut object,
        &rules.redaction,
    )
    .map_err(pdu_error)?;
    let hash = ruma::signatures::reference_hash(&object, rules).map_err(pdu_error)?;
    let event_id = OwnedEventId::try_from(format!("${hash}")).map_err(Error::internal)?;
    let json = serde_json::to_string(&object)?;
    let mut pdu: Pdu = serde_json::from_str(&json)?;
    pdu.event_id = event_id;
    pdu.room_id = Some(room_id.to_owned());
    Ok((pdu, json))
}

/// The room id of a v12 room: `!` + the create event's reference hash.
pub fn room_id_from_create(event_id: &ruma::EventId) -> Result<OwnedRoomId> {
    OwnedRoomId::try_from(format!("!{}", &event_id.as_str()[1..])).map_err(Error::internal)
}

fn pdu_error(e: ruma::signatures::JsonError) -> Error {
    match e {
        ruma::signatures::JsonError::PduTooLarge => {
            Error::matrix(ErrorCode::TooLarge, "event is larger than 65536 bytes")
        }
        other => Error::bad_json(other.to_string()),
    }
}
