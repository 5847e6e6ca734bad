//! Aliases, room summaries and the public room directory (this server's, or another's).

use ruma::events::room::member::MembershipState;
use ruma::{RoomId, ServerName, UserId};
use serde_json::{json, Value};

use super::*;
use crate::ports::{PublicRoomsPage, PublicRoomsQuery};

/// The page `query` asks for of `rooms`: `since` is the index of its first room.
fn page_of(rooms: Vec<Value>, query: &PublicRoomsQuery) -> PublicRoomsPage {
    let total = rooms.len();
    let start = query
        .since
        .as_deref()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(total);
    let limit = query.limit.unwrap_or(total.max(1)).max(1);
    let end = start.saturating_add(limit).min(total);
    PublicRoomsPage {
        chunk: rooms.into_iter().skip(start).take(end - start).collect(),
        next_batch: (end < total).then(|| end.to_string()),
        prev_batch: (start > 0).then(|| start.saturating_sub(limit).to_string()),
        total: Some(total as u64),
    }
}

impl Rooms {
    pub async fn set_alias(&self, session: &Session, alias: &str, room_id: &RoomId) -> Result<()> {
        session.ensure_may_add()?;
        let parsed = ruma::RoomAliasId::parse(alias)
            .map_err(|_| Error::invalid_param("invalid room alias"))?;
        if parsed.server_name() != self.config.server_name {
            return Err(Error::invalid_param("alias must be on this server"));
        }
        self.ensure_room(room_id).await?;
        // Only a member may name a room (an application service names rooms of its bridge).
        if session.appservice.is_none() {
            let joined = self
                .store
                .membership(room_id, &session.user_id)
                .await?
                .is_some_and(|m| m.membership == MembershipState::Join);
            if !joined {
                return Err(Error::forbidden(
                    "you must be in the room to give it an alias",
                ));
            }
        }
        if self.store.alias(alias).await?.is_some() {
            return Err(Error::matrix(
                ErrorCode::RoomInUse,
                "room alias already exists",
            ));
        }
        self.store.set_alias(alias, room_id, &session.user_id).await
    }

    pub async fn delete_alias(&self, session: &Session, alias: &str) -> Result<()> {
        let (room_id, creator) = self
            .store
            .alias(alias)
            .await?
            .ok_or_else(|| Error::not_found("room alias not found"))?;
        if creator != session.user_id
            && !self
                .has_level(&room_id, &session.user_id, "state_default", 50)
                .await?
        {
            return Err(Error::forbidden(
                "only the alias creator or a room admin can delete it",
            ));
        }
        self.store.delete_alias(alias).await?;
        Ok(())
    }

    /// The local aliases of a room (`/rooms/{roomId}/aliases`), for a member or anyone when
    /// the room's history is world-readable.
    pub async fn aliases(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<ruma::OwnedRoomAliasId>> {
        self.ensure_room(room_id).await?;
        let joined = self
            .store
            .membership(room_id, user)
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join);
        let readable =
            || async {
                let setting = self
                    .store
                    .state_event(room_id, "m.room.history_visibility", "")
                    .await?;
                Ok::<_, Error>(setting.is_some_and(|e| {
                    e.pdu.content_value()["history_visibility"] == "world_readable"
                }))
            };
        if !joined && !readable().await? {
            return Err(Error::forbidden("you are not in this room"));
        }
        Ok(self
            .store
            .aliases_of(room_id)
            .await?
            .into_iter()
            .filter_map(|a| ruma::OwnedRoomAliasId::try_from(a).ok())
            .collect())
    }

    /// Name, topic, avatar, alias, type, version, encryption, join rule (with the rooms a
    /// restricted one allows) and member count of a room, for directories.
    pub async fn summary(&self, room_id: &RoomId) -> Result<Value> {
        let state = self.store.current_state(room_id).await?;
        Ok(summary_of(room_id, &state))
    }

    /// A page of a public room directory: this server's, or (`server` naming another) that
    /// server's, asked over federation.
    pub async fn public_rooms_page(
        &self,
        server: Option<&ServerName>,
        query: &PublicRoomsQuery,
    ) -> Result<PublicRoomsPage> {
        if let Some(server) = server.filter(|s| *s != self.config.server_name) {
            return self.remote.public_rooms(server, query).await;
        }
        let rooms = self.public_rooms(query.filter.as_deref()).await?;
        Ok(page_of(rooms, query))
    }

    /// This server's public rooms whose name, topic or alias holds `filter`, the most joined
    /// first.
    pub async fn public_rooms(&self, filter: Option<&str>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for room_id in self.store.public_rooms().await? {
            let s = self.summary(&room_id).await?;
            if let Some(term) = filter.map(str::to_lowercase).filter(|t| !t.is_empty()) {
                let hay = format!(
                    "{} {} {}",
                    s["name"].as_str().unwrap_or(""),
                    s["topic"].as_str().unwrap_or(""),
                    s["canonical_alias"].as_str().unwrap_or("")
                )
                .to_lowercase();
                if !hay.contains(&term) {
                    continue;
                }
            }
            out.push(s);
        }
        out.sort_by_key(|s| std::cmp::Reverse(s["num_joined_members"].as_u64().unwrap_or(0)));
        Ok(out)
    }

    pub async fn set_visibility(
        &self,
        session: &Session,
        room_id: &RoomId,
        public: bool,
    ) -> Result<()> {
        if !self
            .has_level(room_id, &session.user_id, "state_default", 50)
            .await?
        {
            return Err(Error::forbidden("only room admins can publish the room"));
        }
        self.store.set_public(room_id, public).await
    }
}

/// The directory summary of a room from its current `state`.
pub(super) fn summary_of(room_id: &RoomId, state: &[StoredEvent]) -> Value {
    let get = |kind: &str, field: &str| -> Option<Value> {
        state
            .iter()
            .find(|e| e.pdu.kind.to_string() == kind && e.pdu.state_key.as_deref() == Some(""))
            .and_then(|e| e.pdu.content_value().get(field).cloned())
    };
    let joined = state
        .iter()
        .filter(|e| e.pdu.membership() == Some(MembershipState::Join))
        .count();
    let mut v = json!({
        "room_id": room_id,
        "num_joined_members": joined,
        "world_readable": get("m.room.history_visibility", "history_visibility") == Some(json!("world_readable")),
        "guest_can_join": get("m.room.guest_access", "guest_access") == Some(json!("can_join")),
        "join_rule": get("m.room.join_rules", "join_rule").unwrap_or(json!("invite")),
    });
    for (kind, field, out) in [
        ("m.room.name", "name", "name"),
        ("m.room.topic", "topic", "topic"),
        ("m.room.avatar", "url", "avatar_url"),
        ("m.room.canonical_alias", "alias", "canonical_alias"),
        ("m.room.create", "type", "room_type"),
        ("m.room.create", "room_version", "room_version"),
        ("m.room.encryption", "algorithm", "encryption"),
    ] {
        if let Some(val) = get(kind, field) {
            v[out] = val;
        }
    }
    if matches!(
        v["join_rule"].as_str(),
        Some("restricted" | "knock_restricted")
    ) {
        let allowed: Vec<Value> = get("m.room.join_rules", "allow")
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|rule| rule["type"] == "m.room_membership")
            .filter_map(|rule| rule.get("room_id").cloned())
            .collect();
        v["allowed_room_ids"] = Value::Array(allowed);
    }
    v
}
