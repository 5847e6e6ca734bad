//! Restricted rooms and knocking, on one server and across two over loopback TLS: a member
//! of the allowed room joins a restricted room (a member who may invite vouches for the
//! join, and on another server that member's server signs it); anyone else is refused; a
//! knock shows in the knocker's `/sync` with what the room shows of itself, waits for an
//! invite, and can be withdrawn. Runs on the embedded profile and, with
//! `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    federation::{federating, heard, join_via, joined_members, signing_as, sync_until},
    Client, Server,
};
use ruma::{api::federation::membership::prepare_join_event, OwnedRoomId, RoomVersionId};
use serde_json::{json, Value};

/// A room of `client` whose join rule is `restricted` to the members of `allowed`.
async fn restricted_room(client: &Client, allowed: &str) -> String {
    client
        .create_room(json!({
            "preset": "private_chat",
            "name": "Lounge",
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{ "type": "m.room_membership", "room_id": allowed }],
                },
            }],
        }))
        .await
}

/// A room of `client` that takes knocks.
async fn knock_room(client: &Client) -> String {
    client
        .create_room(json!({
            "preset": "private_chat",
            "name": "Door",
            "initial_state": [{
                "type": "m.room.join_rules",
                "state_key": "",
                "content": { "join_rule": "knock" },
            }],
        }))
        .await
}

/// The membership event `client`'s server holds for `user` in `room`.
async fn member(client: &Client, room: &str, user: &str) -> Value {
    let (_, content) = client
        .get(&format!(
            "/_matrix/client/v3/rooms/{room}/state/m.room.member/{}",
            enc(user)
        ))
        .await;
    content
}

/// The membership of `user` in `room` as `client`'s server holds it, once it is `want` (a
/// few seconds at most: another server's event is on its way), else as it is then.
async fn membership_becomes(client: &Client, room: &str, user: &str, want: &str) -> Value {
    for _ in 0..50 {
        let m = member(client, room, user).await["membership"].clone();
        if m == want {
            return m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    member(client, room, user).await["membership"].clone()
}

async fn knock(client: &Client, room: &str, via: Option<&str>) -> (u16, Value) {
    let query = via.map(|v| format!("?via={}", enc(v))).unwrap_or_default();
    client
        .post(
            &format!("/_matrix/client/v3/knock/{}{query}", enc(room)),
            json!({ "reason": "let me in" }),
        )
        .await
}

/// The knock section of `client`'s `/sync` for `room`, waiting a few seconds for it.
async fn knock_of(client: &Client, room: &str) -> Option<Value> {
    let sync = sync_until(client, None, |s| s["rooms"]["knock"].get(room).is_some()).await?;
    Some(sync["rooms"]["knock"][room].clone())
}

/// The state a knocking user is shown: the room's name, and the knock itself.
fn assert_knock_state(knock: &Value, user: &str) {
    let events = knock["knock_state"]["events"].as_array().unwrap();
    let name = events.iter().find(|e| e["type"] == "m.room.name");
    assert_eq!(name.unwrap()["content"]["name"], "Door", "{knock}");
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user);
    assert_eq!(own.unwrap()["content"]["membership"], "knock", "{knock}");
}

#[tokio::test]
async fn restricted_rooms_and_knocks_on_one_server() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let carol = srv.register("carol").await;

    // Bob is not in the club: the lounge, restricted to its members, refuses him.
    let club = alice.create_room(json!({ "preset": "private_chat" })).await;
    let lounge = restricted_room(&alice, &club).await;
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&lounge)),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Once in the club, he joins, vouched for by Alice (the one who may invite).
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{club}/invite"),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    bob.join(&club).await;
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&lounge)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let his = member(&alice, &lounge, &bob.user_id).await;
    assert_eq!(his["membership"], "join", "{his}");
    assert_eq!(
        his["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );

    // Carol knocks on the door; she sees her knock, Alice sees it, and she cannot walk in.
    let door = knock_room(&alice).await;
    let (status, body) = knock(&carol, &door, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], door.as_str());
    let shown = knock_of(&carol, &door).await.expect("no knock in /sync");
    assert_knock_state(&shown, &carol.user_id);
    let hers = member(&alice, &door, &carol.user_id).await;
    assert_eq!(hers["membership"], "knock", "{hers}");
    assert_eq!(hers["reason"], "let me in", "{hers}");
    let (status, _) = carol
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&door)),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    // A room that takes no knocks refuses one.
    let (status, body) = knock(&carol, &club, None).await;
    assert_eq!(status, 403, "{body}");

    // Alice lets her in: an invite, then her join.
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{door}/invite"),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    carol.join(&door).await;
    assert_eq!(
        member(&alice, &door, &carol.user_id).await["membership"],
        "join"
    );

    // Bob knocks and thinks better of it: the knock is withdrawn by leaving.
    let (status, body) = knock(&bob, &door, None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .post(&format!("/_matrix/client/v3/rooms/{door}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        member(&alice, &door, &bob.user_id).await["membership"],
        "leave"
    );
}

#[tokio::test]
async fn restricted_rooms_and_knocks_across_servers() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, b_name) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = b.register("carol").await;

    // Bob, of B, is in A's club; Carol is not.
    let club = alice.create_room(json!({ "preset": "public_chat" })).await;
    let (status, body) = join_via(&bob, &club, &a_name).await;
    assert_eq!(status, 200, "{body}");
    let lounge = restricted_room(&alice, &club).await;

    // Carol is refused by A, and B says so.
    let (status, body) = join_via(&carol, &lounge, &a_name).await;
    assert_eq!(status, 403, "{body}");

    // Bob joins: A vouches for him (Alice) and signs his join, which both servers keep.
    let (status, body) = join_via(&bob, &lounge, &a_name).await;
    assert_eq!(status, 200, "{body}");
    let mut members = joined_members(&alice, &lounge).await;
    members.sort();
    assert_eq!(members, [alice.user_id.clone(), bob.user_id.clone()]);
    assert_eq!(joined_members(&bob, &lounge).await.len(), 2);
    let his = member(&bob, &lounge, &bob.user_id).await;
    assert_eq!(
        his["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );
    bob.send_text(&lounge, "t1", "made it").await;
    assert!(heard(&alice, &lounge, "made it").await, "A never had it");

    // Carol knocks on A's door through A, and is shown the room.
    let door = knock_room(&alice).await;
    let (status, body) = knock(&carol, &door, Some(a_name.as_str())).await;
    assert_eq!(status, 200, "{body}");
    let shown = knock_of(&carol, &door).await.expect("no knock in /sync");
    assert_knock_state(&shown, &carol.user_id);
    assert_eq!(
        member(&alice, &door, &carol.user_id).await["membership"],
        "knock"
    );

    // Alice invites her; she joins through A and talks.
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{door}/invite"),
            json!({ "user_id": carol.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = carol
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&door)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    carol.send_text(&door, "t1", "thanks for opening").await;
    assert!(heard(&alice, &door, "thanks for opening").await);

    // Dave, of B, knocks on the door too, now through B (which is in the room since Carol
    // joined); A hears of it.
    let dave = b.register("dave").await;
    let (status, body) = knock(&dave, &door, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        membership_becomes(&alice, &door, &dave.user_id, "knock").await,
        "knock"
    );

    // On a porch B is not in, he knocks through A and withdraws the knock through A.
    let porch = knock_room(&alice).await;
    let (status, body) = knock(&dave, &porch, Some(a_name.as_str())).await;
    assert_eq!(status, 200, "{body}");
    assert!(knock_of(&dave, &porch).await.is_some());
    let (status, body) = dave
        .post(
            &format!("/_matrix/client/v3/rooms/{porch}/leave"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        member(&alice, &porch, &dave.user_id).await["membership"],
        "leave"
    );
    let sync = dave.sync(None, 0).await;
    assert!(sync["rooms"]["knock"].get(&porch).is_none(), "{sync}");

    // A server that speaks none of the room's versions is told which version it is.
    let key_file = b.dir.path().join("signing.key");
    let as_b = signing_as(
        &b_name,
        sandcat::signing_key::load_or_create(&key_file).unwrap(),
    );
    let room: OwnedRoomId = door.as_str().try_into().unwrap();
    let mut ask =
        prepare_join_event::v1::Request::new(room, dave.user_id.as_str().try_into().unwrap());
    ask.ver = vec![RoomVersionId::V1];
    let refused = as_b
        .send(&a_name, ask)
        .await
        .expect_err("an old server joined");
    assert!(
        matches!(&refused, sandcat_core::Error::IncompatibleRoomVersion(v) if *v == RoomVersionId::V12),
        "{refused}"
    );
}
