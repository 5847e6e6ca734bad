//! End-to-end tests of the Client-Server API against a real server and a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, timeline_bodies, Server};
use serde_json::{json, Value};

fn errcode(b: &Value) -> &str {
    b["errcode"].as_str().unwrap_or("")
}

#[tokio::test]
async fn registration_flow_and_errors() {
    let srv = Server::start().await;
    let c = srv.anon();
    // Without auth: the UIA challenge.
    let (s, b) = c
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "carol", "password": "secret" }),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(b["flows"][0]["stages"][0], "m.login.dummy");
    assert!(b["session"].is_string());
    let (s, b) = c.post("/_matrix/client/v3/register", json!({ "username": "carol", "password": "secret", "auth": { "type": "m.login.dummy", "session": b["session"] } })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user_id"], "@carol:localhost");
    assert!(b["access_token"].as_str().unwrap().len() >= 43);
    // Taken, invalid, guest.
    let (s, b) = c
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "carol", "password": "x", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (400, "M_USER_IN_USE"));
    let (s, b) = c.post("/_matrix/client/v3/register", json!({ "username": "Bad Name!", "password": "x", "auth": { "type": "m.login.dummy" } })).await;
    assert_eq!((s, errcode(&b)), (400, "M_INVALID_USERNAME"));
    let (s, b) = c
        .post("/_matrix/client/v3/register?kind=guest", json!({}))
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_GUEST_ACCESS_FORBIDDEN"));
    let (s, b) = c
        .get("/_matrix/client/v3/register/available?username=carol")
        .await;
    assert_eq!((s, errcode(&b)), (400, "M_USER_IN_USE"));
    let (s, b) = c
        .get("/_matrix/client/v3/register/available?username=dave")
        .await;
    assert_eq!((s, b["available"].clone()), (200, json!(true)));
}

#[tokio::test]
async fn registration_can_be_closed() {
    let srv = Server::start_with(|c| c.registration_enabled = false).await;
    let (s, b) = srv
        .anon()
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": "x", "password": "y", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
}

#[tokio::test]
async fn login_whoami_logout() {
    let srv = Server::start().await;
    srv.register("alice").await;
    let c = srv.anon();
    let (s, b) = c.post("/_matrix/client/v3/login", json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "wrong" })).await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, b) = c.post("/_matrix/client/v3/login", json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "@alice:localhost" }, "password": "pw-alice", "device_id": "PHONE" })).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["device_id"], "PHONE");
    let mut alice = srv.anon();
    alice.token = Some(b["access_token"].as_str().unwrap().to_owned());
    let (s, b) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(s, 200);
    assert_eq!(b["user_id"], "@alice:localhost");
    assert_eq!(b["device_id"], "PHONE");
    let (s, _) = alice.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(s, 200);
    let (s, b) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((s, errcode(&b)), (401, "M_UNKNOWN_TOKEN"));
    let (s, b) = c.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((s, errcode(&b)), (401, "M_MISSING_TOKEN"));
    let mut bogus = srv.anon();
    bogus.token = Some("nope".into());
    let (s, b) = bogus.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!((s, errcode(&b)), (401, "M_UNKNOWN_TOKEN"));
}

#[tokio::test]
async fn bad_input_gets_matrix_errors() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let (s, b) = alice
        .raw(
            reqwest::Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_eq!((s, errcode(&b)), (400, "M_NOT_JSON"));
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "invite": "not-a-list" }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (400, "M_BAD_JSON"));
    let (s, b) = alice.get("/_matrix/client/v3/no/such/endpoint").await;
    assert_eq!((s, errcode(&b)), (404, "M_UNRECOGNIZED"));
    let (s, b) = alice
        .raw(
            reqwest::Method::DELETE,
            "/_matrix/client/v3/createRoom",
            None,
        )
        .await;
    assert_eq!((s, errcode(&b)), (405, "M_UNRECOGNIZED"));
    let big = format!(
        "{{\"msgtype\":\"m.text\",\"body\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let room = alice.create_room(json!({})).await;
    let (s, b) = alice
        .raw(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/big",
                enc(&room)
            ),
            Some(big.into_bytes()),
        )
        .await;
    assert_eq!((s, errcode(&b)), (413, "M_TOO_LARGE"));
    // An event over the 64 KiB PDU limit but under the body limit.
    let (s, b) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/big2",
                enc(&room)
            ),
            json!({ "body": "y".repeat(70_000) }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (413, "M_TOO_LARGE"));
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "room_version": "1" }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (400, "M_UNSUPPORTED_ROOM_VERSION"));
    let (s, b) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t",
                enc("!nope:localhost")
            ),
            json!({ "body": "x" }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (404, "M_NOT_FOUND"));
}

#[tokio::test]
async fn rooms_in_every_supported_version() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    for version in ["10", "11", "12"] {
        let room = alice.create_room(json!({ "room_version": version, "name": format!("v{version}"), "topic": "t", "invite": [bob.user_id] })).await;
        if version == "12" {
            assert!(
                !room.contains(':'),
                "v12 room ids have no server part: {room}"
            );
        } else {
            assert!(room.ends_with(":localhost"));
        }
        bob.join(&room).await;
        let ev = bob.send_text(&room, &format!("v{version}"), "hello").await;
        let (s, b) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(&room),
                enc(&ev)
            ))
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["content"]["body"], "hello");
        let (s, b) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.create/",
                enc(&room)
            ))
            .await;
        assert_eq!(s, 200);
        assert_eq!(b["room_version"], version);
        let (s, b) = alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.name/",
                enc(&room)
            ))
            .await;
        assert_eq!((s, b["name"].clone()), (200, json!(format!("v{version}"))));
    }
}

#[tokio::test]
async fn membership_and_authorisation() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let eve = srv.register("eve").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let r = enc(&room);
    // Not invited: cannot join an invite-only room, cannot send.
    let (s, b) = eve
        .post(&format!("/_matrix/client/v3/rooms/{r}/join"), json!({}))
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, b) = eve
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/1"),
            json!({ "body": "x" }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, b) = eve
        .get(&format!("/_matrix/client/v3/rooms/{r}/messages?dir=b"))
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    // Invite, join.
    let (s, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(s, 200);
    bob.join(&room).await;
    let (s, b) = bob
        .get(&format!("/_matrix/client/v3/rooms/{r}/joined_members"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["joined"].as_object().unwrap().len(), 2);
    // Bob has power 0: no power level changes, no kicks.
    let (s, b) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/state/m.room.power_levels/"),
            json!({ "users": { bob.user_id.clone(): 100 } }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, b) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            json!({ "user_id": alice.user_id }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    // Alice kicks, bans and unbans Bob.
    let (s, b) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/kick"),
            json!({ "user_id": bob.user_id, "reason": "bye" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/send/m.room.message/2"),
            json!({ "body": "x" }),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/ban"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/members?membership=ban"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["chunk"].as_array().unwrap().len(), 1);
    let (s, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/invite"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/unban"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(s, 200);
    // Public room: anyone joins; leave and forget.
    let public = alice.create_room(json!({ "preset": "public_chat", "room_alias_name": "town", "visibility": "public", "name": "Town" })).await;
    eve.join("#town:localhost").await;
    let (s, b) = eve.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(s, 200);
    assert_eq!(b["joined_rooms"], json!([public]));
    let (s, b) = eve
        .post(
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&public)),
            json!({}),
        )
        .await;
    assert_eq!(s, 400, "forget while joined: {b}");
    let (s, _) = eve
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&public)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = eve
        .post(
            &format!("/_matrix/client/v3/rooms/{}/forget", enc(&public)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = eve.get("/_matrix/client/v3/publicRooms").await;
    assert_eq!(s, 200);
    assert_eq!(b["chunk"][0]["name"], "Town");
    assert_eq!(b["chunk"][0]["canonical_alias"], "#town:localhost");
}

#[tokio::test]
async fn send_is_idempotent_and_history_pages() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let r = enc(&room);
    let first = alice.send_text(&room, "same", "once").await;
    let again = alice.send_text(&room, "same", "once").await;
    assert_eq!(first, again, "same txn id, same event");
    // A transaction id is scoped to its request path, which names the room: the same id in
    // other rooms, one after another or at once, sends new messages.
    let other = alice.create_room(json!({})).await;
    let elsewhere = alice.send_text(&other, "same", "once").await;
    assert_ne!(
        first, elsewhere,
        "same txn id in another room is another event"
    );
    let (third, fourth) = (
        alice.create_room(json!({})).await,
        alice.create_room(json!({})).await,
    );
    let (a, b) = tokio::join!(
        alice.send_text(&third, "both", "x"),
        alice.send_text(&fourth, "both", "x")
    );
    assert_ne!(a, b);
    for i in 0..25 {
        alice
            .send_text(&room, &format!("t{i}"), &format!("m{i}"))
            .await;
    }
    // Backwards from the end, in pages of 10.
    let (s, p1) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=10"
        ))
        .await;
    assert_eq!(s, 200);
    let bodies: Vec<&str> = p1["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies[0], "m24");
    assert_eq!(bodies.len(), 10);
    let end = p1["end"].as_str().unwrap();
    let (_, p2) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/messages?dir=b&limit=10&from={end}"
        ))
        .await;
    assert_eq!(p2["chunk"][0]["content"]["body"], "m14");
    // Forwards from the start: the create event comes first.
    let (_, f) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/messages?dir=f&limit=3"
        ))
        .await;
    assert_eq!(f["chunk"][0]["type"], "m.room.create");
    // Filtered.
    let filter = enc(&json!({ "types": ["m.room.message"] }).to_string());
    let (_, g) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/messages?dir=f&limit=50&filter={filter}"
        ))
        .await;
    assert!(g["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "m.room.message"));
    assert_eq!(g["chunk"].as_array().unwrap().len(), 26);
    // Context around the first message.
    let (s, ctx) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/context/{}?limit=4",
            enc(&first)
        ))
        .await;
    assert_eq!(s, 200, "{ctx}");
    assert_eq!(ctx["event"]["event_id"], json!(first));
    assert_eq!(ctx["events_after"][0]["content"]["body"], "m0");
}

#[tokio::test]
async fn sync_initial_incremental_and_long_poll() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice
        .create_room(json!({ "name": "chat", "invite": [bob.user_id], "is_direct": true }))
        .await;
    // Bob sees the invite.
    let s0 = bob.sync(None, 0).await;
    assert!(s0["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["is_direct"] == true));
    bob.join(&room).await;
    let since = s0["next_batch"].as_str().unwrap().to_owned();
    let s1 = bob.sync(Some(&since), 0).await;
    let joined = &s1["rooms"]["join"][&room];
    let seen = |section: &str| {
        joined[section]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.name")
    };
    assert!(
        seen("state") || seen("timeline"),
        "the room's name reaches a newly joined member: {s1}"
    );
    // A long-poll returns as soon as Alice sends.
    let next = s1["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let bob = bob.clone();
        let next = next.clone();
        tokio::spawn(async move { bob.sync(Some(&next), 20_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    alice.send_text(&room, "lp", "wake up").await;
    let s2 = poll.await.unwrap();
    assert_eq!(timeline_bodies(&s2, &room), vec!["wake up"], "{s2}");
    assert_eq!(
        s2["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        1
    );
    // Nothing new: a zero-timeout sync is empty.
    let s3 = bob.sync(s2["next_batch"].as_str(), 0).await;
    assert!(s3["rooms"]["join"].as_object().unwrap().is_empty(), "{s3}");
    // Limited timeline with prev_batch.
    for i in 0..15 {
        alice
            .send_text(&room, &format!("b{i}"), &format!("burst {i}"))
            .await;
    }
    let s4 = bob.sync(s3["next_batch"].as_str(), 0).await;
    let tl = &s4["rooms"]["join"][&room]["timeline"];
    assert_eq!(tl["limited"], true);
    assert_eq!(tl["events"].as_array().unwrap().len(), 10);
    let prev = tl["prev_batch"].as_str().unwrap();
    let (_, older) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5&from={prev}",
            enc(&room)
        ))
        .await;
    assert_eq!(older["chunk"][0]["content"]["body"], "burst 4");
    // Transaction ids come back to the sending device only.
    let s5 = alice.sync(None, 0).await;
    let evs = s5["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(evs.iter().any(|e| e["unsigned"]["transaction_id"] == "b14"));
    let s6 = bob.sync(None, 0).await;
    assert!(s6["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["unsigned"].get("transaction_id").is_none()));
}

#[tokio::test]
async fn sync_filters_by_id_and_inline() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({})).await;
    for i in 0..5 {
        alice
            .send_text(&room, &format!("f{i}"), &format!("n{i}"))
            .await;
    }
    let (s, b) = alice
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
            json!({ "room": { "timeline": { "limit": 2 } } }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let id = b["filter_id"].as_str().unwrap().to_owned();
    let (s, f) = alice
        .get(&format!(
            "/_matrix/client/v3/user/{}/filter/{id}",
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(f["room"]["timeline"]["limit"], 2);
    let (_, s1) = alice
        .get(&format!("/_matrix/client/v3/sync?filter={id}"))
        .await;
    assert_eq!(timeline_bodies(&s1, &room), vec!["n3", "n4"]);
    let inline = enc(
        &json!({ "room": { "timeline": { "limit": 3, "types": ["m.room.message"] } } }).to_string(),
    );
    let (_, s2) = alice
        .get(&format!("/_matrix/client/v3/sync?filter={inline}"))
        .await;
    assert_eq!(timeline_bodies(&s2, &room), vec!["n2", "n3", "n4"]);
    let other = srv.register("other").await;
    let (s, _) = other
        .get(&format!(
            "/_matrix/client/v3/user/{}/filter/{id}",
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn typing_receipts_and_account_data_reach_sync() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let r = enc(&room);
    let ev = alice.send_text(&room, "1", "read me").await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{r}/typing/{}",
                enc(&alice.user_id)
            ),
            json!({ "typing": true, "timeout": 10000 }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/receipt/m.read/{}", enc(&ev)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{r}/read_markers"),
            json!({ "m.fully_read": ev, "m.read.private": ev }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.pref",
                enc(&bob.user_id)
            ),
            json!({ "dark": true }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/rooms/{r}/tags/m.favourite",
                enc(&bob.user_id)
            ),
            json!({ "order": 0.5 }),
        )
        .await;
    assert_eq!(s, 200);
    let s1 = bob.sync(Some(&since), 0).await;
    let joined = &s1["rooms"]["join"][&room];
    let eph = joined["ephemeral"]["events"].as_array().unwrap();
    let typing = eph
        .iter()
        .find(|e| e["type"] == "m.typing")
        .expect("typing");
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));
    let receipt = eph
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .expect("receipt");
    assert!(receipt["content"][&ev]["m.read"][&bob.user_id]["ts"].is_number());
    assert!(receipt["content"][&ev]["m.read.private"][&bob.user_id]["ts"].is_number());
    let room_data = joined["account_data"]["events"].as_array().unwrap();
    assert!(room_data
        .iter()
        .any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == json!(ev)));
    assert!(room_data
        .iter()
        .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"]["order"] == 0.5));
    assert!(s1["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "org.example.pref"));
    assert_eq!(joined["unread_notifications"]["notification_count"], 0);
    // Alice does not see Bob's private receipt.
    let a = alice.sync(None, 0).await;
    let eph = a["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    let receipt = eph
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .expect("receipt");
    assert!(receipt["content"][&ev].get("m.read.private").is_none());
    let (s, b) = bob
        .get(&format!(
            "/_matrix/client/v3/user/{}/account_data/org.example.pref",
            enc(&bob.user_id)
        ))
        .await;
    assert_eq!((s, b), (200, json!({ "dark": true })));
    let (s, b) = bob
        .get(&format!(
            "/_matrix/client/v3/user/{}/rooms/{r}/tags",
            enc(&bob.user_id)
        ))
        .await;
    assert_eq!(s, 200);
    assert!(b["tags"]["m.favourite"].is_object());
    let (s, _) = alice
        .get(&format!(
            "/_matrix/client/v3/user/{}/account_data/org.example.pref",
            enc(&bob.user_id)
        ))
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn redaction_rules() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let r = enc(&room);
    let a_ev = alice.send_text(&room, "1", "admin's").await;
    let b_ev = bob.send_text(&room, "2", "bob's secret").await;
    // Bob cannot redact Alice's event; he can redact his own; Alice (admin) can redact anything.
    let (s, b) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/redact/{}/x1", enc(&a_ev)),
            json!({}),
        )
        .await;
    assert_eq!((s, errcode(&b)), (403, "M_FORBIDDEN"));
    let (s, b) = bob
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/redact/{}/x2", enc(&b_ev)),
            json!({ "reason": "oops" }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (_, ev) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{r}/event/{}",
            enc(&b_ev)
        ))
        .await;
    assert!(
        ev["content"].as_object().unwrap().is_empty(),
        "content is gone: {ev}"
    );
    assert_eq!(
        ev["unsigned"]["redacted_because"]["content"]["reason"],
        "oops"
    );
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/redact/{}/x3", enc(&a_ev)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{r}/redact/{}/x4", enc("$missing")),
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn devices_profile_password() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    bob.join(&room).await;
    let (s, b) = alice.get("/_matrix/client/v3/devices").await;
    assert_eq!(s, 200);
    let device = b["devices"][0]["device_id"].as_str().unwrap().to_owned();
    // The device has been used (these requests), and the list says when.
    let seen = b["devices"][0]["last_seen_ts"]
        .as_u64()
        .expect("last_seen_ts");
    assert!(seen > 0 && seen <= sandcat_core::now_ms());
    assert_eq!(b["devices"][0]["last_seen_ip"], "127.0.0.1");
    // Whois tells the same, to the user alone.
    let whois = format!("/_matrix/client/v3/admin/whois/{}", enc(&alice.user_id));
    let (s, w) = alice.get(&whois).await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(w["user_id"], alice.user_id.as_str());
    let connection = &w["devices"][&device]["sessions"][0]["connections"][0];
    assert_eq!(connection["ip"], "127.0.0.1", "{w}");
    assert_eq!(connection["last_seen"], seen, "{w}");
    let (s, _) = bob.get(&whois).await;
    assert_eq!(s, 403);
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/devices/{device}"),
            json!({ "display_name": "laptop" }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, d) = alice
        .get(&format!("/_matrix/client/v3/devices/{device}"))
        .await;
    assert_eq!(d["display_name"], "laptop");
    // Profile changes reach the rooms.
    let (s, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            json!({ "displayname": "Alice A." }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, p) = bob
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(p["displayname"], "Alice A.");
    let (_, m) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(m["displayname"], "Alice A.");
    let (s, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            json!({ "displayname": "x" }),
        )
        .await;
    assert_eq!(s, 403);
    // Password change needs the old password through UIA.
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-pw" }),
        )
        .await;
    assert_eq!(s, 401);
    assert_eq!(b["flows"][0]["stages"][0], "m.login.password");
    let auth = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw-alice", "session": b["session"] });
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "new-pw", "auth": auth }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let login = |pw: &str| json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": pw });
    let (s, _) = srv
        .anon()
        .post("/_matrix/client/v3/login", login("pw-alice"))
        .await;
    assert_eq!(s, 403);
    let (s, _) = srv
        .anon()
        .post("/_matrix/client/v3/login", login("new-pw"))
        .await;
    assert_eq!(s, 200);
    // Deleting a device needs UIA too, and ends its token.
    let (s, _) = alice
        .delete(&format!("/_matrix/client/v3/devices/{device}"))
        .await;
    assert_eq!(s, 401);
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "new-pw" } });
    let (s, _) = alice
        .raw(
            reqwest::Method::DELETE,
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(auth.to_string().into_bytes()),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = alice.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn aliases_directory_and_user_search() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let (s, _) = alice
        .put(
            "/_matrix/client/v3/directory/room/%23lobby:localhost",
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, b) = alice
        .put(
            "/_matrix/client/v3/directory/room/%23lobby:localhost",
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = bob
        .get("/_matrix/client/v3/directory/room/%23lobby:localhost")
        .await;
    assert_eq!((s, b["room_id"].clone()), (200, json!(room)));
    let (s, _) = bob
        .delete("/_matrix/client/v3/directory/room/%23lobby:localhost")
        .await;
    assert_eq!(s, 403);
    let (s, _) = alice
        .delete("/_matrix/client/v3/directory/room/%23lobby:localhost")
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .get("/_matrix/client/v3/directory/room/%23lobby:localhost")
        .await;
    assert_eq!(s, 404);
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/list/room/{}",
            enc(&room)
        ))
        .await;
    assert_eq!((s, b["visibility"].clone()), (200, json!("private")));
    let (s, _) = alice
        .put(
            &format!("/_matrix/client/v3/directory/list/room/{}", enc(&room)),
            json!({ "visibility": "public" }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, pr) = bob
        .post("/_matrix/client/v3/publicRooms", json!({ "limit": 10 }))
        .await;
    assert_eq!(pr["chunk"][0]["room_id"], json!(room));
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/user_directory/search",
            json!({ "search_term": "bo" }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(b["results"][0]["user_id"], "@bob:localhost");
}

#[tokio::test]
async fn push_rules_are_served_and_editable() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let (s, b) = alice.get("/_matrix/client/v3/pushrules/").await;
    assert_eq!(s, 200);
    assert!(b["global"]["override"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["rule_id"] == ".m.rule.master"));
    let (s, b) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/content/cats",
            json!({ "pattern": "cat", "actions": ["notify"] }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = alice
        .get("/_matrix/client/v3/pushrules/global/content/cats")
        .await;
    assert_eq!((s, b["pattern"].clone()), (200, json!("cat")));
    let (s, _) = alice
        .put(
            "/_matrix/client/v3/pushrules/global/content/cats/enabled",
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(s, 200);
    let (_, b) = alice
        .get("/_matrix/client/v3/pushrules/global/content/cats/enabled")
        .await;
    assert_eq!(b["enabled"], false);
    let (s, _) = alice
        .delete("/_matrix/client/v3/pushrules/global/content/cats")
        .await;
    assert_eq!(s, 200);
    let (s, _) = alice
        .get("/_matrix/client/v3/pushrules/global/content/cats")
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn relations_and_threads() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let root = alice.send_text(&room, "root", "root").await;
    let (s, b) = alice.put(&format!("/_matrix/client/v3/rooms/{}/send/m.room.message/th1", enc(&room)), json!({ "msgtype": "m.text", "body": "in thread", "m.relates_to": { "rel_type": "m.thread", "event_id": root } })).await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = alice.put(&format!("/_matrix/client/v3/rooms/{}/send/m.reaction/re1", enc(&room)), json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } })).await;
    assert_eq!(s, 200);
    let (_, all) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}",
            enc(&room),
            enc(&root)
        ))
        .await;
    assert_eq!(all["chunk"].as_array().unwrap().len(), 2);
    let (_, th) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.thread",
            enc(&room),
            enc(&root)
        ))
        .await;
    assert_eq!(th["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(th["chunk"][0]["content"]["body"], "in thread");
    let (_, re) = alice
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/relations/{}/m.annotation/m.reaction",
            enc(&room),
            enc(&root)
        ))
        .await;
    assert_eq!(re["chunk"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({ "name": "durable" })).await;
    let ev = alice.send_text(&room, "d1", "kept").await;
    let token = alice.token.clone();
    let dir = srv.stop().await;
    let srv = Server::start_in(dir, |_| {}).await;
    let mut alice = srv.anon();
    alice.token = token;
    let (s, b) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&ev)
        ))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["content"]["body"], "kept");
    // The sequencer picks up the room's head from disk.
    alice.send_text(&room, "d2", "after restart").await;
    let s = alice.sync(None, 0).await;
    let mut bodies = timeline_bodies(&s, &room);
    // On the pipeline a write is published to readers once every write below it has ended,
    // which under load can be just after the send answers: a long-poll then brings it.
    if bodies.len() < 2 {
        let next = s["next_batch"].as_str().unwrap();
        bodies.extend(timeline_bodies(
            &alice.sync(Some(next), 10_000).await,
            &room,
        ));
    }
    assert_eq!(bodies, vec!["kept", "after restart"]);
}

#[tokio::test]
async fn e2ee_keys_and_to_device() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let (_, who) = alice.get("/_matrix/client/v3/account/whoami").await;
    let alice_dev = who["device_id"].as_str().unwrap().to_owned();
    let (_, who) = bob.get("/_matrix/client/v3/account/whoami").await;
    let bob_dev = who["device_id"].as_str().unwrap().to_owned();
    let bob_since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let device_keys = json!({
        "user_id": alice.user_id, "device_id": alice_dev,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": { format!("curve25519:{alice_dev}"): "curvekey", format!("ed25519:{alice_dev}"): "edkey" },
        "signatures": { alice.user_id.clone(): { format!("ed25519:{alice_dev}"): "sig" } },
    });
    let otk = |n: u32| json!({ "key": format!("otk{n}"), "signatures": { alice.user_id.clone(): { format!("ed25519:{alice_dev}"): "sig" } } });
    let (s, b) = alice
        .post("/_matrix/client/v3/keys/upload", json!({
            "device_keys": device_keys,
            "one_time_keys": { "signed_curve25519:AAAA": otk(1), "signed_curve25519:AAAB": otk(2) },
            "fallback_keys": { "signed_curve25519:FFFF": { "key": "fb", "fallback": true } },
        }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["one_time_key_counts"]["signed_curve25519"], 2);
    // Someone else's device keys are refused.
    let (s, _) = bob
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "device_keys": device_keys }),
        )
        .await;
    assert_eq!(s, 400);

    // Carol, who shares no room with Bob, changes her keys too.
    let carol = srv.register("carol").await;
    let (_, who) = carol.get("/_matrix/client/v3/account/whoami").await;
    let carol_dev = who["device_id"].as_str().unwrap().to_owned();
    let (s, b) = carol
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "device_keys": {
                "user_id": carol.user_id, "device_id": carol_dev,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": { format!("ed25519:{carol_dev}"): "carolkey" },
                "signatures": { carol.user_id.clone(): { format!("ed25519:{carol_dev}"): "sig" } },
            } }),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Bob learns that Alice's keys changed (not Carol's), queries and claims them.
    let s1 = bob.sync(Some(&bob_since), 0).await;
    let changed = s1["device_lists"]["changed"].as_array().unwrap();
    assert!(changed.contains(&json!(alice.user_id)), "{s1}");
    assert!(!changed.contains(&json!(carol.user_id)), "{s1}");
    let (s, c) = bob
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={bob_since}&to={}",
            s1["next_batch"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["changed"], json!([alice.user_id]), "{c}");
    let (s, q) = bob
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        q["device_keys"][&alice.user_id][&alice_dev]["keys"][format!("ed25519:{alice_dev}")],
        "edkey"
    );
    let claim = json!({ "one_time_keys": { alice.user_id.clone(): { alice_dev.clone(): "signed_curve25519" } } });
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (s, c) = bob
            .post("/_matrix/client/v3/keys/claim", claim.clone())
            .await;
        assert_eq!(s, 200);
        let keys = c["one_time_keys"][&alice.user_id][&alice_dev]
            .as_object()
            .unwrap()
            .clone();
        seen.push(
            keys.values().next().unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["fb", "otk1", "otk2"],
        "two one-time keys, then the fallback key"
    );
    let a = alice.sync(None, 0).await;
    assert!(a["device_one_time_keys_count"]
        .get("signed_curve25519")
        .is_none_or(|v| v == 0));
    assert_eq!(a["device_unused_fallback_key_types"], json!([]));

    // To-device: delivered to the addressed device, kept until acknowledged, then gone.
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = bob
        .put(
            "/_matrix/client/v3/sendToDevice/m.room_key_request/tx1",
            json!({ "messages": { alice.user_id.clone(): { alice_dev.clone(): { "hello": 1 } } } }),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = bob
        .put(
            "/_matrix/client/v3/sendToDevice/m.room_key_request/tx1",
            json!({ "messages": { alice.user_id.clone(): { alice_dev.clone(): { "hello": 1 } } } }),
        )
        .await;
    assert_eq!(s, 200);
    let t1 = alice.sync(Some(&since), 0).await;
    let evs = t1["to_device"]["events"].as_array().unwrap();
    assert_eq!(
        evs.len(),
        1,
        "one message, the retry was deduplicated: {t1}"
    );
    assert_eq!(evs[0]["sender"], json!(bob.user_id));
    assert_eq!(evs[0]["content"]["hello"], 1);
    // The same since again (a lost response): delivered again.
    let again = alice.sync(Some(&since), 0).await;
    assert_eq!(again["to_device"]["events"].as_array().unwrap().len(), 1);
    // Acknowledged by the next token: gone.
    let t2 = alice.sync(t1["next_batch"].as_str(), 0).await;
    assert!(t2["to_device"]["events"].as_array().unwrap().is_empty());
    let (s, _) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.dummy/tx2",
            json!({ "messages": { bob.user_id.clone(): { "*": {} } } }),
        )
        .await;
    assert_eq!(s, 200);
    let b2 = bob.sync(None, 0).await;
    assert_eq!(b2["to_device"]["events"][0]["type"], "m.dummy", "{bob_dev}");

    // Cross-signing keys are served to others (user-signing only to the owner).
    let master = json!({ "user_id": alice.user_id, "usage": ["master"], "keys": { "ed25519:MASTER": "MASTER" } });
    let (s, _) = alice.post("/_matrix/client/v3/keys/device_signing/upload", json!({ "master_key": master, "user_signing_key": { "user_id": alice.user_id, "usage": ["user_signing"], "keys": { "ed25519:US": "US" } } })).await;
    assert_eq!(s, 200);
    let (_, q) = bob
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { alice.user_id.clone(): [] } }),
        )
        .await;
    assert_eq!(
        q["master_keys"][&alice.user_id]["keys"]["ed25519:MASTER"],
        "MASTER"
    );
    assert!(q["user_signing_keys"].get(&alice.user_id).is_none());
    let (s, b) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!((s, errcode(&b)), (404, "M_NOT_FOUND"));
}

#[tokio::test]
async fn rate_limits_answer_m_limit_exceeded() {
    let srv = Server::start_with(|c| {
        c.rate_limit_per_second = 0.1;
        c.rate_limit_burst = 8;
    })
    .await;
    let alice = srv.register("alice").await;
    let room = alice.create_room(json!({})).await;
    let mut limited = None;
    for i in 0..10 {
        let (s, b) = alice
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/r{i}",
                    enc(&room)
                ),
                json!({ "body": "x" }),
            )
            .await;
        if s != 200 {
            limited = Some((s, b));
            break;
        }
    }
    let (s, b) = limited.expect("the burst runs out");
    assert_eq!((s, errcode(&b)), (429, "M_LIMIT_EXCEEDED"));
    // Endpoints that are not rate-limited still answer.
    let (s, _) = alice.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn history_visibility_joined_hides_earlier_history() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;
    let room = alice
        .create_room(json!({ "preset": "public_chat", "initial_state": [
            { "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } }
        ] }))
        .await;
    let shared = alice.create_room(json!({ "preset": "public_chat" })).await;
    let secret = alice.send_text(&room, "h1", "before bob").await;
    alice.send_text(&shared, "h2", "before bob, shared").await;
    bob.join(&room).await;
    bob.join(&shared).await;
    alice.send_text(&room, "h3", "after bob").await;
    // "joined": Bob sees only what came after his join, in /messages, /event and /sync.
    let (_, page) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            enc(&room)
        ))
        .await;
    let bodies: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, vec!["after bob"]);
    let (s, _) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&secret)
        ))
        .await;
    assert_eq!(s, 404);
    let s1 = bob.sync(None, 0).await;
    assert_eq!(timeline_bodies(&s1, &room), vec!["after bob"]);
    // "shared": the whole history.
    assert_eq!(timeline_bodies(&s1, &shared), vec!["before bob, shared"]);
    // Carol, never a member, reads neither.
    let (s, _) = carol
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b",
            enc(&room)
        ))
        .await;
    assert_eq!(s, 403);
}
