//! Events other servers bring to this server's rooms: a join (`make_join` gives the template
//! the joining server signs, `send_join` adds it), and transactions of events (`/send`).
//! Every event is verified where it arrives (`verify_pdu`: format, signatures, content hash)
//! and added through its room's lane, which checks it against the room's state.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    events::{room::member::MembershipState, StateEventType, TimelineEventType},
    state_res, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedServerName, RoomId, RoomVersionId,
    ServerName, UserId,
};
use serde_json::{json, Value};

use super::reads::state_before;
use crate::{
    intent::RoomBatch,
    ports::{EventBus, RoomStore, MAX_PREV_EVENTS},
    remote_pdu::verify_pdu,
    sequencer::rules_for,
    services::server_keys::ServerKeys,
    Error, ErrorCode, Result,
};

/// The most PDUs one transaction carries (the spec's limit).
pub const MAX_PDUS_PER_TRANSACTION: usize = 50;

/// What a joining server gets back: the room's state before its join, and the auth chain of
/// that state and of the join, as PDUs.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub state: Vec<String>,
    pub auth_chain: Vec<String>,
    pub servers_in_room: Vec<OwnedServerName>,
}

pub struct Inbound {
    store: Arc<dyn RoomStore>,
    bus: Arc<dyn EventBus>,
    keys: Arc<ServerKeys>,
}

impl Inbound {
    pub fn new(store: Arc<dyn RoomStore>, bus: Arc<dyn EventBus>, keys: Arc<ServerKeys>) -> Self {
        Inbound { store, bus, keys }
    }

    async fn version(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        self.store
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))
    }

    /// The join event `origin` may sign for `user_id` (`make_join`): on the room's heads, its
    /// auth events from the room's state. Only for a user of `origin`, a room version it
    /// speaks, and a room the user may join (public, or invited).
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        if user_id.server_name() != origin {
            return Err(Error::forbidden(format!(
                "{user_id} is not a user of {origin}"
            )));
        }
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))?;
        if !versions.contains(&snapshot.version) {
            return Err(Error::matrix(
                ErrorCode::UnsupportedRoomVersion,
                format!("{room_id} is of room version {}", snapshot.version),
            ));
        }
        let state_of = |kind: &str, key: &str| {
            snapshot
                .state
                .iter()
                .find(|p| p.kind.to_string() == kind && p.state_key.as_deref() == Some(key))
        };
        let public = state_of("m.room.join_rules", "")
            .is_some_and(|e| e.content_value().get("join_rule") == Some(&Value::from("public")));
        let invited = state_of("m.room.member", user_id.as_str())
            .is_some_and(|e| e.membership() == Some(MembershipState::Invite));
        if !public && !invited {
            return Err(Error::forbidden(format!(
                "{user_id} may not join {room_id}"
            )));
        }
        let rules = rules_for(&snapshot.version)?;
        let content = json!({ "membership": "join" });
        let raw = serde_json::value::to_raw_value(&content)?;
        let auth_types = state_res::auth_types_for_event(
            &TimelineEventType::RoomMember,
            user_id,
            Some(user_id.as_str()),
            &raw,
            &rules.authorization,
        )
        .map_err(Error::internal)?;
        let auth_events: Vec<&OwnedEventId> = auth_types
            .iter()
            .filter(|(t, _)| {
                *t != StateEventType::RoomCreate
                    || rules.event_format.allow_room_create_in_auth_events
            })
            .filter_map(|(t, k)| state_of(&t.to_string(), k).map(|p| &p.event_id))
            .collect();
        let prev_events: Vec<&OwnedEventId> =
            snapshot.extremities.iter().take(MAX_PREV_EVENTS).collect();
        let template = json!({
            "room_id": room_id,
            "sender": user_id,
            "type": "m.room.member",
            "state_key": user_id,
            "content": content,
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
            "prev_events": prev_events,
            "auth_events": auth_events,
            "depth": snapshot.depth + 1,
        });
        Ok((snapshot.version, template))
    }

    /// Adds the join `origin` signed (`send_join`), and answers the room's state before it
    /// with the auth chain. The join must be its own user's, under `event_id`.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &ruma::EventId,
        pdu: &str,
    ) -> Result<JoinAnswer> {
        let version = self.version(room_id).await?;
        let verified = verify_pdu(&self.keys, &version, room_id, pdu).await?;
        let join = &verified.pdu;
        if join.event_id != event_id {
            return Err(Error::invalid_param(format!(
                "the event's id is {}, not {event_id}",
                join.event_id
            )));
        }
        let is_join = join.kind == TimelineEventType::RoomMember
            && join.membership() == Some(MembershipState::Join)
            && join.state_key.as_deref() == Some(join.sender.as_str())
            && join.sender.server_name() == origin;
        if !is_join {
            return Err(Error::forbidden(format!(
                "not a join of a user of {origin}"
            )));
        }
        let added = self
            .bus
            .submit(RoomBatch::received(
                room_id.to_owned(),
                vec![verified.into()],
            ))
            .await?;
        if added.is_empty() {
            return Err(Error::forbidden("the join is not allowed now"));
        }
        let state = state_before(self.store.as_ref(), room_id, event_id).await?;
        let mut wanted = state.clone();
        if let Some(ev) = added.first() {
            wanted.extend(ev.pdu.auth_events.iter().cloned());
        }
        let chain: Vec<OwnedEventId> = self
            .store
            .auth_graph(&wanted)
            .await?
            .into_iter()
            .map(|p| p.event_id)
            .collect();
        let servers_in_room = self
            .store
            .joined_servers(room_id)
            .await?
            .into_iter()
            .collect();
        Ok(JoinAnswer {
            state: self.pdus(&state).await?,
            auth_chain: self.pdus(&chain).await?,
            servers_in_room,
        })
    }

    async fn pdus(&self, ids: &[OwnedEventId]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(json) = self.store.event_json(id).await? {
                out.push(json);
            }
        }
        Ok(out)
    }

    /// Adds the PDUs of a transaction of `origin` (`/send`), each on its own: the outcome
    /// per event id. A PDU of a room this server does not know, or one whose id cannot be
    /// told, is left out (and logged).
    pub async fn transaction(
        &self,
        origin: &ServerName,
        pdus: &[&str],
    ) -> Result<BTreeMap<OwnedEventId, std::result::Result<(), String>>> {
        if pdus.len() > MAX_PDUS_PER_TRANSACTION {
            return Err(Error::matrix(
                ErrorCode::TooLarge,
                format!("a transaction carries at most {MAX_PDUS_PER_TRANSACTION} PDUs"),
            ));
        }
        let mut out = BTreeMap::new();
        for raw in pdus {
            let room_id = serde_json::from_str::<Value>(raw)
                .ok()
                .and_then(|v| v.get("room_id")?.as_str().map(str::to_owned))
                .and_then(|r| ruma::OwnedRoomId::try_from(r).ok());
            let Some(room_id) = room_id else {
                tracing::info!(%origin, "a PDU without a room was left out");
                continue;
            };
            let Some(version) = self.store.room_version(&room_id).await? else {
                tracing::info!(%origin, %room_id, "a PDU of a room not known here was left out");
                continue;
            };
            let verified = match verify_pdu(&self.keys, &version, &room_id, raw).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::info!(%origin, %room_id, error = %e, "a PDU failed its checks");
                    if let Some(id) = event_id_of(&version, raw) {
                        out.insert(id, Err(e.to_string()));
                    }
                    continue;
                }
            };
            let id = verified.event_id().clone();
            let batch = RoomBatch::received(room_id.clone(), vec![verified.into()]);
            let outcome = match self.bus.submit(batch).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::info!(%origin, %room_id, event_id = %id, error = %e, "a PDU was refused");
                    Err(e.to_string())
                }
            };
            out.insert(id, outcome);
        }
        Ok(out)
    }
}

/// The id of a PDU of room version `version`: its reference hash.
fn event_id_of(version: &RoomVersionId, raw: &str) -> Option<OwnedEventId> {
    let rules = rules_for(version).ok()?;
    let object: ruma::CanonicalJsonObject = serde_json::from_str(raw).ok()?;
    let hash = ruma::signatures::reference_hash(&object, &rules).ok()?;
    OwnedEventId::try_from(format!("${hash}")).ok()
}
