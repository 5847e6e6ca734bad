//! Persistent data units: the events of a room's log, in their federation form, and their
//! conversion to the client format.

use ruma::events::room::member::MembershipState;

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
    /// `hashes` and `signatures` as they were signed: checked where an event arrives (on the
    /// canonical JSON), and otherwise only carried on, so never taken apart (reading them
    /// into maps was a tenth of an initial sync).
    #[serde(default = "empty_object")]
    pub hashes: Box<RawJsonValue>,
    #[serde(default = "empty_object")]
    pub signatures: Box<RawJsonValue>,
}

fn empty_object() -> Box<RawJsonValue> {
    RawJsonValue::from_string("{}".to_owned()).unwrap_or_else(|_| unreachable!("{{}} is JSON"))
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
    /// The event in the client-server format, serialized straight from the stored PDU (the
    /// content is copied as it was stored, never parsed). `with_room_id` is false inside
    /// `/sync`, where the room id is the key of the enclosing object; `viewer` is who reads it
    /// (the sender's own device sees its transaction id).
    pub fn client_event<'a>(
        &'a self,
        with_room_id: bool,
        viewer: Option<(&'a UserId, Option<&'a str>)>,
    ) -> ClientEvent<'a> {
        ClientEvent {
            event: self,
            with_room_id,
            viewer,
        }
    }

    /// The client format as a JSON value (for callers that edit it further).
    pub fn to_client_value(
        &self,
        with_room_id: bool,
        viewer: Option<(&UserId, Option<&str>)>,
    ) -> Value {
        serde_json::to_value(self.client_event(with_room_id, viewer))
            .unwrap_or_else(|_| Value::Object(Map::new()))
    }

    /// The client format as a typed `Raw`.
    pub fn to_raw<T>(&self, with_room_id: bool, viewer: Option<(&UserId, Option<&str>)>) -> Raw<T> {
        serialize_raw(&self.client_event(with_room_id, viewer))
    }

    /// The stripped form used for invite and knock state.
    pub fn stripped_event(&self) -> StrippedEvent<'_> {
        StrippedEvent {
            content: &self.pdu.content,
            sender: &self.pdu.sender,
            state_key: self.pdu.state_key.as_deref().unwrap_or_default(),
            kind: &self.pdu.kind,
        }
    }
}

/// A state event as invite and knock state carry it: content, sender, state key and type.
#[derive(Serialize)]
pub struct StrippedEvent<'a> {
    content: &'a RawJsonValue,
    sender: &'a UserId,
    state_key: &'a str,
    #[serde(rename = "type")]
    kind: &'a TimelineEventType,
}

/// Serialize any value into a typed `Raw` (the JSON is produced here, so it cannot fail in
/// practice; a failure yields `{}` rather than a panic).
pub fn to_raw<T>(value: &Value) -> Raw<T> {
    serialize_raw(value)
}

fn serialize_raw<T>(value: &impl Serialize) -> Raw<T> {
    #[allow(clippy::expect_used)] // `{}` is valid JSON
    let raw = serde_json::value::to_raw_value(value)
        .unwrap_or_else(|_| RawJsonValue::from_string("{}".to_owned()).expect("static json"));
    Raw::from_json(raw)
}

/// A stored event in the client-server format, serialized on demand: see
/// [`StoredEvent::client_event`].
#[derive(Clone, Copy)]
pub struct ClientEvent<'a> {
    event: &'a StoredEvent,
    with_room_id: bool,
    viewer: Option<(&'a UserId, Option<&'a str>)>,
}

impl Serialize for ClientEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let pdu = &self.event.pdu;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("content", &*pdu.content)?;
        m.serialize_entry("event_id", &pdu.event_id)?;
        m.serialize_entry("origin_server_ts", &pdu.origin_server_ts)?;
        m.serialize_entry("sender", &pdu.sender)?;
        m.serialize_entry("type", &pdu.kind)?;
        if self.with_room_id {
            m.serialize_entry("room_id", pdu.room_id())?;
        }
        if let Some(sk) = &pdu.state_key {
            m.serialize_entry("state_key", sk)?;
        }
        if let Some(r) = pdu.redacted_event() {
            m.serialize_entry("redacts", &r)?;
        }
        m.serialize_entry("unsigned", &ClientUnsigned(self))?;
        m.end()
    }
}

/// `unsigned`: what the store keeps (`prev_content`, `replaces_state`, …) plus `age`,
/// `redacted_because` and, for the sending device, `transaction_id`.
struct ClientUnsigned<'a, 'b>(&'b ClientEvent<'a>);

impl Serialize for ClientUnsigned<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const COMPUTED: [&str; 3] = ["age", "redacted_because", "transaction_id"];
        let ev = self.0.event;
        let mut m = s.serialize_map(None)?;
        if let Some(Value::Object(stored)) = &ev.unsigned {
            for (k, v) in stored
                .iter()
                .filter(|(k, _)| !COMPUTED.contains(&k.as_str()))
            {
                m.serialize_entry(k, v)?;
            }
        }
        let age = crate::now_ms().saturating_sub(u64::from(ev.pdu.origin_server_ts.0));
        m.serialize_entry("age", &age)?;
        if let Some(because) = &ev.redacted_because {
            m.serialize_entry(
                "redacted_because",
                &because.client_event(self.0.with_room_id, None),
            )?;
        }
        if let (Some((viewer, device)), Some((u, d, txn))) = (self.0.viewer, &ev.txn) {
            if viewer == &**u && device.is_none_or(|dev| dev == d) {
                m.serialize_entry("transaction_id", txn)?;
            }
        }
        m.end()
    }
}
