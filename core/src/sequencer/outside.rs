//! Memberships of this server's users in rooms this server is not in: an invite another
//! server sent (`/invite`), a knock sent through another server, and the leave that rejects
//! or withdraws them. The room's state is not here, so
//! the event cannot be checked against it; it was checked where it came from (signed by the
//! servers that must sign it), and it is kept on its own — the room's only state here, its
//! only head — until a join through another server brings the room's whole state.

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    RoomId,
};
use serde_json::json;

use super::{PushOn, Sequencer};
use crate::{
    intent::{OutsideMembership, RoomBatch},
    ports::{NewEvent, RemoteAppend, StateChange, StoredState},
    push::{RoomState, RulesOf},
    Error, Pdu, Result, StoredEvent,
};

impl Sequencer {
    /// Adds a membership outside the room. A room this server is in takes the event as one
    /// more event of another server, checked against its state.
    pub(super) async fn sequence_outside(
        &self,
        room_id: &RoomId,
        outside: &OutsideMembership,
    ) -> Result<Vec<StoredEvent>> {
        if self.store.is_resident(room_id).await? {
            let again = RoomBatch::received(room_id.to_owned(), vec![outside.event.clone()]);
            return self.sequence_remote(&again).await;
        }
        let event = Pdu::from_stored(
            &outside.event.json,
            outside.event.event_id.clone(),
            room_id.to_owned(),
        )?;
        let (Some(key), Some(membership)) = (event.state_key.clone(), event.membership()) else {
            return Err(Error::forbidden("not a membership event"));
        };
        if event.kind != TimelineEventType::RoomMember {
            return Err(Error::forbidden("not a membership event"));
        }
        let told = match &membership {
            MembershipState::Knock => "knock_room_state",
            _ => "invite_room_state",
        };
        let unsigned =
            (!outside.stripped_state.is_empty()).then(|| json!({ told: outside.stripped_state }));
        let new_event = NewEvent {
            json: outside.event.json.clone(),
            unsigned,
            txn: None,
            room_version: Some(outside.room_version.clone()),
            redaction: None,
            state_before: Some(StoredState::new()),
            remote: Some(RemoteAppend {
                current_state: vec![StateChange {
                    kind: event.kind.to_string(),
                    state_key: key,
                    to: Some((event.event_id.clone(), Some(membership))),
                }],
                resets: Vec::new(),
                whole_state: false,
            }),
            push: Vec::new(),
            pdu: event,
        };
        // The invite is the room's only state here: what the invitee's rules ask of it.
        let mut new_event = new_event;
        let state: RoomState = [(
            (
                new_event.pdu.kind.to_string(),
                new_event.pdu.state_key.clone().unwrap_or_default(),
            ),
            new_event.pdu.clone(),
        )]
        .into();
        self.evaluate_push(
            PushOn::State(&outside.room_version, &state),
            &mut new_event,
            &mut RulesOf::new(),
        )
        .await?;
        self.append_alone(room_id, new_event).await
    }

    /// Appends one event that moves the room's head in a way the cached head cannot follow:
    /// the head is reloaded by the next batch.
    pub(super) async fn append_alone(
        &self,
        room_id: &RoomId,
        new_event: NewEvent,
    ) -> Result<Vec<StoredEvent>> {
        let slot = self.head_slot(room_id);
        let mut guard = slot.lock().await;
        let appended = self
            .store
            .append(std::slice::from_ref(&new_event), None)
            .await;
        *guard = None;
        drop(guard);
        let pos = appended?
            .first()
            .copied()
            .ok_or_else(|| Error::internal("an append answered no position"))?;
        self.notifier.notify();
        Ok(vec![StoredEvent {
            pos,
            pdu: new_event.pdu,
            unsigned: new_event.unsigned,
            redacted_because: None,
            txn: None,
        }])
    }
}
