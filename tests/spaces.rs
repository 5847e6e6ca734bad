//! Room summaries (`/room_summary`), a room's aliases, and space hierarchies
//! (`/rooms/{roomId}/hierarchy`): a space with a public room, a private
//! room, a sub-space and a child without `via`, walked breadth first in the children's
//! `order`, paged, cut at a depth, and limited to suggested rooms; each user sees only what
//! they may; and, across two servers over loopback TLS, a user of the other server sees the
//! rooms his server is not in as the space's server shows them (`/hierarchy` of the
//! federation API). Runs on the embedded profile and, with `SANDCAT_TEST_PROFILE=pipeline`,
//! on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    federation::{federating, join_via},
    Client, Server,
};
use serde_json::{json, Value};

/// The rooms of a space: its id and the ids of its children, by name.
struct Space {
    id: String,
    public: String,
    private: String,
    sub: String,
    deep: String,
}

async fn room(owner: &Client, name: &str, preset: &str, space: bool) -> String {
    let mut body = json!({ "preset": preset, "name": name });
    if space {
        body["creation_content"] = json!({ "type": "m.space" });
    }
    owner.create_room(body).await
}

async fn add_child(owner: &Client, parent: &str, child: &str, content: Value) {
    let (status, body) = owner
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{parent}/state/m.space.child/{}",
                enc(child)
            ),
            content,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Alice's space on her server (`server`): Public (suggested), Private, and Sub (a space
/// holding Deep), in that order; and a child whose `via` is empty, which is no child.
async fn space_of(alice: &Client, server: &str) -> Space {
    let id = room(alice, "Space", "public_chat", true).await;
    let public = room(alice, "Public", "public_chat", false).await;
    let private = room(alice, "Private", "private_chat", false).await;
    let sub = room(alice, "Sub", "public_chat", true).await;
    let deep = room(alice, "Deep", "public_chat", false).await;
    let gone = room(alice, "Gone", "public_chat", false).await;
    let via = json!([server]);
    add_child(alice, &id, &sub, json!({ "via": via, "order": "c" })).await;
    add_child(alice, &id, &private, json!({ "via": via, "order": "b" })).await;
    add_child(
        alice,
        &id,
        &public,
        json!({ "via": via, "order": "a", "suggested": true }),
    )
    .await;
    add_child(alice, &id, &gone, json!({ "via": [] })).await;
    add_child(alice, &sub, &deep, json!({ "via": via })).await;
    Space {
        id,
        public,
        private,
        sub,
        deep,
    }
}

async fn hierarchy(client: &Client, space: &str, query: &str) -> (u16, Value) {
    client
        .get(&format!(
            "/_matrix/client/v1/rooms/{}/hierarchy{query}",
            enc(space)
        ))
        .await
}

/// The names of the rooms of a hierarchy page, in order.
fn names(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_space_is_walked_as_each_user_may_see_it() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let server = alice.user_id.split_once(':').unwrap().1.to_owned();
    let space = space_of(&alice, &server).await;

    // Alice sees every room, breadth first, the children in their order.
    let (status, page) = hierarchy(&alice, &space.id, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Space", "Public", "Private", "Sub", "Deep"]);
    assert!(page.get("next_batch").is_none(), "{page}");
    let top = &page["rooms"][0];
    assert_eq!(top["room_type"], "m.space", "{top}");
    assert_eq!(top["room_id"], space.id.as_str());
    let children: Vec<&str> = top["children_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(children.len(), 3, "the child without via is none: {top}");
    for child in [&space.public, &space.private, &space.sub] {
        assert!(children.contains(&child.as_str()), "{top}");
    }
    assert!(
        top["children_state"][0]["origin_server_ts"].is_u64(),
        "{top}"
    );

    // Bob is in none of them: the private room is not his to see.
    let (status, page) = hierarchy(&bob, &space.id, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Space", "Public", "Sub", "Deep"]);
    let (status, body) = hierarchy(&bob, &space.private, "").await;
    assert_eq!(status, 403, "{body}");

    // Pages of two, a depth of one, suggested rooms only.
    let (_, first) = hierarchy(&alice, &space.id, "?limit=2").await;
    assert_eq!(names(&first), ["Space", "Public"]);
    let next = first["next_batch"].as_str().expect("a second page");
    let (_, second) = hierarchy(&alice, &space.id, &format!("?limit=2&from={next}")).await;
    assert_eq!(names(&second), ["Private", "Sub"]);
    let next = second["next_batch"].as_str().expect("a third page");
    let (_, third) = hierarchy(&alice, &space.id, &format!("?limit=2&from={next}")).await;
    assert_eq!(names(&third), ["Deep"]);
    assert!(third.get("next_batch").is_none(), "{third}");
    let (_, shallow) = hierarchy(&alice, &space.id, "?max_depth=1").await;
    assert_eq!(names(&shallow), ["Space", "Public", "Private", "Sub"]);
    let (_, suggested) = hierarchy(&alice, &space.id, "?suggested_only=true").await;
    assert_eq!(names(&suggested), ["Space", "Public"]);
    let (status, body) = hierarchy(&alice, &space.id, "?from=nonsense").await;
    assert_eq!(status, 400, "{body}");

    // A room's summary: with the asker's membership, to anyone for an open room, to none
    // but its members for a private one.
    let summary = |room: &str| format!("/_matrix/client/v1/room_summary/{}", enc(room));
    let (status, body) = alice.get(&summary(&space.private)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["name"], &body["membership"]),
        (&json!("Private"), &json!("join"))
    );
    let (status, body) = bob.get(&summary(&space.public)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Public");
    assert!(body.get("membership").is_none(), "{body}");
    assert!(body.get("children_state").is_none(), "{body}");
    let (status, body) = srv.anon().get(&summary(&space.sub)).await;
    assert_eq!(
        (status, &body["room_type"]),
        (200, &json!("m.space")),
        "{body}"
    );
    for asker in [&bob, &srv.anon()] {
        let (status, _) = asker.get(&summary(&space.private)).await;
        assert_eq!(status, 404);
    }

    // A room's aliases, for its members.
    let alias = format!("#atrium:{server}");
    let (status, body) = alice
        .put(
            &format!("/_matrix/client/v3/directory/room/{}", enc(&alias)),
            json!({ "room_id": space.public }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/aliases",
            space.public
        ))
        .await;
    assert_eq!((status, &body["aliases"]), (200, &json!([alias])), "{body}");
    let (status, _) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/aliases",
            space.public
        ))
        .await;
    assert_eq!(status, 403);
    let (status, body) = bob.get(&summary(&alias)).await;
    assert_eq!(
        (status, &body["room_id"]),
        (200, &json!(space.public)),
        "{body}"
    );
}

#[tokio::test]
async fn a_space_of_another_server_is_walked_through_it() {
    let certs = tempfile::tempdir().unwrap();
    let (a, a_name) = federating(certs.path()).await;
    let (b, _) = federating(certs.path()).await;
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let space = space_of(&alice, a_name.as_str()).await;

    // Bob, of B, joins the space; B is in none of its rooms, so it asks A for each.
    let (status, body) = join_via(&bob, &space.id, &a_name).await;
    assert_eq!(status, 200, "{body}");
    let (status, page) = hierarchy(&bob, &space.id, "").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(names(&page), ["Space", "Public", "Sub", "Deep"]);
    let sub = page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == space.sub.as_str())
        .expect("the sub-space");
    assert_eq!(sub["room_type"], "m.space", "{sub}");
    assert_eq!(sub["children_state"][0]["state_key"], space.deep.as_str());
    assert_eq!(sub["num_joined_members"], 1, "{sub}");

    // The summary of a room B is not in comes from A.
    let (status, body) = bob
        .get(&format!(
            "/_matrix/client/v1/room_summary/{}?via={}",
            enc(&space.public),
            enc(a_name.as_str())
        ))
        .await;
    assert_eq!((status, &body["name"]), (200, &json!("Public")), "{body}");

    // Once Bob is in the private room, A shows it to B too.
    let (status, body) = alice
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", space.private),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = join_via(&bob, &space.private, &a_name).await;
    assert_eq!(status, 200, "{body}");
    let (_, page) = hierarchy(&bob, &space.id, "").await;
    assert_eq!(names(&page), ["Space", "Public", "Private", "Sub", "Deep"]);
}
