//! Email addresses of accounts, their validation sessions, and identity-server binds. An
//! address belongs to one account: its primary key says so, so two accounts adding one
//! address at once cannot both keep it.

use sandcat_core::ports::{ThreePid, ThreePidStore, ValidationPurpose, ValidationSession};

use super::*;

#[derive(sqlx::FromRow)]
struct ValidationRow {
    sid: String,
    client_secret: String,
    address: String,
    purpose: String,
    token: String,
    send_attempt: i64,
    created_ms: i64,
    validated_ms: Option<i64>,
    next_link: Option<String>,
}

impl ValidationRow {
    fn session(self) -> Result<ValidationSession> {
        let purpose = ValidationPurpose::parse(&self.purpose).ok_or_else(|| {
            Error::Storage(format!("validation {}: purpose {}", self.sid, self.purpose))
        })?;
        Ok(ValidationSession {
            sid: self.sid,
            client_secret: self.client_secret,
            address: self.address,
            purpose,
            token: self.token,
            send_attempt: self.send_attempt.max(0) as u64,
            created_ms: self.created_ms.max(0) as u64,
            validated_ms: self.validated_ms.map(|t| t.max(0) as u64),
            next_link: self.next_link,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ThreePidRow {
    medium: String,
    address: String,
    validated_at: i64,
    added_at: i64,
}

fn as_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl ThreePidStore for SqlStore {
    async fn validation_for(
        &self,
        client_secret: &str,
        address: &str,
        purpose: ValidationPurpose,
    ) -> Result<Option<ValidationSession>> {
        sqlx::query_as::<_, ValidationRow>(
            "SELECT * FROM threepid_validations \
             WHERE client_secret = $1 AND address = $2 AND purpose = $3 \
             ORDER BY created_ms DESC LIMIT 1",
        )
        .bind(client_secret)
        .bind(address)
        .bind(purpose.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .map(ValidationRow::session)
        .transpose()
    }

    async fn put_validation(&self, s: &ValidationSession, expired_before_ms: u64) -> Result<()> {
        sqlx::query("DELETE FROM threepid_validations WHERE created_ms < $1")
            .bind(as_i64(expired_before_ms))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO threepid_validations (sid, client_secret, address, purpose, token, \
             send_attempt, created_ms, validated_ms, next_link) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (sid) DO UPDATE SET send_attempt = excluded.send_attempt, \
             next_link = excluded.next_link",
        )
        .bind(&s.sid)
        .bind(&s.client_secret)
        .bind(&s.address)
        .bind(s.purpose.as_str())
        .bind(&s.token)
        .bind(as_i64(s.send_attempt))
        .bind(as_i64(s.created_ms))
        .bind(s.validated_ms.map(as_i64))
        .bind(s.next_link.as_deref())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn validation(&self, sid: &str) -> Result<Option<ValidationSession>> {
        sqlx::query_as::<_, ValidationRow>("SELECT * FROM threepid_validations WHERE sid = $1")
            .bind(sid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .map(ValidationRow::session)
            .transpose()
    }

    async fn mark_validated(&self, sid: &str, now_ms: u64) -> Result<()> {
        sqlx::query(
            "UPDATE threepid_validations SET validated_ms = $1 \
             WHERE sid = $2 AND validated_ms IS NULL",
        )
        .bind(as_i64(now_ms))
        .bind(sid)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_validation(&self, sid: &str) -> Result<()> {
        sqlx::query("DELETE FROM threepid_validations WHERE sid = $1")
            .bind(sid)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn threepids(&self, user_id: &UserId) -> Result<Vec<ThreePid>> {
        let rows = sqlx::query_as::<_, ThreePidRow>(
            "SELECT medium, address, validated_at, added_at FROM user_threepids \
             WHERE user_id = $1 ORDER BY added_at, address",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| ThreePid {
                medium: r.medium,
                address: r.address,
                validated_at: r.validated_at.max(0) as u64,
                added_at: r.added_at.max(0) as u64,
            })
            .collect())
    }

    async fn threepid_owner(&self, medium: &str, address: &str) -> Result<Option<OwnedUserId>> {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2",
        )
        .bind(medium)
        .bind(address)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        owner
            .map(|u| OwnedUserId::try_from(u).map_err(|e| Error::Storage(e.to_string())))
            .transpose()
    }

    async fn add_threepid(&self, user_id: &UserId, t: &ThreePid) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO user_threepids (medium, address, user_id, validated_at, added_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING",
        )
        .bind(&t.medium)
        .bind(&t.address)
        .bind(user_id.as_str())
        .bind(as_i64(t.validated_at))
        .bind(as_i64(t.added_at))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        Ok(self
            .threepid_owner(&t.medium, &t.address)
            .await?
            .is_some_and(|owner| owner == user_id))
    }

    async fn remove_threepid(&self, user_id: &UserId, medium: &str, address: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
        )
        .bind(user_id.as_str())
        .bind(medium)
        .bind(address)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn remove_threepids(&self, user_id: &UserId) -> Result<()> {
        sqlx::query("DELETE FROM user_threepids WHERE user_id = $1")
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn add_id_server_bind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO threepid_id_server_binds (user_id, medium, address, id_server) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(medium)
        .bind(address)
        .bind(id_server)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn id_server_binds(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id_server FROM threepid_id_server_binds \
             WHERE user_id = $1 AND medium = $2 AND address = $3 ORDER BY id_server",
        )
        .bind(user_id.as_str())
        .bind(medium)
        .bind(address)
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn bound_threepids(&self, user_id: &UserId) -> Result<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT DISTINCT medium, address FROM threepid_id_server_binds \
             WHERE user_id = $1 ORDER BY medium, address",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn remove_id_server_bind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM threepid_id_server_binds \
             WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4",
        )
        .bind(user_id.as_str())
        .bind(medium)
        .bind(address)
        .bind(id_server)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
