//! The services the protocol crates call. Each holds only the handles it uses.

pub mod accounts;
pub mod data;
pub mod keys;
pub mod rooms;
pub mod sync;

/// A user acting through a device.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: ruma::OwnedUserId,
    pub device_id: String,
}
