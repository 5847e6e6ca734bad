//! EDUs kept for other servers until they accept them, at stream positions.

use ruma::{OwnedServerName, ServerName};
use sandcat_core::ports::{FederationOutbox, QueuedEdu};

use super::*;

#[async_trait]
impl FederationOutbox for SqlStore {
    async fn queue_edus(&self, edus: &[(OwnedServerName, String)]) -> Result<()> {
        if edus.is_empty() {
            return Ok(());
        }
        self.with_positions(edus.len(), Vec::new(), async |tx, positions| {
            // Multi-row inserts, a bounded number of parameters each.
            for (chunk, pos) in edus.chunks(300).zip(positions.chunks(300)) {
                let sql = format!(
                    "INSERT INTO federation_outbox (pos, destination, edu) VALUES {}",
                    value_rows(chunk.len(), 3)
                );
                let mut q = sqlx::query(&sql);
                for ((destination, edu), pos) in chunk.iter().zip(pos) {
                    q = q.bind(*pos).bind(destination.as_str()).bind(edu.as_str());
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
        limit: usize,
    ) -> Result<Vec<QueuedEdu>> {
        let rows = sqlx::query(
            "SELECT pos, edu FROM federation_outbox WHERE destination = $1 AND pos > $2 AND pos <= $3 ORDER BY pos LIMIT $4",
        )
        .bind(destination.as_str())
        .bind(after)
        .bind(until)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(QueuedEdu {
                    pos: r.try_get("pos").map_err(db)?,
                    edu: r.try_get("edu").map_err(db)?,
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
