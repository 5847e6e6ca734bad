//! Server ACLs (`m.room.server_acl`): a room may refuse servers by name. Every request another
//! server makes about a room — reads, memberships, its events and EDUs in `/send` — is checked
//! against the room's current ACL; this server's own users are never refused by it.

use ruma::{events::room::server_acl::RoomServerAclEventContent, RoomId, ServerName};

use crate::{ports::RoomStore, Error, Result};

/// `M_FORBIDDEN` when the room's ACL refuses `origin`. A room without an ACL, or with one
/// that cannot be read as one, refuses no server (as the auth rules do not check its content).
pub async fn check_acl(store: &dyn RoomStore, room_id: &RoomId, origin: &ServerName) -> Result<()> {
    let Some(acl) = store.state_event(room_id, "m.room.server_acl", "").await? else {
        return Ok(());
    };
    let Ok(content) = serde_json::from_str::<RoomServerAclEventContent>(acl.pdu.content.get())
    else {
        return Ok(());
    };
    if content.is_allowed(origin) {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "{origin} is refused by the server ACL of {room_id}"
        )))
    }
}
