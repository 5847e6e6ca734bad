//! Server-side key backup (`/room_keys`), as Element's secure backup uses it: versions made,
//! read, updated and deleted; keys put by all rooms, by room and by session, the better key
//! of a session kept (verified, then earlier first message, then fewer forwards), counts and
//! etags that move only when the keys do; keys only into the current version
//! (`M_WRONG_ROOM_KEYS_VERSION`), old versions still readable; one user never sees another's.
//! Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Client, Server};
use serde_json::{json, Value};

const ALGORITHM: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
const ROOM: &str = "!room:example.org";

fn key(index: u64, forwarded: u64, verified: bool) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": { "ephemeral": "ZXBo", "ciphertext": format!("c{index}{forwarded}{verified}"), "mac": "bWFj" },
    })
}

async fn create(client: &Client, public_key: &str) -> String {
    let (status, body) = client
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": ALGORITHM, "auth_data": { "public_key": public_key, "signatures": {} } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["version"].as_str().unwrap().to_owned()
}

fn session_path(version: &str, session: &str) -> String {
    format!(
        "/_matrix/client/v3/room_keys/keys/{}/{session}?version={version}",
        enc(ROOM)
    )
}

#[tokio::test]
async fn a_key_backup_keeps_the_best_key_of_each_session() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;

    let (status, body) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!((status, &body["errcode"]), (404, &json!("M_NOT_FOUND")));
    let v1 = create(&alice, "first").await;
    let (status, info) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["version"], v1.as_str());
    assert_eq!(info["algorithm"], ALGORITHM);
    assert_eq!(info["auth_data"]["public_key"], "first");
    assert_eq!(info["count"], 0);
    let etag0 = info["etag"].as_str().unwrap().to_owned();

    // Two sessions at once.
    let (status, put) = alice
        .put(
            &format!("/_matrix/client/v3/room_keys/keys?version={v1}"),
            json!({ "rooms": { ROOM: { "sessions": { "s1": key(5, 1, false), "s2": key(0, 0, false) } } } }),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["count"], 2);
    let etag1 = put["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag1, etag0);

    // A worse key for s1 changes nothing, not even the etag; a verified one replaces it.
    let (_, put) = alice.put(&session_path(&v1, "s1"), key(9, 0, false)).await;
    assert_eq!(
        (put["count"].clone(), put["etag"].clone()),
        (json!(2), json!(etag1))
    );
    let (_, kept) = alice.get(&session_path(&v1, "s1")).await;
    assert_eq!(kept["first_message_index"], 5, "{kept}");
    let (_, put) = alice.put(&session_path(&v1, "s1"), key(9, 0, true)).await;
    assert_ne!(put["etag"], json!(etag1));
    let (_, kept) = alice.get(&session_path(&v1, "s1")).await;
    assert_eq!(kept, key(9, 0, true));
    // Between two unverified keys, fewer forwards win at the same index.
    let room_path = format!(
        "/_matrix/client/v3/room_keys/keys/{}?version={v1}",
        enc(ROOM)
    );
    let (status, _) = alice
        .put(
            &room_path,
            json!({ "sessions": { "s2": key(0, 3, false) } }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, room) = alice.get(&room_path).await;
    assert_eq!(room["sessions"]["s2"], key(0, 0, false), "{room}");
    assert_eq!(room["sessions"]["s1"], key(9, 0, true), "{room}");
    let (_, all) = alice
        .get(&format!("/_matrix/client/v3/room_keys/keys?version={v1}"))
        .await;
    assert_eq!(all["rooms"][ROOM], room, "{all}");

    // Bad input is refused; a session without a key is not found.
    let (status, body) = alice
        .put(
            &session_path(&v1, "s3"),
            json!({ "first_message_index": 1 }),
        )
        .await;
    assert_eq!(
        (status, &body["errcode"]),
        (400, &json!("M_BAD_JSON")),
        "{body}"
    );
    let (status, _) = alice.get(&session_path(&v1, "s3")).await;
    assert_eq!(status, 404);

    // A new version becomes the current one: keys go only there, the old one stays readable.
    let v2 = create(&alice, "second").await;
    let (status, body) = alice.put(&session_path(&v1, "s4"), key(0, 0, false)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(body["current_version"], v2.as_str());
    let (status, _) = alice.get(&session_path(&v1, "s1")).await;
    assert_eq!(status, 200);
    let (_, info) = alice
        .get(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .await;
    assert_eq!(info["count"], 2, "{info}");

    // Its auth data can change, its algorithm cannot.
    let version_path = format!("/_matrix/client/v3/room_keys/version/{v2}");
    let (status, body) = alice
        .put(
            &version_path,
            json!({ "algorithm": ALGORITHM, "auth_data": { "public_key": "second", "signatures": { "x": {} } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, info) = alice.get(&version_path).await;
    assert_eq!(info["auth_data"]["signatures"], json!({ "x": {} }));
    let (status, _) = alice
        .put(
            &version_path,
            json!({ "algorithm": "org.example.other", "auth_data": {} }),
        )
        .await;
    assert_eq!(status, 400);

    // Deleting keys counts down; deleting versions falls back to the older, then to none.
    let (_, left) = alice.delete(&session_path(&v1, "s1")).await;
    assert_eq!(left["count"], 1, "{left}");
    let (_, left) = alice.delete(&room_path).await;
    assert_eq!(left["count"], 0, "{left}");
    let (status, _) = alice.delete(&version_path).await;
    assert_eq!(status, 200);
    let (_, info) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(info["version"], v1.as_str(), "{info}");
    let (status, _) = alice
        .delete(&format!("/_matrix/client/v3/room_keys/version/{v1}"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(status, 404);
    let (status, _) = alice.put(&session_path(&v1, "s1"), key(0, 0, false)).await;
    assert_eq!(status, 404, "no backup at all is not found");
    let v3 = create(&alice, "third").await;
    assert_ne!(v3, v1);
    assert_ne!(v3, v2);

    // Bob has no backup, and cannot read Alice's.
    let (status, _) = bob.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(status, 404);
    let (status, _) = bob
        .get(&format!("/_matrix/client/v3/room_keys/version/{v3}"))
        .await;
    assert_eq!(status, 404);
}
