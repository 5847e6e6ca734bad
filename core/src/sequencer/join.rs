//! Joining a room through another server: what the resident server answered `send_join` (the
//! room's state before the join and its auth chain) becomes outliers, and the join event the
//! room's first event here, its state that answer.

use std::collections::HashSet;

use ruma::{
    events::{room::member::MembershipState, TimelineEventType},
    OwnedEventId, RoomId,
};

use super::{remote::Placement, Sequencer};
use crate::{
    intent::{RemoteJoin, RoomBatch},
    ports::{NewEvent, RemoteAppend, StateChange, StoredState},
    remote_auth::{admit, auth_event_ids, Admission, StateMap},
    state_resolution::AuthGraph,
    Error, Pdu, Result, StoredEvent,
};

impl Sequencer {
    /// Adds a room joined through another server. Every event of the answer is checked
    /// against its own auth events and stored as an outlier; the join must then pass against
    /// the state it names. A room this server already has takes the join as one more event
    /// of another server; one known only by memberships outside it starts again from the
    /// join.
    pub(super) async fn sequence_join(
        &self,
        room_id: &RoomId,
        join: &RemoteJoin,
    ) -> Result<Vec<StoredEvent>> {
        let rules = super::rules_for(&join.room_version)?;
        let event = Pdu::from_stored(
            &join.event.json,
            join.event.event_id.clone(),
            room_id.to_owned(),
        )?;
        let is_join = event.kind == TimelineEventType::RoomMember
            && event.membership() == Some(MembershipState::Join)
            && event.state_key.as_deref() == Some(event.sender.as_str());
        if !is_join {
            return Err(Error::forbidden("a join names its sender's join event"));
        }
        let (state, unknown) = self.parse_answer(room_id, join).await?;
        check_create(&state, join)?;
        self.add_outside_stream(&rules, unknown, Placement::Outlier)
            .await?;
        if self.store.is_resident(room_id).await? {
            let again = RoomBatch::received(room_id.to_owned(), vec![join.event.clone()]);
            return self.sequence_remote(&again).await;
        }

        let mut wanted: Vec<OwnedEventId> = state.values().cloned().collect();
        wanted.extend(auth_event_ids(&rules, &event));
        let graph = AuthGraph::new(self.store.auth_graph(&wanted).await?);
        let mut before = StateMap::new();
        for (key, id) in &state {
            let pdu = graph.get(id).ok_or_else(|| {
                Error::forbidden(format!("the room's state names {id}, which was rejected"))
            })?;
            before.insert(key.clone(), pdu.clone());
        }
        let auth = super::remote::auth_map(&rules, &event, &graph);
        match admit(&rules, &event, &auth, &before, &before) {
            Admission::Accepted => {}
            Admission::Rejected(why) | Admission::SoftFailed(why) => {
                return Err(Error::forbidden(format!("the join is refused: {why}")))
            }
        }
        self.append_join(join, event, &before, state).await
    }

    /// The events of a `send_join` answer, parsed: the state they name, and those the store
    /// does not have yet.
    async fn parse_answer(
        &self,
        room_id: &RoomId,
        join: &RemoteJoin,
    ) -> Result<(StoredState, Vec<(Pdu, crate::intent::ReceivedPdu)>)> {
        let mut state = StoredState::new();
        let mut unknown = Vec::new();
        let mut seen = HashSet::new();
        let in_state: HashSet<&OwnedEventId> = join.state.iter().map(|r| &r.event_id).collect();
        for received in join.auth_chain.iter().chain(&join.state) {
            if !seen.insert(received.event_id.clone()) {
                continue;
            }
            let pdu = Pdu::from_stored(
                &received.json,
                received.event_id.clone(),
                room_id.to_owned(),
            )?;
            if in_state.contains(&pdu.event_id) {
                let Some(key) = &pdu.state_key else {
                    return Err(Error::forbidden(format!(
                        "{} in the room's state is not a state event",
                        pdu.event_id
                    )));
                };
                state.insert((pdu.kind.to_string(), key.clone()), pdu.event_id.clone());
            }
            if self.store.event(&pdu.event_id).await?.is_none()
                && self.store.held(&pdu.event_id).await?.is_none()
            {
                unknown.push((pdu, received.clone()));
            }
        }
        Ok((state, unknown))
    }

    /// Appends the admitted join: the room's first event here, its state the answer's.
    async fn append_join(
        &self,
        join: &RemoteJoin,
        event: Pdu,
        before: &StateMap,
        state: StoredState,
    ) -> Result<Vec<StoredEvent>> {
        let room_id = event.room_id().to_owned();
        let own = (event.kind.to_string(), event.sender.to_string());
        let unsigned = before.get(&own).map(|prev| {
            serde_json::json!({
                "prev_content": prev.content_value(),
                "prev_sender": prev.sender,
                "replaces_state": prev.event_id,
            })
        });
        let mut current_state: Vec<StateChange> = before
            .iter()
            .filter(|(key, _)| **key != own)
            .map(|((kind, key), pdu)| StateChange {
                kind: kind.clone(),
                state_key: key.clone(),
                to: Some((pdu.event_id.clone(), pdu.membership())),
            })
            .collect();
        current_state.push(StateChange {
            kind: own.0,
            state_key: own.1,
            to: Some((event.event_id.clone(), event.membership())),
        });
        let new_event = NewEvent {
            pdu: event,
            json: join.event.json.clone(),
            unsigned,
            txn: None,
            room_version: Some(join.room_version.clone()),
            redaction: None,
            state_before: Some(state),
            // A reader meets the room with its whole state: nothing to tell as a reset.
            remote: Some(RemoteAppend {
                current_state,
                resets: Vec::new(),
                whole_state: true,
            }),
            push: Vec::new(),
        };
        self.append_alone(&room_id, new_event).await
    }
}

/// The answer's state has the room's create event, of the version the resident server said.
fn check_create(state: &StoredState, join: &RemoteJoin) -> Result<()> {
    let key = ("m.room.create".to_owned(), String::new());
    let Some(create_id) = state.get(&key) else {
        return Err(Error::forbidden("the room's state has no create event"));
    };
    let create = join
        .state
        .iter()
        .find(|r| &r.event_id == create_id)
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.json).ok());
    let version = create
        .as_ref()
        .and_then(|c| c.pointer("/content/room_version"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("1");
    if version != join.room_version.as_str() {
        return Err(Error::forbidden(format!(
            "the room's create event names version {version}, not {}",
            join.room_version
        )));
    }
    Ok(())
}
