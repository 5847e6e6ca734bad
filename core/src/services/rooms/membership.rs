//! Joining, leaving, inviting, kicking, banning, forgetting, and profile changes in rooms.

use ruma::events::room::member::MembershipState;
use ruma::{events::TimelineEventType, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

use super::*;
use crate::join_rules::{voucher, AUTHORISED_VIA};

impl Rooms {
    pub async fn join(
        &self,
        session: &Session,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.join_via(session, room_id, &[], reason).await
    }

    /// Joins a room; one this server does not have, through the servers of `via` (or the
    /// one its id names).
    pub async fn join_via(
        &self,
        session: &Session,
        room_id: &RoomId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        session.ensure_may_add()?;
        let mut c = self
            .own_content(&session.user_id, MembershipState::Join, reason)
            .await?;
        if !self.store.is_resident(room_id).await? {
            return self
                .join_remote(session, room_id, via, Value::Object(c))
                .await;
        }
        if let Some(m) = self.store.membership(room_id, &session.user_id).await? {
            if m.membership == MembershipState::Join {
                return Ok(());
            }
        }
        if let Some(via) = self.restricted_voucher(room_id, &session.user_id).await? {
            c.insert(AUTHORISED_VIA.into(), json!(via));
        }
        let intent = member_intent(&session.user_id, &session.user_id, c);
        self.submit_one(room_id, intent).await?;
        Ok(())
    }

    /// The member of this server who lets `user` into a restricted room (see `join_rules`),
    /// if the room's join rule asks for one.
    async fn restricted_voucher(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<Option<OwnedUserId>> {
        let Some(rules) = self
            .store
            .state_event(room_id, "m.room.join_rules", "")
            .await?
        else {
            return Ok(None);
        };
        // Most rooms are not restricted: their joins read nothing more.
        let rule = rules.pdu.content_value()["join_rule"].clone();
        if !matches!(rule.as_str(), Some("restricted" | "knock_restricted")) {
            return Ok(None);
        }
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found("unknown room"))?;
        voucher(
            self.store.as_ref(),
            &snapshot,
            user,
            &self.config.server_name,
        )
        .await
    }

    /// The content of a user's own membership event: profile and reason.
    async fn own_content(
        &self,
        user: &UserId,
        membership: MembershipState,
        reason: Option<&str>,
    ) -> Result<Map<String, Value>> {
        let mut c = self.member_content(user, membership).await?;
        with_reason(&mut c, reason);
        Ok(c)
    }

    /// Knocks on a room (asks to be invited): one this server is in, through its lane; one
    /// it is not in, through the servers of `via` (or the one its id names).
    pub async fn knock(
        &self,
        session: &Session,
        room_id: &RoomId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        session.ensure_may_add()?;
        let c = self
            .own_content(&session.user_id, MembershipState::Knock, reason)
            .await?;
        if !self.store.is_resident(room_id).await? {
            return self
                .knock_remote(session, room_id, via, Value::Object(c))
                .await;
        }
        let intent = member_intent(&session.user_id, &session.user_id, c);
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
            session.ensure_may_add()?;
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
            let c = self.member_content(target, MembershipState::Invite).await?;
            if target.server_name() != self.config.server_name {
                return self
                    .invite_remote(session, room_id, target, c, reason)
                    .await;
            }
            c
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
        with_reason(&mut c, reason);
        let intent = member_intent(&session.user_id, target, c);
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
        with_reason(&mut c, reason);
        if !self.store.is_resident(room_id).await? {
            return self.leave_outside(session, room_id, Value::Object(c)).await;
        }
        let intent = member_intent(&session.user_id, &session.user_id, c);
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

    /// Changes the display name or avatar in every room the user has joined.
    pub async fn propagate_profile(&self, session: &Session) -> Result<()> {
        for m in self.store.memberships(&session.user_id).await? {
            if m.membership != MembershipState::Join {
                continue;
            }
            let c = self
                .member_content(&session.user_id, MembershipState::Join)
                .await?;
            let intent = member_intent(&session.user_id, &session.user_id, c);
            if let Err(e) = self.submit_one(&m.room_id, intent).await {
                tracing::warn!(room_id = %m.room_id, error = %e, "could not update profile in room");
            }
        }
        Ok(())
    }
}

/// The `m.room.member` event `sender` sends about `target`, with `content`.
impl Rooms {
    /// The invite an identity server hands on once an invited address is bound to `target`:
    /// sent as the user who invited the address, with the identity server's signed proof
    /// (`third_party_invite`), which the room's authorization rules check against its
    /// `m.room.third_party_invite` event (token, sender, signature).
    pub async fn invite_bound_address(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        target: &UserId,
        third_party_invite: Value,
    ) -> Result<OwnedEventId> {
        let mut c = self.member_content(target, MembershipState::Invite).await?;
        c.insert("third_party_invite".into(), third_party_invite);
        self.submit_one(room_id, member_intent(sender, target, c))
            .await
    }
}

fn member_intent(sender: &UserId, target: &UserId, content: Map<String, Value>) -> EventIntent {
    EventIntent::new(
        sender.to_owned(),
        TimelineEventType::RoomMember,
        Some(target.to_string()),
        Value::Object(content),
    )
}

/// Adds the reason a user gave, if any, to a membership's content.
pub(super) fn with_reason(content: &mut Map<String, Value>, reason: Option<&str>) {
    if let Some(r) = reason {
        content.insert("reason".into(), json!(r));
    }
}
