//! The Sandcat mapping across servers, over loopback TLS: a Sandcat group (a room) takes a
//! member of another server, who is invited through that server, joins from there, appears
//! among the group's members, and talks with the Sandcat client over its WebSocket; a friend
//! request to a user of another server is refused with a reason. Runs on the embedded profile
//! and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{
    enc,
    federation::{federating, heard, sync_until},
    native::{next_of, sandcat_user, send_frame, text},
};
use serde_json::json;

#[tokio::test]
async fn a_sandcat_group_has_a_member_of_another_server() {
    let certs = tempfile::tempdir().unwrap();
    let (a, _) = federating(certs.path()).await;
    let (b, _) = federating(certs.path()).await;
    let sam = sandcat_user(&a, "sam").await;
    let bob = b.register("bob").await;
    let mut ws = sam.connect(0).await;

    // Sam makes a group with Bob of B in it: B gets the invite.
    let (status, made) = sam
        .call(
            reqwest::Method::POST,
            &format!("/group/{}", sam.id),
            Some(json!({ "id": "", "owner": sam.id, "avatar": "", "group_name": "Across", "members_id": [bob.user_id] })),
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let group = made["info"]["id"].as_str().unwrap().to_owned();
    let invited = sync_until(&bob, None, |s| s["rooms"]["invite"].get(&group).is_some())
        .await
        .is_some();
    assert!(invited, "Bob never saw the group's invite");
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", enc(&group)),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Sam's client lists him among the members, by his Matrix id.
    let (status, members) = sam
        .call(
            reqwest::Method::GET,
            &format!("/group/member/{}/{}", sam.id, enc(&group)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{members}");
    let ids: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["user_id"].as_str())
        .collect();
    assert!(ids.contains(&bob.user_id.as_str()), "{members}");

    // Bob's words reach Sam's WebSocket; Sam's reach Bob's /sync.
    bob.send_text(&group, "g1", "hello from B").await;
    let m = next_of(&mut ws, 1).await;
    assert_eq!(
        (m.group_id.as_str(), m.send_id.as_str()),
        (group.as_str(), bob.user_id.as_str())
    );
    assert_eq!(String::from_utf8(m.content).unwrap(), "hello from B");
    let mut gm = text(&sam.id, &group, "l1", "hello from Sandcat", 1);
    gm.group_id = group.clone();
    send_frame(&mut ws, &gm).await;
    assert!(heard(&bob, &group, "hello from Sandcat").await);

    // A friend request to a user of another server is refused, saying why.
    let (status, body) = sam
        .call(
            reqwest::Method::POST,
            "/friend",
            Some(json!({ "user_id": sam.id, "friend_id": bob.user_id, "apply_msg": "hi", "req_remark": "", "source": "search" })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("another server"), "{body}");
}
