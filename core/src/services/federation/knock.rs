//! Knocks of other servers' users on rooms here: `make_knock` gives the template their
//! server signs, `send_knock` adds it and answers what the room shows of itself before a
//! join. The room's join rule (`knock`, `knock_restricted`) is checked by the auth rules as
//! the knock is added; the template is refused early for a room that takes no knocks.

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    EventId, RoomId, RoomVersionId, ServerName, UserId,
};
use serde_json::{json, Value};

use super::{membership::speaks, template::membership_template, Inbound};
use crate::{join_rules::takes_knocks, state::shown_before_joining, Error, Result};

impl Inbound {
    /// The knock `origin` may sign for `user_id` (`make_knock`): for a user of `origin`, in
    /// a room version it speaks, of a room that takes knocks, from a user who is not already
    /// in it, invited or banned.
    pub async fn make_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Value)> {
        let snapshot = self.room_for(origin, room_id, user_id).await?;
        speaks(&snapshot, versions)?;
        if !takes_knocks(&snapshot) {
            return Err(Error::forbidden(format!("{room_id} does not take knocks")));
        }
        if let Some(m @ (MembershipState::Join | MembershipState::Invite | MembershipState::Ban)) =
            Self::membership_in(&snapshot, user_id)
        {
            return Err(Error::forbidden(format!(
                "{user_id} cannot knock: their membership is {m}"
            )));
        }
        let template = membership_template(
            &snapshot,
            room_id,
            user_id,
            json!({ "membership": "knock" }),
        )?;
        Ok((snapshot.version, template))
    }

    /// Adds the knock `origin` signed (`send_knock`), and answers the room's state a knocking
    /// user is shown, as PDUs.
    pub async fn send_knock(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &str,
    ) -> Result<Vec<String>> {
        self.add_own_membership(origin, room_id, event_id, pdu, MembershipState::Knock)
            .await?;
        let snapshot = self
            .store
            .load_room(room_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{room_id} is not known here")))?;
        let shown: Vec<_> = snapshot
            .state
            .iter()
            .filter(|p| {
                shown_before_joining(&p.kind.to_string())
                    || (p.kind == TimelineEventType::RoomMember && p.event_id == event_id)
            })
            .map(|p| p.event_id.clone())
            .collect();
        self.store.events_json(&shown).await
    }
}
