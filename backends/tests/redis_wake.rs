//! Cross-instance wake-ups through a real Redis on loopback (`scripts/services.sh` starts one;
//! `SANDCAT_TEST_REDIS` overrides its URL).

use std::time::Duration;

use sandcat_backends::redis_wake::RedisWake;
use sandcat_core::notifier::Notifier;

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
    let _wa = match RedisWake::start(&url(), &channel, a.clone(), None).await {
        Ok(w) => w,
        Err(e) => panic!(
            "no Redis at {} ({e}); start one with scripts/services.sh",
            url()
        ),
    };
    let _wb = RedisWake::start(&url(), &channel, b.clone(), None)
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
    let err = RedisWake::start("redis://127.0.0.1:9", "x", Notifier::default(), None)
        .await
        .err()
        .expect("unreachable");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}
