//! Scale-out: two `sandcat` processes (the real binary) share one PostgreSQL, Kafka, Redis,
//! MongoDB and S3 — the services `scripts/services.sh` starts. A message sent through instance
//! A reaches a `/sync` long-poll on instance B, and so does a typing notification; instance A
//! is killed with SIGKILL in the middle of a burst of sends, and every send that was
//! acknowledged is there afterwards, exactly once, in order within its room — in the room
//! logs and in the receiver's inbox.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    cluster::{bodies, on, start, Instance},
    enc, register_at, timeline_bodies, use_pipeline, Client,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_the_pipeline_and_survive_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let mut config = sandcat::Config::default();
    use_pipeline(&mut config, data.path()).await;
    // A creates the signing key and token secret in the shared data directory; B reads them.
    let a = start(&config, data.path(), "a").await;
    let b = start(&config, data.path(), "b").await;

    let alice = register_at(&a.base, "alice").await;
    let bob = register_at(&b.base, "bob").await;
    let rooms = [
        alice.create_room(json!({ "preset": "public_chat" })).await,
        alice.create_room(json!({ "preset": "public_chat" })).await,
    ];
    for r in &rooms {
        bob.join(r).await;
    }

    // A send on A wakes a long-poll on B.
    let first = bob.sync(None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let (bob, room) = (bob.clone(), rooms[0].clone());
        tokio::spawn(async move {
            let mut since = since;
            loop {
                let s = bob.sync(Some(&since), 20_000).await;
                if timeline_bodies(&s, &room).contains(&"hello from A".to_owned()) {
                    return;
                }
                since = s["next_batch"].as_str().unwrap().to_owned();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    alice.send_text(&rooms[0], "hello", "hello from A").await;
    tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the long-poll on B returned the event sent on A")
        .unwrap();

    // Typing on A shows in a /sync on B.
    let mut since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, r) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&rooms[1]),
                enc(&alice.user_id)
            ),
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(s, 200, "typing: {r}");
    let typing_seen = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let s = bob.sync(Some(&since), 10_000).await;
            let typing = s["rooms"]["join"][&rooms[1]]["ephemeral"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| {
                    e["type"] == "m.typing" && e["content"]["user_ids"] == json!([alice.user_id])
                });
            if typing {
                return;
            }
            since = s["next_batch"].as_str().unwrap().to_owned();
        }
    })
    .await;
    assert!(typing_seen.is_ok(), "B's /sync shows alice typing on A");

    // A burst of sends through A, alternating rooms; A is killed in the middle of it.
    let acked: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let sender = {
        let (alice, rooms, acked, unacked) =
            (alice.clone(), rooms.clone(), acked.clone(), unacked.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            for i in 0..400 {
                let room = i % 2;
                let (txn, body) = (format!("burst{i}"), format!("burst {i}"));
                sent += 1;
                let res = alice
                    .http
                    .put(format!(
                        "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                        alice.base,
                        enc(&rooms[room])
                    ))
                    .bearer_auth(alice.token.as_deref().unwrap())
                    .json(&json!({ "msgtype": "m.text", "body": body }))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push((room, body));
                    }
                    _ => {
                        // The instance is gone: this send is in doubt.
                        unacked.lock().unwrap().push((room, txn, body));
                        break;
                    }
                }
            }
            sent
        })
    };
    while acked.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(a); // SIGKILL
    let killed = std::time::Instant::now();
    let sent = sender.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.lock().unwrap().clone();

    // The client retries its send in doubt on B, with the same transaction id.
    let alice_b = on(&b, &alice);
    for (room, txn, body) in &unacked {
        let (s, r) = alice_b
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(&rooms[*room])
                ),
                json!({ "msgtype": "m.text", "body": body }),
            )
            .await;
        assert_eq!(s, 200, "retry on B: {r}");
    }
    // A new send on B into each room: answered once the rooms' partitions have a sequencer
    // again (the group notices the dead member after its session timeout).
    for (i, room) in rooms.iter().enumerate() {
        alice_b
            .send_text(room, &format!("after{i}"), &format!("after the kill {i}"))
            .await;
    }
    let recovered_ms = killed.elapsed().as_millis();

    // Everything acknowledged (and the retried send) is on B once, in order per room.
    let mut found = 0;
    let mut duplicates = 0;
    for (room_index, room) in rooms.iter().enumerate() {
        let have: Vec<String> = bodies(&bob, room)
            .await
            .into_iter()
            .filter(|b| b.starts_with("burst "))
            .collect();
        let mut want: Vec<String> = acked
            .iter()
            .filter(|(r, _)| *r == room_index)
            .map(|(_, b)| b.clone())
            .collect();
        want.extend(
            unacked
                .iter()
                .filter(|(r, ..)| *r == room_index)
                .map(|(.., b)| b.clone()),
        );
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for h in &have {
            *counts.entry(h).or_default() += 1;
        }
        duplicates += counts.values().filter(|n| **n > 1).count();
        found += want
            .iter()
            .filter(|w| counts.contains_key(w.as_str()))
            .count();
        assert_eq!(
            have, want,
            "room {room_index}: every acknowledged send once, in order"
        );
    }
    println!(
        "scale-out kill: sent {sent}, acknowledged {}, in doubt {} (retried on B), found {found}, duplicates {duplicates}; sends into both rooms answered on B {recovered_ms} ms after the kill",
        acked.len(),
        unacked.len()
    );
    assert_eq!(duplicates, 0);
    assert_eq!(found, acked.len() + unacked.len());

    // Bob's inbox (MongoDB), read through the Sandcat API on B: the same messages, once each,
    // in order — whichever instance indexed them.
    let http = reqwest::Client::new();
    let (token, inbox_ms) = (
        sandcat_login(&http, &b, "bob").await,
        std::time::Instant::now(),
    );
    let mut last = Vec::new();
    for _ in 0..60 {
        let pulled = http
            .post(format!("{}/api/message", b.base))
            .bearer_auth(&token)
            .json(
                &json!({ "user_id": "bob", "start": 0, "end": i64::MAX, "send_start": 0, "send_end": i64::MAX }),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(pulled.status(), 200);
        let msgs: Vec<serde_json::Value> = pulled.json().await.unwrap();
        // One numbering for the cluster: bob's received and sent messages count 1, 2, 3, …
        // (group frames — his joining each room — count as received).
        for field in ["seq", "send_seq"] {
            let numbers: Vec<i64> = msgs
                .iter()
                .map(|m| m[field].as_i64().unwrap())
                .filter(|n| *n != 0)
                .collect();
            assert_eq!(
                numbers,
                (1..=numbers.len() as i64).collect::<Vec<_>>(),
                "bob's {field} has no gap and no repeat"
            );
        }
        last = rooms
            .iter()
            .map(|room| {
                msgs.iter()
                    .filter(|m| m["group_id"] == json!(room))
                    .map(|m| {
                        let bytes: Vec<u8> = serde_json::from_value(m["content"].clone()).unwrap();
                        String::from_utf8(bytes).unwrap()
                    })
                    .filter(|b| b.starts_with("burst "))
                    .collect::<Vec<_>>()
            })
            .collect();
        if last.iter().map(Vec::len).sum::<usize>() >= found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (room_index, got) in last.iter().enumerate() {
        assert_eq!(
            got,
            &bodies(&bob, &rooms[room_index])
                .await
                .into_iter()
                .filter(|b| b.starts_with("burst "))
                .collect::<Vec<_>>(),
            "room {room_index}: bob's inbox holds what the room log holds"
        );
    }
    println!(
        "scale-out inbox: {} of {found} messages in bob's inbox, read on B {} ms after the check began",
        last.iter().map(Vec::len).sum::<usize>(),
        inbox_ms.elapsed().as_millis()
    );
}

/// A Sandcat token for a user registered through Matrix (password `pw-{name}`).
async fn sandcat_login(http: &reqwest::Client, instance: &Instance, name: &str) -> String {
    use base64::Engine;
    let res = http
        .post(format!("{}/api/user/login", instance.base))
        .json(&json!({ "account": name, "password": base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("pw-{name}")) }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "sandcat login {name}");
    let body: serde_json::Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Logs `name` in on `base` (password `pw-{name}`): a client of a new device.
async fn login_at(base: &str, name: &str) -> Client {
    let c = common::anon_at(base);
    let (s, b) = c
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": name }, "password": format!("pw-{name}") }),
        )
        .await;
    assert_eq!(s, 200, "login {name}: {b}");
    Client {
        token: Some(b["access_token"].as_str().unwrap().to_owned()),
        user_id: b["user_id"].as_str().unwrap().to_owned(),
        ..c
    }
}

/// `whoami` on `c`'s instance: the status.
async fn whoami(c: &Client) -> u16 {
    c.get("/_matrix/client/v3/account/whoami").await.0
}

/// What one instance revokes, the other refuses on the very next request: logout, logout/all,
/// a device deletion, a password change and a deactivation on A end the sessions they end on
/// B as well, Matrix tokens and Sandcat JWTs alike, with no wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_instance_is_refused_by_the_other() {
    let data = tempfile::tempdir().unwrap();
    let mut config = sandcat::Config::default();
    use_pipeline(&mut config, data.path()).await;
    let a = start(&config, data.path(), "a").await;
    let b = start(&config, data.path(), "b").await;
    let http = reqwest::Client::new();
    let sandcat_ok = |token: String, base: String| {
        let http = http.clone();
        async move { common::sandcat_get_user(&http, &base, &token, "carol").await }
    };

    // Logout on A.
    let carol_a = register_at(&a.base, "carol").await;
    let carol_b = on(&b, &carol_a);
    assert_eq!(
        whoami(&carol_b).await,
        200,
        "B knows the token (and may cache it)"
    );
    let (s, _) = carol_a.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(whoami(&carol_b).await, 401, "logout on A: refused on B");

    // Device deletion on A, of a device used on B.
    let first = on(&b, &login_at(&a.base, "carol").await);
    let second = login_at(&a.base, "carol").await;
    assert_eq!(whoami(&first).await, 200);
    let (_, who) = first.get("/_matrix/client/v3/account/whoami").await;
    let device = who["device_id"].as_str().unwrap().to_owned();
    let (s, b_) = second
        .post(
            "/_matrix/client/v3/delete_devices",
            json!({ "devices": [device], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "pw-carol" } }),
        )
        .await;
    assert_eq!(s, 200, "delete_devices: {b_}");
    assert_eq!(
        whoami(&first).await,
        401,
        "device deleted on A: refused on B"
    );

    // logout/all on A ends a Sandcat session used on B too.
    let jwt = sandcat_login(&http, &b, "carol").await;
    assert_eq!(sandcat_ok(jwt.clone(), b.base.clone()).await, 200);
    let on_b = on(&b, &login_at(&a.base, "carol").await);
    let (s, _) = second
        .post("/_matrix/client/v3/logout/all", json!({}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        whoami(&on_b).await,
        401,
        "logout/all on A: Matrix token refused on B"
    );
    assert_eq!(
        sandcat_ok(jwt, b.base.clone()).await,
        401,
        "logout/all on A: Sandcat JWT refused on B"
    );

    // A password change on A (logging out the other devices).
    let keeper = login_at(&a.base, "carol").await;
    let other = on(&b, &login_at(&a.base, "carol").await);
    let jwt = sandcat_login(&http, &b, "carol").await;
    let (s, body) = keeper
        .post(
            "/_matrix/client/v3/account/password",
            json!({ "new_password": "pw-carol", "logout_devices": true, "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "pw-carol" } }),
        )
        .await;
    assert_eq!(s, 200, "password: {body}");
    assert_eq!(
        whoami(&other).await,
        401,
        "password change on A: refused on B"
    );
    assert_eq!(sandcat_ok(jwt, b.base.clone()).await, 401);
    assert_eq!(
        whoami(&on(&b, &keeper)).await,
        200,
        "the changing device stays"
    );

    // Deactivation on A.
    let on_b = on(&b, &login_at(&a.base, "carol").await);
    let jwt = sandcat_login(&http, &b, "carol").await;
    let (s, body) = keeper
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "pw-carol" } }),
        )
        .await;
    assert_eq!(s, 200, "deactivate: {body}");
    assert_eq!(whoami(&on_b).await, 401, "deactivated on A: refused on B");
    assert_eq!(whoami(&on(&b, &keeper)).await, 401);
    assert_eq!(sandcat_ok(jwt, b.base.clone()).await, 401);
    let (s, body) = common::anon_at(&b.base)
        .post(
            "/_matrix/client/v3/login",
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": "pw-carol" }),
        )
        .await;
    assert_eq!(s, 403, "a deactivated account cannot log in: {body}");
}
