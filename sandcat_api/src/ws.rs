//! The WebSocket of Sandcat clients: `/ws/{user_id}/conn/{pointer_id}/{platform}/{token}`.
//!
//! Frames are bincode `Msg` (JSON text frames are accepted from clients). One connection per
//! (user, platform): a newer one closes the older with 4001; a bad token closes with 4002.
//! Messages in the user's rooms are read from the event stream as it grows, so a message sent
//! from a Matrix client reaches the Sandcat client; messages the client sends become
//! `m.room.message` events and are acknowledged with `MsgRecResp` on every connection of the
//! sender. Call signalling (14–22) is relayed between live connections and never stored.

use ruma::events::room::member::MembershipState;
use sandcat_core::ports::FriendshipStatus;
use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        State,
    },
    response::Response,
};
use ruma::{OwnedRoomId, RoomId};
use tokio::sync::mpsc;

use crate::{
    friends::random_id,
    mapping::{event_to_msg, joined_rooms, msg_to_content, sandcat_id, Kinds, Profiles},
    model::{content_type, msg_type, Msg, MsgRead},
    now, ApiError, NativeState, PathArgs,
};

pub(crate) const KNOCKED_OFF: u16 = 4001;
pub(crate) const UNAUTHORIZED: u16 = 4002;
const PING_EVERY: Duration = Duration::from_secs(30);
/// Sent messages a connection remembers until it sees them on the stream.
const MAX_PENDING_ECHOES: usize = 1024;
/// Largest frame or message a client may send (a chat message is far smaller).
const MAX_FRAME: usize = 256 * 1024;

enum Out {
    Msg(Box<Msg>),
    Close(u16, &'static str),
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
}

/// The live connections of this instance, by user and platform.
#[derive(Default)]
pub struct Hub {
    conns: Mutex<HashMap<String, HashMap<i32, Conn>>>,
    next: AtomicU64,
}

impl Hub {
    /// Sends a frame to every connection of the user (none if offline).
    pub fn push(&self, user: &str, msg: Msg) {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = conns.get(user) {
            for c in map.values() {
                let _ = c.tx.send(Out::Msg(Box::new(msg.clone())));
            }
        }
    }

    pub fn connections(&self, user: &str) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.get(user).map_or(0, HashMap::len)
    }

    fn register(&self, user: &str, platform: i32, tx: mpsc::UnboundedSender<Out>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = conns
            .entry(user.to_owned())
            .or_default()
            .insert(platform, Conn { id, tx })
        {
            let _ = old.tx.send(Out::Close(KNOCKED_OFF, "signed in elsewhere"));
        }
        id
    }

    fn unregister(&self, user: &str, platform: i32, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(map) = conns.get_mut(user) {
            if map.get(&platform).is_some_and(|c| c.id == id) {
                map.remove(&platform);
            }
            if map.is_empty() {
                conns.remove(user);
            }
        }
    }
}

/// GET /ws/{user_id}/conn/{pointer_id}/{platform}/{token}
///
/// A valid connection is registered, and its stream position taken, before the handshake is
/// answered: whatever is written or pushed after the client sees the socket open reaches it.
/// A bad token still gets the upgrade, then close code 4002, as Sandcat clients expect.
pub(crate) async fn connect(
    State(s): State<NativeState>,
    PathArgs((user_id, _pointer_id, platform, token)): PathArgs<(String, String, i32, String)>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME);
    let device = match s.authenticate(&token).await {
        Ok(auth) if auth.user == user_id => auth.device,
        _ => {
            return ws.on_upgrade(|mut socket| async move {
                close(&mut socket, UNAUTHORIZED, "unauthorized").await;
            })
        }
    };
    let pos = s.stream.current_pos();
    let (tx, rx) = mpsc::unbounded_channel();
    let id = s.hub.register(&user_id, platform, tx);
    let (hub, user) = (s.hub.clone(), user_id.clone());
    ws.on_failed_upgrade(move |_| hub.unregister(&user, platform, id))
        .on_upgrade(move |socket| async move {
            let reg = Registered {
                id,
                rx,
                pos,
                device,
            };
            Connection::run(s, socket, user_id, platform, reg).await;
        })
}

/// A connection's place in the hub and in the stream, taken before the handshake answer.
struct Registered {
    id: u64,
    rx: mpsc::UnboundedReceiver<Out>,
    pos: i64,
    /// The session's device: when it is deleted, the connection closes with 4002.
    device: String,
}

struct Connection {
    s: NativeState,
    me: String,
    platform: i32,
    rooms: HashSet<OwnedRoomId>,
    kinds: Kinds,
    pos: i64,
    /// `local_id`s of messages sent through this connection, not yet seen on the stream: they
    /// were acknowledged here, and reach the user's other connections as messages.
    sent: HashSet<String>,
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

fn encode(msg: &Msg) -> Message {
    Message::Binary(bincode::serialize(msg).unwrap_or_default().into())
}

impl Connection {
    async fn run(
        s: NativeState,
        mut socket: WebSocket,
        user_id: String,
        platform: i32,
        reg: Registered,
    ) {
        let Registered {
            id,
            mut rx,
            pos,
            device,
        } = reg;
        let mut wake = s.notifier.subscribe();
        let rooms = match joined_rooms(&s, &user_id).await {
            Ok(r) => r.into_iter().collect(),
            Err(_) => {
                s.hub.unregister(&user_id, platform, id);
                return close(&mut socket, 1011, "internal error").await;
            }
        };
        let mut conn = Connection {
            s: s.clone(),
            me: user_id.clone(),
            platform,
            rooms,
            kinds: Kinds::default(),
            pos,
            sent: HashSet::new(),
        };
        // What was written while the connection was being set up.
        wake.mark_changed();
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        tracing::debug!(user = %user_id, platform, "sandcat connection open");
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Out::Msg(m)) => {
                        if socket.send(encode(&m)).await.is_err() { break; }
                    }
                    Some(Out::Close(code, reason)) => { close(&mut socket, code, reason).await; break; }
                    None => break,
                },
                _ = wake.changed() => {
                    match conn.new_messages().await {
                        Ok(msgs) => {
                            let mut failed = false;
                            for m in msgs {
                                if socket.send(encode(&m)).await.is_err() { failed = true; break; }
                            }
                            if failed { break; }
                        }
                        Err(e) => tracing::warn!(user = %user_id, error = ?e, "reading new messages"),
                    }
                }
                _ = ping.tick() => {
                    // A session revoked elsewhere ends its open connections too.
                    if let Ok(uid) = s.matrix_id(&user_id) {
                        if let Err(sandcat_core::Error::Matrix { .. }) = s.accounts.device_session(&uid, &device).await {
                            close(&mut socket, UNAUTHORIZED, "session ended").await;
                            break;
                        }
                    }
                    if socket.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
                }
                frame = socket.recv() => match frame {
                    Some(Ok(Message::Binary(b))) => {
                        let parsed = bincode::deserialize::<Msg>(&b).map_err(|e| e.to_string());
                        if let Some(r) = conn.handle(parsed).await {
                            if socket.send(encode(&r)).await.is_err() { break; }
                        }
                    }
                    Some(Ok(Message::Text(t))) => {
                        let parsed = serde_json::from_str::<Msg>(&t).map_err(|e| e.to_string());
                        if let Some(r) = conn.handle(parsed).await {
                            if socket.send(encode(&r)).await.is_err() { break; }
                        }
                    }
                    Some(Ok(Message::Ping(p))) => {
                        if socket.send(Message::Pong(p)).await.is_err() { break; }
                    }
                    Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                },
            }
        }
        s.hub.unregister(&user_id, platform, id);
        tracing::debug!(user = %user_id, platform, "sandcat connection closed");
    }

    /// Messages in the user's rooms after the last position this connection delivered.
    async fn new_messages(&mut self) -> Result<Vec<Msg>, ApiError> {
        let until = self.s.stream.current_pos();
        let mut out = Vec::new();
        while self.pos < until {
            let events = self
                .s
                .room_store()
                .events_between(self.pos, until, 500)
                .await?;
            let Some(last) = events.last() else {
                self.pos = until;
                break;
            };
            let last_pos = last.pos;
            let mut profiles = Profiles::default();
            for ev in &events {
                let room = ev.pdu.room_id();
                if ev.pdu.kind.to_string() == "m.room.member"
                    && ev.pdu.state_key.as_deref() == Some(self.s.matrix_id(&self.me)?.as_str())
                {
                    if ev.pdu.membership() == Some(MembershipState::Join) {
                        self.rooms.insert(room.to_owned());
                    } else {
                        self.rooms.remove(room);
                    }
                    self.kinds.forget(room);
                    continue;
                }
                if !self.rooms.contains(room) {
                    continue;
                }
                let mine = sandcat_id(&self.s, &ev.pdu.sender) == self.me;
                if mine && crate::mapping::call_record(&ev.pdu.content_value()).is_some() {
                    // The caller's own call records are not news to its other devices.
                    continue;
                }
                if mine {
                    let local_id = ev
                        .pdu
                        .content_value()
                        .get("org.sandcat.local_id")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned);
                    if local_id.is_some_and(|l| self.sent.remove(&l)) {
                        // Sent through this connection: acknowledged here already.
                        continue;
                    }
                }
                if let Some(mut m) =
                    event_to_msg(&self.s, &mut self.kinds, &mut profiles, ev, &self.me).await?
                {
                    if mine {
                        // The client counts `seq` as received messages; its own message from
                        // another device is none of those.
                        m.seq = 0;
                    }
                    out.push(m);
                }
            }
            self.pos = last_pos;
        }
        Ok(out)
    }

    /// The acknowledgement of `msg` (or its refusal with an error text), for the connection it
    /// came through.
    fn reply(&self, msg: &Msg, result: Result<(String, i64, i64), ApiError>) -> Msg {
        let mut r = msg.clone();
        r.msg_type = msg_type::REC_RESP;
        r.content = Vec::new();
        match result {
            Ok((server_id, send_time, seq)) => {
                r.server_id = server_id;
                r.send_time = send_time;
                r.send_seq = seq;
                r.seq = seq;
            }
            Err(e) => {
                r.content_type = content_type::ERROR;
                r.content = e.details.into_bytes();
            }
        }
        r
    }

    /// Handles a frame; what to answer on this connection, if anything.
    async fn handle(&mut self, parsed: Result<Msg, String>) -> Option<Msg> {
        let mut msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                let bad = Msg {
                    send_id: self.me.clone(),
                    platform: self.platform,
                    ..Default::default()
                };
                return Some(self.reply(
                    &bad,
                    Err(ApiError::bad_request(format!("unreadable frame: {e}"))),
                ));
            }
        };
        // A read notice names no sender (the client leaves it empty): it is the connection's.
        let own_read = msg.msg_type == msg_type::READ && msg.send_id.is_empty();
        if msg.send_id != self.me && !own_read {
            return Some(self.reply(
                &msg,
                Err(ApiError::forbidden("send_id is not the token's user")),
            ));
        }
        let chat = matches!(msg.msg_type, msg_type::SINGLE | msg_type::GROUP);
        // The local id makes the send idempotent and names the message in the ack.
        if (chat || msg_type::CALL_RECORDS.contains(&msg.msg_type)) && msg.local_id.is_empty() {
            msg.local_id = random_id();
        }
        let result = match msg.msg_type {
            msg_type::SINGLE | msg_type::GROUP => self.send(&msg).await,
            msg_type::CALL_FIRST..=msg_type::CALL_LAST => {
                match self.s.store.friend(&self.me, &msg.receiver_id).await {
                    Ok(Some(f)) if f.status == FriendshipStatus::Accepted => {
                        if !msg_type::CALL_RECORDS.contains(&msg.msg_type) {
                            // Offer, answer, candidates: live only.
                            self.s.hub.push(&msg.receiver_id, msg.clone());
                            return None;
                        }
                        // A record reaches the callee from the stream, online or not.
                        self.record_call(&msg, &f.room_id).await
                    }
                    Ok(_) => Err(ApiError::forbidden("calls are between friends")),
                    Err(e) => Err(e.into()),
                }
            }
            msg_type::READ => match self.read(&msg).await {
                Ok(()) => return None,
                Err(e) => Err(e),
            },
            other => Err(ApiError::bad_request(format!(
                "message type {other} cannot be sent"
            ))),
        };
        if chat && result.is_ok() {
            if self.sent.len() >= MAX_PENDING_ECHOES {
                // Messages to rooms this connection does not follow never come back.
                self.sent.clear();
            }
            self.sent.insert(msg.local_id.clone());
        }
        Some(self.reply(&msg, result))
    }

    /// The room a chat message goes to.
    async fn room_of(&self, msg: &Msg) -> Result<OwnedRoomId, ApiError> {
        if msg.msg_type == msg_type::SINGLE {
            let f = self
                .s
                .store
                .friend(&self.me, &msg.receiver_id)
                .await?
                .filter(|f| f.status == FriendshipStatus::Accepted)
                .ok_or_else(|| ApiError::forbidden("not friends"))?;
            RoomId::parse(&f.room_id).map_err(|_| ApiError::not_found("the friendship has no room"))
        } else {
            let id = if msg.group_id.is_empty() {
                &msg.receiver_id
            } else {
                &msg.group_id
            };
            RoomId::parse(id).map_err(|_| ApiError::bad_request("invalid group id"))
        }
    }

    /// Stores a call record in the DM room: `(event id, time, seq)` for the acknowledgement.
    async fn record_call(&self, msg: &Msg, room: &str) -> Result<(String, i64, i64), ApiError> {
        let room =
            RoomId::parse(room).map_err(|_| ApiError::not_found("the friendship has no room"))?;
        self.post(&room, msg, crate::mapping::call_content(msg))
            .await
    }

    async fn send(&self, msg: &Msg) -> Result<(String, i64, i64), ApiError> {
        let room = self.room_of(msg).await?;
        let content = msg_to_content(&self.s, msg)?;
        self.post(&room, msg, content).await
    }

    /// Appends the `m.room.message` of `msg`, once per local id: `(event id, time, seq)`.
    async fn post(
        &self,
        room: &RoomId,
        msg: &Msg,
        content: serde_json::Value,
    ) -> Result<(String, i64, i64), ApiError> {
        let event_id = self
            .s
            .rooms
            .send(
                &self.s.session(&self.me)?,
                room,
                "m.room.message",
                content,
                Some(&format!("sc:{}", msg.local_id)),
                None,
            )
            .await?;
        let ev = self.s.room_store().event(&event_id).await?;
        let (ts, pos) = ev
            .map(|e| (i64::from(e.pdu.origin_server_ts.get()), e.pos))
            .unwrap_or((now(), 0));
        Ok((event_id.to_string(), ts, pos))
    }

    /// `MsgTypeRead`: a read receipt on the latest of the listed messages.
    async fn read(&self, msg: &Msg) -> Result<(), ApiError> {
        let read: MsgRead = bincode::deserialize(&msg.content)
            .or_else(|_| serde_json::from_slice(&msg.content))
            .map_err(|e| ApiError::bad_request(format!("read content: {e}")))?;
        let Some(seq) = read.msg_seq.iter().copied().max() else {
            return Ok(());
        };
        let ev = self
            .s
            .room_store()
            .events_between(seq.saturating_sub(1), seq, 1)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("no message with that seq"))?;
        self.s
            .data
            .receipt(
                &self.s.session(&self.me)?,
                ev.pdu.room_id(),
                "m.read",
                &ev.pdu.event_id,
                None,
            )
            .await?;
        Ok(())
    }
}
