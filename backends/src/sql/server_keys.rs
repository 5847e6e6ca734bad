//! Server signing keys: this server's and other servers'.

use ruma::{OwnedServerName, ServerName};
use sandcat_core::ports::{ServerKey, ServerKeyStore};

use super::*;

#[async_trait]
impl ServerKeyStore for SqlStore {
    async fn store_server_keys(&self, keys: &[ServerKey]) -> Result<()> {
        let mut tx = self.begin().await?;
        for k in keys {
            // A fresher document (a later valid_until_ts) replaces the key; an expiry stays.
            sqlx::query(
                "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (server_name, key_id) DO UPDATE SET \
                 public_key = CASE WHEN excluded.valid_until_ts >= server_keys.valid_until_ts THEN excluded.public_key ELSE server_keys.public_key END, \
                 valid_until_ts = CASE WHEN excluded.valid_until_ts > server_keys.valid_until_ts THEN excluded.valid_until_ts ELSE server_keys.valid_until_ts END, \
                 expired_ts = COALESCE(server_keys.expired_ts, excluded.expired_ts)",
            )
            .bind(k.server_name.as_str())
            .bind(&k.key_id)
            .bind(&k.public_key)
            .bind(to_i64(k.valid_until_ts))
            .bind(k.expired_ts.map(to_i64))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn server_keys(&self, server: &ServerName) -> Result<Vec<ServerKey>> {
        let rows = sqlx::query(
            "SELECT key_id, public_key, valid_until_ts, expired_ts FROM server_keys WHERE server_name = $1 ORDER BY key_id",
        )
        .bind(server.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let server_name: OwnedServerName = server.to_owned();
        rows.iter()
            .map(|r| {
                Ok(ServerKey {
                    server_name: server_name.clone(),
                    key_id: r.try_get("key_id").map_err(db)?,
                    public_key: r.try_get("public_key").map_err(db)?,
                    valid_until_ts: r.try_get::<i64, _>("valid_until_ts").map_err(db)?.max(0)
                        as u64,
                    expired_ts: r
                        .try_get::<Option<i64>, _>("expired_ts")
                        .map_err(db)?
                        .map(|t| t.max(0) as u64),
                })
            })
            .collect()
    }
}
