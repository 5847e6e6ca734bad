//! Users: accounts, devices, access and refresh tokens, profiles.

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};

use super::{AccountStanding, LoginTokens, ProfileFields, Standing};
use crate::Result;

/// A user account.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub deactivated: bool,
}

#[derive(Debug, Clone)]
pub struct DeviceRecord {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<u64>,
    pub last_seen_ip: Option<String>,
}

/// The device an access token opens, and when it stops (`None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    pub user_id: OwnedUserId,
    pub device_id: String,
    pub expires_ms: Option<u64>,
    /// The standing of the token's account.
    pub standing: Standing,
}

/// The tokens a refresh hands out.
#[derive(Debug, Clone)]
pub struct TokenRotation {
    pub refresh: String,
    pub access: String,
    pub access_expires_ms: Option<u64>,
    /// The device's earlier access tokens work until then at the latest (requests in flight
    /// when the client refreshed still succeed).
    pub earlier_until_ms: u64,
}

/// Users, devices, access tokens and profiles.
#[async_trait]
pub trait UserStore: ProfileFields + LoginTokens + AccountStanding + Send + Sync {
    /// Creates a user; `Err(M_USER_IN_USE)` if the id is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<()>;
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>>;
    async fn set_password(&self, user_id: &UserId, password_hash: &str) -> Result<()>;
    async fn set_profile(
        &self,
        user_id: &UserId,
        displayname: Option<Option<&str>>,
        avatar_url: Option<Option<&str>>,
    ) -> Result<()>;
    /// Creates (or reuses) a device and gives it a new access token (its only one), valid
    /// until `expires_ms` when given.
    async fn add_device_token(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
        expires_ms: Option<u64>,
    ) -> Result<()>;
    /// Creates a device without an access token (a Sandcat session, whose JWTs name the
    /// device); an existing device is kept.
    async fn add_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<()>;
    /// The standing of the device's account while the device exists (a session that was not
    /// revoked); `None` once it is gone.
    async fn device_standing(&self, user_id: &UserId, device_id: &str) -> Result<Option<Standing>>;
    /// Stores a refresh token of a device.
    async fn add_refresh_token(&self, user_id: &UserId, device_id: &str, token: &str)
        -> Result<()>;
    /// `(user, device)` of a valid refresh token.
    async fn find_refresh_token(&self, token: &str) -> Result<Option<(OwnedUserId, String)>>;
    /// Replaces a refresh token by a new one, atomically: `None` when `old` was not (or no
    /// longer) valid, so each refresh token is used once.
    async fn replace_refresh_token(
        &self,
        old: &str,
        new: &str,
    ) -> Result<Option<(OwnedUserId, String)>>;
    /// Marks the account deactivated, for good: every device, access and refresh token gone
    /// and the profile cleared; the id stays taken. Returns the tokens that stopped working.
    async fn deactivate_user(&self, user_id: &UserId) -> Result<Vec<String>>;
    /// Uses a refresh token, once and atomically: it is replaced by `rotation.refresh`, the
    /// device gets the access token `rotation.access`, and its earlier access tokens expire
    /// by `rotation.earlier_until_ms` at the latest. `None` when the refresh token was not
    /// (or no longer) valid.
    async fn refresh_session(
        &self,
        old_refresh: &str,
        rotation: &TokenRotation,
    ) -> Result<Option<(OwnedUserId, String)>>;
    /// Who an access token belongs to, and until when it is valid, while it exists.
    async fn find_token(&self, token: &str) -> Result<Option<TokenOwner>>;
    async fn delete_token(&self, token: &str) -> Result<()>;
    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>>;
    async fn update_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool>;
    /// Deletes devices and their access and refresh tokens; returns the access tokens that
    /// stopped working.
    async fn delete_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<Vec<String>>;
    /// Deletes every token of a user except those of `keep_device`; returns them.
    async fn delete_tokens_except(
        &self,
        user_id: &UserId,
        keep_device: Option<&str>,
    ) -> Result<Vec<String>>;
    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        ts: u64,
        ip: Option<&str>,
    ) -> Result<()>;
    /// Users whose id or display name contains `term`.
    async fn search_users(&self, term: &str, limit: usize) -> Result<Vec<UserRecord>>;
}
