//! The WebSocket of Sandcat clients: `/ws/{user_id}/conn/{pointer_id}/{platform}/{token}`.
//!
//! Frames are bincode `Msg` (JSON text frames are accepted from clients). One connection per
//! (user, platform): a newer one closes the older with 4001; a bad token closes with 4002.
//! Each connection follows its user's inbox as the indexer numbers it, so a message sent from
//! a Matrix client reaches the Sandcat client with the user's next `seq`. Messages the client
//! sends become `m.room.message` events, acknowledged with `MsgRecResp` (carrying their
//! `send_seq`) on the connection they came through once the inbox has numbered them; the
//! user's other connections get the message and the same acknowledgement, so every device
//! counts both sequences without gaps. Call offers, answers and candidates are relayed between
//! live connections; call records are stored like messages.

use sandcat_core::ports::{FriendshipStatus, InboxEntry, Standing};
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use axum::{
    extract::{
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
        ConnectInfo, State,
    },
    response::Response,
};
use ruma::{OwnedRoomId, RoomId};
use tokio::sync::mpsc;

use crate::{
    friends::random_id,
    mapping::{msg_to_content, Kinds, Profiles},
    messages::entry_to_msg,
    model::{content_type, msg_type, Msg, MsgRead},
    now, ApiError, NativeState, PathArgs,
};

pub(crate) const KNOCKED_OFF: u16 = 4001;
pub(crate) const UNAUTHORIZED: u16 = 4002;
const PING_EVERY: Duration = Duration::from_secs(30);
/// Acknowledgements a connection holds until the inbox numbers their messages.
const MAX_PENDING_ACKS: usize = 1024;
/// Inbox entries read per step of live delivery.
const DELIVERY_BATCH: usize = 500;
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let ws = ws.max_message_size(MAX_FRAME).max_frame_size(MAX_FRAME);
    let device = match s.authenticate(&token, Some(peer.ip())).await {
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

/// A connection's place in the hub and in the user's inbox, taken before the handshake
/// answer.
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
    /// The stream position of the last inbox entry delivered.
    pos: i64,
    /// Acknowledgements of messages sent through this connection, by event id, until the
    /// inbox numbers them (`send_seq`).
    pending: HashMap<String, Msg>,
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
        let mut wake = s.inbox_watch.subscribe();
        let mut conn = Connection {
            s: s.clone(),
            me: user_id.clone(),
            platform,
            pos,
            pending: HashMap::new(),
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
                    // A session revoked elsewhere, or an account locked, ends its open
                    // connections too.
                    if let Ok(uid) = s.matrix_id(&user_id) {
                        match s.accounts.device_session(&uid, &device).await {
                            Err(sandcat_core::Error::Matrix { .. }) => {
                                close(&mut socket, UNAUTHORIZED, "session ended").await;
                                break;
                            }
                            Ok(session) if session.standing == Standing::Locked => {
                                close(&mut socket, UNAUTHORIZED, "account locked").await;
                                break;
                            }
                            _ => {}
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

    /// What the user's inbox holds after the last entry this connection delivered.
    async fn new_messages(&mut self) -> Result<Vec<Msg>, ApiError> {
        let me = self.s.matrix_id(&self.me)?;
        let mut out = Vec::new();
        loop {
            let entries = self
                .s
                .inbox
                .since(me.as_str(), self.pos, DELIVERY_BATCH)
                .await?;
            let (mut kinds, mut profiles) = (Kinds::default(), Profiles::default());
            for entry in &entries {
                self.deliver(entry, &mut kinds, &mut profiles, &mut out)
                    .await?;
                self.pos = entry.item.pos;
            }
            if entries.len() < DELIVERY_BATCH {
                return Ok(out);
            }
        }
    }

    /// The frames of one inbox entry: a received message; the acknowledgement of a message
    /// sent here; or a message sent elsewhere (another device, a Matrix client) with its
    /// acknowledgement, so that this device counts it as sent too.
    async fn deliver(
        &mut self,
        entry: &InboxEntry,
        kinds: &mut Kinds,
        profiles: &mut Profiles,
        out: &mut Vec<Msg>,
    ) -> Result<(), ApiError> {
        if entry.item.sent {
            if let Some(mut ack) = self.pending.remove(&entry.item.event_id) {
                ack.send_seq = entry.seq;
                out.push(ack);
                return Ok(());
            }
        }
        let Some(m) = entry_to_msg(&self.s, kinds, profiles, entry, &self.me).await? else {
            return Ok(());
        };
        if !entry.item.sent {
            out.push(m);
            return Ok(());
        }
        let ack = self.reply(&m, Ok((m.server_id.clone(), m.send_time, entry.seq)));
        // The caller's own call records are not news to its other devices; the count is.
        if !msg_type::CALL_RECORDS.contains(&m.msg_type) {
            out.push(m);
        }
        out.push(ack);
        Ok(())
    }

    /// The acknowledgement of `msg` (or its refusal with an error text), for the connection it
    /// came through.
    fn reply(&self, msg: &Msg, result: Result<(String, i64, i64), ApiError>) -> Msg {
        let mut r = msg.clone();
        r.msg_type = msg_type::REC_RESP;
        r.content = Vec::new();
        match result {
            Ok((server_id, send_time, send_seq)) => {
                r.server_id = server_id;
                r.send_time = send_time;
                r.send_seq = send_seq;
                r.seq = 0;
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
        match result {
            Ok((event_id, ts, pos)) => self.acknowledge(&msg, event_id, ts, pos).await,
            Err(e) => Some(self.reply(&msg, Err(e))),
        }
    }

    /// The acknowledgement of a stored message, once the inbox has numbered it: now, if this
    /// connection's delivery is past it (a resend of a message stored before), else when
    /// delivery reaches it.
    async fn acknowledge(&mut self, msg: &Msg, event_id: String, ts: i64, pos: i64) -> Option<Msg> {
        let mut ack = self.reply(msg, Ok((event_id.clone(), ts, 0)));
        if pos > self.pos {
            if self.pending.len() >= MAX_PENDING_ACKS {
                // The inbox is far behind; the client marks these failed and resends.
                self.pending.clear();
            }
            self.pending.insert(event_id, ack);
            return None;
        }
        let me = self.s.matrix_id(&self.me).ok()?;
        if let Ok(entries) = self.s.inbox.since(me.as_str(), pos - 1, 2).await {
            if let Some(e) = entries
                .iter()
                .find(|e| e.item.sent && e.item.event_id == event_id)
            {
                ack.send_seq = e.seq;
            }
        }
        Some(ack)
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

    /// Stores a call record in the DM room: `(event id, time, stream position)`.
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

    /// Appends the `m.room.message` of `msg`, once per local id: `(event id, time, stream
    /// position)`.
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
                &self.s.session(&self.me).await?,
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
        let me = self.s.matrix_id(&self.me)?;
        let entry = self
            .s
            .inbox
            .received(me.as_str(), seq)
            .await?
            .ok_or_else(|| ApiError::not_found("no message with that seq"))?;
        let ev = entry.stored_event()?;
        self.s
            .data
            .receipt(
                &self.s.session(&self.me).await?,
                ev.pdu.room_id(),
                "m.read",
                &ev.pdu.event_id,
                None,
            )
            .await?;
        Ok(())
    }
}
