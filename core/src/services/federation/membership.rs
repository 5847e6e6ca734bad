//! Memberships other servers ask for in this server's rooms: a join (`make_join` gives the
//! template the joining server signs, `send_join` adds it), a leave (`make_leave`,
//! `send_leave`), and an invite of a user of this server (`/invite`), which this server
//! counter-signs and keeps.

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    CanonicalJsonObject, EventId, OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName,
    UserId,
};
use serde_json::Value;

use super::{acl::check_acl, reads::state_before, template::membership_template, Inbound};
use crate::{
    intent::{OutsideMembership, ReceivedPdu, RoomBatch},
    ports::RoomSnapshot,
    remote_pdu::verify_pdu,
    sequencer::rules_for,
    Error, ErrorCode, Result,
};

/// What a joining server gets back: the room's state before its join, and the auth chain of
/// that state and of the join, as PDUs.
#[derive(Debug, Clone)]
pub struct JoinAnswer {
    pub state: Vec<String>,
    pub auth_chain: Vec<String>,
    pub servers_in_room: Vec<OwnedServerName>,
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
    async fn room_for(
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
    fn membership_in(snapshot: &RoomSnapshot, user_id: &UserId) -> Option<MembershipState> {
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
    /// speaks, and a room the user may join (public, or invited).
    pub async fn make_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        let snapshot = self.room_for(origin, room_id, user_id).await?;
        if !versions.contains(&snapshot.version) {
            return Err(Error::matrix(
                ErrorCode::UnsupportedRoomVersion,
                format!("{room_id} is of room version {}", snapshot.version),
            ));
        }
        let public = snapshot.state.iter().any(|p| {
            p.kind == TimelineEventType::RoomJoinRules
                && p.content_value().get("join_rule") == Some(&Value::from("public"))
        });
        let invited = Self::membership_in(&snapshot, user_id) == Some(MembershipState::Invite);
        if !public && !invited {
            return Err(Error::forbidden(format!(
                "{user_id} may not join {room_id}"
            )));
        }
        let template = membership_template(&snapshot, room_id, user_id, "join")?;
        Ok((snapshot.version, template))
    }

    /// Adds the join `origin` signed (`send_join`), and answers the room's state before it
    /// with the auth chain. The join must be its own user's, under `event_id`.
    pub async fn send_join(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &str,
    ) -> Result<JoinAnswer> {
        let join = self
            .add_own_membership(origin, room_id, event_id, pdu, MembershipState::Join)
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
        })
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
        let template = membership_template(&snapshot, room_id, user_id, "leave")?;
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
    async fn add_own_membership(
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
            invite_state: invite_state.into_iter().filter_map(stripped).collect(),
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

/// An entry of `invite_room_state` (a stripped event, or since Matrix 1.16 a whole PDU) as a
/// stripped event; none without a type and a state key.
fn stripped(v: Value) -> Option<Value> {
    let kind = v.get("type")?.as_str()?;
    let key = v.get("state_key")?.as_str()?;
    Some(serde_json::json!({
        "type": kind,
        "state_key": key,
        "sender": v.get("sender"),
        "content": v.get("content").cloned().unwrap_or_else(|| serde_json::json!({})),
    }))
}
