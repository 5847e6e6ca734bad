//! Between Sandcat messages and Matrix events: a Sandcat `Msg` is one `m.room.message` event.

use std::collections::HashMap;

use base64::Engine;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use sandcat_core::json::set;
use sandcat_core::{ports::UserRecord, StoredEvent};
use serde_json::{json, Value};

use crate::{
    model::{content_type as ct, msg_type, Msg},
    ApiError, ApiResult, NativeState,
};

/// `mxc://{server}/{media_id}` for a Sandcat file or avatar name; URLs pass through.
pub(crate) fn avatar_to_mxc(s: &NativeState, name: &str) -> Option<String> {
    if name.is_empty() {
        None
    } else if name.contains("://") {
        Some(name.to_owned())
    } else {
        Some(format!(
            "mxc://{}/{}",
            s.config.server_name,
            crate::files::media_id(name)
        ))
    }
}

/// The Sandcat file name of a local `mxc://` URL; other URLs as they are.
pub(crate) fn avatar_from_mxc(s: &NativeState, url: Option<&str>) -> String {
    let Some(url) = url else { return String::new() };
    url.strip_prefix(&format!("mxc://{}/", s.config.server_name))
        .unwrap_or(url)
        .to_owned()
}

/// The Sandcat id of a Matrix user: the localpart on this server, the full id elsewhere.
pub(crate) fn sandcat_id(s: &NativeState, user: &ruma::UserId) -> String {
    if user.server_name() == s.config.server_name {
        user.localpart().to_owned()
    } else {
        user.to_string()
    }
}

/// What a room is to Sandcat: a friendship between two users, or a group.
#[derive(Clone)]
pub(crate) enum RoomKind {
    Direct(Vec<String>),
    Group,
}

/// Room kinds, looked up once per request or connection.
#[derive(Default)]
pub(crate) struct Kinds(HashMap<OwnedRoomId, RoomKind>);

impl Kinds {
    pub(crate) async fn of(&mut self, s: &NativeState, room: &RoomId) -> ApiResult<RoomKind> {
        if let Some(k) = self.0.get(room) {
            return Ok(k.clone());
        }
        let rows = s.store.friends_in_room(room.as_str()).await?;
        let kind = if rows.is_empty() {
            RoomKind::Group
        } else {
            let mut users: Vec<String> = rows.into_iter().map(|r| r.user_id).collect();
            users.sort();
            users.dedup();
            RoomKind::Direct(users)
        };
        self.0.insert(room.to_owned(), kind.clone());
        Ok(kind)
    }
}

/// Senders' profiles, looked up once per pull or batch of deliveries.
#[derive(Default)]
pub(crate) struct Profiles(HashMap<OwnedUserId, Option<UserRecord>>);

impl Profiles {
    async fn of(&mut self, s: &NativeState, user: &UserId) -> ApiResult<Option<UserRecord>> {
        if let Some(p) = self.0.get(user) {
            return Ok(p.clone());
        }
        let profile = s.users.user(user).await?;
        self.0.insert(user.to_owned(), profile.clone());
        Ok(profile)
    }
}

/// The Matrix content of a Sandcat chat message.
pub(crate) fn msg_to_content(s: &NativeState, msg: &Msg) -> ApiResult<Value> {
    let text = || String::from_utf8_lossy(&msg.content).into_owned();
    let mxc = |name: &str| avatar_to_mxc(s, name).unwrap_or_default();
    let mut c = match msg.content_type {
        ct::IMAGE | ct::VIDEO => {
            let name = text();
            let kind = if msg.content_type == ct::IMAGE {
                "m.image"
            } else {
                "m.video"
            };
            json!({ "msgtype": kind, "body": name, "url": mxc(&name) })
        }
        ct::AUDIO => {
            let (dur, name) = match msg.content.split_first() {
                Some((d, rest)) => (*d as u64, String::from_utf8_lossy(rest).into_owned()),
                None => return Err(ApiError::bad_request("audio content is empty")),
            };
            json!({ "msgtype": "m.audio", "body": name, "url": mxc(&name), "info": { "duration": dur * 1000 } })
        }
        ct::FILE => {
            let t = text();
            let parts: Vec<&str> = t.split("||").collect();
            let [server_name, name, size, ext] = parts[..] else {
                return Err(ApiError::bad_request(
                    "file content must be server_name||name||size||ext",
                ));
            };
            json!({ "msgtype": "m.file", "body": name, "url": mxc(server_name),
                    "info": { "size": size.parse::<u64>().unwrap_or(0) }, "org.sandcat.ext": ext })
        }
        ct::DEFAULT | ct::TEXT | ct::EMOJI => json!({ "msgtype": "m.text", "body": text() }),
        other => {
            return Err(ApiError::bad_request(format!(
                "content type {other} cannot be sent as a message"
            )))
        }
    };
    set(&mut c, "org.sandcat.content_type", json!(msg.content_type));
    set(&mut c, "org.sandcat.local_id", json!(msg.local_id));
    set(&mut c, "org.sandcat.platform", json!(msg.platform));
    if msg.create_time > 0 {
        set(&mut c, "org.sandcat.create_time", json!(msg.create_time));
    }
    if let Some(r) = &msg.related_msg_id {
        set(
            &mut c,
            "m.relates_to",
            json!({ "m.in_reply_to": { "event_id": r } }),
        );
    }
    Ok(c)
}

/// Sandcat content type and bytes of a Matrix message content.
fn content_of(s: &NativeState, c: &Value) -> (i32, Vec<u8>) {
    let body = c["body"].as_str().unwrap_or_default();
    // `{media_id}.{ext}`, the extension taken from the file name in `body`.
    let name = || {
        let id = avatar_from_mxc(s, c["url"].as_str());
        match body.rsplit_once('.') {
            Some((_, ext)) if !id.contains('.') && !ext.is_empty() && ext.len() <= 10 => {
                format!("{id}.{ext}")
            }
            _ => id,
        }
    };
    let declared = c["org.sandcat.content_type"].as_i64().map(|v| v as i32);
    match c["msgtype"].as_str().unwrap_or_default() {
        "m.image" => (ct::IMAGE, name().into_bytes()),
        "m.video" => (ct::VIDEO, name().into_bytes()),
        "m.audio" => {
            let secs = (c
                .pointer("/info/duration")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                / 1000)
                .min(255) as u8;
            let mut v = vec![secs];
            v.extend(name().into_bytes());
            (ct::AUDIO, v)
        }
        "m.file" => {
            let ext = c
                .get("org.sandcat.ext")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    body.rsplit_once('.')
                        .map(|(_, e)| e.to_owned())
                        .unwrap_or_default()
                });
            let size = c.pointer("/info/size").and_then(Value::as_u64).unwrap_or(0);
            (
                ct::FILE,
                format!("{}||{body}||{size}||{ext}", name()).into_bytes(),
            )
        }
        _ => (
            declared
                .filter(|d| matches!(*d, ct::DEFAULT | ct::EMOJI))
                .unwrap_or(ct::TEXT),
            body.as_bytes().to_vec(),
        ),
    }
}

/// The Sandcat message of an `m.room.message` event as `me` sees it.
pub(crate) async fn event_to_msg(
    s: &NativeState,
    kinds: &mut Kinds,
    profiles: &mut Profiles,
    ev: &StoredEvent,
    me: &str,
) -> ApiResult<Option<Msg>> {
    if ev.pdu.kind.to_string() != "m.room.message" || ev.redacted_because.is_some() {
        return Ok(None);
    }
    let c = ev.pdu.content_value();
    let sender = sandcat_id(s, &ev.pdu.sender);
    let room = ev.pdu.room_id();
    let call = call_record(&c);
    let (msg_type, receiver_id, group_id) = match kinds.of(s, room).await? {
        RoomKind::Direct(users) => {
            let receiver = if sender == me {
                users.into_iter().find(|u| *u != sender).unwrap_or_default()
            } else {
                me.to_owned()
            };
            (msg_type::SINGLE, receiver, String::new())
        }
        RoomKind::Group => (msg_type::GROUP, room.to_string(), room.to_string()),
    };
    let (msg_type, (content_type, content)) = match call {
        Some((t, ct, bytes)) => (t, (ct, bytes)),
        None => (msg_type, content_of(s, &c)),
    };
    let profile = profiles.of(s, &ev.pdu.sender).await?;
    let ts = i64::from(ev.pdu.origin_server_ts.get());
    Ok(Some(Msg {
        send_id: sender,
        receiver_id,
        local_id: c
            .get("org.sandcat.local_id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| ev.pdu.event_id.to_string()),
        server_id: ev.pdu.event_id.to_string(),
        create_time: c
            .get("org.sandcat.create_time")
            .and_then(Value::as_i64)
            .unwrap_or(ts),
        send_time: ts,
        seq: 0,
        msg_type,
        content_type,
        content,
        is_read: false,
        group_id,
        platform: c
            .get("org.sandcat.platform")
            .and_then(Value::as_i64)
            .unwrap_or(0) as i32,
        avatar: avatar_from_mxc(s, profile.as_ref().and_then(|p| p.avatar_url.as_deref())),
        nickname: profile.and_then(|p| p.displayname).unwrap_or_default(),
        related_msg_id: c
            .pointer("/m.relates_to/m.in_reply_to/event_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        send_seq: 0,
    }))
}

/// The content of a stored call record (`org.sandcat.call`), as the frame it came from:
/// `(msg_type, content_type, content)`.
pub(crate) fn call_record(c: &Value) -> Option<(i32, i32, Vec<u8>)> {
    let call = c.get("org.sandcat.call")?;
    let msg_type = i32::try_from(call.get("msg_type")?.as_i64()?).ok()?;
    if !msg_type::CALL_RECORDS.contains(&msg_type) {
        return None;
    }
    let content_type = call
        .get("content_type")
        .and_then(Value::as_i64)
        .and_then(|t| i32::try_from(t).ok())
        .unwrap_or(0);
    let content = call
        .get("content")
        .and_then(Value::as_str)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    Some((msg_type, content_type, content))
}

/// The `m.room.message` that records a call signal: a notice Matrix clients show, carrying
/// the frame for Sandcat clients.
pub(crate) fn call_content(msg: &Msg) -> Value {
    let what = match msg.msg_type {
        msg_type::CALL_REJECT => "Call declined",
        msg_type::CALL_NOT_ANSWERED => "Missed call",
        msg_type::CALL_CANCEL => "Call cancelled",
        msg_type::CALL_HANG_UP => "Call ended",
        _ => "Call connected",
    };
    let kind = if msg.content_type == 7 {
        "video"
    } else {
        "voice"
    };
    json!({
        "msgtype": "m.notice",
        "body": format!("{what} ({kind})"),
        "org.sandcat.local_id": msg.local_id,
        "org.sandcat.create_time": msg.create_time,
        "org.sandcat.call": {
            "msg_type": msg.msg_type,
            "content_type": msg.content_type,
            "content": base64::engine::general_purpose::STANDARD.encode(&msg.content),
        },
    })
}
