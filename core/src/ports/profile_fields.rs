//! Extended profile fields (spec 1.16): a user's profile fields beyond the display name and
//! avatar, each any JSON value under a namespaced name.

use async_trait::async_trait;
use ruma::UserId;
use serde_json::Value;

use crate::Result;

#[async_trait]
pub trait ProfileFields: Send + Sync {
    /// Every extended field of the user's profile, by name.
    async fn profile_fields(&self, user_id: &UserId) -> Result<Vec<(String, Value)>>;
    /// Sets a field (replacing its value).
    async fn set_profile_field(&self, user_id: &UserId, field: &str, value: &Value) -> Result<()>;
    /// Removes a field; whether it was there.
    async fn delete_profile_field(&self, user_id: &UserId, field: &str) -> Result<bool>;
}
