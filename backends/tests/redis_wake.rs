//! Cross-instance wake-ups through a real Redis on loopback (`scripts/services.sh` starts one;
//! `SANDCAT_TEST_REDIS` overrides its URL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use std::time::Duration;

use std::sync::Arc;

use ruma::{room_id, user_id};
use sandcat_backends::redis_wake::RedisWake;
use sandcat_core::{ephemeral::Ephemeral, notifier::Notifier};

fn url() -> String {
    std::env::var("SANDCAT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Waits for a bump of `rx`; the timeout only turns a hang into a failure.
async fn woken(rx: &mut tokio::sync::watch::Receiver<u64>) -> bool {
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn a_write_on_one_instance_wakes_the_others() {
    let channel = format!("sandcat-test-{}", sandcat_core::token::random_string(6));
    let (a, b) = (Notifier::default(), Notifier::default());
    let mut b_rx = b.subscribe();
    let _wa = match RedisWake::start(&url(), &channel, a.clone(), None, None).await {
        Ok(w) => w,
        Err(e) => panic!(
            "no Redis at {} ({e}); start one with scripts/services.sh",
            url()
        ),
    };
    let _wb = RedisWake::start(&url(), &channel, b.clone(), None, None)
        .await
        .unwrap();
    // Each subscriber announces its (re)subscription locally; wait for B's.
    assert!(woken(&mut b_rx).await, "B subscribed");
    let mut a_rx = a.subscribe();
    let mut b_rx = b.subscribe();
    a.notify();
    assert!(woken(&mut b_rx).await, "B woke for A's write");
    assert!(woken(&mut a_rx).await, "A woke locally");
    // And the other way round.
    let mut a_rx = a.subscribe();
    b.notify();
    assert!(woken(&mut a_rx).await, "A woke for B's write");
}

#[tokio::test]
async fn unreachable_redis_fails_fast() {
    let err = RedisWake::start("redis://127.0.0.1:9", "x", Notifier::default(), None, None)
        .await
        .err()
        .expect("unreachable");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

/// Typing and presence set on one instance show on the other, with counters that compare.
#[tokio::test]
async fn typing_and_presence_reach_the_other_instances() {
    let channel = format!("sandcat-test-{}", sandcat_core::token::random_string(6));
    let (na, nb) = (Notifier::default(), Notifier::default());
    let (ea, eb) = (
        Arc::new(Ephemeral::new(na.clone())),
        Arc::new(Ephemeral::new(nb.clone())),
    );
    let mut b_rx = nb.subscribe();
    let _wa = RedisWake::start(&url(), &channel, na, None, Some(ea.clone()))
        .await
        .expect("Redis is running (scripts/services.sh)");
    let _wb = RedisWake::start(&url(), &channel, nb.clone(), None, Some(eb.clone()))
        .await
        .unwrap();
    assert!(woken(&mut b_rx).await, "B subscribed");
    let room = room_id!("!r:x");
    let alice = user_id!("@alice:x");
    let since = eb.current();
    let mut b_rx = nb.subscribe();
    ea.set_typing(room, alice, true, 30_000);
    let mut seen = None;
    for _ in 0..20 {
        seen = eb.typing_since(room, since);
        if seen.is_some() {
            break;
        }
        assert!(woken(&mut b_rx).await, "B woke");
    }
    assert_eq!(seen, Some(vec![alice.to_owned()]), "B sees alice typing");
    assert!(eb.current() > since);
    // Stopping is a change too, and presence travels the same way.
    let since = eb.current();
    ea.set_typing(room, alice, false, 0);
    ea.set_presence(alice, "online", Some("here".into()));
    let mut stopped = None;
    for _ in 0..20 {
        stopped = eb.typing_since(room, since);
        if stopped.is_some() && eb.presence(alice).is_some() {
            break;
        }
        assert!(woken(&mut b_rx).await, "B woke");
    }
    assert_eq!(stopped, Some(vec![]));
    let p = eb.presence(alice).expect("presence arrived");
    assert_eq!(
        (p.state.as_str(), p.status_msg.as_deref()),
        ("online", Some("here"))
    );
}
