//! A Sandcat-protocol client for the tests (REST + bincode WebSocket), following the real
//! client where it matters: the frames it can decode (a frame it would panic on fails the
//! test) and its bookkeeping of `seq` and `send_seq`.

use std::time::Duration;

use base64::{engine::general_purpose, Engine};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::Server;

/// The `Msg` frame, field for field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) send_id: String,
    pub(crate) receiver_id: String,
    pub(crate) local_id: String,
    pub(crate) server_id: String,
    pub(crate) create_time: i64,
    pub(crate) send_time: i64,
    pub(crate) seq: i64,
    pub(crate) msg_type: i32,
    pub(crate) content_type: i32,
    pub(crate) content: Vec<u8>,
    pub(crate) is_read: bool,
    pub(crate) group_id: String,
    pub(crate) platform: i32,
    pub(crate) avatar: String,
    pub(crate) nickname: String,
    pub(crate) related_msg_id: Option<String>,
    pub(crate) send_seq: i64,
}

#[derive(Serialize)]
pub(crate) struct MsgRead {
    pub(crate) msg_seq: Vec<i64>,
    pub(crate) user_id: String,
}

/// A Sandcat client: REST with its JWT, and WebSocket connections.
pub(crate) struct Native {
    pub(crate) base: String,
    pub(crate) id: String,
    pub(crate) token: String,
    pub(crate) refresh: String,
    pub(crate) ws_addr: String,
    pub(crate) http: reqwest::Client,
}

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Native {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn connect(&self, platform: i32) -> Ws {
        let url = format!(
            "{}/{}/conn/{}/{platform}/{}",
            self.ws_addr, self.id, self.id, self.token
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket")
            .0
    }
}

/// Registers through the mail-code flow and logs in.
pub(crate) async fn sandcat_user(server: &Server, name: &str) -> Native {
    let http = reqwest::Client::new();
    let email = format!("{name}@example.org");
    let res = http
        .post(format!("{}/api/user/mail/send", server.base))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let code = server
        .outbox
        .0
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(e, _)| *e == email)
        .map(|(_, c)| c.clone())
        .expect("a code was sent");
    let res = http
        .post(format!("{}/api/user", server.base))
        .json(&json!({ "avatar": "", "name": name, "password": format!("pw-{name}"), "email": email, "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let user: Value = res.json().await.unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["account"], id);
    assert_eq!(user["password"], "", "never sent back");
    login(server, &email, &format!("pw-{name}")).await
}

pub(crate) async fn login(server: &Server, account: &str, password: &str) -> Native {
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/user/login", server.base))
        .json(&json!({ "account": account, "password": general_purpose::STANDARD_NO_PAD.encode(password) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "login {account}");
    let t: Value = res.json().await.unwrap();
    let ws_addr = t["ws_addr"].as_str().unwrap().to_owned();
    assert!(
        ws_addr.starts_with("ws://") && ws_addr.ends_with("/ws"),
        "{ws_addr}"
    );
    Native {
        base: server.base.clone(),
        id: t["user"]["id"].as_str().unwrap().to_owned(),
        token: t["token"].as_str().unwrap().to_owned(),
        refresh: t["refresh_token"].as_str().unwrap().to_owned(),
        ws_addr,
        http,
    }
}

pub(crate) async fn send_frame(ws: &mut Ws, msg: &Msg) {
    ws.send(Message::Binary(bincode::serialize(msg).unwrap().into()))
        .await
        .unwrap();
}

/// The next `Msg` frame (skipping pings), within 10 s.
pub(crate) async fn next_msg(ws: &mut Ws) -> Msg {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        match frame {
            Message::Binary(b) => {
                let m: Msg = bincode::deserialize(&b).expect("bincode Msg");
                // The real client's `convert_server_msg` unwraps the type and has `todo!()`
                // for these: a frame of one of them would make it panic.
                assert!(
                    (0..=27).contains(&m.msg_type)
                        && ![7, 8, 12, 23, 25, 26, 27].contains(&m.msg_type),
                    "a frame the Sandcat client cannot take: {m:?}"
                );
                return m;
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// The next frame of a message type.
pub(crate) async fn next_of(ws: &mut Ws, kind: i32) -> Msg {
    loop {
        let m = next_msg(ws).await;
        if m.msg_type == kind {
            return m;
        }
    }
}

pub(crate) fn text(from: &str, to: &str, local: &str, body: &str, msg_type: i32) -> Msg {
    Msg {
        send_id: from.into(),
        receiver_id: to.into(),
        local_id: local.into(),
        msg_type,
        content_type: 1,
        content: body.as_bytes().to_vec(),
        create_time: 1,
        ..Default::default()
    }
}

/// Makes `a` and `b` friends through the REST API (request, then acceptance).
pub(crate) async fn befriend(a: &Native, b: &Native) {
    let (s, fs) = a
        .call(reqwest::Method::POST, "/friend", Some(json!({ "user_id": a.id, "friend_id": b.id, "apply_msg": "hi", "source": "search" })))
        .await;
    assert_eq!(s, 200, "{fs}");
    let (_, apply) = b
        .call(
            reqwest::Method::GET,
            &format!("/friend/{}/apply", b.id),
            None,
        )
        .await;
    let fs_id = apply[0]["fs_id"].as_str().unwrap().to_owned();
    let (s, friend) = b
        .call(
            reqwest::Method::PUT,
            "/friend/agree",
            Some(json!({ "fs_id": fs_id, "resp_remark": "" })),
        )
        .await;
    assert_eq!(s, 200, "{friend}");
}

/// The Sandcat client's bookkeeping of its two sequences (`handle_lack_msg` in
/// `components/src/left/conv_com/handle_msg.rs`): a number more than one past the last one
/// seen means lost messages, and the client pulls.
#[derive(Debug, Default)]
pub(crate) struct SeqTracker {
    pub(crate) seq: i64,
    pub(crate) send_seq: i64,
    pub(crate) pulls: usize,
}

impl SeqTracker {
    pub(crate) async fn of(n: &Native) -> Self {
        let (_, s) = n
            .call(
                reqwest::Method::GET,
                &format!("/message/seq/{}", n.id),
                None,
            )
            .await;
        SeqTracker {
            seq: s["seq"].as_i64().unwrap(),
            send_seq: s["send_seq"].as_i64().unwrap(),
            pulls: 0,
        }
    }

    pub(crate) fn see(&mut self, m: &Msg) {
        let (n, local) = if m.msg_type == 24 {
            (m.send_seq, &mut self.send_seq)
        } else {
            (m.seq, &mut self.seq)
        };
        if *local > n - 1 {
            return;
        }
        if *local < n - 1 {
            self.pulls += 1;
        }
        *local = n;
    }

    /// Reads frames until `messages` messages and `acks` acknowledgements came.
    pub(crate) async fn read(&mut self, ws: &mut Ws, messages: usize, acks: usize) {
        let (mut m, mut a) = (0, 0);
        while m < messages || a < acks {
            let frame = next_msg(ws).await;
            self.see(&frame);
            match frame.msg_type {
                0 => m += 1,
                24 => a += 1,
                other => panic!("unexpected frame type {other}"),
            }
        }
    }
}

/// The frames of a user's whole inbox, pulled as a client back online pulls.
pub(crate) async fn pull_all(n: &Native) -> Vec<Msg> {
    let seqs = SeqTracker::of(n).await;
    let (s, pulled) = n
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": n.id, "start": 0, "end": seqs.seq, "send_start": 0, "send_end": seqs.send_seq })))
        .await;
    assert_eq!(s, 200, "{pulled}");
    serde_json::from_value(pulled).unwrap()
}
