//! Two servers over loopback, each with its TLS federation listener, one acting on the
//! other's rooms over federation — requests signed (`X-Matrix`) and checked against keys
//! fetched over TLS: it reads a room (every PDU answered verified as a third server would),
//! and its user finds one in its directory (`/publicRooms`), joins it (`make_join`,
//! `send_join`) and talks in it (`/send`). What it may
//! not read or do, or asks without a valid signature, is refused. Runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::sync::Arc;

use common::{
    federation::{federating, get_json, heard, joined_members, signed_pdu, signing_as},
    Server,
};
use ruma::{
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
    signatures::Ed25519KeyPair,
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomVersionId, UInt,
};
use sandcat_backends::sql::SqlStore;
use sandcat_core::{
    remote_pdu::verify_pdu, sequencer::SigningKey, services::server_keys::ServerKeys,
};
use sandcat_federation::client::{ClientOptions, FederationClient};
use serde_json::{json, Value};

#[tokio::test]
async fn another_server_reads_a_room_over_signed_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, b_name) = federating(certs.path()).await;

    // On A: a world-readable room with three messages, and a room of members only.
    let alice = a.register("alice").await;
    let open = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" }
            }]
        }))
        .await;
    let mut said = Vec::new();
    for (i, body) in ["one", "two", "three"].iter().enumerate() {
        said.push(alice.send_text(&open, &format!("t{i}"), body).await);
    }
    let closed = alice.create_room(json!({ "preset": "private_chat" })).await;
    let secret = alice.send_text(&closed, "s", "secret").await;
    let room: OwnedRoomId = open.as_str().try_into().unwrap();
    let ids: Vec<OwnedEventId> = said
        .iter()
        .map(|e| e.as_str().try_into().unwrap())
        .collect();

    // B signs with its own key; A fetches B's key from B's TLS listener to check it.
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();
    let as_b = signing_as(&b_name, b_key);
    let event = as_b
        .send(&a_name, get_event::v1::Request::new(ids[1].clone()))
        .await
        .expect("a world-readable room's event");
    assert_eq!(event.origin, a_name);
    // The PDU is A's as signed: a third server verifies it with A's keys, fetched over TLS.
    let third = Arc::new(
        SqlStore::open(&certs.path().join("third.db"))
            .await
            .unwrap(),
    );
    let third_key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap();
    let fetcher = Arc::new(signing_as(&"third.example".try_into().unwrap(), third_key));
    let third_signing = Arc::new(SigningKey {
        server_name: "third.example".try_into().unwrap(),
        key: Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t".into()).unwrap(),
    });
    let keys = ServerKeys::new(third_signing, third).with_fetch(fetcher);
    let version = RoomVersionId::try_from(
        alice
            .get(&format!(
                "/_matrix/client/v3/rooms/{open}/state/m.room.create/"
            ))
            .await
            .1["room_version"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let verified = verify_pdu(&keys, &version, &room, event.pdu.get())
        .await
        .expect("A's signature and hash");
    assert_eq!(verified.event_id(), &ids[1]);
    let pdu: Value = serde_json::from_str(event.pdu.get()).unwrap();
    assert_eq!(pdu["content"]["body"], "two");

    // The state before "three": the room's five state events, and their auth chain.
    let state = as_b
        .send(
            &a_name,
            get_room_state_ids::v1::Request::new(ids[2].clone(), room.clone()),
        )
        .await
        .unwrap();
    assert!(state.pdu_ids.len() >= 5, "{:?}", state.pdu_ids);
    assert!(!state.auth_chain_ids.is_empty());
    // The same as PDUs (`/state`), and the auth chain of one event (`/event_auth`).
    let whole = as_b
        .send(
            &a_name,
            get_room_state::v1::Request::new(ids[2].clone(), room.clone()),
        )
        .await
        .unwrap();
    assert_eq!(whole.pdus.len(), state.pdu_ids.len());
    assert_eq!(whole.auth_chain.len(), state.auth_chain_ids.len());
    let auth = as_b
        .send(
            &a_name,
            get_event_authorization::v1::Request::new(room.clone(), ids[2].clone()),
        )
        .await
        .unwrap();
    let kinds: Vec<Value> = auth
        .auth_chain
        .iter()
        .map(|p| serde_json::from_str::<Value>(p.get()).unwrap()["type"].clone())
        .collect();
    assert!(kinds.contains(&json!("m.room.power_levels")), "{kinds:?}");
    assert!(kinds.contains(&json!("m.room.member")), "{kinds:?}");
    // Which software answers (no signature needed).
    let version = get_json(&format!("https://{a_name}/_matrix/federation/v1/version")).await;
    assert_eq!(version["server"]["name"], "Sandcat", "{version}");
    // History from "three" back, deepest first; and the gap between "one" and "three".
    let back = as_b
        .send(
            &a_name,
            get_backfill::v1::Request::new(room.clone(), vec![ids[2].clone()], UInt::from(3u32)),
        )
        .await
        .unwrap();
    let bodies: Vec<Value> = back
        .pdus
        .iter()
        .map(|p| serde_json::from_str::<Value>(p.get()).unwrap()["content"]["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("three"), json!("two"), json!("one")]);
    let gap = as_b
        .send(
            &a_name,
            get_missing_events::v1::Request::new(
                room.clone(),
                vec![ids[0].clone()],
                vec![ids[2].clone()],
            ),
        )
        .await
        .unwrap();
    assert_eq!(gap.events.len(), 1);
    let two: Value = serde_json::from_str(gap.events[0].get()).unwrap();
    assert_eq!(two["content"]["body"], "two");

    // A room B has no member in, and whose history is not world-readable: refused.
    let refused = as_b
        .send(
            &a_name,
            get_event::v1::Request::new(secret.as_str().try_into().unwrap()),
        )
        .await;
    let err = refused.expect_err("a members-only room");
    assert!(err.to_string().contains("403"), "{err}");

    // Signed with a key B never published, under B's name: refused, as is no signature.
    let forged_key =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), signing_key_version(&b).await)
            .unwrap();
    let forged = signing_as(&b_name, forged_key)
        .send(&a_name, get_event::v1::Request::new(ids[1].clone()))
        .await;
    let err = forged.expect_err("a forged signature");
    assert!(err.to_string().contains("401"), "{err}");
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let unsigned = https
        .get(format!(
            "https://{a_name}/_matrix/federation/v1/event/{}",
            common::enc(ids[1].as_str())
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let body: Value = unsigned.json().await.unwrap();
    assert_eq!(body["errcode"], "M_UNAUTHORIZED");

    // The client API answers on the TLS listener too.
    let versions = https
        .get(format!("https://{a_name}/_matrix/client/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(versions.status(), 200);

    // By default, no request goes to a loopback address.
    let careful = FederationClient::new(
        Arc::new(SigningKey {
            server_name: b_name.clone(),
            key: Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "x".into()).unwrap(),
        }),
        ClientOptions::default(),
    )
    .unwrap();
    let blocked = careful
        .send(&a_name, get_event::v1::Request::new(ids[1].clone()))
        .await
        .expect_err("loopback is private");
    assert!(blocked.to_string().contains("private"), "{blocked}");
    drop(b);
}

/// The version of the key `srv` signs with (`a_XXXX` of `ed25519:a_XXXX`).
async fn signing_key_version(srv: &Server) -> String {
    let (_, doc) = srv.anon().get("/_matrix/key/v2/server").await;
    let ids: Vec<&String> = doc["verify_keys"].as_object().unwrap().keys().collect();
    ids[0].strip_prefix("ed25519:").unwrap().to_owned()
}

#[tokio::test]
async fn a_user_of_another_server_joins_and_talks() {
    use ruma::api::federation::{
        membership::{create_join_event, prepare_join_event},
        transactions::send_transaction_message,
    };

    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let open = alice.create_room(json!({ "preset": "public_chat" })).await;
    let closed = alice.create_room(json!({ "preset": "private_chat" })).await;
    let room: OwnedRoomId = open.as_str().try_into().unwrap();
    let bob: ruma::OwnedUserId = format!("@bob:{b_name}").try_into().unwrap();
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();
    let as_b = signing_as(&b_name, b_key);
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();

    // make_join: the template, on the room's head, for a version B speaks.
    let versions = vec![RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];
    let mut ask = prepare_join_event::v1::Request::new(room.clone(), bob.clone());
    ask.ver = versions.clone();
    let template = as_b.send(&a_name, ask).await.expect("a public room");
    let version = template.room_version.clone().unwrap();
    let mut event: Value = serde_json::from_str(template.event.get()).unwrap();
    assert_eq!(event["type"], "m.room.member");
    assert_eq!(event["state_key"], bob.as_str());
    // Not for a user of another server, nor for a room that is not public.
    let mut theirs = prepare_join_event::v1::Request::new(
        room.clone(),
        "@carol:elsewhere.example".try_into().unwrap(),
    );
    theirs.ver = versions.clone();
    assert!(as_b.send(&a_name, theirs).await.is_err());
    let mut private =
        prepare_join_event::v1::Request::new(closed.as_str().try_into().unwrap(), bob.clone());
    private.ver = versions;
    let err = as_b.send(&a_name, private).await.expect_err("invite only");
    assert!(err.to_string().contains("403"), "{err}");

    // send_join: the signed join is in the room; the answer is the state before it.
    event["origin_server_ts"] = json!(MilliSecondsSinceUnixEpoch::now());
    let (join_id, join) = signed_pdu(&b_name, &b_key, &version, event.clone());
    let answer = as_b
        .send(
            &a_name,
            create_join_event::v2::Request::new(room.clone(), join_id.clone(), join),
        )
        .await
        .expect("the join is admitted");
    let state_types: Vec<String> = answer
        .room_state
        .state
        .iter()
        .map(|p| {
            serde_json::from_str::<Value>(p.get()).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        state_types.contains(&"m.room.create".to_owned()),
        "{state_types:?}"
    );
    assert!(state_types.contains(&"m.room.power_levels".to_owned()));
    assert!(!answer.room_state.auth_chain.is_empty());
    let (_, members) = alice
        .get(&format!("/_matrix/client/v3/rooms/{open}/joined_members"))
        .await;
    assert!(members["joined"].get(bob.as_str()).is_some(), "{members}");

    // A transaction: Bob speaks on his join; Alice reads it through /sync.
    let mut auth: Vec<Value> = event["auth_events"].as_array().unwrap().clone();
    auth.retain(|id| {
        // The join rules authorise a join, not a message.
        answer.room_state.state.iter().all(|p| {
            let v: Value = serde_json::from_str(p.get()).unwrap();
            !(v["type"] == "m.room.join_rules" && reference_of(&version, p.get()) == *id)
        })
    });
    auth.push(json!(join_id));
    let message = json!({
        "room_id": room,
        "sender": bob,
        "type": "m.room.message",
        "content": { "msgtype": "m.text", "body": "hello from afar" },
        "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        "prev_events": [join_id],
        "auth_events": auth,
        "depth": event["depth"].as_u64().unwrap() + 1,
    });
    let (said_id, said) = signed_pdu(&b_name, &b_key, &version, message.clone());
    // And one signed with a key B never published: refused on its own.
    let forged_key =
        Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), signing_key_version(&b).await)
            .unwrap();
    let mut other = message.clone();
    other["content"]["body"] = json!("forged");
    let (forged_id, forged) = signed_pdu(&b_name, &forged_key, &version, other);
    let txn = send_transaction_message::v1::Request::new(
        "t1".into(),
        b_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    let mut txn = txn;
    txn.pdus = vec![said, forged];
    let outcome = as_b.send(&a_name, txn).await.unwrap();
    assert_eq!(
        outcome.pdus.get(&said_id),
        Some(&Ok(())),
        "{:?}",
        outcome.pdus
    );
    assert!(
        matches!(outcome.pdus.get(&forged_id), Some(Err(_))),
        "{:?}",
        outcome.pdus
    );
    let sync = alice.sync(None, 0).await;
    let bodies = common::timeline_bodies(&sync, &open);
    assert!(bodies.contains(&"hello from afar".to_owned()), "{bodies:?}");
    assert!(!bodies.contains(&"forged".to_owned()), "{bodies:?}");

    // A transaction that says it is of another server than the one that signed it: refused.
    let lying = send_transaction_message::v1::Request::new(
        "t2".into(),
        "elsewhere.example".try_into().unwrap(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    let err = as_b
        .send(&a_name, lying)
        .await
        .expect_err("origin mismatch");
    assert!(err.to_string().contains("403"), "{err}");
}

/// The event id of a PDU of room version `version`.
fn reference_of(version: &RoomVersionId, pdu: &str) -> Value {
    let rules = version.rules().unwrap();
    let object: ruma::CanonicalJsonObject = serde_json::from_str(pdu).unwrap();
    json!(format!(
        "${}",
        ruma::signatures::reference_hash(&object, &rules).unwrap()
    ))
}

#[tokio::test]
async fn a_user_here_joins_a_room_of_another_server() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, _) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let open = alice
        .create_room(json!({ "preset": "public_chat", "visibility": "public", "name": "Atrium" }))
        .await;
    alice
        .create_room(json!({ "preset": "public_chat", "visibility": "public", "name": "Cellar" }))
        .await;
    for (i, body) in ["one", "two", "three"].iter().enumerate() {
        alice.send_text(&open, &format!("t{i}"), body).await;
    }

    // Bob, of B, finds it in A's directory, asked through B: a page at a time, or by name.
    let bob = b.register("bob").await;
    let server = common::enc(a_name.as_str());
    let (status, page) = bob
        .get(&format!(
            "/_matrix/client/v3/publicRooms?server={server}&limit=1"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["total_room_count_estimate"], 2, "{page}");
    let next = page["next_batch"].as_str().expect("a next page").to_owned();
    let (status, rest) = bob
        .get(&format!(
            "/_matrix/client/v3/publicRooms?server={server}&since={next}"
        ))
        .await;
    assert_eq!(status, 200, "{rest}");
    let mut names = [&page, &rest].map(|p| p["chunk"][0]["name"].as_str().unwrap().to_owned());
    names.sort();
    assert_eq!(names, ["Atrium", "Cellar"]);
    let (status, found) = bob
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={server}"),
            json!({ "filter": { "generic_search_term": "atri" } }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["chunk"][0]["room_id"], open.as_str(), "{found}");
    assert_eq!(found["chunk"][0]["num_joined_members"], 1, "{found}");

    // He joins Alice's room on A through A (a version 12 room id names no server).
    let (status, body) = bob
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                common::enc(&open),
                common::enc(a_name.as_str())
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], open.as_str());

    // Both servers have him in the room; on B, the room's state came from A.
    let on_a = joined_members(&alice, &open).await;
    let on_b = joined_members(&bob, &open).await;
    assert_eq!(on_a, on_b);
    assert_eq!(on_a.len(), 2, "{on_a:?}");
    let (_, create) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{open}/state/m.room.create/"
        ))
        .await;
    assert_eq!(create["room_version"], "12", "{create}");

    // His /sync has the room; paging back fills its past in from A.
    let sync = bob.sync(None, 0).await;
    assert!(sync["rooms"]["join"].get(&open).is_some(), "{sync}");
    let (status, page) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{open}/messages?dir=b&limit=50"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let bodies: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["three", "two", "one"], "{page}");

    // And they talk, live: each server sends its user's words to the other.
    alice.send_text(&open, "live", "from A").await;
    assert!(
        heard(&bob, &open, "from A").await,
        "B's /sync never had A's message"
    );
    bob.send_text(&open, "answer", "from B").await;
    assert!(
        heard(&alice, &open, "from B").await,
        "A's /sync never had B's message"
    );
}
