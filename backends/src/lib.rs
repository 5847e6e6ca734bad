//! Implementations of the ports of `sandcat-core`.
//!
//! - [`sql`]: every storage port on SQLite (the embedded default) or PostgreSQL (the pipeline).
//! - [`sql_inbox`] / [`mongo_inbox`]: the per-user `Inbox` in the SQL store, or on MongoDB (the
//!   pipeline).
//! - [`kafka_bus`]: the `EventBus` on Kafka, sequencers as one consumer group (the pipeline).
//! - [`bus`]: the in-process `EventBus`, one tokio task per shard of rooms.
//! - [`fs_media`]: the `MediaStore` on local files.
//! - [`s3_media`]: the `MediaStore` on S3 (MinIO or any S3 service), for the pipeline.
//! - [`redis_wake`]: cross-instance wake-ups over Redis pub/sub, for the pipeline.

pub mod bus;
pub mod fs_media;
pub mod kafka_bus;
pub mod mongo_inbox;
pub mod redis_wake;
pub mod s3_media;
pub mod sql;
pub mod sql_inbox;
