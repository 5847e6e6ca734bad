//! Implementations of the ports of `sandcat-core`.
//!
//! - [`sql`]: every storage port on SQLite (the embedded default) or PostgreSQL (the pipeline).
//! - [`sql_inbox`] / `mongo_inbox`: the per-user `Inbox` in the SQL store, or on MongoDB (the
//!   pipeline; feature `mongodb`).
//! - `kafka_bus`: the `EventBus` on Kafka, sequencers as one consumer group (the pipeline;
//!   feature `kafka`).
//! - [`bus`]: the in-process `EventBus`, one tokio task per shard of rooms.
//! - [`fs_media`]: the `MediaStore` on local files.
//! - `s3_media`: the `MediaStore` on S3 (MinIO or any S3 service), for the pipeline (feature
//!   `s3`).
//! - `redis_wake`: cross-instance wake-ups over Redis pub/sub, for the pipeline (feature
//!   `redis`).

pub mod bus;
pub mod fs_media;
#[cfg(feature = "kafka")]
pub mod kafka_bus;
#[cfg(feature = "mongodb")]
pub mod mongo_inbox;
#[cfg(feature = "redis")]
pub mod redis_wake;
#[cfg(feature = "s3")]
pub mod s3_media;
pub mod smtp;
pub mod sql;
pub mod sql_inbox;
pub mod web;
