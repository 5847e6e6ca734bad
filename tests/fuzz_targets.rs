//! Fuzz targets for the code that parses untrusted bytes: sync and pagination tokens, JSON
//! bodies (the NUL check, filters, request bodies through ruma), stored and federated events
//! (canonical JSON, reference hashes, client format) and Sandcat frames (bincode and JSON).
//!
//! Under `cargo test` each target runs on stable Rust with bolero's random engine for a
//! bounded number of inputs; `cargo bolero test --all-features <name>` runs one for as long
//! as wanted with a coverage-guided engine. The bar is that nothing panics: a panic reachable
//! from input would be a 500.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use bolero::check;
use ruma::{
    api::{client::filter::FilterDefinition, IncomingRequest, IncomingRequestExt},
    CanonicalJsonObject, OwnedEventId, OwnedRoomId,
};
use sandcat_core::{
    input::json_has_nul,
    pdu::{Pdu, StoredEvent},
    services::{rooms::parse_token, sync::SyncToken},
};
use serde_json::Value;

#[test]
fn tokens() {
    check!().with_type::<String>().for_each(|t| {
        let _ = t.parse::<SyncToken>();
        let _ = parse_token(t);
    });
    check!()
        .with_type::<(i64, u64, i64)>()
        .for_each(|&(pos, eph, dev)| {
            let token = SyncToken {
                pos,
                ephemeral: eph,
                to_device: dev,
            };
            assert_eq!(token.to_string().parse::<SyncToken>().unwrap(), token);
            assert_eq!(parse_token(&format!("t{pos}")).unwrap(), pos);
        });
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The NUL check on raw bytes agrees with parsing, on any JSON.
#[test]
fn nul_check_agrees_with_parsing() {
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        let found = json_has_nul(bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
            assert_eq!(found, has_nul(&v), "{:?}", String::from_utf8_lossy(bytes));
        }
    });
    check!().with_type::<String>().for_each(|s| {
        let json = serde_json::to_vec(&serde_json::json!({ s.clone(): s })).unwrap();
        assert_eq!(json_has_nul(&json), s.contains('\0'));
    });
}

fn json_inputs(bytes: &[u8]) -> Vec<Vec<u8>> {
    // Random bytes rarely parse; the same bytes as a JSON string inside an object do.
    let text = String::from_utf8_lossy(bytes).into_owned();
    vec![
        bytes.to_vec(),
        serde_json::to_vec(&serde_json::json!({ "type": text, "content": { "body": text } }))
            .unwrap(),
    ]
}

#[test]
fn filters() {
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        for input in json_inputs(bytes) {
            let _ = serde_json::from_slice::<FilterDefinition>(&input);
        }
    });
}

/// Request bodies and query strings as the `Ruma` extractor hands them to ruma.
#[test]
fn request_parsing() {
    use ruma::api::client::{
        account::register, message::send_message_event, room::create_room, state::send_state_event,
        sync::sync_events,
    };
    fn parse<T: IncomingRequest>(uri: &str, body: &[u8], args: &[&str]) {
        if let Ok(req) = http::Request::builder()
            .method(T::METHOD)
            .uri(uri)
            .body(body)
        {
            let _ = T::try_from_http_request(req, args);
        }
    }
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        for body in json_inputs(bytes) {
            parse::<create_room::v3::Request>("/_matrix/client/v3/createRoom", &body, &[]);
            parse::<register::v3::Request>("/_matrix/client/v3/register", &body, &[]);
            parse::<send_message_event::v3::Request>(
                "/_matrix/client/v3/rooms/!r:x/send/m.room.message/t",
                &body,
                &["!r:x", "m.room.message", "t"],
            );
            parse::<send_state_event::v3::Request>(
                "/_matrix/client/v3/rooms/!r:x/state/m.room.topic/",
                &body,
                &["!r:x", "m.room.topic", ""],
            );
        }
    });
    check!().with_type::<String>().for_each(|q| {
        let query: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
        for uri in [
            format!("/_matrix/client/v3/sync?since={query}&timeout={query}"),
            format!("/_matrix/client/v3/sync?filter={query}&set_presence={query}"),
        ] {
            parse::<sync_events::v3::Request>(&uri, b"", &[]);
        }
    });
}

/// Events as stored or as another server would send them: canonical JSON, the reference hash
/// of every room version this server runs, and the client format.
#[test]
fn events() {
    let event_id: OwnedEventId = ruma::owned_event_id!("$e");
    let room_id: OwnedRoomId = ruma::owned_room_id!("!r:x");
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        for input in json_inputs(bytes) {
            if let Ok(obj) = serde_json::from_slice::<CanonicalJsonObject>(&input) {
                for version in sandcat_core::ServerConfig::supported_room_versions() {
                    if let Some(rules) = version.rules() {
                        let _ = ruma::signatures::reference_hash(&obj, &rules);
                    }
                }
            }
            let Ok(text) = std::str::from_utf8(&input) else {
                continue;
            };
            if let Ok(pdu) = Pdu::from_stored(text, event_id.clone(), room_id.clone()) {
                let ev = StoredEvent {
                    pos: 1,
                    pdu,
                    unsigned: None,
                    redacted_because: None,
                    txn: None,
                };
                let _ = ev.to_client_value(true, None);
                let _ = ev.pdu.membership();
                let _ = ev.pdu.redacted_event();
            }
        }
    });
}

/// WebSocket frames of Sandcat clients: bincode (binary frames) and JSON (text frames).
#[test]
fn sandcat_frames() {
    use sandcat_api::model::Msg;
    check!().with_type::<Vec<u8>>().for_each(|bytes| {
        if let Ok(msg) = bincode::deserialize::<Msg>(bytes) {
            let again = bincode::serialize(&msg).unwrap();
            assert_eq!(
                bincode::deserialize::<Msg>(&again).unwrap().content,
                msg.content
            );
        }
        for input in json_inputs(bytes) {
            let _ = serde_json::from_slice::<Msg>(&input);
        }
    });
}
