//! What other homeservers read of this one: its signing keys (`/_matrix/key/v2/server`, checked
//! with ruma as a remote server would) and federation discovery (`/.well-known/matrix/server`);
//! and what a third party a user trusts reads: whose an OpenID token is (`/openid/userinfo`).
//! Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, pipeline_profile, use_pipeline, Server};
use ruma::{
    api::federation::discovery::ServerSigningKeys, canonical_json::CanonicalJsonObject,
    signatures::PublicKeyMap, MilliSecondsSinceUnixEpoch,
};
use serde_json::{json, Value};

/// The key document at `path`, parsed by ruma and checked against its own verify keys.
async fn key_document(srv: &Server, path: &str) -> ServerSigningKeys {
    let (status, body) = srv.anon().get(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    let parsed: ServerSigningKeys = serde_json::from_value(body.clone()).expect("ruma parses it");
    let object: CanonicalJsonObject = serde_json::from_value(body).unwrap();
    let keys = parsed
        .verify_keys
        .iter()
        .map(|(id, k)| (id.to_string(), k.key.clone()))
        .collect();
    let map: PublicKeyMap = [(parsed.server_name.to_string(), keys)].into();
    ruma::signatures::verify_json(&map, &object).expect("self-signed");
    parsed
}

#[tokio::test]
async fn the_key_document_is_signed_and_valid_for_a_day() {
    let srv = Server::start().await;
    let before: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let doc = key_document(&srv, "/_matrix/key/v2/server").await;
    assert_eq!(doc.server_name, "localhost");
    let ids: Vec<String> = doc.verify_keys.keys().map(|k| k.to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // A random version, as Synapse gives its keys: `ed25519:a_` and four characters.
    let version = ids[0].strip_prefix("ed25519:a_").expect("ed25519:a_…");
    assert_eq!(version.len(), 4, "{ids:?}");
    assert!(doc.old_verify_keys.is_empty());
    let until: u64 = doc.valid_until_ts.get().into();
    assert!(until >= before + 23 * 3600 * 1000 && until <= before + 25 * 3600 * 1000);

    // The key id path of the first key API still answers, with the same keys.
    let by_id = key_document(&srv, &format!("/_matrix/key/v2/server/{}", ids[0])).await;
    let json = |d: &ServerSigningKeys| serde_json::to_value(&d.verify_keys).unwrap();
    assert_eq!(json(&by_id), json(&doc));

    // The key is the one the server signs its events with (and keeps across a restart).
    let dir = srv.stop().await;
    let srv = Server::start_in(dir, |_| {}).await;
    let again = key_document(&srv, "/_matrix/key/v2/server").await;
    assert_eq!(json(&again), json(&doc));
}

#[tokio::test]
async fn well_known_server_is_served_only_when_configured() {
    let srv = Server::start().await;
    let (status, body) = srv.anon().get("/.well-known/matrix/server").await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );

    let srv =
        Server::start_with(|c| c.federation.well_known_server = "fed.example.org:443".into()).await;
    let (status, body) = srv.anon().get("/.well-known/matrix/server").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "m.server": "fed.example.org:443" })
    );

    // A value that is no server name is refused at start-up, naming the key.
    let mut config = sandcat::Config::default();
    let dir = tempfile::tempdir().unwrap();
    config.data_dir = dir.path().to_path_buf();
    config.federation.well_known_server = "https://fed.example.org/".into();
    let err = sandcat::build(&config).await.err().expect("refused");
    assert!(format!("{err:#}").contains("well_known_server"), "{err:#}");
}

#[tokio::test]
async fn a_rotated_key_is_published_as_an_old_key() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    // A room before the restart: on the pipeline, an instance stopped before its bus consumer
    // first joined the group holds the next one's partitions back for over 30 s.
    alice.create_room(serde_json::json!({})).await;
    let first = key_document(&srv, "/_matrix/key/v2/server").await;
    let first_id = first.verify_keys.keys().next().unwrap().to_string();
    let dir = srv.stop().await;

    // `sandcat key rotate`, on the stopped server's data.
    let mut config = sandcat::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    if pipeline_profile() {
        use_pipeline(&mut config, dir.path()).await;
    }
    let before: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let (old, new) = sandcat::rotate_signing_key(&config).await.unwrap();
    assert_eq!(old, first_id);
    assert_ne!(new, old);

    let srv = Server::start_in(dir, |_| {}).await;
    let doc = key_document(&srv, "/_matrix/key/v2/server").await;
    let ids: Vec<String> = doc.verify_keys.keys().map(|k| k.to_string()).collect();
    assert_eq!(ids, vec![new.clone()], "only the new key signs");
    let old_keys: Vec<(String, Value)> = doc
        .old_verify_keys
        .iter()
        .map(|(id, k)| (id.to_string(), serde_json::to_value(k).unwrap()))
        .collect();
    assert_eq!(old_keys.len(), 1, "{old_keys:?}");
    assert_eq!(old_keys[0].0, first_id);
    assert_eq!(
        old_keys[0].1["key"],
        serde_json::to_value(&first.verify_keys.values().next().unwrap().key).unwrap()
    );
    let expired = old_keys[0].1["expired_ts"].as_u64().unwrap();
    assert!(expired >= before, "expired when rotated");

    // The server carries on with its data: the user logs in and makes a room with the new key.
    let (status, body) = srv
        .anon()
        .post(
            "/_matrix/client/v3/login",
            serde_json::json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "pw-alice" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let alice = common::Client {
        token: body["access_token"].as_str().map(str::to_owned),
        user_id: alice.user_id,
        ..srv.anon()
    };
    let room = alice.create_room(serde_json::json!({})).await;
    assert!(room.starts_with('!'));

    // Rotating again keeps both old keys.
    let dir = srv.stop().await;
    let (second_old, _) = sandcat::rotate_signing_key(&config).await.unwrap();
    assert_eq!(second_old, new);
    let srv = Server::start_in(dir, |_| {}).await;
    let doc = key_document(&srv, "/_matrix/key/v2/server").await;
    assert_eq!(doc.old_verify_keys.len(), 2);
}

#[tokio::test]
async fn an_openid_token_tells_a_third_party_whose_it_is() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let path = format!(
        "/_matrix/client/v3/user/{}/openid/request_token",
        enc(&alice.user_id)
    );
    let (status, token) = alice.post(&path, json!({})).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer", "{token}");
    assert_eq!(token["expires_in"], 3600, "{token}");
    let server = alice.user_id.split_once(':').unwrap().1;
    assert_eq!(token["matrix_server_name"], server, "{token}");
    let secret = token["access_token"].as_str().unwrap();

    // The third party asks, with no signature and no access token: the token is the proof.
    let third = srv.anon();
    let (status, info) = third
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            enc(secret)
        ))
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["sub"], alice.user_id.as_str());
    let (status, info) = third
        .get("/_matrix/federation/v1/openid/userinfo?access_token=forged")
        .await;
    assert_eq!((status, &info["errcode"]), (401, &json!("M_UNKNOWN_TOKEN")));
    let (status, info) = third.get("/_matrix/federation/v1/openid/userinfo").await;
    assert_eq!((status, &info["errcode"]), (400, &json!("M_MISSING_PARAM")));

    // Nobody gets a token for someone else, and the token opens no client API.
    let (status, body) = bob.post(&path, json!({})).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = third
        .get(&format!(
            "/_matrix/client/v3/account/whoami?access_token={}",
            enc(secret)
        ))
        .await;
    assert_eq!(status, 401);

    // A deactivated user's token is told of no more.
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": { "type": "m.login.password", "password": "pw-alice",
                              "identifier": { "type": "m.id.user", "user": alice.user_id } } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = third
        .get(&format!(
            "/_matrix/federation/v1/openid/userinfo?access_token={}",
            enc(secret)
        ))
        .await;
    assert_eq!(status, 401);
}
