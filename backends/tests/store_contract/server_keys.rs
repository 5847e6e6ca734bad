//! Server signing keys: the store keeps what a key document said, and the key service fetches
//! another server's keys only when it lacks a valid one. The other server is a real one in
//! this process: its own ed25519 keys, its documents signed as it would serve them.

use std::sync::atomic::Ordering;

use ruma::{server_name, ServerName};
use sandcat_core::{
    ports::{KeyFetch, ServerKey, ServerKeyStore},
    services::server_keys::ServerKeys,
};

use super::remote::{new_key, RemoteServer, DAY, T0};
use super::*;

on_both_backends!(
    server_keys_keep_the_freshest_document_and_expiries,
    remote_keys_are_fetched_once_and_refetched_when_stale,
    key_documents_that_fail_their_checks_are_refused,
    own_key_document_lists_old_keys_and_verifies,
);

fn key(server: &ServerName, id: &str, public: &str, valid: u64, expired: Option<u64>) -> ServerKey {
    ServerKey {
        server_name: server.to_owned(),
        key_id: id.into(),
        public_key: public.into(),
        valid_until_ts: valid,
        expired_ts: expired,
    }
}

async fn server_keys_keep_the_freshest_document_and_expiries(db: Db) {
    let store = db.open().await;
    let remote = server_name!("remote.example");
    store
        .store_server_keys(&[key(remote, "ed25519:a", "AAAA", T0 + DAY, None)])
        .await
        .unwrap();
    // An older document does not take the key back.
    store
        .store_server_keys(&[key(remote, "ed25519:a", "BBBB", T0, None)])
        .await
        .unwrap();
    let keys = store.server_keys(remote).await.unwrap();
    assert_eq!(keys, vec![key(remote, "ed25519:a", "AAAA", T0 + DAY, None)]);
    // A fresher one does; an expiry, once known, stays when a later document omits it.
    store
        .store_server_keys(&[
            key(remote, "ed25519:a", "CCCC", T0 + 2 * DAY, Some(T0 + 5)),
            key(remote, "ed25519:b", "DDDD", T0 + 2 * DAY, None),
        ])
        .await
        .unwrap();
    store
        .store_server_keys(&[key(remote, "ed25519:a", "CCCC", T0 + 3 * DAY, None)])
        .await
        .unwrap();
    let keys = store.server_keys(remote).await.unwrap();
    assert_eq!(
        keys,
        vec![
            key(remote, "ed25519:a", "CCCC", T0 + 3 * DAY, Some(T0 + 5)),
            key(remote, "ed25519:b", "DDDD", T0 + 2 * DAY, None),
        ]
    );
    assert!(store
        .server_keys(server_name!("other.example"))
        .await
        .unwrap()
        .is_empty());
    // A timestamp beyond the column's range is kept as the largest it holds.
    store
        .store_server_keys(&[key(remote, "ed25519:c", "EEEE", u64::MAX, None)])
        .await
        .unwrap();
    let c = store.server_keys(remote).await.unwrap().pop().unwrap();
    assert_eq!(c.valid_until_ts, i64::MAX as u64);
}

fn service(store: Arc<SqlStore>, remote: &Arc<RemoteServer>) -> ServerKeys {
    super::remote::key_service(store, remote)
}

async fn remote_keys_are_fetched_once_and_refetched_when_stale(db: Db) {
    let store = db.open().await;
    let remote = RemoteServer::new(server_name!("remote.example"));
    let keys = service(store.clone(), &remote);
    let first_id = remote.key_id();
    let signed = remote.sign(json!({ "hello": "world" }));

    let set = keys
        .verify_keys(&remote.name, &[&first_id], T0)
        .await
        .unwrap();
    assert_eq!(remote.asked.load(Ordering::SeqCst), 1);
    let map = [(remote.name.to_string(), set)].into();
    ruma::signatures::verify_json(&map, &signed).expect("the fetched key checks the signature");

    // Known and valid: nobody is asked again, even by another instance of this server.
    let again = service(db.open().await, &remote);
    for k in [&keys, &again] {
        let set = k
            .verify_keys(&remote.name, &[&first_id], T0 + DAY - 1)
            .await
            .unwrap();
        assert!(set.contains_key(&first_id));
    }
    assert_eq!(
        remote.asked.load(Ordering::SeqCst),
        1,
        "a valid key is never fetched again"
    );

    // The server rotates; a signature made after the known key's validity needs a fetch,
    // after which the old key still checks what it signed before it expired.
    remote.rotate("a_two", T0 + DAY);
    *remote.valid_until.lock().unwrap() = T0 + 3 * DAY;
    let second_id = remote.key_id();
    let set = keys
        .verify_keys(&remote.name, &[&second_id], T0 + 2 * DAY)
        .await
        .unwrap();
    assert!(set.contains_key(&second_id));
    assert_eq!(remote.asked.load(Ordering::SeqCst), 2);
    let set = keys
        .verify_keys(&remote.name, &[&first_id], T0 + DAY - 5)
        .await
        .unwrap();
    assert!(
        set.contains_key(&first_id),
        "an old key checks what it signed before its expiry"
    );
    assert_eq!(remote.asked.load(Ordering::SeqCst), 2);
    // ... and not what claims to be signed by it after.
    let set = keys
        .verify_keys(&remote.name, &[&first_id], T0 + 2 * DAY)
        .await
        .unwrap();
    assert!(set.is_empty(), "{set:?}");

    // A key the server never had stays unknown (asked once per lookup, never invented).
    let set = keys
        .verify_keys(&remote.name, &["ed25519:nope"], T0)
        .await
        .unwrap();
    assert!(set.is_empty());
}

async fn key_documents_that_fail_their_checks_are_refused(db: Db) {
    let store = db.open().await;
    let remote = RemoteServer::new(server_name!("remote.example"));
    let keys = service(store.clone(), &remote);
    let id = remote.key_id();

    // A document for another server name is not this server's.
    *remote.forge_as.lock().unwrap() = Some(server_name!("evil.example").to_owned());
    let set = keys.verify_keys(&remote.name, &[&id], T0).await.unwrap();
    assert!(set.is_empty());
    assert!(store.server_keys(&remote.name).await.unwrap().is_empty());
    *remote.forge_as.lock().unwrap() = None;

    // Checks of documents as received: tampered, unsigned, unnamed, not JSON, oversized.
    let good = remote.key_documents(&remote.name).await.unwrap().remove(0);
    let check =
        |doc: &str| sandcat_core::services::server_keys::check_key_document(&remote.name, doc);
    assert_eq!(check(&good).unwrap().len(), 1);
    let tampered = good.replace("\"valid_until_ts\":", "\"valid_until_ts\":1");
    let mut unsigned: serde_json::Value = serde_json::from_str(&good).unwrap();
    unsigned.as_object_mut().unwrap().remove("signatures");
    let mut unnamed: serde_json::Value = serde_json::from_str(&good).unwrap();
    unnamed.as_object_mut().unwrap().remove("server_name");
    let mut no_keys: serde_json::Value = serde_json::from_str(&good).unwrap();
    no_keys["verify_keys"] = json!({});
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(70_000));
    for bad in [
        tampered,
        unsigned.to_string(),
        unnamed.to_string(),
        no_keys.to_string(),
        "[1,2]".into(),
        "not json".into(),
        huge,
    ] {
        let err = check(&bad).unwrap_err();
        assert!(
            matches!(
                err,
                sandcat_core::Error::Matrix {
                    code: sandcat_core::ErrorCode::Unauthorized,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // The well-formed one is taken after all.
    let set = keys.verify_keys(&remote.name, &[&id], T0).await.unwrap();
    assert!(set.contains_key(&id));
}

async fn own_key_document_lists_old_keys_and_verifies(db: Db) {
    let store = db.open().await;
    let name = server_name!("localhost");
    let first = Arc::new(new_key(name, "a_old1"));
    let keys = ServerKeys::new(first.clone(), store.clone());
    keys.publish_own().await.unwrap();
    // Rotated: the new key signs, the old is retired at T0.
    let second = Arc::new(new_key(name, "a_new2"));
    let keys = ServerKeys::new(second.clone(), store.clone());
    keys.retire(&first.key_id(), &first.public_key(), T0)
        .await
        .unwrap();
    keys.publish_own().await.unwrap();
    assert!(
        keys.retire(&second.key_id(), "x", T0).await.is_err(),
        "the key in use stays"
    );

    let doc = keys.key_document(T0).await.unwrap();
    let parsed: ruma::api::federation::discovery::ServerSigningKeys =
        serde_json::from_str(&doc).unwrap();
    assert_eq!(parsed.server_name, name);
    assert_eq!(u64::from(parsed.valid_until_ts.get()), T0 + DAY);
    let ids = |m: Vec<String>| m;
    assert_eq!(
        ids(parsed.verify_keys.keys().map(|k| k.to_string()).collect()),
        vec![second.key_id()]
    );
    let old = parsed
        .old_verify_keys
        .iter()
        .map(|(k, v)| (k.to_string(), u64::from(v.expired_ts.get())))
        .collect::<Vec<_>>();
    assert_eq!(old, vec![(first.key_id(), T0)]);
    // Self-signed, as another server will check it.
    let checked = sandcat_core::services::server_keys::check_key_document(name, &doc).unwrap();
    assert_eq!(checked.len(), 2);
    // This server's own keys are known without a fetch: the current one at any time, the old
    // one before its expiry.
    let set = keys
        .verify_keys(name, &[&second.key_id(), &first.key_id()], T0 - 1)
        .await
        .unwrap();
    assert_eq!(set.len(), 2);
    let set = keys
        .verify_keys(name, &[&second.key_id(), &first.key_id()], T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        set.keys().cloned().collect::<Vec<_>>(),
        vec![second.key_id()]
    );
}
