//! `createRoom`: the initial events of a new room, and its id.

use ruma::events::room::member::MembershipState;
use ruma::{events::TimelineEventType, OwnedRoomId, RoomId};
use serde_json::{json, Map, Value};

use super::*;

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

impl Rooms {
    /// `POST /createRoom`.
    pub async fn create_room(&self, session: &Session, req: CreateRoom) -> Result<OwnedRoomId> {
        session.ensure_may_add()?;
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
            Some(local) => Some(self.free_alias(local).await?),
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

        let events = self
            .initial_events(
                creator,
                &req,
                preset,
                &rules,
                alias.as_deref(),
                create_intent,
            )
            .await?;
        let room_id = self
            .submit_create(room_id, &version, &rules, events, by_create)
            .await?;
        if let Some(alias) = &alias {
            self.store.set_alias(alias, &room_id, creator).await?;
        }
        if req.public {
            self.store.set_public(&room_id, true).await?;
        }
        self.invite_remote_invitees(session, &room_id, &req).await;
        Ok(room_id)
    }

    /// Invites the users of other servers that `createRoom` names, each through its server. A
    /// server that cannot be reached leaves its user uninvited (and logged), as Synapse does:
    /// the room exists, and the invite can be sent again.
    async fn invite_remote_invitees(&self, session: &Session, room_id: &RoomId, req: &CreateRoom) {
        for invitee in req
            .invite
            .iter()
            .filter(|i| i.server_name() != self.config.server_name)
        {
            let invited = async {
                let mut c = self
                    .member_content(invitee, MembershipState::Invite)
                    .await?;
                if req.is_direct {
                    c.insert("is_direct".into(), json!(true));
                }
                self.invite_remote(session, room_id, invitee, c, None).await
            };
            if let Err(e) = invited.await {
                tracing::warn!(%room_id, %invitee, error = %e, "a user of another server was not invited");
            }
        }
    }

    /// `#local:server`, if it is a valid alias nobody has taken.
    async fn free_alias(&self, local: &str) -> Result<String> {
        let alias = format!("#{local}:{}", self.config.server_name);
        ruma::RoomAliasId::parse(&alias)
            .map_err(|_| Error::invalid_param("invalid room alias name"))?;
        if self.store.alias(&alias).await?.is_some() {
            return Err(Error::matrix(
                ErrorCode::RoomInUse,
                "room alias already taken",
            ));
        }
        Ok(alias)
    }

    /// The events that make the room: create, the creator's join, power levels, the preset's
    /// rules, `initial_state`, name, topic and the invites, in the order the spec gives.
    async fn initial_events(
        &self,
        creator: &OwnedUserId,
        req: &CreateRoom,
        preset: RoomPreset,
        rules: &ruma::room_version_rules::RoomVersionRules,
        alias: Option<&str>,
        create_intent: EventIntent,
    ) -> Result<Vec<EventIntent>> {
        let ev = |kind: TimelineEventType, key: Option<&str>, content: Value| {
            EventIntent::new(creator.clone(), kind, key.map(str::to_owned), content)
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
        if let Some(alias) = alias {
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
        // Users of other servers are invited once the room exists (their servers counter-sign).
        for invitee in req
            .invite
            .iter()
            .filter(|i| i.server_name() == self.config.server_name)
        {
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
        Ok(events)
    }

    /// Submits the room's first batch; where the room id is the create event's hash, a clash
    /// with a room another instance made in the same millisecond moves the timestamp on.
    async fn submit_create(
        &self,
        mut room_id: OwnedRoomId,
        version: &RoomVersionId,
        rules: &ruma::room_version_rules::RoomVersionRules,
        mut events: Vec<EventIntent>,
        by_create: bool,
    ) -> Result<OwnedRoomId> {
        let mut attempts = 0;
        loop {
            let submitted = self
                .bus
                .submit(RoomBatch {
                    room_id: room_id.clone(),
                    create_version: Some(version.clone()),
                    remote: Vec::new(),
                    join: None,
                    backfill: Vec::new(),
                    outside: None,
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
                        room_id = self.room_id_of_create(rules, first)?;
                    }
                }
                other => {
                    other?;
                    break;
                }
            }
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
}
