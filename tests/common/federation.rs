//! Servers that federate over loopback: each named `localhost:PORT`, its TLS listener on that
//! port with a self-signed certificate, other servers reached on private addresses.

use std::{path::Path, sync::Arc};

use ruma::{signatures::Ed25519KeyPair, OwnedEventId, OwnedServerName, RoomVersionId, ServerName};
use sandcat_core::sequencer::SigningKey;
use sandcat_federation::client::{ClientOptions, FederationClient};

use serde_json::{value::RawValue, Value};

use super::{Client, Server};

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files in `dir`.
pub(crate) fn certificate(dir: &Path) -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.key_pair.serialize_pem()).unwrap();
    (c.display().to_string(), k.display().to_string())
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server named `localhost:PORT` whose TLS listener is on that port.
pub(crate) async fn federating(certs: &Path) -> (Server, OwnedServerName) {
    federating_with(certs, |_| {}).await
}

/// The same, with `tweak` applied to its configuration.
pub(crate) async fn federating_with(
    certs: &Path,
    tweak: impl FnOnce(&mut sandcat::Config) + Send + 'static,
) -> (Server, OwnedServerName) {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let srv = federating_in(certs, dir, port, tweak).await;
    let name = format!("localhost:{port}").try_into().unwrap();
    (srv, name)
}

/// The server `localhost:PORT` on the data in `dir`: a new one, or one stopped before.
pub(crate) async fn federating_in(
    certs: &Path,
    dir: tempfile::TempDir,
    port: u16,
    tweak: impl FnOnce(&mut sandcat::Config) + Send + 'static,
) -> Server {
    federating_as(certs, dir, format!("localhost:{port}"), port, tweak).await
}

/// The server `name` whose TLS listener is on `port` (found through DNS or delegation when
/// `name` does not say so).
pub(crate) async fn federating_as(
    certs: &Path,
    dir: tempfile::TempDir,
    name: String,
    port: u16,
    tweak: impl FnOnce(&mut sandcat::Config) + Send + 'static,
) -> Server {
    let (cert, key) = certificate(certs);
    Server::start_in(dir, move |c| {
        c.server_name = name;
        c.federation.listen = format!("127.0.0.1:{port}");
        c.federation.tls_certificate = cert;
        c.federation.tls_private_key = key;
        c.federation.verify_certificates = false;
        c.federation.allow_private_destinations = true;
        tweak(c);
    })
    .await
}

/// The JSON a server's TLS listener answers to a plain GET of `url` (its self-signed
/// certificate accepted).
pub(crate) async fn get_json(url: &str) -> Value {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn loopback() -> ClientOptions {
    ClientOptions {
        verify_certificates: false,
        allow_private_destinations: true,
        ..ClientOptions::default()
    }
}

/// A client signing as `server` with `key`.
pub(crate) fn signing_as(server: &OwnedServerName, key: Ed25519KeyPair) -> FederationClient {
    let signing = Arc::new(SigningKey {
        server_name: server.clone(),
        key,
    });
    FederationClient::new(signing, loopback()).unwrap()
}

/// Whether `body` reaches `client`'s timeline of `room` through `/sync` long-polls (a few
/// seconds at most: the transaction goes out at once).
pub(crate) async fn heard(client: &Client, room: &str, body: &str) -> bool {
    sync_until(client, None, |sync| {
        super::timeline_bodies(sync, room).iter().any(|b| b == body)
    })
    .await
    .is_some()
}

/// The first `/sync` of `client`, long-polled from `since` (a few seconds at most), that
/// `pred` accepts.
pub(crate) async fn sync_until(
    client: &Client,
    mut since: Option<String>,
    pred: impl Fn(&Value) -> bool,
) -> Option<Value> {
    for _ in 0..20 {
        let sync = client.sync(since.as_deref(), 1_000).await;
        if pred(&sync) {
            return Some(sync);
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
    }
    None
}

/// The first thing `find` picks out of `client`'s `/sync` long-polls (a few seconds at most).
pub(crate) async fn sync_find(
    client: &Client,
    find: impl Fn(&Value) -> Option<Value>,
) -> Option<Value> {
    let sync = sync_until(client, None, |s| find(s).is_some()).await?;
    find(&sync)
}

/// The joined members of `room`, as `client`'s server has them, sorted.
pub(crate) async fn joined_members(client: &Client, room: &str) -> Vec<String> {
    let (_, m) = client
        .get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"))
        .await;
    let mut ids: Vec<String> = m["joined"].as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

/// The message bodies of `room` as `client`'s server has them (`/messages`), oldest first.
pub(crate) async fn room_bodies(client: &Client, room: &str) -> Vec<String> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
        super::enc(room)
    );
    let (status, page) = client.get(&path).await;
    assert_eq!(status, 200, "{page}");
    let mut out: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    out.reverse();
    out
}

/// `client` joins `room` through `server` (`/join?via=`): the answer's status and body.
pub(crate) async fn join_via(client: &Client, room: &str, server: &ServerName) -> (u16, Value) {
    let path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        super::enc(room),
        super::enc(server.as_str())
    );
    client.post(&path, serde_json::json!({})).await
}

/// Two federating servers: Alice of the first has a public room, and Bob of the second has
/// joined it through the first. The servers stop when `a` and `b` are dropped: keep them.
pub(crate) struct SharedRoom {
    pub a: Server,
    pub b: Server,
    pub a_name: OwnedServerName,
    pub b_name: OwnedServerName,
    pub alice: Client,
    pub bob: Client,
    pub room: String,
}

pub(crate) async fn shared_room(certs: &Path) -> SharedRoom {
    let (a, a_name) = federating(certs).await;
    let (b, b_name) = federating(certs).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = alice
        .create_room(serde_json::json!({ "preset": "public_chat" }))
        .await;
    let (status, body) = join_via(&bob, &room, &a_name).await;
    assert_eq!(status, 200, "{body}");
    SharedRoom {
        a,
        b,
        a_name,
        b_name,
        alice,
        bob,
        room,
    }
}

/// Signs `event` (a PDU without hashes and signatures) as `server`, and answers its id and
/// JSON.
pub(crate) fn signed_pdu(
    server: &ServerName,
    key: &Ed25519KeyPair,
    version: &RoomVersionId,
    event: Value,
) -> (OwnedEventId, Box<RawValue>) {
    let rules = version.rules().unwrap();
    let mut object: ruma::CanonicalJsonObject = serde_json::from_value(event).unwrap();
    ruma::signatures::hash_and_sign_event(server.as_str(), key, &mut object, &rules.redaction)
        .unwrap();
    let id = ruma::signatures::reference_hash(&object, &rules).unwrap();
    let json = serde_json::to_string(&object).unwrap();
    (
        format!("${id}").try_into().unwrap(),
        RawValue::from_string(json).unwrap(),
    )
}

/// The device of `client`'s session.
pub(crate) async fn device_of(client: &Client) -> String {
    let (_, me) = client.get("/_matrix/client/v3/account/whoami").await;
    me["device_id"].as_str().unwrap().to_owned()
}

/// Device keys of `user`'s `device` with `ed` as its ed25519 key (signed for show: servers
/// do not check device signatures).
pub(crate) fn device_keys(user: &str, device: &str, ed: &str) -> Value {
    serde_json::json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): "Y3VydmUyNTUxOSBrZXkgb2YgdGhlIGRldmljZQ",
            format!("ed25519:{device}"): ed,
        },
        "signatures": { user: { format!("ed25519:{device}"): "c2lnbmF0dXJl" } },
    })
}
