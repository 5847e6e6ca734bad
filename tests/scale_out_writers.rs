//! Two instances write at full speed to rooms of their own, as clients of each would, and one
//! is killed with SIGKILL in the middle. Writes of different rooms commit concurrently, out of
//! stream order, on both instances; a reader long-polling `/sync` on the survivor the whole
//! time must still get every message of every room once, in order: the stream never shows a
//! position before everything below it is readable. The real binary, on the pipeline services
//! `scripts/services.sh` starts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    cluster::{bodies, on, start},
    enc, register_at, use_pipeline, Client,
};
use serde_json::{json, Value};

/// Messages each writer sends at most.
const BURST: usize = 300;

/// Sends numbered messages into `rooms` in turn as fast as answers come; stops at the first
/// send that gets no answer (its instance died). Returns what was acknowledged and what is in
/// doubt, as `(room, txn, body)`.
async fn burst(
    who: Client,
    tag: &'static str,
    rooms: Vec<String>,
    acked: Arc<Mutex<Vec<(String, String)>>>,
) -> Option<(String, String, String)> {
    for i in 0..BURST {
        let room = &rooms[i % rooms.len()];
        let (txn, body) = (format!("{tag}{i}"), format!("{tag} {i}"));
        let res = who
            .http
            .put(format!(
                "{}/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                who.base,
                enc(room)
            ))
            .bearer_auth(who.token.as_deref().unwrap())
            .json(&json!({ "msgtype": "m.text", "body": body }))
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => acked.lock().unwrap().push((room.clone(), body)),
            _ => return Some((room.clone(), txn, body)),
        }
    }
    None
}

/// Long-polls `/sync` from `since` until every room shows `end`, collecting each room's
/// message bodies in the order the responses gave them.
async fn follow(reader: Client, since: String, rooms: Vec<String>) -> HashMap<String, Vec<String>> {
    let filter = enc(&json!({ "room": { "timeline": { "limit": 1000 } } }).to_string());
    let mut since = since;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut ended = HashSet::new();
    while ended.len() < rooms.len() {
        let (s, body): (u16, Value) = reader
            .get(&format!(
                "/_matrix/client/v3/sync?timeout=10000&filter={filter}&since={}",
                enc(&since)
            ))
            .await;
        assert_eq!(s, 200, "sync: {body}");
        for room in &rooms {
            let timeline = &body["rooms"]["join"][room]["timeline"];
            assert_ne!(
                timeline["limited"],
                json!(true),
                "the filter keeps whole timelines"
            );
            for ev in timeline["events"].as_array().into_iter().flatten() {
                if ev["type"] != "m.room.message" {
                    continue;
                }
                let text = ev["content"]["body"].as_str().unwrap().to_owned();
                if text == "end" {
                    ended.insert(room.clone());
                } else {
                    seen.entry(room.clone()).or_default().push(text);
                }
            }
        }
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_write_disjoint_rooms_at_full_speed_and_one_dies() {
    let data = tempfile::tempdir().unwrap();
    let mut config = sandcat::Config::default();
    use_pipeline(&mut config, data.path()).await;
    let a = start(&config, data.path(), "a").await;
    let b = start(&config, data.path(), "b").await;

    let alice = register_at(&a.base, "alice").await;
    let carol = register_at(&b.base, "carol").await;
    let bob = register_at(&b.base, "bob").await;
    let mut rooms_a = Vec::new();
    let mut rooms_b = Vec::new();
    for _ in 0..2 {
        rooms_a.push(alice.create_room(json!({ "preset": "public_chat" })).await);
        rooms_b.push(carol.create_room(json!({ "preset": "public_chat" })).await);
    }
    let all: Vec<String> = rooms_a.iter().chain(&rooms_b).cloned().collect();
    for r in &all {
        bob.join(r).await;
    }
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = tokio::spawn(follow(bob.clone(), since, all.clone()));

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let on_a = tokio::spawn(burst(alice.clone(), "a", rooms_a.clone(), acked.clone()));
    let on_b = tokio::spawn(burst(carol.clone(), "b", rooms_b.clone(), acked.clone()));
    let count_a = || {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| rooms_a.contains(r))
            .count()
    };
    while count_a() < 60 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(a); // SIGKILL
    let in_doubt = on_a.await.unwrap();
    assert!(on_b.await.unwrap().is_none(), "B answered every send");

    // Alice retries her send in doubt on B, with the same transaction id.
    let alice_b = on(&b, &alice);
    if let Some((room, txn, body)) = &in_doubt {
        let (s, r) = alice_b
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(room)
                ),
                json!({ "msgtype": "m.text", "body": body }),
            )
            .await;
        assert_eq!(s, 200, "retry on B: {r}");
        acked.lock().unwrap().push((room.clone(), body.clone()));
    }
    for r in &rooms_a {
        alice_b.send_text(r, &format!("end-{r}"), "end").await;
    }
    for r in &rooms_b {
        carol.send_text(r, &format!("end-{r}"), "end").await;
    }
    let seen = tokio::time::timeout(Duration::from_secs(90), reader)
        .await
        .expect("the reader on B saw the end of every room")
        .unwrap();

    let acked = acked.lock().unwrap().clone();
    let mut total = 0;
    for room in &all {
        let logged: Vec<String> = bodies(&bob, room)
            .await
            .into_iter()
            .filter(|t| t != "end")
            .collect();
        let sent: Vec<String> = acked
            .iter()
            .filter(|(r, _)| r == room)
            .map(|(_, t)| t.clone())
            .collect();
        assert_eq!(
            logged, sent,
            "{room}: every acknowledged send once, in order"
        );
        assert_eq!(
            seen.get(room).cloned().unwrap_or_default(),
            logged,
            "{room}: /sync on B showed the room's log, nothing skipped, nothing twice"
        );
        total += logged.len();
    }
    println!(
        "disjoint writers: {total} messages in 4 rooms from two instances, one killed after {} of its sends; /sync on the survivor saw each once, in order",
        acked.iter().filter(|(r, _)| rooms_a.contains(r)).count()
    );
}
