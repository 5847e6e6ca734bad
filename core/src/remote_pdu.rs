//! The first checks of an event another server sent, in the spec's order, before anything
//! else reads it ("Checks performed on receipt of a PDU", steps 1–2): it is a valid event of
//! its room version, and it is signed by the servers that must sign it; a content hash that
//! does not match makes it the redacted event. Authorization (against its auth events, the
//! state before it and the current state) comes after, in the room's sequencer.

use std::collections::BTreeMap;

use ruma::{
    canonical_json::{redact, CanonicalJsonObject, CanonicalJsonValue},
    room_version_rules::RoomVersionRules,
    signatures::Verified,
    OwnedEventId, OwnedServerName, RoomId, RoomVersionId,
};

use crate::{
    sequencer::{room_id_from_create, rules_for},
    services::server_keys::ServerKeys,
    Error, ErrorCode, Pdu, Result,
};

/// The largest PDU the spec allows: 64 KiB of canonical JSON, signatures included.
pub const MAX_PDU_BYTES: usize = 65_536;

/// An event from another server that passed the signature and hash checks.
#[derive(Debug, Clone)]
pub struct VerifiedPdu {
    pub pdu: Pdu,
    /// The PDU as it will be stored: canonical JSON as received, redacted when its content
    /// hash did not match, without `unsigned` (which no server signs).
    pub json: String,
    /// Whether the content hash did not match, so only the redacted event was kept.
    pub redacted: bool,
}

impl VerifiedPdu {
    pub fn event_id(&self) -> &OwnedEventId {
        &self.pdu.event_id
    }
}

/// Checks a PDU received for `room_id` (of room version `version`): its size and format, that
/// it belongs to the room, the signatures of every server that must sign it (keys from
/// `keys`, valid at the event's `origin_server_ts`), then its content hash.
pub async fn verify_pdu(
    keys: &ServerKeys,
    version: &RoomVersionId,
    room_id: &RoomId,
    raw: &str,
) -> Result<VerifiedPdu> {
    if raw.len() > MAX_PDU_BYTES {
        return Err(Error::matrix(
            ErrorCode::TooLarge,
            format!("a PDU is at most {MAX_PDU_BYTES} bytes"),
        ));
    }
    let rules = rules_for(version)?;
    let mut object: CanonicalJsonObject = serde_json::from_str(raw)
        .map_err(|e| Error::bad_json(format!("a PDU must be canonical JSON: {e}")))?;
    // What no server signs is not taken from another: a sender could put anything there.
    object.remove("unsigned");
    ruma::state_res::check_pdu_format(&object, &rules.event_format)
        .map_err(|e| Error::bad_json(format!("not a valid event: {e}")))?;

    let hash = ruma::signatures::reference_hash(&object, &rules)
        .map_err(|e| Error::bad_json(format!("the event cannot be hashed: {e}")))?;
    let event_id = OwnedEventId::try_from(format!("${hash}")).map_err(Error::internal)?;
    check_room(&object, &event_id, room_id, &rules)?;

    let signers = signers(&object, &rules)?;
    let ts = match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(t)) => u64::try_from(i64::from(*t)).unwrap_or(0),
        _ => 0,
    };
    let map = keys.key_map(&signers, ts).await?;
    let verified = ruma::signatures::verify_event(&map, &object, &rules)
        .map_err(|e| Error::forbidden(format!("signature check of {event_id} failed: {e}")))?;
    let redacted = verified == Verified::Signatures;
    if redacted {
        tracing::info!(%event_id, "content hash mismatch: keeping the redacted event");
        object = redact(object, &rules.redaction, None)
            .map_err(|e| Error::bad_json(format!("the event cannot be redacted: {e}")))?;
    }
    let json = serde_json::to_string(&object)?;
    let mut pdu: Pdu = serde_json::from_str(&json)
        .map_err(|e| Error::bad_json(format!("not a valid event: {e}")))?;
    pdu.event_id = event_id;
    pdu.room_id = Some(room_id.to_owned());
    Ok(VerifiedPdu {
        pdu,
        json,
        redacted,
    })
}

/// The event is of `room_id`: it names it, or (a v12 create event, which names none) its id
/// is the room's.
fn check_room(
    object: &CanonicalJsonObject,
    event_id: &ruma::EventId,
    room_id: &RoomId,
    rules: &RoomVersionRules,
) -> Result<()> {
    let named = match object.get("room_id") {
        Some(CanonicalJsonValue::String(r)) => Some(r.as_str()),
        _ => None,
    };
    let is_create = matches!(object.get("type"), Some(CanonicalJsonValue::String(t)) if t == "m.room.create")
        && matches!(object.get("state_key"), Some(CanonicalJsonValue::String(k)) if k.is_empty());
    let ok = match named {
        Some(r) => r == room_id.as_str(),
        None => {
            is_create
                && !rules.event_format.require_room_create_room_id
                && room_id_from_create(event_id)? == room_id
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_param(format!(
            "the event {event_id} is not of room {room_id}"
        )))
    }
}

/// Each server whose signature the event needs, with the key ids it signed with.
fn signers(
    object: &CanonicalJsonObject,
    rules: &RoomVersionRules,
) -> Result<BTreeMap<OwnedServerName, Vec<String>>> {
    let servers =
        ruma::signatures::required_server_signatures_to_verify_event(object, &rules.signatures)
            .map_err(|e| Error::bad_json(format!("the event names no signing server: {e}")))?;
    let signatures = match object.get("signatures") {
        Some(CanonicalJsonValue::Object(s)) => s,
        _ => return Err(Error::forbidden("the event is not signed")),
    };
    servers
        .into_iter()
        .map(|server| match signatures.get(server.as_str()) {
            Some(CanonicalJsonValue::Object(ids)) => Ok((server, ids.keys().cloned().collect())),
            _ => Err(Error::forbidden(format!(
                "the event is not signed by {server}"
            ))),
        })
        .collect()
}
