//! Account moderation by server administrators (spec 1.18): a suspended account reads,
//! leaves and redacts but adds nothing (`M_USER_SUSPENDED`), a locked one can only log out
//! (`M_USER_LOCKED` with `soft_logout`), both undone as easily; only administrators (named
//! with `sandcat user admin`) may ask or change, and the Sandcat API obeys the same standing.
//! Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, native, Client, Server};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn standing(admin: &Client, kind: &str, user: &str) -> (u16, Value) {
    admin
        .get(&format!("/_matrix/client/v1/admin/{kind}/{}", enc(user)))
        .await
}

async fn set_standing(admin: &Client, kind: &str, user: &str, on: bool) {
    let field = if kind == "suspend" {
        "suspended"
    } else {
        "locked"
    };
    let (s, b) = admin
        .put(
            &format!("/_matrix/client/v1/admin/{kind}/{}", enc(user)),
            json!({ field: on }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b[field], on);
}

fn assert_error(result: (u16, Value), status: u16, errcode: &str) {
    let (s, b) = result;
    assert_eq!(s, status, "{b}");
    assert_eq!(b["errcode"], errcode, "{b}");
}

async fn login(srv: &Server, name: &str, password: &str) -> (u16, Value) {
    srv.anon()
        .post(
            "/_matrix/client/v3/login",
            json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": name },
                "password": password,
            }),
        )
        .await
}

async fn leave(c: &Client, room: &str) {
    let (s, b) = c
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
}

async fn moderation_capability(c: &Client) -> Value {
    let (s, b) = c.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(s, 200, "{b}");
    b["capabilities"]["m.account_moderation"].clone()
}

#[tokio::test]
async fn only_administrators_moderate() {
    let srv = Server::start().await;
    let root = srv.register("root").await;
    let bob = srv.register("bob").await;
    let server = srv.config.server_name.clone();

    // Before the command line names an administrator, nobody may ask, even about unknown
    // accounts (no one learns which exist).
    for user in [bob.user_id.clone(), format!("@nobody:{server}")] {
        assert_error(standing(&root, "suspend", &user).await, 403, "M_FORBIDDEN");
        assert_error(standing(&root, "lock", &user).await, 403, "M_FORBIDDEN");
    }
    assert_eq!(
        moderation_capability(&root).await,
        json!({ "suspend": false, "lock": false })
    );

    sandcat::set_admin(&srv.config, "root", true).await.unwrap();
    assert_eq!(
        moderation_capability(&root).await,
        json!({ "suspend": true, "lock": true })
    );
    assert_eq!(
        moderation_capability(&bob).await,
        json!({ "suspend": false, "lock": false })
    );
    let (s, b) = standing(&root, "suspend", &bob.user_id).await;
    assert_eq!((s, &b["suspended"]), (200, &json!(false)), "{b}");
    let (s, b) = standing(&root, "lock", &bob.user_id).await;
    assert_eq!((s, &b["locked"]), (200, &json!(false)), "{b}");
    assert_error(
        standing(&root, "suspend", &format!("@nobody:{server}")).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        standing(&root, "lock", "@someone:elsewhere.example").await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        standing(&bob, "suspend", &root.user_id).await,
        403,
        "M_FORBIDDEN",
    );
    let (s, b) = bob
        .put(
            &format!("/_matrix/client/v1/admin/lock/{}", enc(&root.user_id)),
            json!({ "locked": true }),
        )
        .await;
    assert_error((s, b), 403, "M_FORBIDDEN");

    // Revoked on the command line: no longer.
    sandcat::set_admin(&srv.config, &root.user_id, false)
        .await
        .unwrap();
    assert_error(
        standing(&root, "suspend", &bob.user_id).await,
        403,
        "M_FORBIDDEN",
    );
    assert!(sandcat::set_admin(&srv.config, "nobody", true)
        .await
        .is_err());
}

#[tokio::test]
async fn a_suspended_account_reads_leaves_and_redacts_but_adds_nothing() {
    let srv = Server::start().await;
    let root = srv.register("root").await;
    sandcat::set_admin(&srv.config, "root", true).await.unwrap();
    let bob = srv.register("bob").await;
    let room = bob
        .create_room(json!({ "preset": "public_chat", "name": "bob's" }))
        .await;
    let before = bob.send_text(&room, "t1", "before the suspension").await;
    let open = root.create_room(json!({ "preset": "public_chat" })).await;
    let elsewhere = root.create_room(json!({ "preset": "private_chat" })).await;

    set_standing(&root, "suspend", &bob.user_id, true).await;
    let (s, b) = standing(&root, "suspend", &bob.user_id).await;
    assert_eq!((s, &b["suspended"]), (200, &json!(true)), "{b}");

    let suspended = |r: (u16, Value)| assert_error(r, 403, "M_USER_SUSPENDED");
    let send = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
        enc(&room)
    );
    suspended(
        bob.put(&send, json!({ "msgtype": "m.text", "body": "no" }))
            .await,
    );
    suspended(
        bob.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
                enc(&room)
            ),
            json!({ "topic": "no" }),
        )
        .await,
    );
    suspended(bob.post("/_matrix/client/v3/createRoom", json!({})).await);
    suspended(
        bob.post(
            &format!("/_matrix/client/v3/join/{}", enc(&open)),
            json!({}),
        )
        .await,
    );
    suspended(
        bob.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            json!({ "user_id": root.user_id }),
        )
        .await,
    );
    suspended(
        bob.put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&bob.user_id)
            ),
            json!({ "displayname": "Bobby" }),
        )
        .await,
    );
    suspended(bob.post("/_matrix/media/v1/create", json!({})).await);

    // Reading, redacting its own events and leaving still work.
    let sync = bob.sync(None, 0).await;
    assert!(sync["rooms"]["join"][&room].is_object(), "{sync}");
    let (s, b) = bob
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                enc(&room),
                enc(&before)
            ),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    leave(&bob, &room).await;
    // An invite can be turned down too.
    let (s, b) = root
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&elsewhere)),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    leave(&bob, &elsewhere).await;

    // Lifted: everything works again.
    set_standing(&root, "suspend", &bob.user_id, false).await;
    bob.join(&open).await;
    bob.send_text(&open, "t3", "after the suspension").await;
}

#[tokio::test]
async fn a_locked_account_can_only_log_out() {
    let srv = Server::start().await;
    let root = srv.register("root").await;
    sandcat::set_admin(&srv.config, "root", true).await.unwrap();
    let bob = srv.register("bob").await;
    let (s, b) = login(&srv, "bob", "pw-bob").await;
    assert_eq!(s, 200, "{b}");
    let second = Client {
        token: Some(b["access_token"].as_str().unwrap().to_owned()),
        ..bob.clone()
    };

    set_standing(&root, "lock", &bob.user_id, true).await;
    let (s, b) = standing(&root, "lock", &bob.user_id).await;
    assert_eq!((s, &b["locked"]), (200, &json!(true)), "{b}");
    for path in [
        "/_matrix/client/v3/account/whoami",
        "/_matrix/client/v3/sync",
    ] {
        let (s, b) = bob.get(path).await;
        assert_eq!(s, 401, "{b}");
        assert_eq!(b["errcode"], "M_USER_LOCKED", "{b}");
        assert_eq!(b["soft_logout"], true, "{b}");
    }
    // No new session: the right password is told the account is locked, a wrong one is not.
    assert_error(login(&srv, "bob", "pw-bob").await, 401, "M_USER_LOCKED");
    assert_error(login(&srv, "bob", "wrong").await, 403, "M_FORBIDDEN");
    // Logging out still works, and ends that session for good.
    let (s, b) = second.post("/_matrix/client/v3/logout", json!({})).await;
    assert_eq!(s, 200, "{b}");

    set_standing(&root, "lock", &bob.user_id, false).await;
    let (s, b) = bob.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((s, &b["user_id"]), (200, &json!(bob.user_id)), "{b}");
    assert_error(
        second.get("/_matrix/client/v3/account/whoami").await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (s, b) = login(&srv, "bob", "pw-bob").await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn the_sandcat_api_obeys_the_same_standing() {
    let srv = Server::start().await;
    let root = srv.register("root").await;
    sandcat::set_admin(&srv.config, "root", true).await.unwrap();
    let cat = native::sandcat_user(&srv, "whiskers").await;
    let matrix_id = format!("@{}:{}", cat.id, srv.config.server_name);
    let update = json!({ "id": cat.id, "name": "Whiskers", "avatar": "" });
    let (s, b) = cat
        .call(reqwest::Method::PUT, "/user", Some(update.clone()))
        .await;
    assert_eq!(s, 200, "{b}");

    set_standing(&root, "suspend", &matrix_id, true).await;
    let (s, b) = cat
        .call(reqwest::Method::PUT, "/user", Some(update.clone()))
        .await;
    assert_eq!(s, 403, "{b}");
    // Reading still works.
    let (s, b) = cat
        .call(reqwest::Method::GET, &format!("/user/{}", cat.id), None)
        .await;
    assert_eq!(s, 200, "{b}");

    set_standing(&root, "suspend", &matrix_id, false).await;
    set_standing(&root, "lock", &matrix_id, true).await;
    let (s, b) = cat
        .call(reqwest::Method::GET, &format!("/user/{}", cat.id), None)
        .await;
    assert_eq!(s, 401, "{b}");
    // Its WebSocket is closed with 4002, as for a token that is no good.
    let mut ws = cat.connect(0).await;
    match tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
        .await
        .expect("the server answered in time")
    {
        Some(Ok(Message::Close(Some(c)))) => assert_eq!(u16::from(c.code), 4002),
        other => panic!("expected 4002, got {other:?}"),
    }
    set_standing(&root, "lock", &matrix_id, false).await;
    let (s, b) = cat.call(reqwest::Method::PUT, "/user", Some(update)).await;
    assert_eq!(s, 200, "{b}");
}
