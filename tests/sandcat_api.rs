//! The Sandcat native API end to end: the Sandcat-protocol client of `common::sandcat` and
//! Matrix clients in the same conversations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use base64::{engine::general_purpose, Engine};
use common::{
    enc,
    native::{befriend, login, next_msg, next_of, sandcat_user, send_frame, text, Msg, MsgRead},
    Client, Server,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Waits for a message body from `sender` in `room` through Matrix `/sync`.
async fn matrix_sees(client: &Client, room: &str, sender: &str, body: &str) -> Value {
    let mut since: Option<String> = None;
    for _ in 0..20 {
        let s = client.sync(since.as_deref(), 2000).await;
        if let Some(evs) = s["rooms"]["join"][room]["timeline"]["events"].as_array() {
            if let Some(e) = evs
                .iter()
                .find(|e| e["sender"] == sender && e["content"]["body"] == body)
            {
                return e.clone();
            }
        }
        since = s["next_batch"].as_str().map(str::to_owned);
    }
    panic!("{body} never reached the Matrix client");
}

#[tokio::test]
async fn sandcat_and_matrix_clients_share_conversations() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    // Bob registered through Matrix; the same password logs him into the Sandcat API.
    let bob_mx = server.register("bob").await;
    let bob = login(&server, "bob", "pw-bob").await;
    assert_eq!(bob.id, "bob");

    let mut alice_ws = alice.connect(0).await;
    let mut bob_ws = bob.connect(0).await;

    // Friend request and acceptance, live on both sockets.
    let (s, fs) = alice
        .call(reqwest::Method::POST, "/api/friend", Some(json!({ "user_id": alice.id, "friend_id": "bob", "apply_msg": "hi", "source": "search" })))
        .await;
    assert_eq!(s, 200, "{fs}");
    let req_frame = next_of(&mut bob_ws, 10).await;
    assert_eq!(req_frame.send_id, alice.id);
    let (s, apply) = bob
        .call(reqwest::Method::GET, "/friend/bob/apply", None)
        .await;
    assert_eq!(s, 200, "{apply}");
    let fs_id = apply[0]["fs_id"].as_str().unwrap().to_owned();
    assert_eq!(apply[0]["user_id"], alice.id);
    let (s, friend) = bob
        .call(
            reqwest::Method::PUT,
            "/friend/agree",
            Some(json!({ "fs_id": fs_id, "resp_remark": "Alice" })),
        )
        .await;
    assert_eq!(s, 200, "{friend}");
    assert_eq!(friend["friend_id"], alice.id);
    assert_eq!(friend["status"], 1);
    let resp = next_of(&mut alice_ws, 11).await;
    assert_eq!(resp.send_id, "bob");
    let (_, list) = alice
        .call(
            reqwest::Method::GET,
            &format!("/friend/{}/0", alice.id),
            None,
        )
        .await;
    assert_eq!(list["friends"][0]["friend_id"], "bob", "{list}");

    // Bob's Sandcat client is one of his devices, and its use shows in his Matrix device
    // list (Element's "last activity"), as a Matrix client's would.
    let (_, devices) = bob_mx.get("/_matrix/client/v3/devices").await;
    let devices = devices["devices"].as_array().expect("devices").clone();
    assert_eq!(devices.len(), 2, "{devices:?}");
    for d in &devices {
        assert!(d["last_seen_ts"].as_u64().is_some_and(|t| t > 0), "{d}");
        assert_eq!(d["last_seen_ip"], "127.0.0.1", "{d}");
    }

    // The friendship is a Matrix DM room that Bob's Matrix client has joined, marked direct.
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    let dm = rooms["joined_rooms"][0]
        .as_str()
        .expect("a DM room")
        .to_owned();
    let (_, direct) = bob_mx
        .get(&format!(
            "/_matrix/client/v3/user/{}/account_data/m.direct",
            enc(&bob_mx.user_id)
        ))
        .await;
    assert_eq!(
        direct[format!("@{}:localhost", alice.id)][0],
        dm,
        "{direct}"
    );

    // Sandcat → Matrix: acknowledged with server id and send_seq, seen by /sync.
    send_frame(
        &mut alice_ws,
        &text(&alice.id, "bob", "l1", "hello from sandcat", 0),
    )
    .await;
    let ack = next_of(&mut alice_ws, 24).await;
    assert_eq!(ack.local_id, "l1");
    assert!(
        ack.server_id.starts_with('$') && ack.send_time > 0,
        "{ack:?}"
    );
    assert_eq!(
        ack.send_seq, 1,
        "Alice's first sent message is her send_seq 1"
    );
    assert!(ack.content.is_empty());
    let ev = matrix_sees(
        &bob_mx,
        &dm,
        &format!("@{}:localhost", alice.id),
        "hello from sandcat",
    )
    .await;
    assert_eq!(ev["event_id"], ack.server_id);
    assert_eq!(ev["content"]["msgtype"], "m.text");
    // Bob's Sandcat socket gets it too, as a single message.
    let got = next_of(&mut bob_ws, 0).await;
    assert_eq!(
        (got.send_id.as_str(), got.receiver_id.as_str()),
        (alice.id.as_str(), "bob")
    );
    assert_eq!(got.content, b"hello from sandcat");
    assert_eq!(got.seq, 1, "Bob's first received message is his seq 1");

    // An image from Sandcat is an m.image with an mxc URL; its file name comes back intact.
    let mut image = text(&alice.id, "bob", "img1", "AbCdEf123.png", 0);
    image.content_type = 2;
    send_frame(&mut alice_ws, &image).await;
    let image_ack = next_of(&mut alice_ws, 24).await;
    assert_eq!((image_ack.content_type, image_ack.send_seq), (2, 2));
    let ev = matrix_sees(
        &bob_mx,
        &dm,
        &format!("@{}:localhost", alice.id),
        "AbCdEf123.png",
    )
    .await;
    assert_eq!(ev["content"]["msgtype"], "m.image");
    assert_eq!(ev["content"]["url"], "mxc://localhost/AbCdEf123");
    let got = next_of(&mut bob_ws, 0).await;
    assert_eq!(
        (got.content_type, got.content.as_slice(), got.seq),
        (2, b"AbCdEf123.png".as_slice(), 2)
    );

    // Matrix → Sandcat, to two connections of Alice (desktop and mobile).
    let mut alice_mobile = alice.connect(1).await;
    bob_mx.send_text(&dm, "m1", "hello from matrix").await;
    let mut from_matrix = Msg::default();
    for ws in [&mut alice_ws, &mut alice_mobile] {
        let m = next_of(ws, 0).await;
        assert_eq!(
            (m.send_id.as_str(), m.receiver_id.as_str()),
            ("bob", alice.id.as_str())
        );
        assert_eq!(m.content, b"hello from matrix");
        assert_eq!(m.content_type, 1);
        assert_eq!(m.seq, 1, "each device counts it as Alice's first received");
        from_matrix = m;
    }
    // Bob's own Matrix message reaches his Sandcat socket, not counted as received (seq 0).
    // It is his send_seq 1, and an acknowledgement tells his Sandcat client so.
    let own = next_of(&mut bob_ws, 0).await;
    assert_eq!((own.send_id.as_str(), own.seq), ("bob", 0));
    let own_ack = next_msg(&mut bob_ws).await;
    assert_eq!(
        (
            own_ack.msg_type,
            own_ack.send_seq,
            own_ack.server_id.as_str()
        ),
        (24, 1, own.server_id.as_str())
    );

    // A message Alice sends from her desktop shows on her mobile too; the desktop gets the ack.
    send_frame(
        &mut alice_ws,
        &text(&alice.id, "bob", "l-desk", "from the desktop", 0),
    )
    .await;
    let ack_desk = next_of(&mut alice_ws, 24).await;
    assert_eq!(
        (ack_desk.local_id.as_str(), ack_desk.send_seq),
        ("l-desk", 3)
    );
    let echo = next_of(&mut alice_mobile, 0).await;
    let echo_ack = next_msg(&mut alice_mobile).await;
    assert_eq!(
        (
            echo_ack.msg_type,
            echo_ack.send_seq,
            echo_ack.local_id.as_str()
        ),
        (24, 3, "l-desk"),
        "the mobile counts the desktop's message as sent, with no pull"
    );
    assert_eq!(
        (
            echo.send_id.as_str(),
            echo.local_id.as_str(),
            echo.content.as_slice()
        ),
        (alice.id.as_str(), "l-desk", b"from the desktop".as_slice())
    );
    assert_eq!(echo.server_id, ack_desk.server_id);
    let third = next_of(&mut bob_ws, 0).await;
    assert_eq!(
        (third.content.as_slice(), third.seq),
        (b"from the desktop".as_slice(), 3)
    );

    // A read notice as the client sends it (no sender, the reader's receive seqs) is an
    // m.read receipt for Matrix, and pulled messages carry it as `is_read`.
    let read = Msg {
        msg_type: 23,
        content: bincode::serialize(&MsgRead {
            msg_seq: vec![from_matrix.seq],
            user_id: alice.id.clone(),
        })
        .unwrap(),
        ..Default::default()
    };
    send_frame(&mut alice_ws, &read).await;
    let mut since: Option<String> = None;
    let mut receipt = false;
    for _ in 0..20 {
        let s = bob_mx.sync(since.as_deref(), 1000).await;
        if s["rooms"]["join"][&dm]["ephemeral"]
            .to_string()
            .contains(&format!("@{}:localhost", alice.id))
        {
            receipt = true;
            break;
        }
        since = s["next_batch"].as_str().map(str::to_owned);
    }
    assert!(receipt, "Alice's read receipt reached Matrix");
    let (_, pulled) = alice
        .call(
            reqwest::Method::POST,
            "/message",
            Some(json!({ "user_id": alice.id, "send_start": 0, "send_end": 0, "start": from_matrix.seq - 1, "end": from_matrix.seq })),
        )
        .await;
    let pulled: Vec<Msg> = serde_json::from_value(pulled).unwrap();
    let read_one = pulled
        .iter()
        .find(|m| m.server_id == from_matrix.server_id)
        .expect("the message read");
    assert!(read_one.is_read, "read from Sandcat: {pulled:?}");

    // A Matrix read receipt is recorded, and no Read frame (the client cannot take one)
    // reaches the Sandcat sender: every later frame is checked by `next_msg`.
    let (s, _) = bob_mx
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&dm),
                enc(&ack.server_id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);

    // A newer desktop connection knocks the older one off with 4001.
    let mut alice_desktop2 = alice.connect(0).await;
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), alice_ws.next())
            .await
            .unwrap();
        match f {
            Some(Ok(Message::Close(Some(c)))) => {
                assert_eq!(u16::from(c.code), 4001);
                break;
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a 4001 close, got {other:?}"),
        }
    }

    // Offline: Alice disconnects; Bob sends three messages; Alice pulls exactly those by seq.
    let (_, before) = alice
        .call(
            reqwest::Method::GET,
            &format!("/message/seq/{}", alice.id),
            None,
        )
        .await;
    let seen = before["seq"].as_i64().unwrap();
    drop(alice_desktop2.close(None).await);
    drop(alice_mobile.close(None).await);
    for i in 0..3 {
        bob_mx
            .send_text(&dm, &format!("off{i}"), &format!("offline {i}"))
            .await;
    }
    let (_, after) = alice
        .call(
            reqwest::Method::GET,
            &format!("/message/seq/{}", alice.id),
            None,
        )
        .await;
    let end = after["seq"].as_i64().unwrap();
    assert_eq!(
        end,
        seen + 3,
        "one number per message received: {before} {after}"
    );
    let (s, pulled) = alice
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": alice.id, "send_start": after["send_seq"], "send_end": after["send_seq"], "start": seen, "end": end })))
        .await;
    assert_eq!(s, 200, "{pulled}");
    let pulled: Vec<Msg> = serde_json::from_value(pulled).unwrap();
    let bodies: Vec<String> = pulled
        .iter()
        .map(|m| String::from_utf8(m.content.clone()).unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["offline 0", "offline 1", "offline 2"],
        "nothing lost, nothing twice"
    );
    assert_eq!(
        pulled.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [seen + 1, seen + 2, seen + 3],
        "numbered without gaps"
    );
    assert!(
        pulled.windows(2).all(|w| w[0].seq < w[1].seq),
        "seq strictly increasing"
    );
    // Her own sent messages come back by send_seq.
    let (_, sent) = alice
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": alice.id, "send_start": 0, "send_end": after["send_seq"], "start": end, "end": end })))
        .await;
    assert_eq!(
        sent[0]["content"],
        json!(b"hello from sandcat".to_vec()),
        "{sent}"
    );
    // Deleted messages leave her pulls.
    let (s, _) = alice
        .call(
            reqwest::Method::DELETE,
            "/message",
            Some(json!({ "user_id": alice.id, "msg_id": [pulled[0].seq] })),
        )
        .await;
    assert_eq!(s, 200);
    let (_, again) = alice
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": alice.id, "send_start": after["send_seq"], "send_end": after["send_seq"], "start": seen, "end": end })))
        .await;
    assert_eq!(again.as_array().unwrap().len(), 2);
    // A message its sender redacts (from Matrix) leaves the receiver's inbox too.
    let (s, r) = bob_mx
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/undo1",
                enc(&dm),
                enc(&pulled[1].server_id)
            ),
            json!({ "reason": "typo" }),
        )
        .await;
    assert_eq!(s, 200, "redact: {r}");
    let (_, again) = alice
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": alice.id, "send_start": after["send_seq"], "send_end": after["send_seq"], "start": seen, "end": end })))
        .await;
    let left: Vec<Msg> = serde_json::from_value(again).unwrap();
    assert_eq!(
        left.iter()
            .map(|m| String::from_utf8(m.content.clone()).unwrap())
            .collect::<Vec<_>>(),
        ["offline 2"]
    );

    // Groups are rooms: members added directly, messages both ways.
    let mut alice_ws = alice.connect(0).await;
    let (s, inv) = alice
        .call(reqwest::Method::POST, &format!("/group/{}", alice.id), Some(json!({ "id": "", "owner": alice.id, "avatar": "a1.png,b2.png", "group_name": "Cats", "members_id": ["bob"] })))
        .await;
    assert_eq!(s, 200, "{inv}");
    let group = inv["info"]["id"].as_str().unwrap().to_owned();
    assert_eq!(inv["info"]["name"], "Cats");
    assert_eq!(
        inv["info"]["avatar"], "a1.png,b2.png",
        "the client's avatar list comes back"
    );
    assert_eq!(inv["info"]["owner"], alice.id);
    let roles: Vec<(String, i64)> = inv["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().to_owned(),
                m["role"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        roles.contains(&(alice.id.clone(), 0)) && roles.contains(&("bob".into(), 2)),
        "{roles:?}"
    );
    // Bob learns of it from his inbox: his joining, as the client takes it (it then fetches
    // the group and its members).
    let note = next_of(&mut bob_ws, 3).await;
    assert_eq!(note.group_id, group);
    assert_eq!(
        bincode::deserialize::<Vec<String>>(&note.content).unwrap(),
        ["bob"]
    );
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    assert!(
        rooms["joined_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| *r == group),
        "Bob's Matrix client is in the group"
    );
    let (_, name) = bob_mx
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.name/",
            enc(&group)
        ))
        .await;
    assert_eq!(name["name"], "Cats");
    let (_, avatar) = bob_mx
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.avatar/",
            enc(&group)
        ))
        .await;
    assert_eq!(
        avatar["url"], "mxc://localhost/a1",
        "Matrix sees the first avatar"
    );
    bob_mx.send_text(&group, "g1", "meow from matrix").await;
    let m = next_of(&mut alice_ws, 1).await;
    assert_eq!(
        (
            m.group_id.as_str(),
            m.receiver_id.as_str(),
            m.send_id.as_str()
        ),
        (group.as_str(), group.as_str(), "bob")
    );
    let mut gm = text(&alice.id, &group, "g-l1", "purr from sandcat", 1);
    gm.group_id = group.clone();
    send_frame(&mut alice_ws, &gm).await;
    let ack = next_of(&mut alice_ws, 24).await;
    assert_eq!(ack.content_type, 1, "acknowledged, not refused: {ack:?}");
    matrix_sees(
        &bob_mx,
        &group,
        &format!("@{}:localhost", alice.id),
        "purr from sandcat",
    )
    .await;
    // The owner updates the group; the announcement is room state.
    let (s, info) = alice
        .call(reqwest::Method::PUT, &format!("/group/{}", alice.id), Some(json!({ "id": group, "name": "Big cats", "avatar": "", "description": "roar", "announcement": "no dogs" })))
        .await;
    assert_eq!(s, 200, "{info}");
    assert_eq!(
        (
            info["name"].as_str(),
            info["announcement"].as_str(),
            info["avatar"].as_str()
        ),
        (Some("Big cats"), Some("no dogs"), Some(""))
    );
    let (_, topic) = bob_mx
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
            enc(&group)
        ))
        .await;
    assert_eq!(topic["topic"], "roar");
    // Bob leaves; the owner sees him gone.
    let (s, _) = bob
        .call(
            reqwest::Method::DELETE,
            "/group",
            Some(json!({ "user_id": "bob", "group_id": group, "is_dismiss": false })),
        )
        .await;
    assert_eq!(s, 200);
    let (_, members) = alice
        .call(
            reqwest::Method::GET,
            &format!("/group/member/{}/{}", alice.id, enc(&group)),
            None,
        )
        .await;
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "{members}");
    let exit = next_of(&mut alice_ws, 4).await;
    assert_eq!(
        (exit.send_id.as_str(), exit.group_id.as_str()),
        ("bob", group.as_str())
    );
}

#[tokio::test]
async fn every_request_and_frame_is_bound_to_its_token() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let _bob_mx = server.register("bob").await;
    let bob = login(&server, "bob", "pw-bob").await;

    // REST: acting for someone else, no token, bad tokens, bad bodies.
    let (s, b) = alice
        .call(reqwest::Method::GET, "/message/seq/bob", None)
        .await;
    assert_eq!((s, b["kind"].as_str()), (403, Some("UnAuthorized")), "{b}");
    let (s, b) = alice
        .call(
            reqwest::Method::POST,
            "/friend",
            Some(json!({ "user_id": "bob", "friend_id": alice.id, "source": "x" })),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let anon = reqwest::Client::new();
    let res = anon
        .get(format!("{}/api/message/seq/{}", server.base, alice.id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "UnAuthorized");
    let res = anon
        .get(format!("{}/user/{}", server.base, alice.id))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = anon
        .post(format!("{}/friend", server.base))
        .bearer_auth(&alice.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["kind"], "BodyParsing");
    let (s, b) = alice
        .call(reqwest::Method::GET, "/user/nobody-here", None)
        .await;
    assert_eq!((s, b["kind"].as_str()), (404, Some("NotFound")));
    let res = anon
        .post(format!("{}/api/user/login", server.base))
        .json(&json!({ "account": "bob", "password": general_purpose::STANDARD_NO_PAD.encode("wrong") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = anon
        .post(format!("{}/api/user", server.base))
        .json(&json!({ "avatar": "", "name": "eve", "password": "pw", "email": "eve@example.org", "code": "000000" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "no code was sent");

    // Refresh: the refresh token buys a new access token; an access token buys nothing.
    let res = anon
        .get(format!(
            "{}/api/user/refresh_token/{}/false",
            server.base, alice.refresh
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let fresh = res.text().await.unwrap();
    assert_eq!(fresh.split('.').count(), 3, "a JWT: {fresh}");
    let res = anon
        .get(format!(
            "{}/api/user/refresh_token/{}/true",
            server.base, alice.token
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "an access token does not refresh");
    let res = anon
        .get(format!(
            "{}/api/user/refresh_token/garbage/false",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // WebSocket: a token for another user is closed with 4002.
    let url = format!("{}/bob/conn/bob/0/{}", alice.ws_addr, alice.token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 4002),
        other => panic!("expected 4002, got {other:?}"),
    }

    // Befriend, then: a forged send_id is refused and the connection stays usable.
    let (_, _) = alice
        .call(
            reqwest::Method::POST,
            "/friend",
            Some(json!({ "user_id": alice.id, "friend_id": "bob", "source": "x" })),
        )
        .await;
    let (_, apply) = bob
        .call(reqwest::Method::GET, "/friend/bob/apply", None)
        .await;
    let (s, _) = bob
        .call(
            reqwest::Method::PUT,
            "/friend/agree",
            Some(json!({ "fs_id": apply[0]["fs_id"] })),
        )
        .await;
    assert_eq!(s, 200);
    let mut alice_ws = alice.connect(0).await;
    let mut bob_ws = bob.connect(0).await;
    send_frame(
        &mut alice_ws,
        &text("bob", &alice.id, "forged", "I am bob", 0),
    )
    .await;
    let refused = next_of(&mut alice_ws, 24).await;
    assert_eq!(refused.content_type, 9, "{refused:?}");
    alice_ws
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let refused = next_of(&mut alice_ws, 24).await;
    assert_eq!(refused.content_type, 9);
    // A JSON text frame is accepted too.
    let json_frame = serde_json::to_string(&text(&alice.id, "bob", "j1", "json frame", 0)).unwrap();
    alice_ws
        .send(Message::Text(json_frame.into()))
        .await
        .unwrap();
    let ok = next_of(&mut alice_ws, 24).await;
    assert_eq!((ok.local_id.as_str(), ok.content_type), ("j1", 1), "{ok:?}");
    let got = next_of(&mut bob_ws, 0).await;
    assert_eq!(got.content, b"json frame");

    // Call signalling is relayed between live connections and never stored.
    let invite = Msg {
        send_id: alice.id.clone(),
        receiver_id: "bob".into(),
        local_id: "c1".into(),
        msg_type: 14,
        content_type: 7,
        ..Default::default()
    };
    send_frame(&mut alice_ws, &invite).await;
    let call = next_of(&mut bob_ws, 14).await;
    assert_eq!(call.send_id, alice.id);
    let (_, seq) = bob
        .call(reqwest::Method::GET, "/message/seq/bob", None)
        .await;
    let (_, msgs) = bob
        .call(reqwest::Method::POST, "/message", Some(json!({ "user_id": "bob", "send_start": 0, "send_end": 0, "start": 0, "end": seq["seq"] })))
        .await;
    assert!(
        msgs.as_array().unwrap().iter().all(|m| m["msg_type"] == 0),
        "no call in history: {msgs}"
    );
    // Calls go to friends only.
    let stranger = sandcat_user(&server, "carol").await;
    let mut carol_ws = stranger.connect(0).await;
    let call = Msg {
        send_id: stranger.id.clone(),
        receiver_id: "bob".into(),
        msg_type: 14,
        ..Default::default()
    };
    send_frame(&mut carol_ws, &call).await;
    assert_eq!(next_of(&mut carol_ws, 24).await.content_type, 9);
}

#[tokio::test]
async fn files_round_trip() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello file".to_vec()).file_name("note.txt"),
    );
    let res = alice
        .http
        .post(format!("{}/api/file/upload", server.base))
        .bearer_auth(&alice.token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let name = res.text().await.unwrap();
    assert!(name.ends_with(".txt"), "{name}");
    let res = reqwest::get(format!("{}/api/file/get/{name}", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "private, max-age=31536000");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"hello file");
    let res = reqwest::get(format!("{}/api/file/get/..%2Fsandcat.db", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The file is Matrix media: a Matrix client downloads it by its mxc URI.
    let bob = server.register("bob").await;
    let id = name.split('.').next().unwrap();
    let res = bob
        .http
        .get(format!(
            "{}/_matrix/client/v1/media/download/localhost/{id}",
            server.base
        ))
        .bearer_auth(bob.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"hello file");
    // And a Matrix upload is a Sandcat file.
    let res = bob
        .http
        .post(format!(
            "{}/_matrix/media/v3/upload?filename=pic.png",
            server.base
        ))
        .bearer_auth(bob.token.as_deref().unwrap())
        .header("content-type", "image/png")
        .body(b"png bytes".to_vec())
        .send()
        .await
        .unwrap();
    let uri: Value = res.json().await.unwrap();
    let mx_id = uri["content_uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let res = reqwest::get(format!("{}/api/file/get/{mx_id}.png", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"png bytes");
    let res = reqwest::get(format!("{}/api/file/get/missing.txt", server.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = reqwest::Client::new()
        .post(format!("{}/api/file/upload", server.base))
        .multipart(reqwest::multipart::Form::new().text("x", "y"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "uploads need a token");
}

#[tokio::test]
async fn a_friendship_can_end_and_resume_in_the_same_room() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let bob_mx = server.register("bob").await;
    let bob = login(&server, "bob", "pw-bob").await;
    let befriend = || async {
        let (s, b) = alice
            .call(
                reqwest::Method::POST,
                "/friend",
                Some(json!({ "user_id": alice.id, "friend_id": "bob", "source": "x" })),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let (_, apply) = bob
            .call(reqwest::Method::GET, "/friend/bob/apply", None)
            .await;
        let (s, b) = bob
            .call(
                reqwest::Method::PUT,
                "/friend/agree",
                Some(json!({ "fs_id": apply[0]["fs_id"] })),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    };
    befriend().await;
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    let dm = rooms["joined_rooms"][0].as_str().unwrap().to_owned();
    let (s, _) = alice
        .call(
            reqwest::Method::POST,
            "/friend",
            Some(json!({ "user_id": alice.id, "friend_id": "bob", "source": "x" })),
        )
        .await;
    assert_eq!(s, 400, "already friends");
    let (s, b) = bob
        .call(
            reqwest::Method::DELETE,
            "/friend",
            Some(json!({ "user_id": "bob", "friend_id": alice.id, "fs_id": "" })),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    assert!(
        rooms["joined_rooms"].as_array().unwrap().is_empty(),
        "deleting the friend left the DM: {rooms}"
    );
    let (_, list) = alice
        .call(
            reqwest::Method::GET,
            &format!("/friend/{}/0", alice.id),
            None,
        )
        .await;
    assert_eq!(list["friends"][0]["status"], 4, "{list}");
    befriend().await;
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(rooms["joined_rooms"], json!([dm]), "the same DM room again");
    let (s, _) = alice
        .call(
            reqwest::Method::PUT,
            "/friend/remark",
            Some(json!({ "user_id": alice.id, "friend_id": "bob", "remark": "Bobby" })),
        )
        .await;
    assert_eq!(s, 200);
    let (_, list) = alice
        .call(
            reqwest::Method::GET,
            &format!("/friend/{}/0", alice.id),
            None,
        )
        .await;
    assert_eq!(list["friends"][0]["remark"], "Bobby");
    // Search by account and by email.
    let (_, found) = bob
        .call(
            reqwest::Method::GET,
            &format!("/user/bob/search/{}", alice.id),
            None,
        )
        .await;
    assert_eq!(
        (found["match_type"].as_str(), found["is_friend"].as_bool()),
        (Some("account"), Some(true)),
        "{found}"
    );
    let (_, found) = bob
        .call(
            reqwest::Method::GET,
            "/user/bob/search/alice@example.org",
            None,
        )
        .await;
    assert_eq!(found["match_type"], "email", "{found}");
}

/// A call record (a missed call, a hang-up) is acknowledged to the caller as the client waits
/// for, stored in the DM — Matrix members see a notice — and pulled by a callee who was
/// offline; offers and candidates stay live-only.
#[tokio::test]
async fn call_records_reach_an_offline_callee() {
    let server = Server::start().await;
    let alice = sandcat_user(&server, "alice").await;
    let bob_mx = server.register("bob").await;
    let bob = login(&server, "bob", "pw-bob").await;
    befriend(&alice, &bob).await;
    let (_, seq_before) = bob
        .call(reqwest::Method::GET, "/message/seq/bob", None)
        .await;

    let mut alice_ws = alice.connect(0).await;
    let missed = Msg {
        send_id: alice.id.clone(),
        receiver_id: "bob".into(),
        local_id: "call-1".into(),
        msg_type: 17,
        content_type: 8,
        content: b"not answered".to_vec(),
        create_time: 5,
        ..Default::default()
    };
    send_frame(&mut alice_ws, &missed).await;
    let ack = next_of(&mut alice_ws, 24).await;
    assert_eq!(ack.local_id, "call-1");
    assert!(
        ack.server_id.starts_with('$') && ack.send_time > 0 && ack.send_seq > 0,
        "{ack:?}"
    );
    assert_ne!(ack.content_type, 9, "{ack:?}");

    // Bob was offline: his pull has the record, as the frame Alice sent.
    let (_, seq) = bob
        .call(reqwest::Method::GET, "/message/seq/bob", None)
        .await;
    let (_, pulled) = bob
        .call(
            reqwest::Method::POST,
            "/message",
            Some(json!({ "user_id": "bob", "send_start": seq["send_seq"], "send_end": seq["send_seq"], "start": seq_before["seq"], "end": seq["seq"] })),
        )
        .await;
    let pulled: Vec<Msg> = serde_json::from_value(pulled).unwrap();
    let record = pulled
        .iter()
        .find(|m| m.local_id == "call-1")
        .unwrap_or_else(|| panic!("the record: {pulled:?}"));
    assert_eq!(
        (
            record.msg_type,
            record.content_type,
            record.content.as_slice()
        ),
        (17, 8, b"not answered".as_slice())
    );
    assert_eq!(
        (record.send_id.as_str(), record.receiver_id.as_str()),
        (alice.id.as_str(), "bob")
    );

    // Matrix sees a notice in the DM.
    let (_, rooms) = bob_mx.get("/_matrix/client/v3/joined_rooms").await;
    let dm = rooms["joined_rooms"][0].as_str().unwrap().to_owned();
    let ev = matrix_sees(
        &bob_mx,
        &dm,
        &format!("@{}:localhost", alice.id),
        "Missed call (voice)",
    )
    .await;
    assert_eq!(ev["content"]["msgtype"], "m.notice");

    // Live, the callee gets records from the stream and offers directly; no acks for offers.
    let mut bob_ws = bob.connect(0).await;
    let offer = Msg {
        msg_type: 19,
        local_id: "offer-1".into(),
        content: b"sdp".to_vec(),
        ..missed.clone()
    };
    send_frame(&mut alice_ws, &offer).await;
    assert_eq!(next_of(&mut bob_ws, 19).await.content, b"sdp");
    let hang_up = Msg {
        msg_type: 20,
        local_id: "call-2".into(),
        content: 42i64.to_be_bytes().to_vec(),
        ..missed
    };
    send_frame(&mut alice_ws, &hang_up).await;
    assert_eq!(next_of(&mut alice_ws, 24).await.local_id, "call-2");
    let live = next_of(&mut bob_ws, 20).await;
    assert_eq!(
        (live.local_id.as_str(), live.content.as_slice()),
        ("call-2", 42i64.to_be_bytes().as_slice())
    );
}
