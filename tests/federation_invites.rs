//! Invites across servers, over loopback TLS: a user here invites a user of another server
//! (whose server counter-signs the invite; by `/invite` or in `createRoom`, as a direct chat
//! is started), who sees it with what the room told of itself,
//! joins through the inviting server and talks; an invite the other way is rejected through
//! the inviting server; and one whose server is gone is rejected on this server alone. Runs
//! on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    federation::{federating, heard, joined_members, sync_until},
    Client,
};
use serde_json::{json, Value};

/// The invite section of `client`'s `/sync` for `room`, waiting a few seconds for it.
async fn invite_of(client: &Client, room: &str) -> Option<Value> {
    let sync = sync_until(client, None, |s| s["rooms"]["invite"].get(room).is_some()).await?;
    Some(sync["rooms"]["invite"][room].clone())
}

/// The membership `client`'s server holds for `user` in `room`.
async fn membership(client: &Client, room: &str, user: &str) -> Value {
    let (_, state) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
            enc(user)
        ))
        .await;
    state["membership"].clone()
}

#[tokio::test]
async fn users_of_two_servers_invite_each_other() {
    let certs = tempfile::tempdir().unwrap();
    let (a, _) = federating(certs.path()).await;
    let (b, _) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;

    // Alice, on A, invites Bob, of B, to a private room.
    let room = alice
        .create_room(json!({ "preset": "private_chat", "name": "Plans" }))
        .await;
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership(&alice, &room, &bob.user_id).await, "invite");

    // B counter-signed and kept it: Bob sees the invite, with the room's name.
    let invite = invite_of(&bob, &room)
        .await
        .expect("Bob never saw the invite");
    let events = invite["invite_state"]["events"].as_array().unwrap();
    let name = events.iter().find(|e| e["type"] == "m.room.name");
    assert_eq!(name.unwrap()["content"]["name"], "Plans", "{invite}");
    let his = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str());
    assert_eq!(his.unwrap()["content"]["membership"], "invite", "{invite}");

    // He joins without naming a server: through the one that invited him.
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(joined_members(&alice, &room).await.len(), 2);
    assert_eq!(
        joined_members(&alice, &room).await,
        joined_members(&bob, &room).await
    );
    bob.send_text(&room, "t1", "thanks").await;
    assert!(
        heard(&alice, &room, "thanks").await,
        "A never had B's message"
    );

    // The other way: Bob, on B, starts a direct chat with Alice as Element does (the invite
    // in `createRoom`), and she declines through B.
    let his_room = bob
        .create_room(json!({
            "preset": "trusted_private_chat",
            "is_direct": true,
            "invite": [alice.user_id],
        }))
        .await;
    assert_eq!(membership(&bob, &his_room, &alice.user_id).await, "invite");
    let invite = invite_of(&alice, &his_room)
        .await
        .expect("Alice never saw the direct chat's invite");
    let events = invite["invite_state"]["events"].as_array().unwrap();
    let hers = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str());
    assert_eq!(hers.unwrap()["content"]["is_direct"], true, "{invite}");
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{his_room}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership(&bob, &his_room, &alice.user_id).await, "leave");
    let sync = alice.sync(None, 0).await;
    assert!(sync["rooms"]["invite"].get(&his_room).is_none(), "{sync}");
}

#[tokio::test]
async fn an_invite_from_a_server_that_is_gone_is_rejected_here() {
    let certs = tempfile::tempdir().unwrap();
    let (a, _) = federating(certs.path()).await;
    let (b, _) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = bob.create_room(json!({ "preset": "private_chat" })).await;
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            json!({ "user_id": alice.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(invite_of(&alice, &room).await.is_some());

    // B goes away; Alice still gets rid of the invite.
    let _kept = b.stop().await;
    let (status, body) = alice
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let sync = alice.sync(None, 0).await;
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
    // Nothing can be sent there from here: this server is not in the room.
    let (status, _) = alice
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/x"),
            json!({ "msgtype": "m.text", "body": "hi" }),
        )
        .await;
    assert_eq!(status, 403);
}
