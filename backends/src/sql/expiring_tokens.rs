//! Tokens that expire: OpenID tokens (read until they expire) and login tokens (used once).
//! Both live in a table of `(token, user_id, expires_ts)`; keeping one forgets the expired.

use ruma::{OwnedUserId, UserId};
use sandcat_core::ports::{LoginTokens, OpenIdTokens};

use super::*;

impl SqlStore {
    /// Keeps `token` for `user` in `table` until `expires_ms`; drops the ones expired by `now_ms`.
    async fn keep_expiring_token(
        &self,
        table: &'static str,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(&format!("DELETE FROM {table} WHERE expires_ts <= $1"))
            .bind(to_db_int(now_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(&format!(
            "INSERT INTO {table} (token, user_id, expires_ts) VALUES ($1, $2, $3)"
        ))
        .bind(token)
        .bind(user.as_str())
        .bind(to_db_int(expires_ms))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}

#[async_trait]
impl OpenIdTokens for SqlStore {
    async fn keep_openid_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.keep_expiring_token("openid_tokens", token, user, expires_ms, now_ms)
            .await
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
        user.map(parse_id).transpose()
    }
}

#[async_trait]
impl LoginTokens for SqlStore {
    async fn keep_login_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.keep_expiring_token("login_tokens", token, user, expires_ms, now_ms)
            .await
    }

    async fn take_login_token(&self, token: &str, now_ms: u64) -> Result<Option<OwnedUserId>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM login_tokens WHERE token = $1 RETURNING user_id, expires_ts",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.filter(|(_, expires)| from_db_int(*expires) > now_ms)
            .map(|(user, _)| parse_id(user))
            .transpose()
    }
}
