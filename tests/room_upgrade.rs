//! Room upgrades (`POST /rooms/{roomId}/upgrade`), as Element's "upgrade room" does them: the
//! new room names its predecessor and starts with the old one's name, topic, rules and power
//! levels; the alias and the directory listing move; the old room gets a tombstone naming the
//! new one and only moderators may speak there after. Only a user with the power to send a
//! tombstone may upgrade, and only to a version this server speaks. Runs on the embedded
//! profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Client, Server};
use serde_json::{json, Value};

async fn state(client: &Client, room: &str, kind: &str) -> (u16, Value) {
    client
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/state/{kind}/",
            enc(room)
        ))
        .await
}

async fn upgrade(client: &Client, room: &str, version: &str) -> (u16, Value) {
    client
        .post(
            &format!("/_matrix/client/v3/rooms/{}/upgrade", enc(room)),
            json!({ "new_version": version }),
        )
        .await
}

#[tokio::test]
async fn an_upgraded_room_hands_over_to_its_successor() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let old = alice
        .create_room(json!({
            "preset": "public_chat", "visibility": "public", "room_version": "11",
            "name": "Old hall", "topic": "all things", "room_alias_name": "hall",
        }))
        .await;
    bob.join(&old).await;

    // Bob has no power to send a tombstone; nobody upgrades to an unknown version.
    let (s, err) = upgrade(&bob, &old, "12").await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (403, Some("M_FORBIDDEN")),
        "{err}"
    );
    let (s, err) = upgrade(&alice, &old, "99").await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (400, Some("M_UNSUPPORTED_ROOM_VERSION"))
    );

    let (s, up) = upgrade(&alice, &old, "12").await;
    assert_eq!(s, 200, "{up}");
    let new = up["replacement_room"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // The new room: its predecessor, version, name, topic and rules.
    let (_, create) = state(&alice, &new, "m.room.create").await;
    assert_eq!(create["predecessor"]["room_id"], old.as_str(), "{create}");
    assert_eq!(create["room_version"], "12");
    assert_eq!(
        state(&alice, &new, "m.room.name").await.1["name"],
        "Old hall"
    );
    assert_eq!(
        state(&alice, &new, "m.room.topic").await.1["topic"],
        "all things"
    );
    assert_eq!(
        state(&alice, &new, "m.room.join_rules").await.1["join_rule"],
        "public"
    );
    let (_, power) = state(&alice, &new, "m.room.power_levels").await;
    assert!(
        power["users"].get(&alice.user_id).is_none(),
        "a v12 creator is not listed: {power}"
    );
    // The alias and the directory listing moved.
    let (_, alias) = alice
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            enc("#hall:localhost")
        ))
        .await;
    assert_eq!(alias["room_id"], new.as_str(), "{alias}");
    let (_, listed) = srv.anon().get("/_matrix/client/v3/publicRooms").await;
    let ids: Vec<&str> = listed["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [new.as_str()], "{listed}");

    // The old room: a tombstone naming the new one; members may no longer speak there.
    let (_, tombstone) = state(&alice, &old, "m.room.tombstone").await;
    assert_eq!(tombstone["replacement_room"], new.as_str(), "{tombstone}");
    let (s, _) = bob
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/late",
                enc(&old)
            ),
            json!({ "msgtype": "m.text", "body": "too late" }),
        )
        .await;
    assert_eq!(s, 403);
    // Bob follows the tombstone into the new room.
    bob.join(&new).await;
    bob.send_text(&new, "t1", "here now").await;
}

/// `timestamp_to_event` ("jump to date") lives with the room's history: the event nearest a
/// moment, either way; nothing before the room began.
#[tokio::test]
async fn the_event_nearest_a_moment() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let carol = srv.register("carol").await;
    let room = alice.create_room(json!({})).await;
    let at = |client: &Client, ts: u64, dir: &'static str| {
        let client = client.clone();
        let room = room.clone();
        async move {
            client
                .get(&format!(
                    "/_matrix/client/v1/rooms/{}/timestamp_to_event?ts={ts}&dir={dir}",
                    enc(&room)
                ))
                .await
        }
    };
    let first = alice.send_text(&room, "a", "first").await;
    let (_, ev) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            enc(&room),
            enc(&first)
        ))
        .await;
    let ts = ev["origin_server_ts"].as_u64().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = alice.send_text(&room, "b", "second").await;

    let (s, back) = at(&alice, ts, "b").await;
    assert_eq!(s, 200, "{back}");
    assert_eq!(back["event_id"], first.as_str());
    assert_eq!(back["origin_server_ts"], ts);
    let (_, forward) = at(&alice, ts + 1, "f").await;
    assert_eq!(forward["event_id"], second.as_str(), "{forward}");
    let (s, err) = at(&alice, 1, "b").await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (404, Some("M_NOT_FOUND")),
        "{err}"
    );
    // Someone outside the room learns nothing of it.
    let (s, _) = at(&carol, ts, "b").await;
    assert_eq!(s, 403);
}

/// `/rooms/{roomId}/initialSync`: a member's snapshot of one room — membership, the latest
/// messages oldest first with a token to page back, the state, the directory visibility;
/// nothing for a stranger.
#[tokio::test]
async fn a_rooms_initial_sync() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let carol = srv.register("carol").await;
    let room = alice
        .create_room(json!({ "name": "Snapshot", "visibility": "public", "preset": "public_chat" }))
        .await;
    for i in 0..25 {
        alice
            .send_text(&room, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let path = format!("/_matrix/client/v3/rooms/{}/initialSync", enc(&room));
    let (s, snap) = alice.get(&path).await;
    assert_eq!(s, 200, "{snap}");
    assert_eq!(snap["room_id"], room.as_str());
    assert_eq!(snap["membership"], "join");
    assert_eq!(snap["visibility"], "public");
    let chunk = snap["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 20);
    assert_eq!(chunk.last().unwrap()["content"]["body"], "message 24");
    assert_eq!(chunk[0]["content"]["body"], "message 5", "oldest first");
    // The start token pages on back.
    let start = snap["messages"]["start"].as_str().unwrap();
    let (_, older) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5&from={}",
            enc(&room),
            enc(start)
        ))
        .await;
    assert_eq!(older["chunk"][0]["content"]["body"], "message 4", "{older}");
    assert!(snap["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Snapshot"));
    let (s, _) = carol.get(&path).await;
    assert_eq!(s, 403);
}
