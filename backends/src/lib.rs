//! Implementations of the ports of `sandcat-core`.
//!
//! - [`sqlite`]: `UserStore`, `RoomStore`, `ClientStore` on SQLite (the embedded default).
//! - [`bus`]: the in-process `EventBus`, one tokio task per shard of rooms.
//! - [`fs_media`]: the `MediaStore` on local files.

pub mod bus;
pub mod fs_media;
pub mod sqlite;
