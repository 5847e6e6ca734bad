//! Simplified sliding sync (MSC4186), asked as Element X's room list asks: a list of the
//! user's rooms by recent activity with the state a room list shows, filters, room
//! subscriptions, positions that survive a lost response, long polls, and the extensions
//! (to-device, end-to-end encryption, account data, receipts, typing). Runs on the embedded
//! profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, Client, Server};
use serde_json::{json, Value};

const PATH: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// What Element X's room list asks for.
fn room_list_request(pos: Option<&str>, timeout_ms: u64) -> (String, Value) {
    let mut path = format!("{PATH}?timeout={timeout_ms}");
    if let Some(p) = pos {
        path.push_str(&format!("&pos={}", enc(p)));
    }
    let body = json!({
        "conn_id": "room-list",
        "txn_id": "t1",
        "lists": {
            "all_rooms": {
                "ranges": [[0, 19]],
                "timeline_limit": 1,
                "required_state": [
                    ["m.room.name", ""],
                    ["m.room.encryption", ""],
                    ["m.room.member", "$LAZY"],
                    ["m.room.member", "$ME"],
                ],
                "filters": { "not_room_types": ["m.space"] },
            },
            "invites": {
                "ranges": [[0, 9]],
                "timeline_limit": 0,
                "filters": { "is_invite": true },
            },
        },
        "extensions": {
            "e2ee": { "enabled": true },
            "to_device": { "enabled": true },
            "account_data": { "enabled": true },
            "receipts": { "enabled": true },
            "typing": { "enabled": true },
        },
    });
    (path, body)
}

async fn slide(client: &Client, pos: Option<&str>, timeout_ms: u64) -> Value {
    let (path, body) = room_list_request(pos, timeout_ms);
    let (status, resp) = client.post(&path, body).await;
    assert_eq!(status, 200, "{resp}");
    resp
}

fn pos(resp: &Value) -> String {
    resp["pos"].as_str().expect("pos").to_owned()
}

fn bodies(room: &Value) -> Vec<&str> {
    room["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|e| e["content"]["body"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

async fn device_id(client: &Client) -> String {
    let (_, me) = client.get("/_matrix/client/v3/account/whoami").await;
    me["device_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_room_list_by_recency_then_only_what_changed() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let named = alice
        .create_room(json!({ "name": "Alpha", "preset": "public_chat" }))
        .await;
    bob.join(&named).await;
    let dm = alice
        .create_room(
            json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [bob.user_id] }),
        )
        .await;
    bob.join(&dm).await;
    let (s, _) = alice
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.direct",
                enc(&alice.user_id)
            ),
            json!({ bob.user_id.clone(): [dm] }),
        )
        .await;
    assert_eq!(s, 200);
    let space = alice
        .create_room(json!({ "name": "Space", "creation_content": { "type": "m.space" } }))
        .await;
    alice.send_text(&named, "a1", "older").await;
    bob.send_text(&dm, "b1", "newest").await;

    // The whole list at first: spaces filtered out, the most recently active room first.
    let first = slide(&alice, None, 0).await;
    assert_eq!(first["txn_id"], "t1");
    assert_eq!(first["lists"]["all_rooms"]["count"], 2, "{first}");
    assert_eq!(first["lists"]["invites"]["count"], 0);
    let rooms = &first["rooms"];
    assert!(rooms.get(&space).is_none(), "a space is not in the list");
    let (d, n) = (&rooms[&dm], &rooms[&named]);
    assert!(
        d["bump_stamp"].as_i64() > n["bump_stamp"].as_i64(),
        "{first}"
    );
    assert_eq!(d["initial"], true);
    assert_eq!(d["is_dm"], true);
    assert_eq!(n["is_dm"], false);
    assert_eq!(bodies(d), ["newest"], "the latest event only");
    assert_eq!(d["limited"], true);
    assert_eq!(n["name"], "Alpha");
    assert!(d.get("name").is_none(), "the DM has no name: {d}");
    assert_eq!(d["heroes"][0]["user_id"], bob.user_id.as_str());
    assert_eq!(d["joined_count"], 2);
    assert_eq!(d["notification_count"], 1, "Bob's message is unread");
    // `$LAZY`: the sender of the timeline's event; `$ME`: the user's own.
    let members: Vec<&str> = d["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(members.contains(&bob.user_id.as_str()), "{members:?}");
    assert!(members.contains(&alice.user_id.as_str()), "{members:?}");
    let types: Vec<&str> = n["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"m.room.name") && !types.contains(&"m.room.join_rules"));
    assert!(first["extensions"]["e2ee"]["device_one_time_keys_count"].is_object());
    let global = first["extensions"]["account_data"]["global"]
        .as_array()
        .unwrap();
    assert!(global.iter().any(|e| e["type"] == "m.direct"));

    // Then only what changed: one new message in one room, live.
    bob.send_text(&named, "b2", "hello Alpha").await;
    let second = slide(&alice, Some(&pos(&first)), 0).await;
    let rooms = second["rooms"].as_object().unwrap();
    assert_eq!(rooms.keys().collect::<Vec<_>>(), [&named], "{second}");
    let n = &rooms[&named];
    assert!(n.get("initial").is_none());
    assert_eq!(bodies(n), ["hello Alpha"]);
    assert_eq!(n["num_live"], 1);
    assert!(n["bump_stamp"].as_i64() > first["rooms"][&dm]["bump_stamp"].as_i64());

    // Nothing new: a long poll waits, and answers with what comes.
    let waiting = {
        let alice = alice.clone();
        let p = pos(&second);
        tokio::spawn(async move { slide(&alice, Some(&p), 20_000).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    bob.send_text(&dm, "b3", "are you there?").await;
    let third = waiting.await.unwrap();
    assert_eq!(bodies(&third["rooms"][&dm]), ["are you there?"], "{third}");

    // A response lost on the way: the same position is answered again…
    let again = slide(&alice, Some(&pos(&second)), 0).await;
    assert_eq!(bodies(&again["rooms"][&dm]), ["are you there?"], "{again}");
    // …but a position two answers back, or one never made, starts the connection again.
    let (path, body) = room_list_request(Some(&pos(&first)), 0);
    let (status, err) = alice.post(&path, body).await;
    assert_eq!(
        (status, err["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS")),
        "{err}"
    );
    let (path, body) = room_list_request(Some("nonsense"), 0);
    let (status, err) = alice.post(&path, body).await;
    assert_eq!(
        (status, err["errcode"].as_str()),
        (400, Some("M_UNKNOWN_POS"))
    );
    // Another connection of the same device keeps its own positions.
    let (s, other) = alice
        .post(PATH, json!({ "conn_id": "other", "lists": {} }))
        .await;
    assert_eq!(s, 200, "{other}");
    let latest = slide(&alice, Some(&pos(&again)), 0).await;
    assert!(latest["pos"].is_string());
}

#[tokio::test]
async fn invites_subscriptions_and_the_extensions() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    for i in 0..5 {
        alice
            .send_text(&room, &format!("m{i}"), &format!("message {i}"))
            .await;
    }
    let first = slide(&bob, None, 0).await;
    assert_eq!(bodies(&first["rooms"][&room]), ["message 4"]);

    // An invite shows in the invites list, with the state an invitee is shown.
    let invited = alice
        .create_room(json!({ "name": "Secret", "invite": [bob.user_id] }))
        .await;
    let second = slide(&bob, Some(&pos(&first)), 0).await;
    assert_eq!(second["lists"]["invites"]["count"], 1, "{second}");
    let inv = &second["rooms"][&invited];
    assert_eq!(inv["initial"], true);
    let state = inv["invite_state"].as_array().unwrap();
    assert!(state
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite"));
    assert!(state.iter().any(|e| e["type"] == "m.room.name"));

    // Opening a room subscribes to it with a longer timeline: it is sent afresh with more.
    let (path, mut body) = room_list_request(Some(&pos(&second)), 0);
    body["room_subscriptions"] =
        json!({ room.clone(): { "timeline_limit": 3, "required_state": [["*", "*"]] } });
    let (s, third) = bob.post(&path, body).await;
    assert_eq!(s, 200, "{third}");
    let r = &third["rooms"][&room];
    assert_eq!(r["initial"], true, "{third}");
    assert_eq!(bodies(r), ["message 2", "message 3", "message 4"]);
    let types: Vec<&str> = r["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"m.room.join_rules") && types.contains(&"m.room.create"));
    assert!(r["prev_batch"].is_string());

    // Typing, a read receipt and a to-device message reach the extensions.
    alice.start_typing(&room).await;
    let last = alice.send_text(&room, "m5", "read me").await;
    alice.read_up_to(&room, &last).await;
    let bob_device = device_id(&bob).await;
    let (s, _) = alice
        .put(
            "/_matrix/client/v3/sendToDevice/m.test.ping/td1",
            json!({ "messages": { bob.user_id.clone(): { bob_device: { "n": 1 } } } }),
        )
        .await;
    assert_eq!(s, 200);
    let fourth = slide(&bob, Some(&pos(&third)), 0).await;
    let ext = &fourth["extensions"];
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"][0],
        alice.user_id.as_str(),
        "{ext}"
    );
    let receipts = &ext["receipts"]["rooms"][&room]["content"];
    assert!(
        receipts[&last]["m.read"][&alice.user_id]["ts"].is_u64(),
        "{ext}"
    );
    let to_device = ext["to_device"]["events"].as_array().unwrap();
    assert_eq!(to_device.len(), 1, "{ext}");
    assert_eq!(to_device[0]["type"], "m.test.ping");
    // Acknowledged by `since`, it is not sent again.
    let next_batch = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let (path, mut body) = room_list_request(Some(&pos(&fourth)), 0);
    body["extensions"]["to_device"]["since"] = json!(next_batch);
    let (s, fifth) = bob.post(&path, body).await;
    assert_eq!(s, 200);
    assert!(
        fifth["extensions"]["to_device"]["events"]
            .as_array()
            .is_none_or(|e| e.is_empty()),
        "{fifth}"
    );
}

#[tokio::test]
async fn bad_requests_are_refused_and_the_feature_is_advertised() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let (_, versions) = srv.anon().get("/_matrix/client/versions").await;
    assert_eq!(
        versions["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
    for list in [
        json!({ "ranges": [[5, 2]], "timeline_limit": 1 }),
        json!({ "ranges": [[0, 100000]], "timeline_limit": 1 }),
    ] {
        let (s, err) = alice.post(PATH, json!({ "lists": { "l": list } })).await;
        assert_eq!(
            (s, err["errcode"].as_str()),
            (400, Some("M_INVALID_PARAM")),
            "{err}"
        );
    }
    let (s, err) = alice.post(PATH, json!({ "lists": "no" })).await;
    assert_eq!(
        (s, err["errcode"].as_str()),
        (400, Some("M_BAD_JSON")),
        "{err}"
    );
    let (s, _) = srv.anon().post(PATH, json!({})).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn a_list_filtered_by_space_holds_that_spaces_children() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let space = alice
        .create_room(json!({ "creation_content": { "type": "m.space" } }))
        .await;
    let inside = alice.create_room(json!({ "name": "Inside" })).await;
    let outside = alice.create_room(json!({ "name": "Outside" })).await;
    let unlinked = alice.create_room(json!({ "name": "Unlinked" })).await;
    let server_name = alice.user_id.split(':').nth(1).unwrap().to_owned();
    for (child, via) in [
        (&inside, json!([server_name])),
        // A child event without `via` is a removed link.
        (&unlinked, json!([])),
    ] {
        let (s, r) = alice
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.space.child/{}",
                    enc(&space),
                    enc(child)
                ),
                json!({ "via": via }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let ask = |spaces: Value| {
        json!({
            "lists": {
                "in_space": {
                    "ranges": [[0, 9]],
                    "timeline_limit": 0,
                    "filters": { "spaces": spaces },
                },
                "all": { "ranges": [[0, 9]], "timeline_limit": 0 },
            },
        })
    };
    let (s, resp) = alice.post(PATH, ask(json!([space]))).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["lists"]["in_space"]["count"], 1, "{resp}");
    assert_eq!(resp["lists"]["all"]["count"], 4, "{resp}");
    assert!(resp["rooms"][&inside].is_object());
    assert!(resp["rooms"][&outside].is_object());

    // A space the user is not in filters everything out; a malformed id is refused.
    let bob = srv.register("bob").await;
    let mine = bob.create_room(json!({})).await;
    let (s, resp) = bob.post(PATH, ask(json!([space]))).await;
    assert_eq!(s, 200, "{resp}");
    assert_eq!(resp["lists"]["in_space"]["count"], 0, "{resp}");
    assert!(resp["rooms"][&mine].is_object());
    let (s, err) = bob.post(PATH, ask(json!(["not a room id"]))).await;
    assert_eq!((s, err["errcode"].as_str()), (400, Some("M_BAD_JSON")));
}
