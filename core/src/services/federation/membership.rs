//! Memberships other servers ask for in this server's rooms: a join (`make_join` gives the
//! template the joining server signs, `send_join` adds it), a leave (`make_leave`,
//! `send_leave`), and an invite of a user of this server (`/invite`), which this server
//! counter-signs and keeps.

use ruma::{
    canonical_json::redact,
    events::{room::member::MembershipState, TimelineEventType},
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedServerName, RoomId,
    RoomVersionId, ServerName, UserId,
};
use serde_json::{json, Value};

use super::{acl::check_acl, reads::state_before, template::membership_template, Inbound};
use crate::{
    intent::{OutsideMembership, ReceivedPdu, RoomBatch},
    join_rules::{voucher, AUTHORISED_VIA},
    ports::RoomSnapshot,
    remote_pdu::verify_pdu,
    sequencer::{rules_for, SigningKey},
    Error, Result,
};

/// What a joining server gets back: the room's state before its join, and the auth chain of
/// that state and of the join, as PDUs.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub state: Vec<String>,
    pub auth_chain: Vec<String>,
    pub servers_in_room: Vec<OwnedServerName>,
    /// The join as signed here too, when a member here vouched for it.
    pub event: Option<String>,
}

impl Inbound {
    async fn version(&self, room_id: &RoomId) -> Result<RoomVersionId> {
        self.store
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))
    }

    /// The room, for a membership template of `user_id`, a user of `origin`: only a room
    /// this server is in.
    pub(super) async fn room_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<RoomSnapshot> {
        crate::services::federation::check_user_of(origin, user_id)?;
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))?;
        let resident = snapshot
            .state
            .iter()
            .any(|p| p.kind == TimelineEventType::RoomCreate);
        if !resident {
            return Err(Error::not_found(format!("this server is not in {room_id}")));
        }
        check_acl(self.store.as_ref(), room_id, origin).await?;
        Ok(snapshot)
    }

    /// The membership of `user_id` in the room `snapshot` shows.
    pub(super) fn membership_in(
        snapshot: &RoomSnapshot,
        user_id: &UserId,
    ) -> Option<MembershipState> {
        snapshot
            .state
            .iter()
            .find(|p| {
                p.kind == TimelineEventType::RoomMember
                    && p.state_key.as_deref() == Some(user_id.as_str())
            })
            .and_then(|p| p.membership())
    }

    /// The join event `origin` may sign for `user_id` (`make_join`): on the room's heads, its
    /// auth events from the room's state. Only for a user of `origin`, a room version it
    /// speaks, and a room the user may join: public, invited, or (a restricted room) a member
    /// of an allowed room, vouched for by a member here (`join_authorised_via_users_server`).
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        let snapshot = self.room_for(origin, room_id, user_id).await?;
        speaks(&snapshot, versions)?;
        let mut content = json!({ "membership": "join" });
        let own = &self.signing.server_name;
        if let Some(via) = voucher(self.store.as_ref(), &snapshot, user_id, own).await? {
            content[AUTHORISED_VIA] = json!(via);
        } else {
            let public = snapshot.state.iter().any(|p| {
                p.kind == TimelineEventType::RoomJoinRules
                    && p.content_value().get("join_rule") == Some(&Value::from("public"))
            });
            let member = matches!(
                Self::membership_in(&snapshot, user_id),
                Some(MembershipState::Invite | MembershipState::Join)
            );
            if !public && !member {
                return Err(Error::forbidden(format!(
                    "{user_id} may not join {room_id}"
                )));
            }
        }
        let template = membership_template(&snapshot, room_id, user_id, content)?;
        Ok((snapshot.version, template))
    }

    /// Adds the join `origin` signed (`send_join`), and answers the room's state before it
    /// with the auth chain. The join must be its own user's, under `event_id`. A join vouched
    /// for by a member here is signed here too, and answered as signed.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &str,
    ) -> Result<JoinAnswer> {
        let vouched = self.vouch(room_id, pdu).await?;
        let join = self
            .add_own_membership(
                origin,
                room_id,
                event_id,
                vouched.as_deref().unwrap_or(pdu),
                MembershipState::Join,
            )
            .await?;
        let state = state_before(self.store.as_ref(), room_id, event_id).await?;
        let mut wanted = state.clone();
        wanted.extend(join.pdu.auth_events.iter().cloned());
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
            event: vouched,
        })
    }

    /// A join (`pdu`) that names a member of this server in `join_authorised_via_users_server`,
    /// signed here: only while the joining user still meets the room's allow list (the auth
    /// rules then check the named member's membership and power). `None` for a join that
    /// names nobody here.
    async fn vouch(&self, room_id: &RoomId, pdu: &str) -> Result<Option<String>> {
        let mut object: CanonicalJsonObject = serde_json::from_str(pdu)
            .map_err(|e| Error::bad_json(format!("a PDU must be canonical JSON: {e}")))?;
        let field = |name: &str| match object.get(name) {
            Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let named = match object.get("content") {
            Some(CanonicalJsonValue::Object(c)) => match c.get(AUTHORISED_VIA) {
                Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
                _ => None,
            },
            _ => None,
        };
        let Some(named) = named.and_then(|u| UserId::parse(u).ok()) else {
            return Ok(None);
        };
        if named.server_name() != self.signing.server_name {
            return Ok(None);
        }
        let user = field("state_key")
            .and_then(|u| UserId::parse(u).ok())
            .ok_or_else(|| Error::bad_json("a join names its user in `state_key`"))?;
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))?;
        // Refused unless the user still meets the allow list (or needs no voucher at all).
        voucher(
            self.store.as_ref(),
            &snapshot,
            &user,
            &self.signing.server_name,
        )
        .await?;
        add_signature(&self.signing, &snapshot.version, &mut object)?;
        Ok(Some(serde_json::to_string(&object)?))
    }

    async fn pdus(&self, ids: &[OwnedEventId]) -> Result<Vec<String>> {
        self.store.events_json(ids).await
    }

    /// The leave event `origin` may sign for `user_id` (`make_leave`): for a user who is in
    /// the room, invited to it, or knocking.
    pub async fn make_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<(RoomVersionId, Value)> {
        let snapshot = self.room_for(origin, room_id, user_id).await?;
        let may_leave = matches!(
            Self::membership_in(&snapshot, user_id),
            Some(MembershipState::Join | MembershipState::Invite | MembershipState::Knock)
        );
        if !may_leave {
            return Err(Error::forbidden(format!("{user_id} is not in {room_id}")));
        }
        let template = membership_template(
            &snapshot,
            room_id,
            user_id,
            json!({ "membership": "leave" }),
        )?;
        Ok((snapshot.version, template))
    }

    /// Adds the leave `origin` signed (`send_leave`): its own user's, under `event_id`.
    pub async fn send_leave(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &str,
    ) -> Result<()> {
        self.add_own_membership(origin, room_id, event_id, pdu, MembershipState::Leave)
            .await?;
        Ok(())
    }

    /// Adds a membership event (`membership`) of a user of `origin` for itself, checked
    /// first — signatures, hash, id — then through the room's lane: the event as added.
    pub(super) async fn add_own_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &str,
        membership: MembershipState,
    ) -> Result<crate::StoredEvent> {
        let version = self.version(room_id).await?;
        check_acl(self.store.as_ref(), room_id, origin).await?;
        let verified = verify_pdu(&self.keys, &version, room_id, pdu).await?;
        let event = &verified.pdu;
        if event.event_id != event_id {
            return Err(Error::invalid_param(format!(
                "the event's id is {}, not {event_id}",
                event.event_id
            )));
        }
        let own = event.kind == TimelineEventType::RoomMember
            && event.state_key.as_deref() == Some(event.sender.as_str())
            && event.sender.server_name() == origin
            && event.membership() == Some(membership.clone());
        if !own {
            return Err(Error::forbidden(format!(
                "not a {membership} of a user of {origin}"
            )));
        }
        let added = self
            .bus
            .submit(RoomBatch::received(
                room_id.to_owned(),
                vec![verified.into()],
            ))
            .await?;
        added
            .into_iter()
            .next()
            .ok_or_else(|| Error::forbidden(format!("the {membership} is not allowed now")))
    }

    /// Counter-signs the invite of a user of this server by a user of `origin` (`/invite`),
    /// and keeps it: in a room this server is in, checked against the room's state; in
    /// another, on its own with what `origin` told of the room. Answers the event as signed
    /// by both servers.
    pub async fn invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        pdu: &str,
        invite_state: Vec<Value>,
    ) -> Result<String> {
        rules_for(version)?;
        check_acl(self.store.as_ref(), room_id, origin).await?;
        let verified = verify_pdu(&self.keys, version, room_id, pdu).await?;
        let event = &verified.pdu;
        if event.event_id != event_id {
            return Err(Error::invalid_param(format!(
                "the event's id is {}, not {event_id}",
                event.event_id
            )));
        }
        let is_invite = event.kind == TimelineEventType::RoomMember
            && event.membership() == Some(MembershipState::Invite)
            && event.sender.server_name() == origin;
        if !is_invite {
            return Err(Error::forbidden(format!(
                "not an invite by a user of {origin}"
            )));
        }
        let invitee = event
            .state_key
            .as_deref()
            .and_then(|k| UserId::parse(k).ok())
            .ok_or_else(|| Error::invalid_param("the invite names no user"))?;
        if invitee.server_name() != self.signing.server_name
            || self.users.user(&invitee).await?.is_none()
        {
            return Err(Error::not_found(format!("{invitee} is not a user here")));
        }
        // The counter-signature covers the redacted event, as every event signature does (the
        // content hash is computed again, and is the same).
        let mut object: CanonicalJsonObject = serde_json::from_str(&verified.json)?;
        ruma::signatures::hash_and_sign_event(
            self.signing.server_name.as_str(),
            &self.signing.key,
            &mut object,
            &rules_for(version)?.redaction,
        )
        .map_err(Error::internal)?;
        let json = serde_json::to_string(&object)?;
        let outside = OutsideMembership {
            room_version: version.clone(),
            event: ReceivedPdu {
                event_id: event_id.to_owned(),
                json: json.clone(),
            },
            stripped_state: invite_state.into_iter().filter_map(stripped).collect(),
        };
        let added = self
            .bus
            .submit(RoomBatch {
                outside: Some(Box::new(outside)),
                ..RoomBatch::intents(room_id.to_owned(), Vec::new())
            })
            .await?;
        if added.is_empty() {
            return Err(Error::forbidden("the invite is not allowed now"));
        }
        Ok(json)
    }
}

/// The room is of a version the asking server speaks (it listed `versions`), else
/// `M_INCOMPATIBLE_ROOM_VERSION`.
pub(super) fn speaks(snapshot: &RoomSnapshot, versions: &[RoomVersionId]) -> Result<()> {
    if versions.contains(&snapshot.version) {
        Ok(())
    } else {
        Err(Error::IncompatibleRoomVersion(snapshot.version.clone()))
    }
}

/// Adds this server's signature to an event another server built and signed: over the
/// redacted event, as every event signature is; the event's hashes stay as they were, so a
/// wrong content hash is still caught where the event is verified.
fn add_signature(
    signing: &SigningKey,
    version: &RoomVersionId,
    object: &mut CanonicalJsonObject,
) -> Result<()> {
    let rules = rules_for(version)?;
    let mut redacted = redact(object.clone(), &rules.redaction, None)
        .map_err(|e| Error::bad_json(e.to_string()))?;
    redacted.remove("signatures");
    ruma::signatures::sign_json(signing.server_name.as_str(), &signing.key, &mut redacted)
        .map_err(Error::internal)?;
    let Some(CanonicalJsonValue::Object(ours)) = redacted.remove("signatures") else {
        return Err(Error::internal("signing added no signature"));
    };
    let all = object
        .entry("signatures".into())
        .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
    let CanonicalJsonValue::Object(all) = all else {
        return Err(Error::bad_json("`signatures` must be an object"));
    };
    all.extend(ours);
    Ok(())
}

/// An entry of `invite_room_state` (a stripped event, or since Matrix 1.16 a whole PDU) as a
/// stripped event; none without a type and a state key.
pub fn stripped(v: Value) -> Option<Value> {
    let kind = v.get("type")?.as_str()?;
    let key = v.get("state_key")?.as_str()?;
    Some(serde_json::json!({
        "type": kind,
        "state_key": key,
        "sender": v.get("sender"),
        "content": v.get("content").cloned().unwrap_or_else(|| serde_json::json!({})),
    }))
}
