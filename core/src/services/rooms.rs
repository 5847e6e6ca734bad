//! Rooms: creation, membership, sending, state, redaction, aliases, the public directory, and
//! the read side of room history (messages, context, members, relations).

use ruma::events::room::member::MembershipState;
use std::sync::Arc;

use ruma::{
    events::TimelineEventType, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

use crate::{
    error::ErrorCode,
    intent::{EventIntent, RoomBatch},
    ports::{Direction, EventBus, RoomStore, UserStore},
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

/// A create event's timestamp: `ts`, or later than every one this process gave before.
fn unique_create_ts(ts: u64) -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut last = LAST.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        let next = ts.max(last + 1);
        match LAST.compare_exchange(
            last,
            next,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
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
        }
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

    /// `POST /createRoom`.
    pub async fn create_room(&self, session: &Session, req: CreateRoom) -> Result<OwnedRoomId> {
        let creator = &session.user_id;
        let version = req
            .room_version
            .clone()
            .unwrap_or_else(|| self.config.default_room_version.clone());
        if !ServerConfig::supported_room_versions().contains(&version) {
            return Err(Error::matrix(
                ErrorCode::UnsupportedRoomVersion,
                format!("room version {version} is not supported"),
            ));
        }
        let rules = rules_for(&version)?;
        let alias = match &req.room_alias_name {
            Some(local) => {
                let alias = format!("#{local}:{}", self.config.server_name);
                ruma::RoomAliasId::parse(&alias)
                    .map_err(|_| Error::invalid_param("invalid room alias name"))?;
                if self.store.alias(&alias).await?.is_some() {
                    return Err(Error::matrix(
                        ErrorCode::RoomInUse,
                        "room alias already taken",
                    ));
                }
                Some(alias)
            }
            None => None,
        };
        for invitee in &req.invite {
            if invitee.server_name() == self.config.server_name
                && self.users.user(invitee).await?.is_none()
            {
                return Err(Error::not_found(format!("unknown user {invitee}")));
            }
        }
        let preset = req.preset.unwrap_or(if req.public {
            RoomPreset::PublicChat
        } else {
            RoomPreset::PrivateChat
        });
        let ev = |kind: TimelineEventType, key: Option<&str>, content: Value| {
            EventIntent::new(creator.clone(), kind, key.map(str::to_owned), content)
        };

        let mut create = req.creation_content.clone().unwrap_or_default();
        if create.get("type").is_some_and(|t| !t.is_string()) {
            return Err(Error::bad_json("creation_content.type must be a string"));
        }
        create.insert("room_version".into(), json!(version));
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".into(), json!(creator));
        } else {
            create.remove("creator");
        }
        let mut create_intent = ev(
            TimelineEventType::RoomCreate,
            Some(""),
            Value::Object(create),
        );
        let by_create = rules.authorization.room_create_event_id_as_room_id;
        if by_create {
            // The room id is the create event's hash: two rooms made by one user in one
            // millisecond with the same content must not get the same one.
            create_intent.origin_server_ts = unique_create_ts(create_intent.origin_server_ts);
        }
        let room_id = if by_create {
            self.room_id_of_create(&rules, &create_intent)?
        } else {
            RoomId::new_v1(&self.config.server_name)
        };

        let mut events = vec![create_intent];
        events.push(ev(
            TimelineEventType::RoomMember,
            Some(creator.as_str()),
            Value::Object(self.member_content(creator, MembershipState::Join).await?),
        ));

        let mut users = Map::new();
        if !rules.authorization.explicitly_privilege_room_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if preset == RoomPreset::TrustedPrivateChat {
            for i in &req.invite {
                users.insert(i.to_string(), json!(100));
            }
        }
        let mut power = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
                "m.room.server_acl": 100, "m.room.encryption": 100,
            },
            "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50,
            "invite": 0, "notifications": { "room": 50 },
        });
        if let (Some(over), Value::Object(p)) = (&req.power_level_content_override, &mut power) {
            for (k, v) in over {
                p.insert(k.clone(), v.clone());
            }
        }
        events.push(ev(TimelineEventType::RoomPowerLevels, Some(""), power));
        if let Some(alias) = &alias {
            events.push(ev(
                TimelineEventType::RoomCanonicalAlias,
                Some(""),
                json!({ "alias": alias }),
            ));
        }
        let join_rule = if preset == RoomPreset::PublicChat {
            "public"
        } else {
            "invite"
        };
        events.push(ev(
            TimelineEventType::RoomJoinRules,
            Some(""),
            json!({ "join_rule": join_rule }),
        ));
        events.push(ev(
            TimelineEventType::RoomHistoryVisibility,
            Some(""),
            json!({ "history_visibility": "shared" }),
        ));
        if preset != RoomPreset::PublicChat {
            events.push(ev(
                TimelineEventType::RoomGuestAccess,
                Some(""),
                json!({ "guest_access": "can_join" }),
            ));
        }
        for (kind, key, content) in &req.initial_state {
            if kind == "m.room.create" || kind == "m.room.member" {
                return Err(Error::invalid_param(format!(
                    "{kind} may not be in initial_state"
                )));
            }
            let idx = events
                .iter()
                .position(|e| e.kind.to_string() == *kind && e.state_key.as_deref() == Some(key));
            let intent = ev(kind.as_str().into(), Some(key), content.clone());
            match idx {
                Some(i) => events[i] = intent,
                None => events.push(intent),
            }
        }
        if let Some(name) = &req.name {
            events.push(ev(
                TimelineEventType::RoomName,
                Some(""),
                json!({ "name": name }),
            ));
        }
        if let Some(topic) = &req.topic {
            events.push(ev(
                TimelineEventType::RoomTopic,
                Some(""),
                json!({ "topic": topic }),
            ));
        }
        for invitee in &req.invite {
            let mut c = self
                .member_content(invitee, MembershipState::Invite)
                .await?;
            if req.is_direct {
                c.insert("is_direct".into(), json!(true));
            }
            events.push(ev(
                TimelineEventType::RoomMember,
                Some(invitee.as_str()),
                Value::Object(c),
            ));
        }
        let mut room_id = room_id;
        let mut attempts = 0;
        loop {
            let submitted = self
                .bus
                .submit(RoomBatch {
                    room_id: room_id.clone(),
                    create_version: Some(version.clone()),
                    events: events.clone(),
                })
                .await;
            match submitted {
                // Another instance made the same create event in the same millisecond.
                Err(Error::Matrix {
                    code: ErrorCode::RoomInUse,
                    ..
                }) if by_create && attempts < 5 => {
                    attempts += 1;
                    if let Some(first) = events.first_mut() {
                        first.origin_server_ts = unique_create_ts(first.origin_server_ts + 1);
                        room_id = self.room_id_of_create(&rules, first)?;
                    }
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        if let Some(alias) = &alias {
            self.store.set_alias(alias, &room_id, creator).await?;
        }
        if req.public {
            self.store.set_public(&room_id, true).await?;
        }
        Ok(room_id)
    }

    /// The id of the room `create` makes, in room versions where it is the event's hash.
    fn room_id_of_create(
        &self,
        rules: &ruma::room_version_rules::RoomVersionRules,
        create: &EventIntent,
    ) -> Result<OwnedRoomId> {
        let placeholder = RoomId::parse("!placeholder:localhost").map_err(Error::internal)?;
        let (pdu, _) = build_pdu(
            &self.signing,
            &placeholder,
            rules,
            create,
            vec![],
            vec![],
            1,
        )?;
        room_id_from_create(&pdu.event_id)
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

    pub async fn join(
        &self,
        session: &Session,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        if self.store.room_version(room_id).await?.is_none() {
            return Err(Error::not_found("no such room on this server"));
        }
        if let Some(m) = self.store.membership(room_id, &session.user_id).await? {
            if m.membership == MembershipState::Join {
                return Ok(());
            }
        }
        let mut c = self
            .member_content(&session.user_id, MembershipState::Join)
            .await?;
        if let Some(r) = reason {
            c.insert("reason".into(), json!(r));
        }
        let intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomMember,
            Some(session.user_id.to_string()),
            Value::Object(c),
        );
        self.submit_one(room_id, intent).await?;
        Ok(())
    }

    /// Sets another user's membership: invite, kick (leave), ban, unban (leave).
    pub async fn set_membership(
        &self,
        session: &Session,
        room_id: &RoomId,
        target: &UserId,
        membership: MembershipState,
        reason: Option<&str>,
    ) -> Result<()> {
        self.ensure_room(room_id).await?;
        let mut c = if membership == MembershipState::Invite {
            if target.server_name() == self.config.server_name
                && self.users.user(target).await?.is_none()
            {
                return Err(Error::not_found("unknown user"));
            }
            if let Some(m) = self.store.membership(room_id, target).await? {
                if m.membership == MembershipState::Join || m.membership == MembershipState::Ban {
                    return Err(Error::forbidden(format!(
                        "{target} is already in the room or banned"
                    )));
                }
            }
            self.member_content(target, MembershipState::Invite).await?
        } else {
            let mut c = Map::new();
            c.insert("membership".into(), json!(membership));
            c
        };
        if membership == MembershipState::Leave && target != session.user_id {
            // kick or unban: the target must have something to undo
            match self.store.membership(room_id, target).await? {
                Some(m) if m.membership != MembershipState::Leave => {}
                _ => return Err(Error::forbidden(format!("{target} is not in the room"))),
            }
        }
        if let Some(r) = reason {
            c.insert("reason".into(), json!(r));
        }
        let intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomMember,
            Some(target.to_string()),
            Value::Object(c),
        );
        self.submit_one(room_id, intent).await?;
        Ok(())
    }

    pub async fn leave(
        &self,
        session: &Session,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.ensure_room(room_id).await?;
        match self.store.membership(room_id, &session.user_id).await? {
            Some(m)
                if m.membership == MembershipState::Join
                    || m.membership == MembershipState::Invite
                    || m.membership == MembershipState::Knock => {}
            Some(m) if m.membership == MembershipState::Leave => return Ok(()),
            _ => return Err(Error::forbidden("you are not in this room")),
        }
        let mut c = Map::new();
        c.insert("membership".into(), json!("leave"));
        if let Some(r) = reason {
            c.insert("reason".into(), json!(r));
        }
        let intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomMember,
            Some(session.user_id.to_string()),
            Value::Object(c),
        );
        self.submit_one(room_id, intent).await?;
        Ok(())
    }

    pub async fn forget(&self, session: &Session, room_id: &RoomId) -> Result<()> {
        match self.store.membership(room_id, &session.user_id).await? {
            Some(m)
                if m.membership == MembershipState::Join
                    || m.membership == MembershipState::Invite =>
            {
                Err(Error::matrix(
                    ErrorCode::Unknown,
                    "leave the room before forgetting it",
                ))
            }
            _ => self.store.forget(room_id, &session.user_id).await,
        }
    }

    async fn ensure_room(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        self.store
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::not_found("unknown room"))
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.
    pub async fn send(
        &self,
        session: &Session,
        room_id: &RoomId,
        kind: &str,
        content: Value,
        txn_id: Option<&str>,
        ts: Option<u64>,
    ) -> Result<OwnedEventId> {
        if !content.is_object() {
            return Err(Error::bad_json("content must be a JSON object"));
        }
        if kind == "m.room.redaction" || kind == "m.room.create" {
            return Err(Error::invalid_param(format!(
                "send {kind} through its own endpoint"
            )));
        }
        // The sequencer answers M_NOT_FOUND for an unknown room: no lookup here.
        let mut intent = EventIntent::new(session.user_id.clone(), kind.into(), None, content);
        if let Some(ts) = ts {
            intent.origin_server_ts = ts;
        }
        intent.txn = txn_id.map(|t| (session.device_id.clone(), t.to_owned()));
        self.submit_one(room_id, intent).await
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        session: &Session,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: Value,
        ts: Option<u64>,
    ) -> Result<OwnedEventId> {
        if !content.is_object() {
            return Err(Error::bad_json("content must be a JSON object"));
        }
        if kind == "m.room.create" {
            return Err(Error::forbidden("m.room.create cannot be sent"));
        }
        if kind == "m.room.canonical_alias" {
            for alias in content.get("alias").into_iter().chain(
                content
                    .get("alt_aliases")
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten(),
            ) {
                let alias = alias
                    .as_str()
                    .ok_or_else(|| Error::invalid_param("aliases must be strings"))?;
                match self.store.alias(alias).await? {
                    Some((r, _)) if r == room_id => {}
                    _ => {
                        return Err(Error::matrix(
                            ErrorCode::BadAlias,
                            format!("{alias} does not point to this room"),
                        ))
                    }
                }
            }
        }
        let mut intent = EventIntent::new(
            session.user_id.clone(),
            kind.into(),
            Some(state_key.to_owned()),
            content,
        );
        if let Some(ts) = ts {
            intent.origin_server_ts = ts;
        }
        self.submit_one(room_id, intent).await
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.
    pub async fn redact(
        &self,
        session: &Session,
        room_id: &RoomId,
        target: &EventId,
        reason: Option<&str>,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        self.ensure_room(room_id).await?;
        let ev = self
            .store
            .event(target)
            .await?
            .filter(|e| e.pdu.room_id() == room_id)
            .ok_or_else(|| Error::not_found("event not found"))?;
        if ev.pdu.sender != session.user_id
            && !self
                .has_level(room_id, &session.user_id, "redact", 50)
                .await?
        {
            return Err(Error::forbidden("you may only redact your own events"));
        }
        let content = match reason {
            Some(r) => json!({ "reason": r }),
            None => json!({}),
        };
        let mut intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomRedaction,
            None,
            content,
        );
        intent.redacts = Some(target.to_owned());
        intent.txn = Some((session.device_id.clone(), format!("redact:{txn_id}")));
        self.submit_one(room_id, intent).await
    }

    /// Changes the display name or avatar in every room the user has joined.
    pub async fn propagate_profile(&self, session: &Session) -> Result<()> {
        for m in self.store.memberships(&session.user_id).await? {
            if m.membership != MembershipState::Join {
                continue;
            }
            let c = self
                .member_content(&session.user_id, MembershipState::Join)
                .await?;
            let intent = EventIntent::new(
                session.user_id.clone(),
                TimelineEventType::RoomMember,
                Some(session.user_id.to_string()),
                Value::Object(c),
            );
            if let Err(e) = self.submit_one(&m.room_id, intent).await {
                tracing::warn!(room_id = %m.room_id, error = %e, "could not update profile in room");
            }
        }
        Ok(())
    }

    /// The highest stream position the user may read in the room, or `M_FORBIDDEN`.
    /// Members read everything ("shared" history); former members read up to their leaving.
    pub async fn visible_until(&self, user_id: &UserId, room_id: &RoomId) -> Result<i64> {
        self.membership_until(user_id, room_id).await
    }

    /// `(floor, until)`: the member reads positions in `(floor, until]` (history visibility
    /// and departure both apply).
    pub async fn visible_range(&self, user_id: &UserId, room_id: &RoomId) -> Result<(i64, i64)> {
        let until = self.membership_until(user_id, room_id).await?;
        let floor = match self.store.membership(room_id, user_id).await? {
            Some(m) => crate::visibility::floor(self.store.as_ref(), room_id, &m).await?,
            None => 0,
        };
        Ok((floor, until))
    }

    async fn membership_until(&self, user_id: &UserId, room_id: &RoomId) -> Result<i64> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == MembershipState::Join => Ok(i64::MAX),
            Some(m)
                if m.membership == MembershipState::Leave
                    || m.membership == MembershipState::Ban =>
            {
                if self
                    .store
                    .event(&m.event_id)
                    .await?
                    .and_then(|e| e.unsigned)
                    .and_then(|u| {
                        u.get("prev_content")
                            .and_then(|p| p.get("membership"))
                            .cloned()
                    })
                    == Some(json!("join"))
                {
                    Ok(m.pos)
                } else {
                    Err(Error::forbidden("you are not a member of this room"))
                }
            }
            _ => {
                if self.is_world_readable(room_id).await? {
                    Ok(i64::MAX)
                } else {
                    Err(Error::forbidden("you are not a member of this room"))
                }
            }
        }
    }

    async fn is_world_readable(&self, room_id: &RoomId) -> Result<bool> {
        Ok(self
            .store
            .state_event(room_id, "m.room.history_visibility", "")
            .await?
            .is_some_and(|e| {
                e.pdu.content_value().get("history_visibility") == Some(&json!("world_readable"))
            }))
    }

    pub async fn event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<StoredEvent> {
        let (floor, until) = self.visible_range(user_id, room_id).await?;
        self.store
            .event(event_id)
            .await?
            .filter(|e| e.pdu.room_id() == room_id && e.pos > floor && e.pos <= until)
            .ok_or_else(|| Error::not_found("event not found"))
    }

    pub async fn state(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        self.visible_until(user_id, room_id).await?;
        self.store.current_state(room_id).await
    }

    pub async fn state_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: &str,
        key: &str,
    ) -> Result<StoredEvent> {
        self.visible_until(user_id, room_id).await?;
        self.store
            .state_event(room_id, kind, key)
            .await?
            .ok_or_else(|| Error::not_found("state event not found"))
    }

    pub async fn members(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        self.visible_until(user_id, room_id).await?;
        Ok(self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .filter(|e| e.pdu.kind == TimelineEventType::RoomMember)
            .collect())
    }

    /// `GET /rooms/{roomId}/messages`. Tokens are stream boundaries (see [`parse_token`]).
    pub async fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<&str>,
        to: Option<&str>,
        dir: Direction,
        limit: usize,
    ) -> Result<Page> {
        let (floor, until_visible) = self.visible_range(user_id, room_id).await?;
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let now = i64::MAX;
        let from = match from {
            Some(t) => parse_token(t)?,
            None if dir == Direction::Backward => now,
            None => 0,
        };
        let to = to.map(parse_token).transpose()?;
        let events = match dir {
            Direction::Backward => {
                let after = to.unwrap_or(0).max(floor);
                self.store
                    .timeline(
                        room_id,
                        after,
                        from.min(until_visible),
                        Direction::Backward,
                        limit,
                    )
                    .await?
            }
            Direction::Forward => {
                let until = to.unwrap_or(now).min(until_visible);
                self.store
                    .timeline(room_id, from.max(floor), until, Direction::Forward, limit)
                    .await?
            }
        };
        let end = if events.len() < limit {
            None
        } else {
            events.last().map(|e| match dir {
                Direction::Backward => make_token(e.pos - 1),
                Direction::Forward => make_token(e.pos),
            })
        };
        Ok(Page { events, end })
    }

    /// `GET /rooms/{roomId}/context/{eventId}`: events before and after, and the state.
    pub async fn context(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> Result<(StoredEvent, Page, Page, Vec<StoredEvent>)> {
        let ev = self.event(user_id, room_id, event_id).await?;
        let (floor, until) = self.visible_range(user_id, room_id).await?;
        let half = (limit.min(self.config.max_timeline_limit) / 2).max(1);
        let before = self
            .store
            .timeline(room_id, floor, ev.pos - 1, Direction::Backward, half)
            .await?;
        let after = self
            .store
            .timeline(room_id, ev.pos, until, Direction::Forward, half)
            .await?;
        let start = make_token(before.last().map(|e| e.pos - 1).unwrap_or(ev.pos - 1));
        let end = make_token(after.last().map(|e| e.pos).unwrap_or(ev.pos));
        let state = self.store.current_state(room_id).await?;
        Ok((
            ev,
            Page {
                events: before,
                end: Some(start),
            },
            Page {
                events: after,
                end: Some(end),
            },
            state,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn relations(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        let until = self.visible_until(user_id, room_id).await?;
        let before = match from {
            Some(t) => parse_token(t)?.min(until),
            None => until,
        };
        let limit = limit.clamp(1, self.config.max_timeline_limit);
        let events = self
            .store
            .relations(room_id, event_id, rel_type, event_type, before, limit)
            .await?;
        let end = (events.len() == limit)
            .then(|| events.last().map(|e| make_token(e.pos - 1)))
            .flatten();
        Ok(Page { events, end })
    }

    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<OwnedRoomId>> {
        Ok(self
            .store
            .memberships(user_id)
            .await?
            .into_iter()
            .filter(|m| m.membership == MembershipState::Join)
            .map(|m| m.room_id)
            .collect())
    }

    pub async fn set_alias(&self, session: &Session, alias: &str, room_id: &RoomId) -> Result<()> {
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

    /// Name, topic, avatar, alias, join rule and member count of a room, for directories.
    pub async fn summary(&self, room_id: &RoomId) -> Result<Value> {
        let state = self.store.current_state(room_id).await?;
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
        ] {
            if let Some(val) = get(kind, field) {
                v[out] = val;
            }
        }
        Ok(v)
    }

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
        let have = state::power_level(&version, create.as_ref(), power.as_ref(), user_id);
        Ok(have >= state::required_level(power.as_ref(), level, default))
    }
}
