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
    routing::post,
    Json, Router,
};
use common::federation::{certificate, federating, free_port, get_json};
use ruma::{
    api::{auth_scheme::AuthScheme, federation::authentication::ServerSignatures},
    serde::Base64,
    signatures::PublicKeyMap,
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
}

type Answer = (StatusCode, Json<Value>);

fn refuse(status: StatusCode, errcode: &str) -> Answer {
    (
        status,
        Json(json!({ "errcode": errcode, "error": errcode })),
    )
}

async fn bind(State(is): State<Arc<Identity>>, headers: HeaderMap, Json(b): Json<Value>) -> Answer {
    let bearer = format!("Bearer {TOKEN}");
    if headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(bearer.as_str()) {
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
        ..Identity::default()
    });
    let router = Router::new()
        .route("/_matrix/identity/v2/3pid/bind", post(bind))
        .route("/_matrix/identity/v2/3pid/unbind", post(unbind))
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

fn bind_body(is: &Identity, token: &str, sid: &str) -> Value {
    json!({ "client_secret": SECRET, "id_server": is.name, "id_access_token": token, "sid": sid })
}

#[tokio::test]
async fn addresses_bind_and_unbind_through_an_identity_server() {
    let certs = tempfile::tempdir().unwrap();
    let is_certs = tempfile::tempdir().unwrap();
    let (srv, hs_name) = federating(certs.path()).await;
    let is = identity_server(is_certs.path()).await;
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
