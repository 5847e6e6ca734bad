//! Registration tokens (`m.login.registration_token`): an admin hands out tokens, each good
//! for a number of registrations and until a time, on a server whose registration needs one.

use async_trait::async_trait;

use crate::Result;

/// A registration token as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationToken {
    pub token: String,
    /// How many registrations it allows (`None`: any number).
    pub uses_allowed: Option<u64>,
    /// How many registrations it made.
    pub completed: u64,
    /// When it stops working, ms since the epoch (`None`: never).
    pub expiry_time: Option<u64>,
}

impl RegistrationToken {
    /// Whether it allows one more registration at `now_ms`.
    pub fn is_valid(&self, now_ms: u64) -> bool {
        self.uses_allowed.is_none_or(|n| self.completed < n)
            && self.expiry_time.is_none_or(|t| t > now_ms)
    }
}

#[async_trait]
pub trait RegistrationTokens: Send + Sync {
    /// Keeps a new token; `false` when one with that name exists.
    async fn add_registration_token(&self, token: &RegistrationToken) -> Result<bool>;
    async fn registration_token(&self, token: &str) -> Result<Option<RegistrationToken>>;
    /// Every token, by name.
    async fn registration_tokens(&self) -> Result<Vec<RegistrationToken>>;
    /// Forgets a token; `false` when there was none.
    async fn delete_registration_token(&self, token: &str) -> Result<bool>;
    /// Counts one registration against the token if it is still valid at `now_ms` (one
    /// statement, so two registrations cannot both take its last use); `false` otherwise.
    async fn use_registration_token(&self, token: &str, now_ms: u64) -> Result<bool>;
    /// Gives back a use taken for a registration that then failed.
    async fn return_registration_token(&self, token: &str) -> Result<()>;
}
