//! Reports (`/rooms/{roomId}/report/{eventId}`, `/rooms/{roomId}/report`,
//! `/users/{userId}/report`): a member reports an event, anyone a room or a user; an event
//! of a room the reporter is not in, an unknown room or user, and an over-long reason are
//! refused; `sandcat reports` then lists what was kept, newest first. Runs on the embedded
//! profile and, with `SANDCAT_TEST_PROFILE=pipeline`, on the pipeline.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use common::{enc, pipeline_profile, use_pipeline, Server};
use sandcat_core::ports::Reported;
use serde_json::json;

#[tokio::test]
async fn reports_are_checked_and_kept_for_the_admins() {
    let srv = Server::start().await;
    let alice = srv.register("alice").await;
    let bob = srv.register("bob").await;
    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let event = alice.send_text(&room, "t1", "something rude").await;

    // Bob is not in the room: to him the event is not there.
    let event_path = format!("/_matrix/client/v3/rooms/{room}/report/{event}");
    let (status, body) = bob.post(&event_path, json!({ "reason": "rude" })).await;
    assert_eq!((status, &body["errcode"]), (404, &json!("M_NOT_FOUND")));
    let (status, body) = alice.post(&event_path, json!({ "reason": "rude" })).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/report"),
            json!({ "reason": "spam room" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = bob
        .post(
            "/_matrix/client/v3/rooms/!nowhere:localhost/report",
            json!({ "reason": "x" }),
        )
        .await;
    assert_eq!(status, 404);
    let user_path = |user: &str| format!("/_matrix/client/v3/users/{}/report", enc(user));
    let (status, body) = bob
        .post(
            &user_path(&alice.user_id),
            json!({ "reason": "harassment" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ghost = alice.user_id.replace("alice", "ghost");
    let (status, _) = bob.post(&user_path(&ghost), json!({ "reason": "x" })).await;
    assert_eq!(status, 404);
    let (status, body) = bob
        .post(
            &user_path(&alice.user_id),
            json!({ "reason": "x".repeat(1001) }),
        )
        .await;
    assert_eq!((status, &body["errcode"]), (400, &json!("M_INVALID_PARAM")));

    // What the admins read.
    let dir = srv.stop().await;
    let mut config = sandcat::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    if pipeline_profile() {
        use_pipeline(&mut config, dir.path()).await;
    }
    let reports = sandcat::latest_reports(&config, 10).await.unwrap();
    let seen: Vec<(String, Reported, String)> = reports
        .into_iter()
        .map(|r| (r.reporter.to_string(), r.subject, r.reason))
        .collect();
    let room_id = room.as_str().try_into().unwrap();
    assert_eq!(
        seen,
        [
            (
                bob.user_id.clone(),
                Reported::User(alice.user_id.as_str().try_into().unwrap()),
                "harassment".to_owned()
            ),
            (
                bob.user_id.clone(),
                Reported::Room(room_id),
                "spam room".to_owned()
            ),
            (
                alice.user_id.clone(),
                Reported::Event(
                    room.as_str().try_into().unwrap(),
                    event.as_str().try_into().unwrap()
                ),
                "rude".to_owned()
            ),
        ]
    );
}
