//! Rooms made at once. In room version 12 a room's id is its create event's hash, so one
//! user's rooms made in one millisecond with the same content would share an id: each must
//! still get a room of its own.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::collections::HashSet;

use common::Server;
use serde_json::json;

#[tokio::test]
async fn identical_rooms_made_at_once_get_ids_of_their_own() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let made = futures::future::join_all((0..20).map(|_| {
        let alice = alice.clone();
        async move {
            alice
                .post(
                    "/_matrix/client/v3/createRoom",
                    json!({ "room_version": "12" }),
                )
                .await
        }
    }))
    .await;
    let mut ids = HashSet::new();
    for (status, body) in made {
        assert_eq!(status, 200, "createRoom: {body}");
        ids.insert(body["room_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 20, "twenty rooms, twenty ids");
    // Sequential ones too, faster than a millisecond each on a quick machine.
    let mut last = String::new();
    for _ in 0..20 {
        let id = alice.create_room(json!({ "room_version": "12" })).await;
        assert_ne!(id, last);
        assert!(ids.insert(id.clone()), "a room id came back twice");
        last = id;
    }
}
