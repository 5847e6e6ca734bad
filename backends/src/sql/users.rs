//! Users, devices, access and refresh tokens, profiles.

use super::rows::UserRow;
use sandcat_core::ports::{AccountFlags, Standing, TokenOwner, TokenRotation};

use super::*;

/// The standing in a row with the `suspended` and `locked` columns of `users` (null when the
/// account row is missing: active).
fn standing_of(r: &AnyRow) -> Result<Standing> {
    let flag = |column: &str| -> Result<bool> {
        Ok(r.try_get::<Option<i64>, _>(column).map_err(db)? == Some(1))
    };
    Ok(AccountFlags {
        admin: false,
        suspended: flag("suspended")?,
        locked: flag("locked")?,
    }
    .standing())
}

/// How long an expired access token is remembered, so that its client is told to refresh
/// (`soft_logout`) rather than to log in again.
const EXPIRED_TOKEN_KEPT_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Replaces the refresh token `old` by `new` within `tx`: the `(user, device)` it belonged
/// to, or `None` (and nothing written) when `old` was not valid.
async fn rotate_refresh_token(
    tx: &mut super::tx::Tx,
    old: &str,
    new: &str,
) -> Result<Option<(String, String)>> {
    let row =
        sqlx::query("DELETE FROM refresh_tokens WHERE token = $1 RETURNING user_id, device_id")
            .bind(old)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (user, device): (String, String) = (
        row.try_get("user_id").map_err(db)?,
        row.try_get("device_id").map_err(db)?,
    );
    sqlx::query("INSERT INTO refresh_tokens (token, user_id, device_id) VALUES ($1, $2, $3)")
        .bind(new)
        .bind(&user)
        .bind(&device)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(Some((user, device)))
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let r = sqlx::query("INSERT INTO users (user_id, password_hash, displayname, avatar_url, deactivated, created_ts) VALUES ($1, $2, $3, $4, 0, $5)")
            .bind(user.user_id.as_str())
            .bind(&user.password_hash)
            .bind(&user.displayname)
            .bind(&user.avatar_url)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::matrix(ErrorCode::UserInUse, "user id already taken"))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(UserRow::read).transpose()
    }

    async fn set_password(&self, user_id: &UserId, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(password_hash)
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn set_profile(
        &self,
        user_id: &UserId,
        displayname: Option<Option<&str>>,
        avatar_url: Option<Option<&str>>,
    ) -> Result<()> {
        if let Some(d) = displayname {
            sqlx::query("UPDATE users SET displayname = $1 WHERE user_id = $2")
                .bind(d)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        if let Some(a) = avatar_url {
            sqlx::query("UPDATE users SET avatar_url = $1 WHERE user_id = $2")
                .bind(a)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn add_device_token(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
        expires_ms: Option<u64>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name)")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(display_name)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // One token per device: logging in again on a device replaces its token.
        sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO access_tokens (token, user_id, device_id, expires_ts) VALUES ($1, $2, $3, $4)")
            .bind(token)
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(expires_ms.map(to_db_int))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn add_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<()> {
        sqlx::query("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO NOTHING")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(display_name)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn device_standing(&self, user_id: &UserId, device_id: &str) -> Result<Option<Standing>> {
        let row = sqlx::query(
            "SELECT u.suspended, u.locked FROM devices d \
             LEFT JOIN users u ON u.user_id = d.user_id WHERE d.user_id = $1 AND d.device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(standing_of).transpose()
    }

    async fn add_refresh_token(
        &self,
        user_id: &UserId,
        device_id: &str,
        token: &str,
    ) -> Result<()> {
        sqlx::query("INSERT INTO refresh_tokens (token, user_id, device_id) VALUES ($1, $2, $3)")
            .bind(token)
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn find_refresh_token(&self, token: &str) -> Result<Option<(OwnedUserId, String)>> {
        let row = sqlx::query("SELECT user_id, device_id FROM refresh_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok((
                parse_id(r.try_get("user_id").map_err(db)?)?,
                r.try_get("device_id").map_err(db)?,
            ))
        })
        .transpose()
    }

    async fn replace_refresh_token(
        &self,
        old: &str,
        new: &str,
    ) -> Result<Option<(OwnedUserId, String)>> {
        let mut tx = self.begin().await?;
        let Some((user, device)) = rotate_refresh_token(&mut tx, old, new).await? else {
            return Ok(None);
        };
        tx.commit().await.map_err(db)?;
        Ok(Some((parse_id(user)?, device)))
    }

    async fn deactivate_user(&self, user_id: &UserId) -> Result<Vec<String>> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL, avatar_url = NULL WHERE user_id = $1")
            .bind(user_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let tokens: Vec<String> =
            sqlx::query_scalar("DELETE FROM access_tokens WHERE user_id = $1 RETURNING token")
                .bind(user_id.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        for table in ["refresh_tokens", "devices", "profile_fields", "pushers"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(tokens)
    }

    async fn find_token(&self, token: &str) -> Result<Option<TokenOwner>> {
        let row = sqlx::query(
            "SELECT t.user_id, t.device_id, t.expires_ts, u.suspended, u.locked \
             FROM access_tokens t LEFT JOIN users u ON u.user_id = t.user_id WHERE t.token = $1",
        )
        .bind(token)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            let expires: Option<i64> = r.try_get("expires_ts").map_err(db)?;
            Ok(TokenOwner {
                user_id: parse_id(r.try_get("user_id").map_err(db)?)?,
                device_id: r.try_get("device_id").map_err(db)?,
                expires_ms: expires.map(from_db_int),
                standing: standing_of(&r)?,
            })
        })
        .transpose()
    }

    async fn refresh_session(
        &self,
        old_refresh: &str,
        rotation: &TokenRotation,
    ) -> Result<Option<(OwnedUserId, String)>> {
        let mut tx = self.begin().await?;
        let Some((user, device)) =
            rotate_refresh_token(&mut tx, old_refresh, &rotation.refresh).await?
        else {
            return Ok(None);
        };
        let until = to_db_int(rotation.earlier_until_ms);
        // Earlier tokens expire soon; those long expired (kept to answer `soft_logout`) go.
        sqlx::query(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 AND expires_ts < $3",
        )
        .bind(&user)
        .bind(&device)
        .bind(until.saturating_sub(EXPIRED_TOKEN_KEPT_MS))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "UPDATE access_tokens SET expires_ts = $3 WHERE user_id = $1 AND device_id = $2 \
             AND (expires_ts IS NULL OR expires_ts > $3)",
        )
        .bind(&user)
        .bind(&device)
        .bind(until)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO access_tokens (token, user_id, device_id, expires_ts) VALUES ($1, $2, $3, $4)",
        )
        .bind(&rotation.access)
        .bind(&user)
        .bind(&device)
        .bind(rotation.access_expires_ms.map(to_db_int))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some((parse_id(user)?, device)))
    }

    async fn delete_token(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM access_tokens WHERE token = $1")
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query("SELECT * FROM devices WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRecord {
                    device_id: r.try_get("device_id").map_err(db)?,
                    display_name: r.try_get("display_name").map_err(db)?,
                    last_seen_ts: r
                        .try_get::<Option<i64>, _>("last_seen_ts")
                        .map_err(db)?
                        .map(|t| t as u64),
                    last_seen_ip: r.try_get("last_seen_ip").map_err(db)?,
                })
            })
            .collect()
    }

    async fn update_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3",
        )
        .bind(display_name)
        .bind(user_id.as_str())
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<Vec<String>> {
        if device_ids.is_empty() {
            return Ok(Vec::new());
        }
        // A key change at a new position: the users who share a room with this one see it in
        // `device_lists.changed` and stop encrypting for the devices gone (their keys stay
        // stored, hidden with the device, and carry the position).
        self.with_positions(1, vec![Change::Keys], async |tx, pos| {
            let mut tokens = Vec::new();
            for d in device_ids {
                let rows: Vec<String> = sqlx::query_scalar(
                    "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 RETURNING token",
                )
                .bind(user_id.as_str())
                .bind(d)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                tokens.extend(rows);
                // A device's pushers go with it, as its tokens do.
                for table in ["refresh_tokens", "devices", "pushers"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
                    ))
                    .bind(user_id.as_str())
                    .bind(d)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                }
                sqlx::query("UPDATE device_keys SET pos = $1 WHERE user_id = $2 AND device_id = $3")
                    .bind(pos[0])
                    .bind(user_id.as_str())
                    .bind(d)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            Ok(tokens)
        })
        .await
    }

    async fn delete_tokens_except(
        &self,
        user_id: &UserId,
        keep_device: Option<&str>,
    ) -> Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id IS DISTINCT FROM $2 RETURNING token",
        )
        .bind(user_id.as_str())
        .bind(keep_device)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows)
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        ts: u64,
        ip: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen_ts = $1, last_seen_ip = COALESCE($2, last_seen_ip) WHERE user_id = $3 AND device_id = $4").bind(ts as i64).bind(ip).bind(user_id.as_str()).bind(device_id).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn search_users(&self, term: &str, limit: usize) -> Result<Vec<UserRecord>> {
        let like = format!(
            "%{}%",
            term.to_lowercase().replace('%', "").replace('_', "\\_")
        );
        let rows = sqlx::query("SELECT * FROM users WHERE deactivated = 0 AND (lower(user_id) LIKE $1 ESCAPE '\\' OR lower(displayname) LIKE $2 ESCAPE '\\') ORDER BY user_id LIMIT $3")
            .bind(&like)
            .bind(&like)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(UserRow::read).collect()
    }
}
