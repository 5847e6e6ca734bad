//! Memberships that cross to other servers: joining or knocking on a room this server is
//! not in (through a server that is), inviting another server's user (that server
//! counter-signs first), and leaving a room this server knows only by an invite or a knock
//! (through a server of the room, or on this server alone when none can be reached).

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    OwnedServerName, RoomId, UserId,
};
use serde_json::{Map, Value};

use super::*;
use crate::{
    intent::{OutsideMembership, ReceivedPdu},
    services::federation::template::place,
};

impl Rooms {
    /// The servers that know a room this server is not in, where `user_id` is invited or
    /// knocking: the inviting server; for a knock, the servers of the members the room told
    /// of. With the invite or knock.
    async fn outside_servers(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<(Vec<OwnedServerName>, StoredEvent)>> {
        let Some(m) = self.store.membership(room_id, user_id).await? else {
            return Ok(None);
        };
        let Some(event) = self.store.event(&m.event_id).await? else {
            return Ok(None);
        };
        let servers = match m.membership {
            MembershipState::Invite => vec![event.pdu.sender.server_name().to_owned()],
            MembershipState::Knock => {
                let told = event
                    .unsigned
                    .as_ref()
                    .and_then(|u| u.get("knock_room_state")?.as_array().cloned())
                    .unwrap_or_default();
                let mut servers: Vec<OwnedServerName> = Vec::new();
                for sender in told.iter().filter_map(|e| e.get("sender")?.as_str()) {
                    if let Ok(u) = UserId::parse(sender) {
                        if !servers.iter().any(|s| s == u.server_name()) {
                            servers.push(u.server_name().to_owned());
                        }
                    }
                }
                servers
            }
            _ => return Ok(None),
        };
        Ok(Some((servers, event)))
    }

    /// The servers to ask about a room this server is not in: those of `via`, then `known`,
    /// then the one the room's id names; never this one. `M_NOT_FOUND` when there are none.
    fn servers_to_ask(
        &self,
        room_id: &RoomId,
        via: &[OwnedServerName],
        known: Vec<OwnedServerName>,
    ) -> Result<Vec<OwnedServerName>> {
        let own = &self.config.server_name;
        let mut servers: Vec<OwnedServerName> = Vec::new();
        let named = room_id.server_name().map(ToOwned::to_owned);
        for server in via.iter().cloned().chain(known).chain(named) {
            if server != *own && !servers.contains(&server) {
                servers.push(server);
            }
        }
        if servers.is_empty() {
            return Err(Error::not_found("no such room on this server"));
        }
        Ok(servers)
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
        let known = self
            .outside_servers(room_id, &session.user_id)
            .await?
            .map(|(servers, _)| servers)
            .unwrap_or_default();
        let servers = self.servers_to_ask(room_id, via, known)?;
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

    /// Knocks on a room of another server through it (`make_knock`, `send_knock`): the knock
    /// is kept on its own, with what the room told of itself, until the user is invited.
    pub(super) async fn knock_remote(
        &self,
        session: &Session,
        room_id: &RoomId,
        via: &[OwnedServerName],
        content: Value,
    ) -> Result<()> {
        let servers = self.servers_to_ask(room_id, via, Vec::new())?;
        let knock = self
            .remote
            .knock(&servers, room_id, &session.user_id, content)
            .await?;
        self.keep_outside(room_id, knock).await
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
        super::membership::with_reason(&mut content, reason);
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
            // Whole PDUs, since Matrix 1.16, beside the inviter's membership.
            let shown = state::shown_before_joining(&p.kind.to_string())
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
        let Some((known, invite)) = self.outside_servers(room_id, user).await? else {
            return Err(Error::forbidden("you are not in this room"));
        };
        let via = self.servers_to_ask(room_id, &[], known).unwrap_or_default();
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
        self.keep_outside(room_id, leave).await
    }

    /// Keeps a membership of a local user in a room this server is not in (see the
    /// sequencer's `outside.rs`).
    async fn keep_outside(&self, room_id: &RoomId, membership: OutsideMembership) -> Result<()> {
        self.bus
            .submit(RoomBatch {
                outside: Some(Box::new(membership)),
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
            stripped_state: Vec::new(),
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
