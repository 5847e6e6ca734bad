//! Invites by address (third-party invites): `/rooms/{roomId}/invite` naming an identity
//! server, a medium and an address. An address the identity server binds is invited as its
//! user. Otherwise the identity server keeps the invite (and tells the invitee), and the room
//! gets an `m.room.third_party_invite` event with the keys it will sign with. Once the address
//! is bound, the identity server hands the invite to the invitee's homeserver
//! (`/_matrix/federation/v1/3pid/onbind`), which makes it the user's invite, sent as the
//! user who invited the address and carrying the identity server's signed proof; the room's
//! authorization rules check that proof.

use std::sync::Arc;

use ruma::{events::room::member::MembershipState, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{json, Value};

use crate::{
    ports::{AddressInvite, IdentityServers},
    services::{rooms::Rooms, Session},
    Error, ErrorCode, Result, ServerConfig,
};

/// The most invites one `/3pid/onbind` may hand on: each costs an authorization check in
/// its room's lane, and the request is not signed.
pub const MAX_INVITES_PER_BIND: usize = 100;

/// The address an invite names, and the identity server to reach it through.
#[derive(Debug, Clone, Copy)]
pub struct ByAddress<'a> {
    pub id_server: &'a str,
    pub id_access_token: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
}

/// An invite an identity server hands on, the address now bound to `mxid`.
#[derive(Debug, Clone)]
pub struct BoundInvite {
    pub mxid: OwnedUserId,
    pub room_id: OwnedRoomId,
    /// Who invited the address.
    pub sender: OwnedUserId,
    /// The identity server's signed proof: `{mxid, token, signatures}`.
    pub signed: Value,
}

pub struct ThirdPartyInvites {
    rooms: Arc<Rooms>,
    identity: Arc<dyn IdentityServers>,
    config: Arc<ServerConfig>,
}

impl ThirdPartyInvites {
    pub fn new(
        rooms: Arc<Rooms>,
        identity: Arc<dyn IdentityServers>,
        config: Arc<ServerConfig>,
    ) -> Self {
        ThirdPartyInvites {
            rooms,
            identity,
            config,
        }
    }

    /// Invites the user an address is bound to, or leaves the invite with the identity
    /// server and marks it in the room.
    pub async fn invite(
        &self,
        session: &Session,
        room_id: &RoomId,
        to: ByAddress<'_>,
    ) -> Result<()> {
        session.ensure_may_add()?;
        let store = self.rooms.store();
        // Only a member asks the identity server anything about the room.
        match store.membership(room_id, &session.user_id).await? {
            Some(m) if m.membership == MembershipState::Join => {}
            _ => return Err(Error::forbidden("you are not in this room")),
        }
        let ByAddress {
            id_server,
            id_access_token,
            medium,
            address,
        } = to;
        if let Some(user) = self
            .identity
            .lookup(id_server, id_access_token, medium, address)
            .await?
        {
            return self
                .rooms
                .set_membership(session, room_id, &user, MembershipState::Invite, None)
                .await;
        }
        let invite = self.described(session, room_id, medium, address).await?;
        let kept = self
            .identity
            .store_invite(id_server, id_access_token, &invite)
            .await?;
        let Some((public_key, key_validity_url)) = kept.public_keys.first() else {
            return Err(Error::matrix(
                ErrorCode::Unknown,
                format!("{id_server} kept the invite without a key to sign it with"),
            ));
        };
        let keys: Vec<Value> = kept
            .public_keys
            .iter()
            .map(|(k, url)| json!({ "public_key": k, "key_validity_url": url }))
            .collect();
        let content = json!({
            "display_name": kept.display_name,
            "key_validity_url": key_validity_url,
            "public_key": public_key,
            "public_keys": keys,
        });
        self.rooms
            .send_state(
                session,
                room_id,
                "m.room.third_party_invite",
                &kept.token,
                content,
                None,
            )
            .await?;
        Ok(())
    }

    /// The invite as the identity server is told of it: the room's name, avatar, alias,
    /// join rule and type, and the inviter's name and avatar in it.
    async fn described(
        &self,
        session: &Session,
        room_id: &RoomId,
        medium: &str,
        address: &str,
    ) -> Result<AddressInvite> {
        let store = self.rooms.store();
        let field = |kind: &'static str, key: &'static str| async move {
            Ok::<_, Error>(
                store
                    .state_event(room_id, kind, "")
                    .await?
                    .and_then(|e| e.pdu.content_value().get(key)?.as_str().map(str::to_owned)),
            )
        };
        let me = store
            .state_event(room_id, "m.room.member", session.user_id.as_str())
            .await?
            .map(|e| e.pdu.content_value())
            .unwrap_or_default();
        let mine = |key: &str| me.get(key).and_then(Value::as_str).map(str::to_owned);
        Ok(AddressInvite {
            medium: medium.to_owned(),
            address: address.to_owned(),
            room_id: room_id.to_owned(),
            sender: session.user_id.clone(),
            room_name: field("m.room.name", "name").await?,
            room_avatar_url: field("m.room.avatar", "url").await?,
            room_alias: field("m.room.canonical_alias", "alias").await?,
            room_join_rules: field("m.room.join_rules", "join_rule").await?,
            room_type: field("m.room.create", "type").await?,
            sender_display_name: mine("displayname"),
            sender_avatar_url: mine("avatar_url"),
        })
    }

    /// Makes the invites an identity server hands on the users' invites. Each needs the
    /// invitee to be a user of this server, and the room and its inviter to be here too;
    /// one that fails is logged and the others go on (the identity server cannot act on a
    /// refusal). Answers how many became invites. The request is not signed, so what one
    /// may cost is bounded: more than [`MAX_INVITES_PER_BIND`] is refused whole.
    pub async fn bound(&self, invites: Vec<BoundInvite>) -> Result<usize> {
        if invites.len() > MAX_INVITES_PER_BIND {
            return Err(Error::invalid_param(format!(
                "at most {MAX_INVITES_PER_BIND} invites are taken in one request"
            )));
        }
        let mut made = 0;
        for invite in invites {
            match self.make(&invite).await {
                Ok(()) => made += 1,
                Err(e) => tracing::warn!(
                    room = %invite.room_id, mxid = %invite.mxid, error = %e,
                    "an invite by address could not be made"
                ),
            }
        }
        Ok(made)
    }

    async fn make(&self, invite: &BoundInvite) -> Result<()> {
        let here = |u: &UserId| u.server_name() == self.config.server_name;
        if !here(&invite.mxid) {
            return Err(Error::invalid_param(format!(
                "{} is not a user of this server",
                invite.mxid
            )));
        }
        if !here(&invite.sender) {
            // The room's own server makes it (exchange_third_party_invite): not done yet.
            return Err(Error::matrix(
                ErrorCode::Unrecognized,
                "invites by address from other servers are not supported yet",
            ));
        }
        let token = invite
            .signed
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("signed has no token"))?;
        let marked = self
            .rooms
            .store()
            .state_event(&invite.room_id, "m.room.third_party_invite", token)
            .await?
            .ok_or_else(|| Error::not_found("the room has no such invite by address"))?;
        let display_name = marked.pdu.content_value()["display_name"].clone();
        self.rooms
            .invite_bound_address(
                &invite.sender,
                &invite.room_id,
                &invite.mxid,
                json!({ "display_name": display_name, "signed": invite.signed }),
            )
            .await?;
        Ok(())
    }
}
