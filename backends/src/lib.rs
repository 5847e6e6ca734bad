//! Implementations of the ports of `sandcat-core`.
//!
//! - [`sqlite`]: `UserStore`, `RoomStore`, `ClientStore` on SQLite (the embedded default).
//! - [`bus`]: the in-process `EventBus`, one tokio task per shard of rooms.

pub mod bus;
pub mod sqlite;
