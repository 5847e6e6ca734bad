//! The embedded event bus: rooms are hashed onto a fixed set of shards, each a tokio task that
//! hands the sequencer what waits on it, appended in one transaction. One room is always on the
//! same shard, so its log has one writer; different rooms sequence in parallel.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use sandcat_core::{
    intent::RoomBatch,
    ports::{BatchHandler, EventBus},
    Error, Result, StoredEvent,
};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

type Job = (RoomBatch, oneshot::Sender<Result<Vec<StoredEvent>>>);

/// Batches a shard sequences together at most (group commit).
pub const GROUP_MAX: usize = 32;

pub struct InProcessBus {
    shards: Mutex<Option<Vec<mpsc::Sender<Job>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl InProcessBus {
    pub fn new(handler: Arc<dyn BatchHandler>, shards: usize) -> Self {
        let shards = shards.max(1);
        let mut senders = Vec::with_capacity(shards);
        let mut tasks = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, mut rx) = mpsc::channel::<Job>(1024);
            let handler = handler.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(first) = rx.recv().await {
                    // Whatever else waits on the shard is sequenced with it: one commit.
                    let mut jobs = vec![first];
                    while jobs.len() < GROUP_MAX {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    let (batches, replies): (Vec<_>, Vec<_>) =
                        jobs.into_iter().map(|(b, r)| ((None, b), r)).unzip();
                    let results = handler.handle_group(batches).await;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
            }));
            senders.push(tx);
        }
        InProcessBus {
            shards: Mutex::new(Some(senders)),
            tasks: Mutex::new(tasks),
        }
    }

    fn shard_for(&self, batch: &RoomBatch) -> Result<mpsc::Sender<Job>> {
        let guard = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        let shards = guard
            .as_ref()
            .ok_or_else(|| Error::internal("the server is shutting down"))?;
        let mut h = DefaultHasher::new();
        batch.room_id.hash(&mut h);
        Ok(shards[(h.finish() % shards.len() as u64) as usize].clone())
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn submit(&self, batch: RoomBatch) -> Result<Vec<StoredEvent>> {
        let shard = self.shard_for(&batch)?;
        let (tx, rx) = oneshot::channel();
        shard
            .send((batch, tx))
            .await
            .map_err(|_| Error::internal("event bus stopped"))?;
        rx.await
            .map_err(|_| Error::internal("sequencer dropped the batch"))?
    }

    async fn shutdown(&self) {
        // Dropping the senders lets each shard finish what it has queued, then end.
        self.shards.lock().unwrap_or_else(|e| e.into_inner()).take();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}
