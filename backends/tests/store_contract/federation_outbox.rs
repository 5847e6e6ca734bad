//! EDUs kept for other servers: each at a stream position of its own, read back per
//! destination within a window of the stream, found by destination, and forgotten once
//! accepted; a restarted instance finds them again.

use ruma::{server_name, OwnedServerName};
use sandcat_core::ports::FederationOutbox;

use super::*;

on_both_backends!(edus_wait_at_stream_positions_until_forgotten);

async fn edus_wait_at_stream_positions_until_forgotten(db: Db) {
    let store = db.open().await;
    let (one, two) = (server_name!("one.example"), server_name!("two.example"));
    let before = store.current_pos();
    let queued: Vec<(OwnedServerName, String)> = vec![
        (one.to_owned(), r#"{"n":1}"#.into()),
        (two.to_owned(), r#"{"n":2}"#.into()),
        (one.to_owned(), r#"{"n":3}"#.into()),
    ];
    store.queue_edus(&queued).await.unwrap();
    let now = store.current_pos();
    assert_eq!(now, before + 3, "a position each, published");

    let for_one = store.queued_edus(one, before, now, 10).await.unwrap();
    let edus: Vec<&str> = for_one.iter().map(|e| e.edu.as_str()).collect();
    assert_eq!(edus, [r#"{"n":1}"#, r#"{"n":3}"#], "in the order queued");
    assert!(for_one[0].pos < for_one[1].pos);
    // The window and the limit are kept to.
    let first = store.queued_edus(one, before, now, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].edu, r#"{"n":1}"#);
    let later = store.queued_edus(one, first[0].pos, now, 10).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].edu, r#"{"n":3}"#);
    assert!(store
        .queued_edus(one, now, now + 10, 10)
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
    let left = store.queued_edus(one, 0, now, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].edu, r#"{"n":3}"#);
    assert_eq!(store.queued_edus(two, 0, now, 10).await.unwrap().len(), 1);
    store.queue_edus(&[]).await.unwrap();
    assert_eq!(store.current_pos(), now, "nothing queued takes no position");
}
