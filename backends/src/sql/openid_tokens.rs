//! OpenID tokens, until they expire.

use ruma::{OwnedUserId, UserId};
use sandcat_core::ports::OpenIdTokens;

use super::*;

#[async_trait]
impl OpenIdTokens for SqlStore {
    async fn keep_openid_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM openid_tokens WHERE expires_ts <= $1")
            .bind(to_db_int(now_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO openid_tokens (token, user_id, expires_ts) VALUES ($1, $2, $3)")
            .bind(token)
            .bind(user.as_str())
            .bind(to_db_int(expires_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn openid_token_user(&self, token: &str, now_ms: u64) -> Result<Option<OwnedUserId>> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM openid_tokens WHERE token = $1 AND expires_ts > $2",
        )
        .bind(token)
        .bind(to_db_int(now_ms))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        user.map(|u| OwnedUserId::try_from(u).map_err(sandcat_core::Error::internal))
            .transpose()
    }
}
