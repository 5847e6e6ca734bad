//! Messages, state events and redactions.

use ruma::{events::TimelineEventType, EventId, OwnedEventId, RoomId};
use serde_json::{json, Value};

use super::*;

impl Rooms {
    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}`.
    pub async fn send(
        &self,
        session: &Session,
        room_id: &RoomId,
        kind: &str,
        content: Value,
        txn_id: Option<&str>,
        ts: Option<u64>,
    ) -> Result<OwnedEventId> {
        session.ensure_may_add()?;
        if !content.is_object() {
            return Err(Error::bad_json("content must be a JSON object"));
        }
        if kind == "m.room.redaction" || kind == "m.room.create" {
            return Err(Error::invalid_param(format!(
                "send {kind} through its own endpoint"
            )));
        }
        // The sequencer answers M_NOT_FOUND for an unknown room: no lookup here.
        let mut intent = EventIntent::new(session.user_id.clone(), kind.into(), None, content);
        if let Some(ts) = ts {
            intent.origin_server_ts = ts;
        }
        intent.txn = txn_id.map(|t| (session.device_id.clone(), t.to_owned()));
        self.submit_one(room_id, intent).await
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn send_state(
        &self,
        session: &Session,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
        content: Value,
        ts: Option<u64>,
    ) -> Result<OwnedEventId> {
        session.ensure_may_add()?;
        if !content.is_object() {
            return Err(Error::bad_json("content must be a JSON object"));
        }
        if kind == "m.room.create" {
            return Err(Error::forbidden("m.room.create cannot be sent"));
        }
        if kind == "m.room.canonical_alias" {
            for alias in content.get("alias").into_iter().chain(
                content
                    .get("alt_aliases")
                    .and_then(|a| a.as_array())
                    .into_iter()
                    .flatten(),
            ) {
                let alias = alias
                    .as_str()
                    .ok_or_else(|| Error::invalid_param("aliases must be strings"))?;
                match self.store.alias(alias).await? {
                    Some((r, _)) if r == room_id => {}
                    _ => {
                        return Err(Error::matrix(
                            ErrorCode::BadAlias,
                            format!("{alias} does not point to this room"),
                        ))
                    }
                }
            }
        }
        let mut intent = EventIntent::new(
            session.user_id.clone(),
            kind.into(),
            Some(state_key.to_owned()),
            content,
        );
        if let Some(ts) = ts {
            intent.origin_server_ts = ts;
        }
        self.submit_one(room_id, intent).await
    }

    /// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`.
    pub async fn redact(
        &self,
        session: &Session,
        room_id: &RoomId,
        target: &EventId,
        reason: Option<&str>,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        self.ensure_room(room_id).await?;
        let ev = self
            .store
            .event(target)
            .await?
            .filter(|e| e.pdu.room_id() == room_id)
            .ok_or_else(|| Error::not_found("event not found"))?;
        if ev.pdu.sender != session.user_id
            && !self
                .has_level(room_id, &session.user_id, "redact", 50)
                .await?
        {
            return Err(Error::forbidden("you may only redact your own events"));
        }
        let content = match reason {
            Some(r) => json!({ "reason": r }),
            None => json!({}),
        };
        let mut intent = EventIntent::new(
            session.user_id.clone(),
            TimelineEventType::RoomRedaction,
            None,
            content,
        );
        intent.redacts = Some(target.to_owned());
        intent.txn = Some((session.device_id.clone(), format!("redact:{txn_id}")));
        self.submit_one(room_id, intent).await
    }
}
