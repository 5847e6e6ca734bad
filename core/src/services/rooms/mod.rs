//! Rooms: creation, membership, sending, state, redaction, aliases, the public directory,
//! space hierarchies, mutual rooms, upgrades, message search, and the read side of room history (messages, context,
//! members, relations, threads), one module each.

mod create;
mod directory;
mod hierarchy;
pub use hierarchy::{HierarchyPage, HierarchyQuery, MAX_HIERARCHY_ROOMS, MAX_REMOTE_ASKS};
mod history;
pub use history::{HistoryToken, RoomInitialSync};
mod membership;
mod mutual;
pub use mutual::{MutualRooms, MUTUAL_ROOMS_PAGE};
mod remote;
mod search;
pub use search::{
    ContextRequest, ResultContext, ResultGroup, SearchGrouping, SearchRequest, SearchResult,
    SearchResults, MAX_SEARCH_CONTEXT, MAX_SEARCH_RESULTS, MAX_SEARCH_WORDS,
};
mod send;
mod threads;
mod upgrade;
pub use upgrade::Upgrade;

use ruma::events::room::member::MembershipState;
use std::sync::Arc;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use serde_json::{json, Map, Value};

use crate::{
    error::ErrorCode,
    intent::{EventIntent, RoomBatch},
    ports::{Direction, EventBus, NoRemoteRooms, RemoteRooms, RoomStore, UserStore},
    sequencer::{build_pdu, room_id_from_create, rules_for, SigningKey},
    services::Session,
    state, Error, Result, ServerConfig, StoredEvent,
};

/// The `createRoom` presets: who may join, and what guests and history look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomPreset {
    PrivateChat,
    PublicChat,
    /// A private chat whose invitees get the creator's power.
    TrustedPrivateChat,
}

/// What `createRoom` asks for, independent of the wire format.
#[derive(Debug, Clone, Default)]
pub struct CreateRoom {
    pub preset: Option<RoomPreset>,
    pub public: bool,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub room_version: Option<RoomVersionId>,
    pub creation_content: Option<Map<String, Value>>,
    pub initial_state: Vec<(String, String, Value)>,
    pub power_level_content_override: Option<Map<String, Value>>,
}

/// A page of room history.
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<StoredEvent>,
    /// Token for the next page, if there may be one.
    pub end: Option<String>,
}

pub struct Rooms {
    store: Arc<dyn RoomStore>,
    users: Arc<dyn UserStore>,
    bus: Arc<dyn EventBus>,
    signing: Arc<SigningKey>,
    config: Arc<ServerConfig>,
    /// Rooms of other servers, joined through them.
    remote: Arc<dyn RemoteRooms>,
}

/// A pagination token: a boundary in the stream; events at or below it are "before".
pub fn parse_token(token: &str) -> Result<i64> {
    let body = token
        .strip_prefix('s')
        .or_else(|| token.strip_prefix('t'))
        .unwrap_or(token);
    body.split('_')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| Error::invalid_param("invalid pagination token"))
}

pub fn make_token(pos: i64) -> String {
    format!("t{pos}")
}

impl Rooms {
    pub fn new(
        store: Arc<dyn RoomStore>,
        users: Arc<dyn UserStore>,
        bus: Arc<dyn EventBus>,
        signing: Arc<SigningKey>,
        config: Arc<ServerConfig>,
    ) -> Self {
        Rooms {
            store,
            users,
            bus,
            signing,
            config,
            remote: Arc::new(NoRemoteRooms),
        }
    }

    /// Joins rooms of other servers through `remote`.
    pub fn with_remote(mut self, remote: Arc<dyn RemoteRooms>) -> Self {
        self.remote = remote;
        self
    }

    pub fn store(&self) -> &Arc<dyn RoomStore> {
        &self.store
    }

    async fn submit(
        &self,
        room_id: &RoomId,
        intents: Vec<EventIntent>,
    ) -> Result<Vec<StoredEvent>> {
        self.bus
            .submit(RoomBatch {
                room_id: room_id.to_owned(),
                create_version: None,
                remote: Vec::new(),
                join: None,
                backfill: Vec::new(),
                outside: None,
                events: intents,
            })
            .await
    }

    async fn submit_one(&self, room_id: &RoomId, intent: EventIntent) -> Result<OwnedEventId> {
        let mut evs = self.submit(room_id, vec![intent]).await?;
        evs.pop()
            .map(|e| e.pdu.event_id)
            .ok_or_else(|| Error::internal("sequencer returned no event"))
    }

    async fn member_content(
        &self,
        user_id: &UserId,
        membership: MembershipState,
    ) -> Result<Map<String, Value>> {
        let mut c = Map::new();
        c.insert("membership".into(), json!(membership.as_str()));
        if let Some(u) = self.users.user(user_id).await? {
            if let Some(d) = u.displayname {
                c.insert("displayname".into(), json!(d));
            }
            if let Some(a) = u.avatar_url {
                c.insert("avatar_url".into(), json!(a));
            }
        }
        Ok(c)
    }

    /// Resolves `#alias:server` or `!room` to a room id.
    pub async fn resolve(&self, room_id_or_alias: &str) -> Result<OwnedRoomId> {
        if room_id_or_alias.starts_with('#') {
            return self
                .store
                .alias(room_id_or_alias)
                .await?
                .map(|(r, _)| r)
                .ok_or_else(|| Error::not_found("room alias not found"));
        }
        RoomId::parse(room_id_or_alias).map_err(|_| Error::invalid_param("invalid room id"))
    }

    /// The room an alias names and servers to join it through: this server's own aliases
    /// from the store (this server first, then the others in the room), another server's
    /// from that server.
    pub async fn locate(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<ruma::OwnedServerName>)> {
        if alias.server_name() != self.config.server_name {
            return self.remote.query_alias(alias).await;
        }
        let room_id = self
            .store
            .alias(alias.as_str())
            .await?
            .map(|(r, _)| r)
            .ok_or_else(|| Error::not_found("room alias not found"))?;
        let own = self.config.server_name.clone();
        let mut servers = vec![own.clone()];
        servers.extend(
            self.store
                .joined_servers(&room_id)
                .await?
                .into_iter()
                .filter(|s| *s != own),
        );
        Ok((room_id, servers))
    }

    async fn ensure_room(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        self.store
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::not_found("unknown room"))
    }

    /// Whether the user's power in the room reaches the named level of its power levels.
    async fn has_level(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        level: &str,
        default: i64,
    ) -> Result<bool> {
        let version = self.ensure_room(room_id).await?;
        let create = self.store.state_event(room_id, "m.room.create", "").await?;
        let power = self
            .store
            .state_event(room_id, "m.room.power_levels", "")
            .await?;
        let (create, power) = (create.map(|e| e.pdu), power.map(|e| e.pdu));
        let have = state::power_level(&version, create.as_ref(), power.as_ref(), user_id);
        Ok(have >= state::required_level(power.as_ref(), level, default))
    }
}
