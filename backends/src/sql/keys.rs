//! End-to-end encryption keys and to-device messages.

use super::*;

#[async_trait]
impl KeyStore for SqlStore {
    async fn set_device_keys(&self, user_id: &UserId, device_id: &str, keys: &Value) -> Result<()> {
        self.put_key(
            "INSERT INTO device_keys (user_id, device_id, json, pos) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json, pos = excluded.pos WHERE device_keys.pos < excluded.pos",
            user_id,
            device_id,
            keys,
        )
        .await
    }

    async fn device_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query("SELECT device_id, json FROM device_keys WHERE user_id = $1 AND device_id IN (SELECT device_id FROM devices WHERE user_id = $2)")
            .bind(user_id.as_str())
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("device_id").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn add_one_time_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, Value)],
        fallback: bool,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if fallback {
            sqlx::query(
                "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 1",
            )
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for (id, key) in keys {
            let (algorithm, key_id) = id.split_once(':').unwrap_or((id.as_str(), ""));
            sqlx::query("INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, json, fallback, used) VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (user_id, device_id, algorithm, key_id, fallback) DO UPDATE SET json = excluded.json, used = 0")
                .bind(user_id.as_str())
                .bind(device_id)
                .bind(algorithm)
                .bind(key_id)
                .bind(key.to_string())
                .bind(fallback as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT algorithm, COUNT(*) AS n FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 0 GROUP BY algorithm").bind(user_id.as_str()).bind(device_id).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("algorithm").map_err(db)?,
                    r.try_get::<i64, _>("n").map_err(db)? as u64,
                ))
            })
            .collect()
    }

    async fn unused_fallback_algorithms(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT algorithm FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 1 AND used = 0").bind(user_id.as_str()).bind(device_id).fetch_all(&self.pool).await.map_err(db)
    }

    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>> {
        let _guard = self.write.lock().await;
        let row = sqlx::query("DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 0 AND key_id = (SELECT MIN(key_id) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 0) RETURNING key_id, json")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let row = match row {
            Some(r) => Some(r),
            None => sqlx::query("UPDATE one_time_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 1 AND key_id = (SELECT MIN(key_id) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 1) RETURNING key_id, json")
                .bind(user_id.as_str())
                .bind(device_id)
                .bind(algorithm)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?,
        };
        match row {
            Some(r) => {
                let key_id: String = r.try_get("key_id").map_err(db)?;
                let json: String = r.try_get("json").map_err(db)?;
                Ok(Some((
                    format!("{algorithm}:{key_id}"),
                    serde_json::from_str(&json)?,
                )))
            }
            None => Ok(None),
        }
    }

    async fn set_cross_signing_key(&self, user_id: &UserId, kind: &str, key: &Value) -> Result<()> {
        self.put_key(
            "INSERT INTO cross_signing_keys (user_id, kind, json, pos) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, kind) DO UPDATE SET json = excluded.json, pos = excluded.pos WHERE cross_signing_keys.pos < excluded.pos",
            user_id,
            kind,
            key,
        )
        .await
    }

    async fn cross_signing_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query("SELECT kind, json FROM cross_signing_keys WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn key_changes(&self, after: i64, until: i64) -> Result<Vec<OwnedUserId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT user_id FROM device_keys WHERE pos > $1 AND pos <= $2 UNION SELECT user_id FROM cross_signing_keys WHERE pos > $3 AND pos <= $4")
            .bind(after)
            .bind(until)
            .bind(after)
            .bind(until)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn add_to_device(&self, messages: &[ToDevice]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let changes = messages
            .iter()
            .map(|m| Change::User(m.user_id.clone()))
            .collect();
        self.with_positions(messages.len(), changes, async |tx, positions| {
            for (i, m) in messages.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO to_device (pos, user_id, device_id, json) VALUES ($1, $2, $3, $4)",
                )
                .bind(positions[i])
                .bind(m.user_id.as_str())
                .bind(&m.device_id)
                .bind(m.event.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Value)>> {
        let rows = sqlx::query("SELECT pos, json FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(after)
            .bind(until)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("pos").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn ack_to_device(&self, user_id: &UserId, device_id: &str, up_to: i64) -> Result<()> {
        sqlx::query("DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $3")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(up_to)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
