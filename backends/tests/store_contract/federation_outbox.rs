//! EDUs kept for other servers: each at a stream position of its own, read back per
//! destination within a window of the stream (those expired left out), found by
//! destination, and forgotten once accepted; a restarted instance finds them again.

use ruma::{server_name, ServerName};
use sandcat_core::ports::{FederationOutbox, NewEdu};

use super::*;

on_both_backends!(edus_wait_at_stream_positions_until_forgotten);

const NOW: u64 = 1_800_000_000_000;

fn edu(destination: &ServerName, n: u32, expires_ms: Option<u64>) -> NewEdu {
    NewEdu {
        destination: destination.to_owned(),
        edu: format!(r#"{{"n":{n}}}"#),
        expires_ms,
    }
}

async fn edus_wait_at_stream_positions_until_forgotten(db: Db) {
    let store = db.open().await;
    let (one, two) = (server_name!("one.example"), server_name!("two.example"));
    let before = store.current_pos();
    store
        .queue_edus(&[
            edu(one, 1, None),
            edu(two, 2, None),
            edu(one, 3, Some(NOW + 1)),
            edu(one, 4, Some(NOW - 1)),
        ])
        .await
        .unwrap();
    let now = store.current_pos();
    assert_eq!(now, before + 4, "a position each, published");

    let for_one = store.queued_edus(one, before, now, NOW, 10).await.unwrap();
    let edus: Vec<&str> = for_one.iter().map(|e| e.edu.as_str()).collect();
    assert_eq!(
        edus,
        [r#"{"n":1}"#, r#"{"n":3}"#],
        "in the order queued, the expired one left out"
    );
    assert!(for_one[0].pos < for_one[1].pos);
    let later = store
        .queued_edus(one, before, now, NOW + 2, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1, "the second expires too: {later:?}");
    // The window and the limit are kept to.
    let first = store.queued_edus(one, before, now, NOW, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].edu, r#"{"n":1}"#);
    let rest = store
        .queued_edus(one, first[0].pos, now, NOW, 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].edu, r#"{"n":3}"#);
    assert!(store
        .queued_edus(one, now, now + 10, NOW, 10)
        .await
        .unwrap()
        .is_empty());

    let mut found = store.edu_destinations(before, now).await.unwrap();
    found.sort();
    assert_eq!(
        found,
        [
            (one.to_owned(), for_one[0].pos),
            (two.to_owned(), before + 2)
        ]
    );
    assert!(store.edu_destinations(now, now).await.unwrap().is_empty());

    // Forgetting one server's EDUs up to a position leaves the rest.
    store.forget_edus(one, for_one[0].pos).await.unwrap();
    let store = db.open().await;
    let left = store.queued_edus(one, 0, now, NOW, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].edu, r#"{"n":3}"#);
    assert_eq!(
        store.queued_edus(two, 0, now, NOW, 10).await.unwrap().len(),
        1
    );
    store.forget_edus(one, now).await.unwrap();
    assert!(store
        .edu_destinations(0, now)
        .await
        .unwrap()
        .iter()
        .all(|(s, _)| s != one));
    store.queue_edus(&[]).await.unwrap();
    assert_eq!(store.current_pos(), now, "nothing queued takes no position");
}
