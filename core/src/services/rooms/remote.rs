//! Memberships that cross to other servers: joining a room this server is not in (through a
//! server that is), inviting another server's user (that server counter-signs first), and
//! leaving a room this server knows only by an invite (through the inviting server, or on
//! this server alone when it cannot be reached).

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    OwnedServerName, RoomId, UserId,
};
use serde_json::{json, Map, Value};

use super::*;
use crate::{
    intent::{OutsideMembership, ReceivedPdu},
    services::federation::template::place,
};

/// The state events an invited user's server is told of the room (as whole PDUs, since
/// Matrix 1.16), beside the inviter's membership.
const INVITE_STATE: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

impl Rooms {
    /// The server that invited `user_id` to a room this server is not in.
    async fn inviting_server(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<(OwnedServerName, StoredEvent)>> {
        let Some(m) = self.store.membership(room_id, user_id).await? else {
            return Ok(None);
        };
        if m.membership != MembershipState::Invite {
            return Ok(None);
        }
        Ok(self
            .store
            .event(&m.event_id)
            .await?
            .map(|e| (e.pdu.sender.server_name().to_owned(), e)))
    }

    /// Joins a room of another server through it: the room's state it answers becomes
    /// outliers, and the join the room's first event here (see the sequencer's `join.rs`).
    /// The servers asked: those of `via`, the one that invited the user, the one the room's
    /// id names.
    pub(super) async fn join_remote(
        &self,
        session: &Session,
        room_id: &RoomId,
        via: &[OwnedServerName],
        content: Value,
    ) -> Result<()> {
        let own = &self.config.server_name;
        let mut servers: Vec<OwnedServerName> = via.iter().filter(|s| *s != own).cloned().collect();
        let inviter = self
            .inviting_server(room_id, &session.user_id)
            .await?
            .map(|(server, _)| server);
        for named in inviter.iter().map(|s| &**s).chain(room_id.server_name()) {
            if named != own && !servers.iter().any(|s| s == named) {
                servers.push(named.to_owned());
            }
        }
        if servers.is_empty() {
            return Err(Error::not_found("no such room on this server"));
        }
        let answer = self
            .remote
            .join(&servers, room_id, &session.user_id, content)
            .await?;
        self.bus
            .submit(RoomBatch {
                join: Some(Box::new(answer)),
                ..RoomBatch::intents(room_id.to_owned(), Vec::new())
            })
            .await?;
        Ok(())
    }

    /// Invites a user of another server: the invite is built on the room's heads and signed
    /// here, counter-signed by the invitee's server, then added through the room's lane like
    /// any event of the room.
    pub(super) async fn invite_remote(
        &self,
        session: &Session,
        room_id: &RoomId,
        target: &UserId,
        mut content: Map<String, Value>,
        reason: Option<&str>,
    ) -> Result<()> {
        if let Some(r) = reason {
            content.insert("reason".into(), json!(r));
        }
        let joined = self
            .store
            .membership(room_id, &session.user_id)
            .await?
            .is_some_and(|m| m.membership == MembershipState::Join);
        if !joined {
            return Err(Error::forbidden("you are not in this room"));
        }
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found("unknown room"))?;
        let rules = rules_for(&snapshot.version)?;
        let intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomMember,
            Some(target.to_string()),
            Value::Object(content),
        );
        let at = place(
            &snapshot,
            &intent.kind,
            &intent.sender,
            intent.state_key.as_deref(),
            &intent.content,
        )?;
        let (pdu, json) = build_pdu(
            &self.signing,
            room_id,
            &rules,
            &intent,
            at.prev_events,
            at.auth_events,
            at.depth,
        )?;
        let mut told = Vec::new();
        for p in &snapshot.state {
            let shown = INVITE_STATE.contains(&p.kind.to_string().as_str())
                || (p.kind == TimelineEventType::RoomMember
                    && p.state_key.as_deref() == Some(session.user_id.as_str()));
            if shown {
                told.extend(self.store.event_json(&p.event_id).await?);
            }
        }
        let invite = ReceivedPdu {
            event_id: pdu.event_id,
            json,
        };
        let signed = self
            .remote
            .invite(&snapshot.version, &invite, &told)
            .await?;
        let added = self
            .bus
            .submit(RoomBatch::received(room_id.to_owned(), vec![signed]))
            .await?;
        if added.is_empty() {
            return Err(Error::forbidden("the invite is not allowed now"));
        }
        Ok(())
    }

    /// Leaves (rejects the invite to) a room this server is not in: through the inviting
    /// server, or, when no server takes the leave, on this server alone — a leave built on
    /// the invite, signed here and sent nowhere, so the user is not left with an invite
    /// nobody can answer (as Synapse does).
    pub(super) async fn leave_outside(
        &self,
        session: &Session,
        room_id: &RoomId,
        content: Value,
    ) -> Result<()> {
        let user = &session.user_id;
        let Some((inviter, invite)) = self.inviting_server(room_id, user).await? else {
            return Err(Error::forbidden("you are not in this room"));
        };
        let mut via = vec![inviter];
        if let Some(named) = room_id.server_name() {
            if !via.iter().any(|s| s == named) && named != self.config.server_name {
                via.push(named.to_owned());
            }
        }
        let leave = match self
            .remote
            .leave(&via, room_id, user, content.clone())
            .await
        {
            Ok(leave) => leave,
            Err(e) => {
                tracing::info!(%room_id, %user, error = %e, "no server took the leave: it stays on this server");
                self.local_leave(room_id, user, &invite, content).await?
            }
        };
        self.bus
            .submit(RoomBatch {
                outside: Some(Box::new(leave)),
                ..RoomBatch::intents(room_id.to_owned(), Vec::new())
            })
            .await?;
        Ok(())
    }

    /// A leave of `user` built on its invite, signed here, for this server alone.
    async fn local_leave(
        &self,
        room_id: &RoomId,
        user: &UserId,
        invite: &StoredEvent,
        content: Value,
    ) -> Result<OutsideMembership> {
        let version = self.ensure_room(room_id).await?;
        let rules = rules_for(&version)?;
        let intent = EventIntent::new(
            user.to_owned(),
            TimelineEventType::RoomMember,
            Some(user.to_string()),
            content,
        );
        let on = vec![invite.pdu.event_id.clone()];
        let depth = u64::from(invite.pdu.depth) + 1;
        let (pdu, json) = build_pdu(
            &self.signing,
            room_id,
            &rules,
            &intent,
            on.clone(),
            on,
            depth,
        )?;
        Ok(OutsideMembership {
            room_version: version,
            event: ReceivedPdu {
                event_id: pdu.event_id,
                json,
            },
            invite_state: Vec::new(),
        })
    }

    /// The display name and avatar of a user of another server, asked of that server.
    pub async fn remote_profile(
        &self,
        user_id: &UserId,
    ) -> Result<(Option<String>, Option<String>)> {
        if user_id.server_name() == self.config.server_name {
            return Err(Error::not_found("profile not found"));
        }
        self.remote.query_profile(user_id).await
    }
}
