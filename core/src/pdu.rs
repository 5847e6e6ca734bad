//! Persistent data units: the events of a room's log, in their federation form, and their
//! conversion to the client format.

use ruma::events::room::member::MembershipState;
use std::collections::BTreeMap;

use ruma::{
    events::TimelineEventType, serde::Raw, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{value::RawValue as RawJsonValue, Map, Value};

/// One event as signed and hashed for federation, plus its id (which the PDU itself does not
/// carry in room versions 3 and later) and its room id (which a v12 create event does not carry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pdu {
    #[serde(skip_serializing, default = "placeholder_event_id")]
    pub event_id: OwnedEventId,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    #[serde(rename = "type")]
    pub kind: TimelineEventType,
    pub content: Box<RawJsonValue>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub state_key: Option<String>,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: UInt,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub redacts: Option<OwnedEventId>,
    #[serde(default)]
    pub hashes: BTreeMap<String, String>,
    #[serde(default)]
    pub signatures: BTreeMap<String, BTreeMap<String, String>>,
}

fn placeholder_event_id() -> OwnedEventId {
    ruma::owned_event_id!("$unset")
}

impl Pdu {
    /// Parse a stored PDU and attach its event id and room id.
    pub fn from_stored(
        json: &str,
        event_id: OwnedEventId,
        room_id: OwnedRoomId,
    ) -> crate::Result<Self> {
        let mut pdu: Pdu = serde_json::from_str(json)?;
        pdu.event_id = event_id;
        pdu.room_id = Some(room_id);
        Ok(pdu)
    }

    /// The room (stored PDUs always carry it; one being built before its room id is known
    /// answers a placeholder that names no room).
    pub fn room_id(&self) -> &RoomId {
        self.room_id
            .as_deref()
            .unwrap_or_else(|| ruma::room_id!("!unknown:invalid"))
    }

    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The content as a JSON value.
    pub fn content_value(&self) -> Value {
        serde_json::from_str(self.content.get()).unwrap_or(Value::Object(Map::new()))
    }

    /// The `membership` field of an `m.room.member` event.
    pub fn membership(&self) -> Option<MembershipState> {
        #[derive(Deserialize)]
        struct M {
            membership: MembershipState,
        }
        if self.kind != TimelineEventType::RoomMember {
            return None;
        }
        serde_json::from_str::<M>(self.content.get())
            .ok()
            .map(|m| m.membership)
    }

    /// The event this one redacts: top level before v11, in `content` since.
    pub fn redacted_event(&self) -> Option<OwnedEventId> {
        if self.kind != TimelineEventType::RoomRedaction {
            return None;
        }
        if let Some(r) = &self.redacts {
            return Some(r.clone());
        }
        #[derive(Deserialize)]
        struct R {
            redacts: Option<OwnedEventId>,
        }
        serde_json::from_str::<R>(self.content.get())
            .ok()
            .and_then(|r| r.redacts)
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        // A v12 create event carries no room id: the room id is derived from its hash.
        let id = self.room_id.as_deref()?;
        if self.kind == TimelineEventType::RoomCreate && id.server_name().is_none() {
            return None;
        }
        Some(id)
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawJsonValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        false
    }
}

/// An event as it sits in the room log: its stream position and server-side extras.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Position in the server-wide stream (orders `/sync`).
    pub pos: i64,
    pub pdu: Pdu,
    /// `prev_content`, `prev_sender`, `replaces_state` for state events.
    pub unsigned: Option<Value>,
    /// The redaction event, if this event was redacted.
    pub redacted_because: Option<Box<StoredEvent>>,
    /// `(user, device, txn_id)` of the request that sent it.
    pub txn: Option<(OwnedUserId, String, String)>,
}

impl StoredEvent {
    /// The event in the client-server format. `with_room_id` is false inside `/sync`, where the
    /// room id is the key of the enclosing object.
    pub fn to_client_value(
        &self,
        with_room_id: bool,
        viewer: Option<(&UserId, Option<&str>)>,
    ) -> Value {
        let pdu = &self.pdu;
        let mut obj = Map::new();
        obj.insert("content".into(), pdu.content_value());
        obj.insert("event_id".into(), Value::String(pdu.event_id.to_string()));
        obj.insert(
            "origin_server_ts".into(),
            serde_json::to_value(pdu.origin_server_ts).unwrap_or(Value::Null),
        );
        obj.insert("sender".into(), Value::String(pdu.sender.to_string()));
        obj.insert("type".into(), Value::String(pdu.kind.to_string()));
        if with_room_id {
            obj.insert("room_id".into(), Value::String(pdu.room_id().to_string()));
        }
        if let Some(sk) = &pdu.state_key {
            obj.insert("state_key".into(), Value::String(sk.clone()));
        }
        if let Some(r) = pdu.redacted_event() {
            obj.insert("redacts".into(), Value::String(r.to_string()));
        }
        let mut unsigned = match &self.unsigned {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let age = crate::now_ms().saturating_sub(u64::from(pdu.origin_server_ts.0));
        unsigned.insert("age".into(), Value::from(age));
        if let Some(because) = &self.redacted_because {
            unsigned.insert(
                "redacted_because".into(),
                because.to_client_value(with_room_id, None),
            );
        }
        if let (Some((viewer, device)), Some((u, d, txn))) = (viewer, &self.txn) {
            if viewer == &**u && device.is_none_or(|dev| dev == d) {
                unsigned.insert("transaction_id".into(), Value::String(txn.clone()));
            }
        }
        obj.insert("unsigned".into(), Value::Object(unsigned));
        Value::Object(obj)
    }

    /// The client format as a typed `Raw`.
    pub fn to_raw<T>(&self, with_room_id: bool, viewer: Option<(&UserId, Option<&str>)>) -> Raw<T> {
        to_raw(&self.to_client_value(with_room_id, viewer))
    }

    /// The stripped form used for invite and knock state.
    pub fn to_stripped_raw<T>(&self) -> Raw<T> {
        let pdu = &self.pdu;
        to_raw(&serde_json::json!({
            "content": pdu.content_value(),
            "sender": pdu.sender,
            "state_key": pdu.state_key.clone().unwrap_or_default(),
            "type": pdu.kind.to_string(),
        }))
    }
}

/// Serialize any value into a typed `Raw` (the JSON is produced here, so it cannot fail in
/// practice; a failure yields `{}` rather than a panic).
pub fn to_raw<T>(value: &Value) -> Raw<T> {
    #[allow(clippy::expect_used)] // `{}` is valid JSON
    let raw = serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawJsonValue::from_string("{}".to_owned()).expect("static json"));
    Raw::from_json(raw)
}
