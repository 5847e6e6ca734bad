//! Registration tokens: a use is counted by one conditional `UPDATE`, so concurrent
//! registrations cannot take more uses than a token has.

use sandcat_core::ports::{RegistrationToken, RegistrationTokens};

use super::*;

#[derive(sqlx::FromRow)]
struct TokenRow {
    token: String,
    uses_allowed: Option<i64>,
    completed: i64,
    expiry_time: Option<i64>,
}

impl From<TokenRow> for RegistrationToken {
    fn from(r: TokenRow) -> Self {
        RegistrationToken {
            token: r.token,
            uses_allowed: r.uses_allowed.map(|n| n.max(0) as u64),
            completed: r.completed.max(0) as u64,
            expiry_time: r.expiry_time.map(|t| t.max(0) as u64),
        }
    }
}

fn as_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl RegistrationTokens for SqlStore {
    async fn add_registration_token(&self, token: &RegistrationToken) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO registration_tokens (token, uses_allowed, completed, expiry_time) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (token) DO NOTHING",
        )
        .bind(&token.token)
        .bind(token.uses_allowed.map(as_i64))
        .bind(as_i64(token.completed))
        .bind(token.expiry_time.map(as_i64))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn registration_token(&self, token: &str) -> Result<Option<RegistrationToken>> {
        Ok(
            sqlx::query_as::<_, TokenRow>("SELECT * FROM registration_tokens WHERE token = $1")
                .bind(token)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .map(Into::into),
        )
    }

    async fn registration_tokens(&self) -> Result<Vec<RegistrationToken>> {
        Ok(
            sqlx::query_as::<_, TokenRow>("SELECT * FROM registration_tokens ORDER BY token")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?
                .into_iter()
                .map(Into::into)
                .collect(),
        )
    }

    async fn delete_registration_token(&self, token: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM registration_tokens WHERE token = $1")
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn use_registration_token(&self, token: &str, now_ms: u64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1 \
             AND (uses_allowed IS NULL OR completed < uses_allowed) \
             AND (expiry_time IS NULL OR expiry_time > $2)",
        )
        .bind(token)
        .bind(as_i64(now_ms))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn return_registration_token(&self, token: &str) -> Result<()> {
        sqlx::query(
            "UPDATE registration_tokens SET completed = completed - 1 WHERE token = $1 AND completed > 0",
        )
        .bind(token)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
