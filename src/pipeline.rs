//! The pipeline's backends — Kafka, Redis, S3 and MongoDB — each built only when the config
//! names it, and compiled only with its cargo feature (all four are in the default build).
//! A config that names a backend this build lacks is refused at start-up, naming the feature.

use std::sync::Arc;

use anyhow::Result;
use sandcat_backends::sql::SqlStore;
use sandcat_core::{
    ephemeral::Ephemeral,
    notifier::Notifier,
    ports::{EventBus, Inbox, MediaStore},
    sequencer::Sequencer,
};

use crate::config::Config;

/// Keeps the cross-instance wake-ups running while it lives.
#[cfg(feature = "redis")]
pub type Wake = sandcat_backends::redis_wake::RedisWake;
/// Keeps the cross-instance wake-ups running while it lives (none in this build).
#[cfg(not(feature = "redis"))]
pub enum Wake {}

/// The error for a backend this build was compiled without.
#[cfg(not(all(
    feature = "kafka",
    feature = "redis",
    feature = "s3",
    feature = "mongodb"
)))]
fn not_built(section: &str, backend: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{section} backend = \"{backend}\": this sandcat was built without it; build with `--features {feature}` (the default build has it)"
    )
}

/// Wake-ups of `/sync` and WebSockets on every instance through Redis; `shared` is the store
/// that another instance's write is learnt from before local readers wake.
#[cfg(feature = "redis")]
pub(crate) async fn redis_wake(
    config: &Config,
    notifier: Notifier,
    shared: Option<Arc<SqlStore>>,
    ephemeral: Arc<Ephemeral>,
) -> Result<Wake> {
    use sandcat_backends::redis_wake::{BeforeWake, RedisWake};
    let before_wake = shared.map(|s| {
        Arc::new(move || {
            let s = s.clone();
            Box::pin(async move {
                crate::catch_up(&s).await;
            }) as futures::future::BoxFuture<'static, ()>
        }) as BeforeWake
    });
    RedisWake::start(
        &config.cache.url,
        &format!("{}:{}:wake", config.cache.prefix, config.server_name),
        notifier,
        before_wake,
        Some(ephemeral),
    )
    .await
    .map_err(|e| anyhow::anyhow!("[cache] backend = \"redis\": {e}"))
}

#[cfg(not(feature = "redis"))]
pub(crate) async fn redis_wake(
    _: &Config,
    _: Notifier,
    _: Option<Arc<SqlStore>>,
    _: Arc<Ephemeral>,
) -> Result<Wake> {
    Err(not_built("[cache]", "redis", "redis"))
}

/// The event bus on Kafka: this instance's sequencers as members of one consumer group.
#[cfg(feature = "kafka")]
pub(crate) async fn kafka_bus(
    config: &Config,
    sequencer: Arc<Sequencer>,
    store: Arc<SqlStore>,
    notifier: Notifier,
) -> Result<Arc<dyn EventBus>> {
    use sandcat_backends::kafka_bus::{KafkaBus, KafkaConfig};
    let b = &config.bus;
    let bus = KafkaBus::start(
        &KafkaConfig {
            brokers: b.brokers.clone(),
            topic: b.topic.clone(),
            partitions: b.partitions,
            group: b.group.clone(),
            lanes: config.bus_shards,
        },
        sequencer,
        store,
        notifier,
    )
    .await
    .map_err(|e| anyhow::anyhow!("[bus] backend = \"kafka\": {e}"))?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "kafka"))]
pub(crate) async fn kafka_bus(
    _: &Config,
    _: Arc<Sequencer>,
    _: Arc<SqlStore>,
    _: Notifier,
) -> Result<Arc<dyn EventBus>> {
    Err(not_built("[bus]", "kafka", "kafka"))
}

/// Media bytes in an S3 bucket (checked or created now).
#[cfg(feature = "s3")]
pub(crate) async fn s3_media(config: &Config) -> Result<Arc<dyn MediaStore>> {
    use sandcat_backends::s3_media::{S3Config, S3MediaStore};
    let m = &config.media;
    let store = S3MediaStore::connect(&S3Config {
        endpoint: m.s3_endpoint.clone(),
        region: m.s3_region.clone(),
        bucket: m.s3_bucket.clone(),
        access_key: m.s3_access_key.clone(),
        secret_key: m.s3_secret_key.clone(),
    })
    .await
    .map_err(|e| anyhow::anyhow!("[media] backend = \"s3\": {e}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "s3"))]
pub(crate) async fn s3_media(_: &Config) -> Result<Arc<dyn MediaStore>> {
    Err(not_built("[media]", "s3", "s3"))
}

/// The per-user inboxes in MongoDB.
#[cfg(feature = "mongodb")]
pub(crate) async fn mongo_inbox(config: &Config) -> Result<Arc<dyn Inbox>> {
    let inbox = sandcat_backends::mongo_inbox::MongoInbox::connect(
        &config.inbox.url,
        &config.inbox.database,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "[inbox] backend = \"mongodb\" at {}: {e}",
            crate::redact_url(&config.inbox.url)
        )
    })?;
    Ok(Arc::new(inbox))
}

#[cfg(not(feature = "mongodb"))]
pub(crate) async fn mongo_inbox(_: &Config) -> Result<Arc<dyn Inbox>> {
    Err(not_built("[inbox]", "mongodb", "mongodb"))
}
