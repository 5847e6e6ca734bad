//! Per-user client data around rooms: account data and tags, filters, receipts and read
//! markers, typing, presence, push rules.

use ruma::events::room::member::MembershipState;
use std::sync::Arc;

use ruma::{push::Ruleset, EventId, RoomId, ServerName, UserId};
use serde_json::{json, Value};

use crate::{
    ephemeral::Ephemeral,
    notifier::Notifier,
    ports::{ClientStore, EduSink, FederationEdus, Receipt, RoomStore},
    services::Session,
    Error, Result,
};

pub struct ClientData {
    store: Arc<dyn ClientStore>,
    rooms: Arc<dyn RoomStore>,
    ephemeral: Arc<Ephemeral>,
    notifier: Notifier,
    edus: Option<Arc<dyn EduSink>>,
    federation: Option<Arc<dyn FederationEdus>>,
    /// Told of every change of a user's push rules.
    push_rules: Option<Arc<crate::push::PushRules>>,
}

/// How long a typing notification of another server's user lasts unless renewed (federation
/// typing EDUs carry no timeout; Synapse's is the same).
const REMOTE_TYPING_MS: u64 = 30_000;

impl ClientData {
    pub fn new(
        store: Arc<dyn ClientStore>,
        rooms: Arc<dyn RoomStore>,
        ephemeral: Arc<Ephemeral>,
        notifier: Notifier,
    ) -> Self {
        ClientData {
            store,
            rooms,
            ephemeral,
            notifier,
            edus: None,
            federation: None,
            push_rules: None,
        }
    }

    /// Tells `push` of every change of a user's push rules.
    pub fn with_push_rules(mut self, push: Arc<crate::push::PushRules>) -> Self {
        self.push_rules = Some(push);
        self
    }

    /// Also hands this server's users' typing and public receipts to `sink`, for the other
    /// servers in their rooms.
    pub fn with_federation_edus(mut self, sink: Arc<dyn FederationEdus>) -> Self {
        self.federation = Some(sink);
        self
    }

    /// Also hands typing, public receipts and presence to `sink` as they happen.
    pub fn with_edu_sink(mut self, sink: Arc<dyn EduSink>) -> Self {
        self.edus = Some(sink);
        self
    }

    pub fn ephemeral(&self) -> &Arc<Ephemeral> {
        &self.ephemeral
    }

    async fn ensure_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        match self.rooms.membership(room_id, user_id).await? {
            Some(m) if m.membership == MembershipState::Join => Ok(()),
            _ => Err(Error::forbidden("you are not joined to this room")),
        }
    }

    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: Value,
    ) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("account data content must be an object"));
        }
        if kind == "m.fully_read" || kind == "m.push_rules" {
            return Err(Error::bad_json(format!(
                "{kind} is managed by its own endpoint"
            )));
        }
        self.store
            .set_account_data(user_id, room_id, kind, &content)
            .await?;
        self.notifier.notify();
        Ok(())
    }

    pub async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Value> {
        self.store
            .account_data(user_id, room_id, kind)
            .await?
            .ok_or_else(|| Error::not_found("account data not found"))
    }

    pub async fn tags(&self, user_id: &UserId, room_id: &RoomId) -> Result<Value> {
        Ok(self
            .store
            .account_data(user_id, Some(room_id), "m.tag")
            .await?
            .unwrap_or_else(|| json!({ "tags": {} })))
    }

    pub async fn set_tag(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        info: Option<Value>,
    ) -> Result<()> {
        let mut tags = self.tags(user_id, room_id).await?;
        if !tags.get("tags").is_some_and(Value::is_object) {
            tags = json!({ "tags": {} });
        }
        let map = tags["tags"]
            .as_object_mut()
            .ok_or_else(|| Error::internal("tags"))?;
        match info {
            Some(i) => {
                map.insert(tag.to_owned(), i);
            }
            None => {
                map.remove(tag);
            }
        }
        self.store
            .set_account_data(user_id, Some(room_id), "m.tag", &tags)
            .await?;
        self.notifier.notify();
        Ok(())
    }

    /// The event the user's `m.read` receipt in the room points at.
    pub async fn read_marker(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Option<ruma::OwnedEventId>> {
        Ok(self
            .store
            .receipt(room_id, user_id, "m.read")
            .await?
            .map(|r| r.event_id))
    }

    pub async fn create_filter(&self, user_id: &UserId, filter: &Value) -> Result<String> {
        self.store.create_filter(user_id, filter).await
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Value> {
        self.store
            .filter(user_id, filter_id)
            .await?
            .ok_or_else(|| Error::not_found("filter not found"))
    }

    /// `m.read`, `m.read.private` receipts, and the `m.fully_read` marker.
    pub async fn receipt(
        &self,
        session: &Session,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        self.ensure_joined(&session.user_id, room_id).await?;
        let ev = self
            .rooms
            .event(event_id)
            .await?
            .filter(|e| e.pdu.room_id() == room_id)
            .ok_or_else(|| Error::not_found("event not found"))?;
        match receipt_type {
            "m.fully_read" => {
                self.store
                    .set_account_data(
                        &session.user_id,
                        Some(room_id),
                        "m.fully_read",
                        &json!({ "event_id": event_id }),
                    )
                    .await?;
            }
            "m.read" | "m.read.private" => {
                let ts = crate::now_ms();
                let moved = self
                    .store_read(&session.user_id, room_id, receipt_type, &ev, thread_id, ts)
                    .await?;
                if let (true, Some(sink), "m.read") = (moved, &self.federation, receipt_type) {
                    sink.read(room_id, &session.user_id, event_id, thread_id, ts);
                }
            }
            other => {
                return Err(Error::invalid_param(format!(
                    "unknown receipt type {other}"
                )))
            }
        }
        self.notifier.notify();
        Ok(())
    }

    /// Stores a read receipt (`m.read`, `m.read.private`) unless the user's receipt is already
    /// at or past the event, and hands a public one to the application services. Answers
    /// whether it moved.
    async fn store_read(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        ev: &crate::StoredEvent,
        thread_id: Option<&str>,
        ts: u64,
    ) -> Result<bool> {
        let event_id = &ev.pdu.event_id;
        // Receipts only move forward.
        if let Some(old) = self.store.receipt(room_id, user_id, receipt_type).await? {
            if old.thread_id.as_deref() == thread_id {
                if let Some(old_ev) = self.rooms.event(&old.event_id).await? {
                    if old_ev.pos >= ev.pos {
                        return Ok(false);
                    }
                }
            }
        }
        self.store
            .set_receipt(&Receipt {
                room_id: room_id.to_owned(),
                user_id: user_id.to_owned(),
                receipt_type: receipt_type.to_owned(),
                thread_id: thread_id.map(str::to_owned),
                event_id: event_id.to_owned(),
                ts,
                pos: 0,
            })
            .await?;
        if let (Some(sink), "m.read") = (&self.edus, receipt_type) {
            let mut read = json!({ "ts": ts });
            if let Some(t) = thread_id {
                read["thread_id"] = json!(t);
            }
            sink.room_edu(
                room_id,
                json!({
                    "type": "m.receipt",
                    "room_id": room_id,
                    "content": { event_id.as_str(): { "m.read": { user_id.as_str(): read } } },
                }),
            );
        }
        Ok(true)
    }

    /// A public read receipt of another server's user (from a federation transaction): only
    /// for a user of `origin` joined to the room, on an event of the room this server has.
    pub async fn remote_read(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
        thread_id: Option<&str>,
        ts: u64,
    ) -> Result<()> {
        self.check_remote(origin, room_id, user_id).await?;
        let Some(ev) = self
            .rooms
            .event(event_id)
            .await?
            .filter(|e| e.pdu.room_id() == room_id)
        else {
            return Err(Error::not_found(format!("{event_id} is not known here")));
        };
        if self
            .store_read(user_id, room_id, "m.read", &ev, thread_id, ts)
            .await?
        {
            self.notifier.notify();
        }
        Ok(())
    }

    /// Typing of another server's user (from a federation transaction): only for a user of
    /// `origin` joined to the room.
    pub async fn remote_typing(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        typing: bool,
    ) -> Result<()> {
        self.check_remote(origin, room_id, user_id).await?;
        self.ephemeral
            .set_typing(room_id, user_id, typing, REMOTE_TYPING_MS);
        self.announce_typing(room_id);
        Ok(())
    }

    /// Another server's user's presence (an `m.presence` EDU), kept for the users here who
    /// share a room with that user; one of a user who is in no room here is dropped.
    pub async fn remote_presence(
        &self,
        origin: &ServerName,
        user_id: &UserId,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        crate::services::federation::check_user_of(origin, user_id)?;
        if !matches!(state, "online" | "offline" | "unavailable" | "busy") {
            return Err(Error::invalid_param(format!("unknown presence {state}")));
        }
        let joined = self
            .rooms
            .memberships(user_id)
            .await?
            .iter()
            .any(|m| m.membership == MembershipState::Join);
        if !joined {
            return Err(Error::forbidden(format!("{user_id} is in no room here")));
        }
        self.ephemeral.set_presence(user_id, state, status_msg);
        Ok(())
    }

    async fn check_remote(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<()> {
        crate::services::federation::check_user_of(origin, user_id)?;
        crate::services::federation::acl::check_acl(self.rooms.as_ref(), room_id, origin).await?;
        self.ensure_joined(user_id, room_id).await
    }

    pub async fn typing(
        &self,
        session: &Session,
        room_id: &RoomId,
        typing: bool,
        timeout_ms: u64,
    ) -> Result<()> {
        self.ensure_joined(&session.user_id, room_id).await?;
        self.ephemeral
            .set_typing(room_id, &session.user_id, typing, timeout_ms);
        if let Some(sink) = &self.federation {
            sink.typing(room_id, &session.user_id, typing);
        }
        self.announce_typing(room_id);
        Ok(())
    }

    /// Hands who types in the room now to the application services.
    fn announce_typing(&self, room_id: &RoomId) {
        if let Some(sink) = &self.edus {
            let users = self.ephemeral.typing_since(room_id, 0).unwrap_or_default();
            sink.room_edu(
                room_id,
                json!({ "type": "m.typing", "room_id": room_id, "content": { "user_ids": users } }),
            );
        }
    }

    pub fn set_presence(
        &self,
        user_id: &UserId,
        state: &str,
        status_msg: Option<String>,
    ) -> Result<()> {
        if !matches!(state, "online" | "offline" | "unavailable" | "busy") {
            return Err(Error::invalid_param(
                "presence must be online, offline or unavailable",
            ));
        }
        if self.ephemeral.set_presence(user_id, state, status_msg) {
            if let Some(f) = &self.federation {
                f.presence(user_id, self.presence(user_id));
            }
        }
        if let Some(sink) = &self.edus {
            sink.presence(
                user_id,
                json!({ "type": "m.presence", "sender": user_id, "content": self.presence(user_id) }),
            );
        }
        Ok(())
    }

    pub fn presence(&self, user_id: &UserId) -> Value {
        presence_content(user_id, self.ephemeral.presence(user_id).as_ref())
    }

    pub async fn push_rules(&self, user_id: &UserId) -> Result<Ruleset> {
        let data = self
            .store
            .account_data(user_id, None, "m.push_rules")
            .await?;
        Ok(crate::push::rules_from_account_data(user_id, data.as_ref()))
    }

    pub async fn set_push_rules(&self, user_id: &UserId, rules: &Ruleset) -> Result<()> {
        self.store
            .set_account_data(user_id, None, "m.push_rules", &json!({ "global": rules }))
            .await?;
        if let Some(push) = &self.push_rules {
            push.changed(user_id);
        }
        self.notifier.notify();
        Ok(())
    }
}

/// The content of an `m.presence` event.
pub fn presence_content(user_id: &UserId, rec: Option<&crate::ephemeral::PresenceRecord>) -> Value {
    match rec {
        Some(r) => {
            let ago = crate::now_ms().saturating_sub(r.last_active_ts);
            let mut v = json!({
                "presence": r.state,
                "last_active_ago": ago,
                "currently_active": r.state == "online" && ago < 300_000,
                "user_id": user_id,
            });
            if let Some(m) = &r.status_msg {
                v["status_msg"] = json!(m);
            }
            v
        }
        None => json!({ "presence": "offline", "user_id": user_id }),
    }
}
