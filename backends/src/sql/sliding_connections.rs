//! Sliding-sync connection positions.

use sandcat_core::ports::{ConnectionKey, SlidingConnections, POSITION_KEPT_MS};

use super::*;

#[async_trait]
impl SlidingConnections for SqlStore {
    async fn connection_position(
        &self,
        conn: ConnectionKey<'_>,
        pos: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT state FROM sliding_positions WHERE user_id = $1 AND device_id = $2 \
             AND conn_id = $3 AND pos = $4",
        )
        .bind(conn.user_id.as_str())
        .bind(conn.device_id)
        .bind(conn.conn_id)
        .bind(pos)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn save_connection_position(
        &self,
        conn: ConnectionKey<'_>,
        pos: &str,
        keep: Option<&str>,
        state: &str,
        now_ms: u64,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM sliding_positions WHERE created_ts < $1")
            .bind(to_db_int(now_ms.saturating_sub(POSITION_KEPT_MS)))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "DELETE FROM sliding_positions WHERE user_id = $1 AND device_id = $2 \
             AND conn_id = $3 AND pos != $4",
        )
        .bind(conn.user_id.as_str())
        .bind(conn.device_id)
        .bind(conn.conn_id)
        .bind(keep.unwrap_or(""))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO sliding_positions (user_id, device_id, conn_id, pos, state, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(conn.user_id.as_str())
        .bind(conn.device_id)
        .bind(conn.conn_id)
        .bind(pos)
        .bind(state)
        .bind(to_db_int(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
