//! Login tokens (`login/get_token`, `m.login.token`): a signed-in device hands another device
//! a short-lived, single-use token to sign in with (QR-code and cross-device sign-in).

use async_trait::async_trait;
use ruma::{OwnedUserId, UserId};

use crate::Result;

#[async_trait]
pub trait LoginTokens: Send + Sync {
    /// Keeps `token` for `user` until `expires_ms`, and forgets the tokens expired by `now_ms`.
    async fn keep_login_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()>;
    /// Uses `token`: the user it was given to if it has not expired by `now_ms`. Used or not,
    /// it never works again.
    async fn take_login_token(&self, token: &str, now_ms: u64) -> Result<Option<OwnedUserId>>;
}
