//! OpenID tokens: short-lived proofs of a user's identity that the user hands a third party
//! (an integration manager, a call's media service), which asks this server who it is.

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};

use crate::Result;

#[async_trait]
pub trait OpenIdTokens: Send + Sync {
    /// Keeps `token` for `user` until `expires_ms`, and forgets the tokens expired by `now_ms`.
    async fn keep_openid_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()>;
    /// The user `token` was given to, if it has not expired by `now_ms`.
    async fn openid_token_user(&self, token: &str, now_ms: u64) -> Result<Option<OwnedUserId>>;
}
