//! Login tokens, until used or expired.

use ruma::{OwnedUserId, UserId};
use sandcat_core::ports::LoginTokens;

use super::*;

#[async_trait]
impl LoginTokens for SqlStore {
    async fn keep_login_token(
        &self,
        token: &str,
        user: &UserId,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM login_tokens WHERE expires_ts <= $1")
            .bind(to_db_int(now_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO login_tokens (token, user_id, expires_ts) VALUES ($1, $2, $3)")
            .bind(token)
            .bind(user.as_str())
            .bind(to_db_int(expires_ms))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
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
