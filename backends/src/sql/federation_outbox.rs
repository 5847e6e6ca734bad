//! EDUs kept for other servers until they accept them, at stream positions.

use ruma::{OwnedServerName, ServerName};
use sandcat_core::ports::{FederationOutbox, NewEdu, QueuedEdu};

use super::*;

#[async_trait]
impl FederationOutbox for SqlStore {
    async fn queue_edus(&self, edus: &[NewEdu]) -> Result<()> {
        if edus.is_empty() {
            return Ok(());
        }
        self.with_positions(edus.len(), Vec::new(), async |tx, positions| {
            // Multi-row inserts, a bounded number of parameters each.
            for (chunk, pos) in edus.chunks(200).zip(positions.chunks(200)) {
                let sql = format!(
                    "INSERT INTO federation_outbox (pos, destination, edu, expires_ts) VALUES {}",
                    value_rows(chunk.len(), 4)
                );
                let mut q = sqlx::query(&sql);
                for (e, pos) in chunk.iter().zip(pos) {
                    q = q
                        .bind(*pos)
                        .bind(e.destination.as_str())
                        .bind(e.edu.as_str())
                        .bind(e.expires_ms.map(to_i64));
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn queued_edus(
        &self,
        destination: &ServerName,
        after: i64,
        until: i64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<QueuedEdu>> {
        let rows = sqlx::query(
            "SELECT pos, edu, expires_ts FROM federation_outbox WHERE destination = $1 AND pos > $2 AND pos <= $3 \
             AND (expires_ts IS NULL OR expires_ts > $4) ORDER BY pos LIMIT $5",
        )
        .bind(destination.as_str())
        .bind(after)
        .bind(until)
        .bind(to_i64(now_ms))
        .bind(to_i64(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let expires: Option<i64> = r.try_get("expires_ts").map_err(db)?;
                Ok(QueuedEdu {
                    pos: r.try_get("pos").map_err(db)?,
                    edu: r.try_get("edu").map_err(db)?,
                    expires_ms: expires.map(|t| u64::try_from(t).unwrap_or(0)),
                })
            })
            .collect()
    }

    async fn edu_destinations(
        &self,
        after: i64,
        until: i64,
    ) -> Result<Vec<(OwnedServerName, i64)>> {
        let rows = sqlx::query(
            "SELECT destination, MIN(pos) AS first FROM federation_outbox WHERE pos > $1 AND pos <= $2 GROUP BY destination",
        )
        .bind(after)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .filter_map(|r| {
                let name: String = match r.try_get("destination") {
                    Ok(n) => n,
                    Err(e) => return Some(Err(db(e))),
                };
                let first: i64 = match r.try_get("first") {
                    Ok(p) => p,
                    Err(e) => return Some(Err(db(e))),
                };
                // Only names that parsed were queued; one that does not is skipped.
                OwnedServerName::try_from(name).ok().map(|n| Ok((n, first)))
            })
            .collect()
    }

    async fn forget_edus(&self, destination: &ServerName, upto: i64) -> Result<()> {
        sqlx::query("DELETE FROM federation_outbox WHERE destination = $1 AND pos <= $2")
            .bind(destination.as_str())
            .bind(upto)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
