//! What other servers may read of this one's rooms (`/event`, `/state_ids`, `/backfill`,
//! `/get_missing_events`): a server reads a room it has a joined member in, or a room whose
//! history is world-readable. Everything answered is a PDU as stored (signed, as received or
//! as built here).

use std::{
    collections::{BTreeSet, HashSet},
    sync::Arc,
};

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, ServerName, UserId,
};
use serde_json::Value;

use crate::{
    ports::{RoomStore, UserStore},
    Error, Result, StoredEvent,
};

/// The most events one `/backfill` or `/get_missing_events` answers.
pub const MAX_EVENTS_PER_READ: usize = 100;

/// A room's state at an event, as event ids, and the auth chain of that state.
#[derive(Debug, Clone)]
pub struct StateIdsAt {
    pub pdu_ids: Vec<OwnedEventId>,
    pub auth_chain_ids: Vec<OwnedEventId>,
}

pub struct ServerReads {
    store: Arc<dyn RoomStore>,
    users: Arc<dyn UserStore>,
}

impl ServerReads {
    pub fn new(store: Arc<dyn RoomStore>, users: Arc<dyn UserStore>) -> Self {
        ServerReads { store, users }
    }

    /// The display name and avatar of a user of this server (`own`), for `/query/profile`.
    pub async fn profile(
        &self,
        own: &ServerName,
        user_id: &UserId,
    ) -> Result<(Option<String>, Option<String>)> {
        if user_id.server_name() != own {
            return Err(Error::not_found(format!(
                "{user_id} is not a user of {own}"
            )));
        }
        let user = self
            .users
            .user(user_id)
            .await?
            .ok_or_else(|| Error::not_found("profile not found"))?;
        Ok((user.displayname, user.avatar_url))
    }

    /// `M_FORBIDDEN` unless `origin` may read `room_id`: the room's server ACL lets it in, and
    /// it has a joined member there or the room's history is world-readable.
    async fn check(&self, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        super::acl::check_acl(self.store.as_ref(), room_id, origin).await?;
        let member = self.store.joined_servers(room_id).await?.contains(origin);
        if member {
            return Ok(());
        }
        let world_readable = self
            .store
            .state_event(room_id, "m.room.history_visibility", "")
            .await?
            .is_some_and(|e| {
                e.pdu.content_value().get("history_visibility")
                    == Some(&Value::from("world_readable"))
            });
        if world_readable {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{origin} has no member in {room_id}"
            )))
        }
    }

    /// The room an alias of this server (`own`) names, and the servers in it, this one first
    /// (`/query/directory`).
    pub async fn alias(
        &self,
        own: &ServerName,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() != own {
            return Err(Error::not_found(format!(
                "{alias} is not an alias of {own}"
            )));
        }
        let (room_id, _) = self
            .store
            .alias(alias.as_str())
            .await?
            .ok_or_else(|| Error::not_found("room alias not found"))?;
        let mut servers = vec![own.to_owned()];
        servers.extend(
            self.store
                .joined_servers(&room_id)
                .await?
                .into_iter()
                .filter(|s| s != own),
        );
        Ok((room_id, servers))
    }

    /// One event's PDU, if `origin` may read its room.
    pub async fn event(&self, origin: &ServerName, event_id: &EventId) -> Result<String> {
        let ev = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| Error::not_found("event not found"))?;
        self.check(origin, ev.pdu.room_id()).await?;
        self.pdu_of(event_id).await
    }

    /// The PDU of a stored event as signed (redacted, if it was), for another server.
    async fn pdu_of(&self, event_id: &EventId) -> Result<String> {
        self.store
            .event_json(event_id)
            .await?
            .ok_or_else(|| Error::not_found("event not found"))
    }

    async fn pdus_of(&self, events: Vec<StoredEvent>) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(events.len());
        for ev in events {
            out.push(self.pdu_of(&ev.pdu.event_id).await?);
        }
        Ok(out)
    }

    /// The room's state before `event_id` (`/state_ids`), and its auth chain.
    pub async fn state_ids(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StateIdsAt> {
        self.check(origin, room_id).await?;
        let pdu_ids = state_before(self.store.as_ref(), room_id, event_id).await?;
        let auth_chain_ids = self
            .store
            .auth_graph(&pdu_ids)
            .await?
            .into_iter()
            .map(|p| p.event_id)
            .collect();
        Ok(StateIdsAt {
            pdu_ids,
            auth_chain_ids,
        })
    }

    /// The room's state before `event_id` and its auth chain, as PDUs (`/state`).
    pub async fn state(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let at = self.state_ids(origin, room_id, event_id).await?;
        Ok((
            self.pdus_by_id(&at.pdu_ids).await?,
            self.pdus_by_id(&at.auth_chain_ids).await?,
        ))
    }

    /// The auth chain of one event of the room, as PDUs (`/event_auth`).
    pub async fn event_auth(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<String>> {
        self.check(origin, room_id).await?;
        let ev = self
            .store
            .event(event_id)
            .await?
            .filter(|e| e.pdu.room_id() == room_id)
            .ok_or_else(|| Error::not_found("event not found"))?;
        let chain: Vec<OwnedEventId> = self
            .store
            .auth_graph(&ev.pdu.auth_events)
            .await?
            .into_iter()
            .map(|p| p.event_id)
            .collect();
        self.pdus_by_id(&chain).await
    }

    async fn pdus_by_id(&self, ids: &[OwnedEventId]) -> Result<Vec<String>> {
        self.store.events_json(ids).await
    }

    /// Up to `limit` events of the room from `from` backwards, `from` included (`/backfill`):
    /// the deepest first.
    pub async fn backfill(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<String>> {
        self.check(origin, room_id).await?;
        let found = self
            .walk_back(room_id, from.to_vec(), &HashSet::new(), limit)
            .await?;
        self.pdus_of(found).await
    }

    /// Up to `limit` events of the room before `latest` and after `earliest`
    /// (`/get_missing_events`), oldest first.
    pub async fn missing_events(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<String>> {
        self.check(origin, room_id).await?;
        let mut start = Vec::new();
        for id in latest {
            if let Some(ev) = self.store.event(id).await? {
                start.extend(ev.pdu.prev_events.iter().cloned());
            }
        }
        let stop: HashSet<OwnedEventId> = earliest.iter().cloned().collect();
        let mut found = self.walk_back(room_id, start, &stop, limit).await?;
        found.reverse();
        self.pdus_of(found).await
    }

    /// The room's events reached from `start` along prev events, not past `stop`: the
    /// deepest first, at most `limit` (and [`MAX_EVENTS_PER_READ`]).
    async fn walk_back(
        &self,
        room_id: &RoomId,
        start: Vec<OwnedEventId>,
        stop: &HashSet<OwnedEventId>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let limit = limit.min(MAX_EVENTS_PER_READ);
        // Deepest first: (depth, id) in a set, taken from its end.
        let mut frontier: BTreeSet<(u64, OwnedEventId)> = BTreeSet::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut out = Vec::new();
        let mut push = async |id: OwnedEventId,
                              frontier: &mut BTreeSet<(u64, OwnedEventId)>|
               -> Result<Option<StoredEvent>> {
            if stop.contains(&id) || !seen.insert(id.clone()) {
                return Ok(None);
            }
            let ev = self.store.event(&id).await?;
            Ok(ev.filter(|e| e.pdu.room_id() == room_id).inspect(|e| {
                frontier.insert((u64::from(e.pdu.depth), id));
            }))
        };
        let mut known = std::collections::HashMap::new();
        for id in start {
            if let Some(ev) = push(id, &mut frontier).await? {
                known.insert(ev.pdu.event_id.clone(), ev);
            }
        }
        while out.len() < limit {
            let Some((_, id)) = frontier.pop_last() else {
                break;
            };
            let Some(ev) = known.remove(&id) else {
                continue;
            };
            for prev in &ev.pdu.prev_events {
                if let Some(p) = push(prev.clone(), &mut frontier).await? {
                    known.insert(p.pdu.event_id.clone(), p);
                }
            }
            out.push(ev);
        }
        Ok(out)
    }
}

/// The room's state before `event_id`, as event ids: the state after it, less it (what it
/// replaced, if anything, back in its place).
pub(super) async fn state_before(
    store: &dyn RoomStore,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<Vec<OwnedEventId>> {
    let ev = store
        .event(event_id)
        .await?
        .filter(|e| e.pdu.room_id() == room_id)
        .ok_or_else(|| Error::not_found("event not found"))?;
    let mut state = store
        .state_after(event_id)
        .await?
        .ok_or_else(|| Error::not_found("the state at that event is not known here"))?;
    if let Some(key) = &ev.pdu.state_key {
        let k = (ev.pdu.kind.to_string(), key.clone());
        let replaced = ev
            .unsigned
            .as_ref()
            .and_then(|u| u.get("replaces_state"))
            .and_then(Value::as_str)
            .and_then(|id| OwnedEventId::try_from(id).ok());
        match replaced {
            Some(id) => state.insert(k, id),
            None => state.remove(&k),
        };
    }
    Ok(state.into_values().collect())
}
