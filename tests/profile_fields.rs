//! Extended profile fields (spec 1.16): a user sets, reads and deletes fields of their own
//! beyond the display name and avatar; others read them, alone and in the whole profile;
//! nobody writes another's; the limits on names and sizes hold; deactivation clears them.
//! Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Server};
use serde_json::json;

#[tokio::test]
async fn extended_fields_are_the_users_own() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let field =
        |user: &str, key: &str| format!("/_matrix/client/v3/profile/{}/{}", enc(user), enc(key));
    let tz = field(&alice.user_id, "m.tz");

    let (s, err) = bob.get(&tz).await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{err}"
    );
    let (s, body) = alice.put(&tz, json!({ "m.tz": "Europe/Paris" })).await;
    assert_eq!(s, 200, "{body}");
    let custom = field(&alice.user_id, "org.example.status");
    let (s, _) = alice
        .put(
            &custom,
            json!({ "org.example.status": { "mood": "fine", "level": 3 } }),
        )
        .await;
    assert_eq!(s, 200);

    // Anyone reads them, one by one and in the whole profile.
    let (s, got) = bob.get(&tz).await;
    assert_eq!((s, &got), (200, &json!({ "m.tz": "Europe/Paris" })));
    let (_, whole) = bob
        .get(&format!(
            "/_matrix/client/v3/profile/{}",
            enc(&alice.user_id)
        ))
        .await;
    assert_eq!(whole["displayname"], "alice", "{whole}");
    assert_eq!(whole["m.tz"], "Europe/Paris");
    assert_eq!(whole["org.example.status"]["level"], 3);

    // Only the user writes their profile; names and sizes have limits.
    let (s, _) = bob.put(&tz, json!({ "m.tz": "UTC" })).await;
    assert_eq!(s, 403);
    let (s, _) = alice
        .put(
            &field(&alice.user_id, &"k".repeat(300)),
            json!({ "k".repeat(300): 1 }),
        )
        .await;
    assert!(s == 400 || s == 413, "a 300-byte name is refused: {s}");
    let big = field(&alice.user_id, "org.example.big");
    let (s, err) = alice
        .put(&big, json!({ "org.example.big": "x".repeat(70 * 1024) }))
        .await;
    assert!(
        s == 400 || s == 413,
        "a profile over 64 KiB is refused: {s} {err}"
    );

    // Deleted, it is gone; deactivated, the profile is empty.
    let (s, _) = alice.delete(&custom).await;
    assert_eq!(s, 200);
    assert_eq!(bob.get(&custom).await.0, 404);
    let (s, _) = alice
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw-alice" } }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(bob.get(&tz).await.0, 404);
}
