//! End-to-end encryption plumbing across servers, over loopback TLS: a user reads another
//! server's user's device keys and claims a one-time key through its server, sends it a
//! to-device message, and learns through `/sync` when that user's devices or cross-signing
//! keys change, or one of its devices is deleted. Runs on
//! the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline. A
//! transaction sent again is taken once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    federation::{device_keys, device_of, shared_room, signing_as, sync_until, SharedRoom},
    Client,
};
use ruma::{
    api::federation::transactions::send_transaction_message, serde::Raw, MilliSecondsSinceUnixEpoch,
};
use serde_json::{json, Value};

/// Where `client`'s next `/sync` starts: now.
async fn now(client: &Client) -> String {
    client.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether `client`'s `/sync` from `since` lists `user` in `device_lists.changed` (a few
/// seconds at most), and then `user`'s keys as `client` reads them.
async fn told_of_change(client: &Client, since: String, user: &str) -> Option<Value> {
    sync_until(client, Some(since), |s| {
        s["device_lists"]["changed"]
            .as_array()
            .is_some_and(|c| c.iter().any(|u| u == user))
    })
    .await?;
    let (_, body) = client
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { user: [] } }),
        )
        .await;
    Some(body)
}

#[tokio::test]
async fn keys_and_to_device_messages_cross_servers() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b: _b,
        alice,
        bob,
        ..
    } = shared_room(certs.path()).await;

    // Bob's device publishes its keys on B.
    let dev = device_of(&bob).await;
    let keys = device_keys(&bob.user_id, &dev, "ZWQyNTUxOSBrZXkgb25l");
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({
                "device_keys": keys,
                "one_time_keys": {
                    "signed_curve25519:AAAAAQ": { "key": "b3RrIG9uZQ", "signatures": {} },
                },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Alice, on A, reads them through B, and claims his one-time key.
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { bob.user_id.as_str(): [] } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_keys"][&bob.user_id][&dev], keys, "{body}");
    assert_eq!(body["failures"], json!({}), "{body}");
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": { bob.user_id.as_str(): { dev.as_str(): "signed_curve25519" } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["one_time_keys"][&bob.user_id][&dev]["signed_curve25519:AAAAAQ"]["key"], "b3RrIG9uZQ",
        "{body}"
    );

    // A to-device message from Alice reaches Bob's device on B.
    let (status, body) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.room.encrypted/t1",
            json!({ "messages": { bob.user_id.as_str(): { dev.as_str(): { "ciphertext": "for bob" } } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let got = sync_until(&bob, None, |s| {
        s["to_device"]["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["content"]["ciphertext"] == "for bob"))
    })
    .await
    .expect("Bob never got Alice's to-device message");
    let event = got["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["content"]["ciphertext"] == "for bob")
        .unwrap()
        .clone();
    assert_eq!(event["sender"], alice.user_id.as_str());
    assert_eq!(event["type"], "m.room.encrypted");

    // Bob's device changes its keys: Alice's /sync says so, and she reads the new ones.
    let since = now(&alice).await;
    let changed = device_keys(&bob.user_id, &dev, "ZWQyNTUxOSBrZXkgdHdv");
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "device_keys": changed }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body = told_of_change(&alice, since, &bob.user_id)
        .await
        .expect("A never told Alice that Bob's devices changed");
    assert_eq!(body["device_keys"][&bob.user_id][&dev], changed, "{body}");

    // Bob sets up cross-signing: A is told (`m.signing_key_update`), and Alice reads his
    // master key through B.
    let since = now(&alice).await;
    let master = json!({
        "user_id": bob.user_id,
        "usage": ["master"],
        "keys": { "ed25519:Ym9ibWFzdGVy": "Ym9iIG1hc3RlciBrZXk" },
    });
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            json!({ "master_key": master }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body = told_of_change(&alice, since, &bob.user_id)
        .await
        .expect("A never told Alice that Bob's signing keys changed");
    assert_eq!(
        body["master_keys"][&bob.user_id]["keys"], master["keys"],
        "{body}"
    );
}

/// Bob signs out of a second device that had keys: Alice's server is told
/// (`m.device_list_update`, deleted) and her `/sync` lists him as changed, and the device is
/// gone from his keys; a user on his own server who shares the room is told too.
#[tokio::test]
async fn a_deleted_device_is_told_to_the_users_who_share_a_room() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b,
        alice,
        bob,
        room,
        ..
    } = shared_room(certs.path()).await;
    let carol = b.register("carol").await;
    carol.join(&room).await;
    let (status, body) = b
        .anon()
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "bob" },
                "password": "pw-bob",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let laptop = Client {
        token: Some(body["access_token"].as_str().unwrap().to_owned()),
        ..bob.clone()
    };
    let laptop_dev = body["device_id"].as_str().unwrap().to_owned();
    let keys = device_keys(&bob.user_id, &laptop_dev, "bGFwdG9wIGtleQ");
    // Where Alice's sync starts is taken first: the news may reach A before the upload's
    // answer reaches the test.
    let since = now(&alice).await;
    let (status, body) = laptop
        .post(
            "/_matrix/client/v3/keys/upload",
            json!({ "device_keys": keys }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let body = told_of_change(&alice, since, &bob.user_id)
        .await
        .expect("A never heard of Bob's laptop");
    assert_eq!(
        body["device_keys"][&bob.user_id][&laptop_dev], keys,
        "{body}"
    );

    let (alice_since, carol_since) = (now(&alice).await, now(&carol).await);
    let (status, body) = laptop.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let body = told_of_change(&alice, alice_since, &bob.user_id)
        .await
        .expect("A never heard that Bob's laptop is gone");
    assert!(
        body["device_keys"][&bob.user_id].get(&laptop_dev).is_none(),
        "{body}"
    );
    let body = told_of_change(&carol, carol_since, &bob.user_id)
        .await
        .expect("Carol, on Bob's server, never heard that his laptop is gone");
    assert!(
        body["device_keys"][&bob.user_id].get(&laptop_dev).is_none(),
        "{body}"
    );
}

/// A server that lost the answer to a transaction sends it again: the retry is answered as
/// the first time, and its to-device message reaches the device once.
#[tokio::test]
async fn a_transaction_sent_again_is_taken_once() {
    let certs = tempfile::tempdir().unwrap();
    let SharedRoom {
        a: _a,
        b,
        a_name,
        b_name,
        alice,
        bob,
        ..
    } = shared_room(certs.path()).await;
    let dev = device_of(&alice).await;
    let mut since = Some(now(&alice).await);
    let b_key = sandcat::signing_key::load_or_create(&b.dir.path().join("signing.key")).unwrap();
    let as_b = signing_as(&b_name, b_key);
    let edu = |n: u32| {
        let edu = json!({
            "edu_type": "m.direct_to_device",
            "content": {
                "sender": bob.user_id.as_str(),
                "type": "m.room.encrypted",
                "message_id": format!("message {n}"),
                "messages": { alice.user_id.as_str(): { dev.as_str(): { "ciphertext": format!("copy {n}") } } },
            },
        });
        Raw::from_json(serde_json::value::to_raw_value(&edu).unwrap())
    };
    for (txn, n) in [("txn1", 1), ("txn1", 1), ("txn2", 2)] {
        let mut request = send_transaction_message::v1::Request::new(
            txn.into(),
            b_name.clone(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.edus = vec![edu(n)];
        as_b.send(&a_name, request)
            .await
            .expect("the transaction is answered");
    }

    let mut got = Vec::new();
    for _ in 0..20 {
        let sync = alice.sync(since.as_deref(), 1_000).await;
        since = sync["next_batch"].as_str().map(str::to_owned);
        got.extend(
            sync["to_device"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["content"]["ciphertext"].as_str().map(str::to_owned)),
        );
        if got.iter().any(|c| c == "copy 2") {
            break;
        }
    }
    assert_eq!(
        got,
        ["copy 1", "copy 2"],
        "each transaction's message, once"
    );
}
