//! The inbox in the SQL store (SQLite or PostgreSQL): the embedded profile's `Inbox`, and the
//! pipeline's when no MongoDB is configured.

use async_trait::async_trait;
use sandcat_core::{
    ports::{Inbox, InboxEntry},
    Result,
};
use sqlx::{any::AnyRow, Row};

use crate::sql::{db, params, SqlStore};

/// Rows per statement (7 parameters each at most, well below SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

fn entry(r: &AnyRow) -> Result<InboxEntry> {
    Ok(InboxEntry {
        user: r.try_get("user_id").map_err(db)?,
        seq: r.try_get("seq").map_err(db)?,
        room: r.try_get("room_id").map_err(db)?,
        event_id: r.try_get("event_id").map_err(db)?,
        sent: r.try_get::<i64, _>("sent").map_err(db)? != 0,
        event: r.try_get("event").map_err(db)?,
        ts: r.try_get("ts").map_err(db)?,
    })
}

#[async_trait]
impl Inbox for SqlStore {
    async fn put(&self, entries: &[InboxEntry], redacted: &[String], upto: i64) -> Result<()> {
        let mut tx = self.pool().begin().await.map_err(db)?;
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", params(i * 7 + 1, 7)))
                .collect();
            let sql = format!(
                "INSERT INTO inbox (user_id, seq, room_id, event_id, sent, event, ts) VALUES {} ON CONFLICT (user_id, seq) DO NOTHING",
                rows.join(", ")
            );
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(&e.user)
                    .bind(e.seq)
                    .bind(&e.room)
                    .bind(&e.event_id)
                    .bind(e.sent as i64)
                    .bind(&e.event)
                    .bind(e.ts);
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        for event_id in redacted {
            sqlx::query("DELETE FROM inbox WHERE event_id = $1")
                .bind(event_id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("UPDATE inbox_indexed SET pos = $1 WHERE id = 0 AND pos < $1")
            .bind(upto)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn indexed(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT pos FROM inbox_indexed WHERE id = 0")
            .fetch_one(self.pool())
            .await
            .map_err(db)
    }

    async fn pull(
        &self,
        user: &str,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM inbox WHERE user_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
        )
        .bind(user)
        .bind(after)
        .bind(until)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn latest(&self, user: &str) -> Result<(i64, i64)> {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT sent, MAX(seq) FROM inbox WHERE user_id = $1 GROUP BY sent")
                .bind(user)
                .fetch_all(self.pool())
                .await
                .map_err(db)?;
        let of = |sent: i64| {
            rows.iter()
                .find(|(s, _)| *s == sent)
                .map_or(0, |(_, seq)| *seq)
        };
        Ok((of(0), of(1)))
    }

    async fn remove(&self, user: &str, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "DELETE FROM inbox WHERE user_id = $1 AND seq IN ({})",
                params(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(user);
            for seq in chunk {
                q = q.bind(seq);
            }
            q.execute(self.pool()).await.map_err(db)?;
        }
        Ok(())
    }
}
