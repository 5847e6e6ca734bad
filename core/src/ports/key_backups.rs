//! Server-side key backup: a user's backup versions and the room keys in each, encrypted by
//! the client (this server never reads them). The rules — which version is current, which
//! of two keys of a session is kept — are the service's (`services/key_backup.rs`).

use async_trait::async_trait;
use ruma::{OwnedRoomId, RoomId, UserId};

use crate::Result;

/// A backup version as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersion {
    pub version: u64,
    pub algorithm: String,
    /// The algorithm's `auth_data` (a JSON object), as the client gave it.
    pub auth_data: String,
    /// Changes whenever the version's keys do.
    pub etag: u64,
    /// How many keys the version holds.
    pub count: u64,
}

/// A room key in a backup.
#[derive(Debug, Clone, PartialEq)]
pub struct BackedUpKey {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub first_message_index: u64,
    pub forwarded_count: u64,
    pub is_verified: bool,
    /// The encrypted `session_data` (a JSON object), as the client gave it.
    pub session_data: String,
}

/// Which keys of a version a read or a delete is about.
#[derive(Debug, Clone, Copy)]
pub enum KeyScope<'a> {
    All,
    Room(&'a RoomId),
    Session(&'a RoomId, &'a str),
}

#[async_trait]
pub trait KeyBackups: Send + Sync {
    /// A new version for `user`, numbered after every version it had: its number.
    async fn create_backup_version(
        &self,
        user: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> Result<u64>;
    /// A version of `user` that is not deleted, or (`None`) the latest such.
    async fn backup_version(
        &self,
        user: &UserId,
        version: Option<u64>,
    ) -> Result<Option<BackupVersion>>;
    /// Replaces a version's `auth_data`; false when there is no such version.
    async fn update_backup_version(
        &self,
        user: &UserId,
        version: u64,
        auth_data: &str,
    ) -> Result<bool>;
    /// Deletes a version and its keys; false when there is no such version.
    async fn delete_backup_version(&self, user: &UserId, version: u64) -> Result<bool>;
    /// Adds or replaces keys of a version, and changes its etag if any was given.
    async fn put_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        keys: &[BackedUpKey],
    ) -> Result<()>;
    /// The keys of a version in `scope`.
    async fn backup_keys(
        &self,
        user: &UserId,
        version: u64,
        scope: KeyScope<'_>,
    ) -> Result<Vec<BackedUpKey>>;
    /// Deletes the keys of a version in `scope`, and changes its etag.
    async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        scope: KeyScope<'_>,
    ) -> Result<()>;
}
