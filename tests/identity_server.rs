//! Identity servers: `/account/3pid/bind` asks the identity server the client names, with the
//! client's token there, to bind the address it validated; unbinding (`/account/3pid/unbind`,
//! removing the address, deactivation) asks it to forget, in a request the homeserver signs.
//! The identity server is a real one in the test's process, over TLS, that checks the token,
//! the validation session, and the homeserver's signature against the key the homeserver
//! publishes. Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the
//! pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Request, State},
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use common::federation::{certificate, federating, free_port, get_json};
use ruma::{
    api::{auth_scheme::AuthScheme, federation::authentication::ServerSignatures},
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap},
    ServerName,
};
use serde_json::{json, Value};

const ADDRESS: &str = "alice@example.org";
const TOKEN: &str = "is-token";
const SID: &str = "sid1";
const SECRET: &str = "secret1";

/// An identity server that validated `ADDRESS` in session `SID`.
#[derive(Default)]
struct Identity {
    name: String,
    /// Whom the address is bound to.
    bound: Mutex<Option<String>>,
    /// The unbinds received, each `(origin, mxid, address)`, signature checked.
    unbinds: Mutex<Vec<(String, String, String)>>,
    /// The key invites by address are signed with.
    key: Option<Ed25519KeyPair>,
    /// The invites kept, each `(address, room, sender)`.
    invites: Mutex<Vec<(String, String, String)>>,
}

const PEPPER: &str = "matrixrocks";
/// The address bound to a user before any invite (to `BOUND_TO`).
const BOUND: &str = "bob@example.org";

fn authorised(headers: &HeaderMap) -> bool {
    let bearer = format!("Bearer {TOKEN}");
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(bearer.as_str())
}

async fn hash_details(headers: HeaderMap) -> Answer {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    }
    let answer = json!({ "algorithms": ["none", "sha256"], "lookup_pepper": PEPPER });
    (StatusCode::OK, Json(answer))
}

/// Knows `BOUND` as the user the test named in `bound`.
async fn lookup(
    State(is): State<Arc<Identity>>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Answer {
    use base64::Engine;
    use sha2::Digest;
    if !authorised(&headers) || b["algorithm"] != "sha256" || b["pepper"] != PEPPER {
        return refuse(StatusCode::BAD_REQUEST, "M_INVALID_PEPPER");
    }
    let digest = sha2::Sha256::digest(format!("{BOUND} email {PEPPER}").as_bytes());
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    let mut mappings = serde_json::Map::new();
    let bound_to = is.bound.lock().unwrap().clone();
    if let Some(user) = bound_to {
        if b["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| *a == hash)
        {
            mappings.insert(hash, json!(user));
        }
    }
    (StatusCode::OK, Json(json!({ "mappings": mappings })))
}

fn public_key(is: &Identity) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(is.key.as_ref().unwrap().public_key())
}

async fn store_invite(
    State(is): State<Arc<Identity>>,
    headers: HeaderMap,
    Json(b): Json<Value>,
) -> Answer {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    }
    let mut invites = is.invites.lock().unwrap();
    invites.push((
        b["address"].as_str().unwrap().to_owned(),
        b["room_id"].as_str().unwrap().to_owned(),
        b["sender"].as_str().unwrap().to_owned(),
    ));
    let validity = format!("https://{}/_matrix/identity/v2/pubkey/isvalid", is.name);
    let key = json!({ "public_key": public_key(&is), "key_validity_url": validity });
    let answer = json!({
        "token": format!("token{}", invites.len()),
        "public_keys": [key, key],
        "display_name": "c...@e...",
    });
    (StatusCode::OK, Json(answer))
}

/// The identity server's proof that `mxid` holds the address invited with `token`, signed
/// with `key`.
fn signed(is: &Identity, key: &Ed25519KeyPair, mxid: &str, token: &str) -> Value {
    let mut object: ruma::CanonicalJsonObject =
        serde_json::from_value(json!({ "mxid": mxid, "token": token })).unwrap();
    ruma::signatures::sign_json(&is.name, key, &mut object).unwrap();
    serde_json::to_value(object).unwrap()
}

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, errcode: &str) -> Answer {
    (
        status,
        Json(json!({ "errcode": errcode, "error": errcode })),
    )
}

async fn bind(State(is): State<Arc<Identity>>, headers: HeaderMap, Json(b): Json<Value>) -> Answer {
    if !authorised(&headers) {
        return refuse(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    }
    if b["sid"] != SID || b["client_secret"] != SECRET {
        return refuse(StatusCode::BAD_REQUEST, "M_NO_VALID_SESSION");
    }
    *is.bound.lock().unwrap() = b["mxid"].as_str().map(str::to_owned);
    let answer = json!({
        "address": ADDRESS, "medium": "email", "mxid": b["mxid"],
        "not_before": 0, "not_after": 4_102_444_800_000u64, "ts": 0, "signatures": {},
    });
    (StatusCode::OK, Json(answer))
}

/// Checks the homeserver's `X-Matrix` signature with the keys it publishes.
async fn unbind(State(is): State<Arc<Identity>>, request: Request) -> Answer {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 65_536).await.unwrap().to_vec();
    let request = http::Request::from_parts(parts, body);
    let Ok(x) = ServerSignatures::extract_authentication(&request) else {
        return refuse(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    };
    let keys = get_json(&format!("https://{}/_matrix/key/v2/server", x.origin)).await;
    let set = keys["verify_keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, k)| {
            (
                id.clone(),
                Base64::parse(k["key"].as_str().unwrap()).unwrap(),
            )
        })
        .collect();
    let map: PublicKeyMap = BTreeMap::from([(x.origin.to_string(), set)]);
    let me = <&ServerName>::try_from(is.name.as_str()).unwrap();
    if x.verify_http_request(&request, me, &map).is_err() {
        return refuse(StatusCode::FORBIDDEN, "M_FORBIDDEN");
    }
    let b: Value = serde_json::from_slice(request.body()).unwrap();
    let mxid = b["mxid"].as_str().unwrap().to_owned();
    let address = b["threepid"]["address"].as_str().unwrap().to_owned();
    is.unbinds
        .lock()
        .unwrap()
        .push((x.origin.to_string(), mxid, address));
    *is.bound.lock().unwrap() = None;
    (StatusCode::OK, Json(json!({})))
}

fn identity_key() -> Ed25519KeyPair {
    let der = Ed25519KeyPair::generate();
    Ed25519KeyPair::from_der(&der, "0".into()).unwrap()
}

/// Starts the identity server, `localhost:PORT` over TLS.
async fn identity_server(certs: &std::path::Path) -> Arc<Identity> {
    let port = free_port();
    let (cert, key) = certificate(certs);
    let acceptor = sandcat::tls::acceptor(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let is = Arc::new(Identity {
        name: format!("localhost:{port}"),
        key: Some(identity_key()),
        ..Identity::default()
    });
    let router = Router::new()
        .route("/_matrix/identity/v2/3pid/bind", post(bind))
        .route("/_matrix/identity/v2/3pid/unbind", post(unbind))
        .route("/_matrix/identity/v2/hash_details", get(hash_details))
        .route("/_matrix/identity/v2/lookup", post(lookup))
        .route("/_matrix/identity/v2/store-invite", post(store_invite))
        .with_state(is.clone());
    tokio::spawn(async move {
        let limits = sandcat::listener::Limits::default();
        sandcat::listener::serve(
            listener,
            router,
            &limits,
            Some(acceptor),
            std::future::pending(),
        )
        .await;
    });
    is
}

/// A federating homeserver and an identity server, with the directories of their
/// certificates (kept while they run).
struct Servers {
    srv: common::Server,
    hs_name: ruma::OwnedServerName,
    is: Arc<Identity>,
    _certs: [tempfile::TempDir; 2],
}

async fn servers() -> Servers {
    let certs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (srv, hs_name) = federating(certs[0].path()).await;
    let is = identity_server(certs[1].path()).await;
    Servers {
        srv,
        hs_name,
        is,
        _certs: certs,
    }
}

fn bind_body(is: &Identity, token: &str, sid: &str) -> Value {
    json!({ "client_secret": SECRET, "id_server": is.name, "id_access_token": token, "sid": sid })
}

#[tokio::test]
async fn addresses_bind_and_unbind_through_an_identity_server() {
    let Servers {
        srv,
        hs_name,
        is,
        _certs,
    } = servers().await;
    let alice = srv.register("alice").await;
    const BIND: &str = "/_matrix/client/v3/account/3pid/bind";
    const UNBIND: &str = "/_matrix/client/v3/account/3pid/unbind";

    // The identity server's refusals reach the client, with its reason.
    for (body, reason) in [
        (bind_body(&is, "wrong", SID), "M_UNAUTHORIZED"),
        (bind_body(&is, TOKEN, "other"), "M_NO_VALID_SESSION"),
    ] {
        let (s, err) = alice.post(BIND, body).await;
        assert_eq!(s, 400, "{err}");
        assert!(err["error"].as_str().unwrap().contains(reason), "{err}");
    }
    assert_eq!(*is.bound.lock().unwrap(), None);
    let (s, err) = alice
        .post(BIND, json!({ "client_secret": SECRET, "id_server": "not a server", "id_access_token": TOKEN, "sid": SID }))
        .await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (400, Some("M_INVALID_PARAM")),
        "{err}"
    );

    // Bound with the client's token, unbound with the homeserver's signature.
    let (s, b) = alice.post(BIND, bind_body(&is, TOKEN, SID)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        is.bound.lock().unwrap().as_deref(),
        Some(alice.user_id.as_str())
    );
    let (s, b) = alice
        .post(UNBIND, json!({ "medium": "email", "address": ADDRESS }))
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id_server_unbind_result"], "success");
    let expected = (
        hs_name.to_string(),
        alice.user_id.clone(),
        ADDRESS.to_owned(),
    );
    assert_eq!(*is.unbinds.lock().unwrap(), std::slice::from_ref(&expected));
    assert_eq!(*is.bound.lock().unwrap(), None);

    // Nothing bound any more: nothing to ask. A server that does not unbind (this
    // homeserver's own name answers no identity API) is `no-support`.
    let (s, b) = alice
        .post(UNBIND, json!({ "medium": "email", "address": ADDRESS }))
        .await;
    assert_eq!(
        (s, b["id_server_unbind_result"].as_str()),
        (200, Some("success"))
    );
    let (s, b) = alice
        .post(
            UNBIND,
            json!({ "medium": "email", "address": ADDRESS, "id_server": hs_name }),
        )
        .await;
    assert_eq!(
        (s, b["id_server_unbind_result"].as_str()),
        (200, Some("no-support")),
        "{b}"
    );
    assert_eq!(is.unbinds.lock().unwrap().len(), 1);

    // Deactivation unbinds what is bound.
    let (s, b) = alice.post(BIND, bind_body(&is, TOKEN, SID)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = alice
        .post(
            "/_matrix/client/v3/account/deactivate",
            json!({ "auth": {
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": alice.user_id },
                "password": "pw-alice",
            } }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["id_server_unbind_result"], "success");
    assert_eq!(*is.unbinds.lock().unwrap(), [expected.clone(), expected]);
    assert_eq!(*is.bound.lock().unwrap(), None);
}

#[tokio::test]
async fn invites_by_address_through_an_identity_server() {
    let Servers {
        srv,
        hs_name,
        is,
        _certs,
    } = servers().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "name": "Garden" })).await;
    let invite = |address: &str| json!({ "id_server": is.name, "id_access_token": TOKEN, "medium": "email", "address": address });
    let path = format!("/_matrix/client/v3/rooms/{}/invite", common::enc(&room));
    let member = |user: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            common::enc(&room),
            common::enc(user)
        )
    };

    // An address the identity server binds invites its user.
    *is.bound.lock().unwrap() = Some(bob.user_id.clone());
    let (s, b) = alice.post(&path, invite(BOUND)).await;
    assert_eq!(s, 200, "{b}");
    let (s, m) = alice.get(&member(&bob.user_id)).await;
    assert_eq!((s, m["membership"].as_str()), (200, Some("invite")), "{m}");
    assert!(is.invites.lock().unwrap().is_empty());

    // Any other address: the identity server keeps the invite, the room marks it.
    let (s, b) = alice.post(&path, invite("carol@example.org")).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        *is.invites.lock().unwrap(),
        [(
            "carol@example.org".to_owned(),
            room.clone(),
            alice.user_id.clone()
        )]
    );
    let (s, marked) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.third_party_invite/token1",
            common::enc(&room)
        ))
        .await;
    assert_eq!(s, 200, "{marked}");
    assert_eq!(marked["display_name"], "c...@e...");
    assert_eq!(marked["public_key"], public_key(&is));

    // Carol registers and binds the address: the identity server hands the invite on.
    let carol = srv.register("carol").await;
    let on_bind = |mxid: &str, token: &str, key: &Ed25519KeyPair| {
        json!({
            "medium": "email", "address": "carol@example.org", "mxid": mxid,
            "invites": [{
                "medium": "email", "address": "carol@example.org", "mxid": mxid,
                "room_id": room, "sender": alice.user_id,
                "signed": signed(&is, key, mxid, token),
            }],
        })
    };
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://{hs_name}/_matrix/federation/v1/3pid/onbind");
    // A proof signed with another key, or for another invite, makes no invite.
    let dave = srv.register("dave").await;
    for body in [
        on_bind(&dave.user_id, "token1", &identity_key()),
        on_bind(&dave.user_id, "token9", is.key.as_ref().unwrap()),
    ] {
        let r = http.put(&url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let (s, _) = alice.get(&member(&dave.user_id)).await;
    assert_eq!(s, 404, "a forged proof made an invite");
    let body = on_bind(&carol.user_id, "token1", is.key.as_ref().unwrap());
    let r = http.put(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let (s, m) = alice.get(&member(&carol.user_id)).await;
    assert_eq!((s, m["membership"].as_str()), (200, Some("invite")), "{m}");
    assert_eq!(m["third_party_invite"]["display_name"], "c...@e...", "{m}");
    let (s, b) = carol
        .post(
            &format!("/_matrix/client/v3/join/{}", common::enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Only a member invites, and a body that is not an onbind is refused.
    let (s, b) = dave.post(&path, invite("erin@example.org")).await;
    assert_eq!(
        (s, b["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{b}"
    );
    let r = http
        .put(&url)
        .json(&json!({ "mxid": 5 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // More invites than one request may hand on are refused whole, with the reason.
    let mut many = on_bind(&dave.user_id, "token1", is.key.as_ref().unwrap());
    let one = many["invites"][0].clone();
    many["invites"] = json!(vec![one; 101]);
    let r = http.put(&url).json(&many).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["errcode"], "M_INVALID_PARAM", "{b}");
    let (s, _) = alice.get(&member(&dave.user_id)).await;
    assert_eq!(s, 404, "nothing of a refused request was made");
}
