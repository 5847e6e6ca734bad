//! The pipeline event bus: Kafka. Every batch is produced to one topic with the room id as its
//! key, so a room's batches land on one partition in order. The sequencers of all instances
//! form one consumer group: each partition — and so each room — has one sequencer cluster-wide,
//! and partitions move to the surviving instances when one dies. Within an instance, batches
//! are spread over lanes by room, so different rooms are sequenced in parallel.
//!
//! Delivery is at least once: an offset is stored only once its batch and every earlier one of its
//! partition are sequenced and persisted, and the sequencer records each batch id with its events
//! in the same transaction
//! ([`BatchHandler::handle_once`]), so a redelivered batch returns the recorded outcome instead
//! of appending twice. The submitter waits for that outcome: handed over in memory when its
//! own instance sequenced the batch, read from the store (on every wake-up of the notifier)
//! when another instance did.

use std::{
    collections::{BTreeSet, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
    ClientContext, Message,
};
use sandcat_core::{
    intent::RoomBatch,
    notifier::Notifier,
    ports::{BatchHandler, EventBus, RoomStore},
    sequencer::outcome_events,
    Error, Result, StoredEvent,
};
use serde::{Deserialize, Serialize};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};

/// Where the bus runs.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    pub partitions: i32,
    /// Consumer group of the sequencers.
    pub group: String,
    /// Batches of different rooms this instance sequences at once.
    pub lanes: usize,
}

/// One message on the topic.
#[derive(Serialize, Deserialize)]
struct Envelope {
    id: String,
    /// The instance whose client is waiting.
    origin: String,
    batch: RoomBatch,
}

/// Submitters waiting for their batches, with when they started waiting.
type Waiters = Arc<Mutex<HashMap<String, (Instant, oneshot::Sender<Result<Vec<StoredEvent>>>)>>>;

/// Batches of this instance's own partitions are answered in memory; the store is asked only
/// about batches waiting longer than this (another instance sequences them).
const REMOTE_AFTER: Duration = Duration::from_millis(15);

fn kafka(what: &str, e: KafkaError) -> Error {
    Error::Storage(format!("kafka {what}: {e}"))
}

/// How long a submitter waits for its batch to be sequenced before giving up (the batch may
/// still be sequenced later; a client retrying with the same transaction id gets that event).
const WAIT: Duration = Duration::from_secs(30);

pub struct KafkaBus {
    producer: FutureProducer,
    topic: String,
    instance: String,
    waiters: Waiters,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Drops cached room heads whenever partitions move.
struct Rebalancing(Arc<dyn BatchHandler>);

impl ClientContext for Rebalancing {}

impl ConsumerContext for Rebalancing {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(?rebalance, "event bus partitions rebalanced");
        self.0.reset();
    }
}

fn common(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("socket.keepalive.enable", "true")
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000");
    c
}

impl KafkaBus {
    /// Connects (failing fast when no broker answers), creates the topic if needed, and starts
    /// this instance's sequencer in the consumer group.
    pub async fn start(
        config: &KafkaConfig,
        handler: Arc<dyn BatchHandler>,
        store: Arc<dyn RoomStore>,
        notifier: Notifier,
    ) -> Result<KafkaBus> {
        let admin: AdminClient<DefaultClientContext> = common(config)
            .create()
            .map_err(|e| kafka("admin client", e))?;
        let brokers = config.brokers.clone();
        let admin = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(5))
                .map(|_| admin)
        })
        .await
        .map_err(Error::internal)?
        .map_err(|e| kafka(&format!("no broker answers at {brokers}"), e))?;
        let created = admin
            .create_topics(
                &[NewTopic::new(
                    &config.topic,
                    config.partitions.max(1),
                    TopicReplication::Fixed(1),
                )],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|e| kafka("creating the topic", e))?;
        for r in created {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(Error::Storage(format!("kafka topic {topic}: {code}")))
                }
            }
        }

        let producer: FutureProducer = common(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "20000")
            .create()
            .map_err(|e| kafka("producer", e))?;
        let consumer: StreamConsumer<Rebalancing> = common(config)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "200")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", "20")
            .set("enable.partition.eof", "false")
            .create_with_context(Rebalancing(handler.clone()))
            .map_err(|e| kafka("consumer", e))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| kafka("subscribe", e))?;

        let instance = sandcat_core::token::random_string(16);
        let waiters: Waiters = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let sequencer = tokio::spawn(consume(
            config.topic.clone(),
            consumer,
            handler,
            instance.clone(),
            waiters.clone(),
            config.lanes,
            stopped.clone(),
        ));
        let watcher = tokio::spawn(watch_outcomes(store, notifier, waiters.clone(), stopped));
        Ok(KafkaBus {
            producer,
            topic: config.topic.clone(),
            instance,
            waiters,
            stop,
            tasks: Mutex::new(vec![sequencer, watcher]),
        })
    }
}

/// Which offsets of one partition are still being sequenced: the offset stored for commit is
/// the highest one below which everything is done.
#[derive(Default)]
struct Progress {
    inflight: BTreeSet<i64>,
    done: i64,
}

type Partitions = Arc<Mutex<HashMap<i32, Progress>>>;

/// One batch handed to a lane.
struct Job {
    env: Envelope,
    partition: i32,
    offset: i64,
}

/// This instance's sequencer: batches of the partitions assigned to it, spread over `lanes`
/// tasks by room (a room's batches stay in order on one lane), sequenced in parallel.
async fn consume(
    topic: String,
    consumer: StreamConsumer<Rebalancing>,
    handler: Arc<dyn BatchHandler>,
    instance: String,
    waiters: Waiters,
    lanes: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let consumer = Arc::new(consumer);
    let progress: Partitions = Arc::default();
    let mut senders = Vec::with_capacity(lanes);
    let mut tasks = Vec::with_capacity(lanes);
    for _ in 0..lanes.max(1) {
        let (tx, rx) = mpsc::channel::<Job>(256);
        senders.push(tx);
        tasks.push(tokio::spawn(lane(
            topic.clone(),
            rx,
            consumer.clone(),
            handler.clone(),
            instance.clone(),
            waiters.clone(),
            progress.clone(),
            stopped.clone(),
        )));
    }
    loop {
        let msg = tokio::select! {
            _ = stopped.changed() => break,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "event bus: receive failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let (partition, offset) = (msg.partition(), msg.offset());
        let envelope: Option<Envelope> = msg.payload().and_then(|p| serde_json::from_slice(p).ok());
        drop(msg);
        {
            let mut parts = progress.lock().unwrap_or_else(|e| e.into_inner());
            let p = parts.entry(partition).or_default();
            if offset <= p.done || p.inflight.contains(&offset) {
                // Delivered again (the partition came back after a rebalance): start over.
                *p = Progress::default();
            }
            p.inflight.insert(offset);
        }
        let Some(env) = envelope else {
            tracing::error!(partition, offset, "event bus: unreadable message skipped");
            finish(&consumer, &topic, &progress, partition, offset);
            continue;
        };
        let mut h = DefaultHasher::new();
        env.batch.room_id.hash(&mut h);
        let lane = (h.finish() % senders.len() as u64) as usize;
        if senders[lane]
            .send(Job {
                env,
                partition,
                offset,
            })
            .await
            .is_err()
        {
            break;
        }
    }
    drop(senders);
    for t in tasks {
        let _ = t.await;
    }
    // Commit what was stored before leaving the group.
    let _ = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync);
    consumer.unsubscribe();
}

/// Marks an offset done and stores the highest offset below which all are done.
fn finish(
    consumer: &StreamConsumer<Rebalancing>,
    topic: &str,
    progress: &Partitions,
    partition: i32,
    offset: i64,
) {
    let safe = {
        let mut parts = progress.lock().unwrap_or_else(|e| e.into_inner());
        let p = parts.entry(partition).or_default();
        p.inflight.remove(&offset);
        p.done = p.done.max(offset);
        match p.inflight.first() {
            Some(first) => first - 1,
            None => p.done,
        }
    };
    if safe >= 0 {
        if let Err(e) = consumer.store_offset(topic, partition, safe) {
            tracing::debug!(error = %e, partition, "event bus: storing the offset failed");
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn lane(
    topic: String,
    mut jobs: mpsc::Receiver<Job>,
    consumer: Arc<StreamConsumer<Rebalancing>>,
    handler: Arc<dyn BatchHandler>,
    instance: String,
    waiters: Waiters,
    progress: Partitions,
    stopped: watch::Receiver<bool>,
) {
    while let Some(first) = jobs.recv().await {
        // Whatever else waits on the lane is sequenced with it: one commit.
        let mut group = vec![first];
        while group.len() < crate::bus::GROUP_MAX {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let batches = group
            .iter()
            .map(|j| (Some(j.env.id.clone()), j.env.batch.clone()))
            .collect();
        let results = handler.handle_group(batches).await;
        for (job, result) in group.into_iter().zip(results) {
            let result = match result {
                Err(Error::Storage(e)) => {
                    tracing::warn!(error = %e, room = %job.env.batch.room_id, "event bus: sequencing failed; retrying");
                    match until_stored(handler.as_ref(), &job.env, &stopped).await {
                        Some(r) => r,
                        None => return,
                    }
                }
                other => other,
            };
            finish(&consumer, &topic, &progress, job.partition, job.offset);
            if job.env.origin == instance {
                let waiter = waiters
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&job.env.id);
                if let Some((_, tx)) = waiter {
                    let _ = tx.send(result);
                }
            }
        }
    }
}

/// Sequences one batch again while the store is away, keeping its offset; `None` when the
/// instance stops first.
async fn until_stored(
    handler: &dyn BatchHandler,
    env: &Envelope,
    stopped: &watch::Receiver<bool>,
) -> Option<Result<Vec<StoredEvent>>> {
    let mut delay = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return None;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        match handler.handle_once(&env.id, env.batch.clone()).await {
            Err(Error::Storage(e)) => {
                tracing::warn!(error = %e, room = %env.batch.room_id, "event bus: sequencing failed; retrying");
            }
            other => return Some(other),
        }
    }
}

/// Answers submitters whose batches other instances sequenced: on every wake-up (and every
/// 200 ms, in case one was missed) the store is asked for the outcomes of the waiting batches.
async fn watch_outcomes(
    store: Arc<dyn RoomStore>,
    notifier: Notifier,
    waiters: Waiters,
    mut stopped: watch::Receiver<bool>,
) {
    let mut wake = notifier.subscribe();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            _ = wake.changed() => {},
            _ = tokio::time::sleep(Duration::from_millis(200)) => {},
        }
        // Many wake-ups in a row need one look.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ids: Vec<String> = waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, (since, _))| since.elapsed() >= REMOTE_AFTER)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        let outcomes = match store.batch_outcomes(&ids).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "event bus: reading batch outcomes failed");
                continue;
            }
        };
        for (id, outcome) in outcomes {
            let waiter = waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            if let Some((_, tx)) = waiter {
                let _ = tx.send(outcome_events(store.as_ref(), outcome).await);
            }
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    async fn submit(&self, batch: RoomBatch) -> Result<Vec<StoredEvent>> {
        if *self.stop.borrow() {
            return Err(Error::internal("the server is shutting down"));
        }
        let env = Envelope {
            id: format!(
                "{}-{}",
                self.instance,
                sandcat_core::token::random_string(16)
            ),
            origin: self.instance.clone(),
            batch,
        };
        let payload = serde_json::to_vec(&env)?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(env.id.clone(), (Instant::now(), tx));
        let forget = || {
            self.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&env.id);
        };
        let sent = self
            .producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(env.batch.room_id.as_str())
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await;
        if let Err((e, _)) = sent {
            forget();
            return Err(kafka("producing a batch", e));
        }
        match tokio::time::timeout(WAIT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::internal("the event bus stopped")),
            Err(_) => {
                forget();
                Err(Error::Storage(
                    "the batch was not sequenced in time; retry with the same transaction id"
                        .into(),
                ))
            }
        }
    }

    async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}
