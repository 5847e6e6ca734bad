//! The pipeline wired into the real server: `[cache] backend = "redis"` announces writes to
//! other instances; bad backend names and unreachable services stop start-up, naming the
//! section.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

mod common;

use std::time::Duration;

use common::Server;
use sandcat_backends::redis_wake::RedisWake;
use sandcat_core::notifier::Notifier;
use serde_json::json;

fn redis_url() -> String {
    std::env::var("SANDCAT_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn writes_wake_other_instances_through_redis() {
    let server_name = format!(
        "wake{}.test",
        sandcat_core::token::random_string(4)
            .to_lowercase()
            .replace(['_', '-'], "x")
    );
    let name = server_name.clone();
    let server = Server::start_with(move |c| {
        c.server_name = name;
        c.cache.backend = sandcat::CacheBackend::Redis;
        c.cache.url = redis_url();
    })
    .await;
    // Another instance listening on the same channel.
    let other = Notifier::default();
    let _wake = RedisWake::start(
        &redis_url(),
        &format!("sandcat:{server_name}:wake"),
        other.clone(),
        None,
        None,
    )
    .await
    .expect("Redis is running (scripts/services.sh)");
    let mut rx = other.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("subscribed")
        .unwrap();
    let mut rx = other.subscribe();
    let alice = server.register("alice").await;
    alice.create_room(json!({ "name": "wake" })).await;
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("the other instance woke")
        .unwrap();
}

/// An unknown backend name, in the file or in the environment, is refused naming the
/// section and the names it takes.
#[test]
fn unknown_backend_names_are_refused() {
    for (text, section) in [
        ("[cache]\nbackend = \"memcached\"", "[cache]"),
        ("[media]\nbackend = \"ftp\"", "[media]"),
        ("[storage]\nbackend = \"mysql\"", "[storage]"),
        ("[bus]\nbackend = \"amqp\"", "[bus]"),
        ("[inbox]\nbackend = \"cassandra\"", "[inbox]"),
    ] {
        let err = toml::from_str::<sandcat::Config>(text).expect_err(text);
        assert!(err.to_string().contains(section), "{err}");
    }
    for (key, section) in [
        ("SANDCAT_CACHE_BACKEND", "[cache]"),
        ("SANDCAT_STORAGE_BACKEND", "[storage]"),
        ("SANDCAT_BUS_BACKEND", "[bus]"),
        ("SANDCAT_MEDIA_BACKEND", "[media]"),
        ("SANDCAT_INBOX_BACKEND", "[inbox]"),
    ] {
        let mut config = sandcat::Config::default();
        let err = config
            .apply_env(|k| (k == key).then(|| "nosuch".to_owned()))
            .expect_err(key);
        assert!(format!("{err:#}").contains(section), "{err:#}");
    }
}

#[tokio::test]
async fn unusable_backends_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    for (section, set) in [
        (
            "[cache]",
            (|c: &mut sandcat::Config| {
                c.cache.backend = sandcat::CacheBackend::Redis;
                c.cache.url = "redis://127.0.0.1:9".into();
            }) as fn(&mut sandcat::Config),
        ),
        ("[storage]", |c: &mut sandcat::Config| {
            c.storage.backend = sandcat::StorageBackend::Postgres;
            c.storage.url = "postgres://postgres@127.0.0.1:9/sandcat".into();
        }),
        ("[inbox]", |c: &mut sandcat::Config| {
            c.inbox.backend = sandcat::InboxBackend::Mongodb;
            c.inbox.url = "mongodb://127.0.0.1:9".into();
        }),
        // Kafka needs the shared store and wake-ups.
        ("[bus]", |c: &mut sandcat::Config| {
            c.bus.backend = sandcat::BusBackend::Kafka
        }),
    ] {
        let mut config = sandcat::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        set(&mut config);
        let err = sandcat::build(&config).await.err().expect("refused");
        assert!(format!("{err:#}").contains(section), "{err:#}");
    }
}

/// A Kafka bus whose brokers do not answer stops start-up, naming the section.
#[tokio::test]
async fn an_unreachable_kafka_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sandcat::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    common::use_pipeline(&mut config, dir.path()).await;
    config.bus.brokers = "127.0.0.1:9".into();
    let err = sandcat::build(&config).await.err().expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("[bus]") && text.contains("127.0.0.1:9"),
        "{text}"
    );
}
