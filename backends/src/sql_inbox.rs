//! The inbox in the SQL store (SQLite or PostgreSQL): the embedded profile's `Inbox`, and the
//! pipeline's when no MongoDB is configured. A step is one transaction: its entries, the
//! counters they advance and the indexed position commit together. An entry points at its
//! event's JSON, kept once per event in `inbox_events` (a membership change of a group of N
//! members has N entries; N joins, N² — copies of the event would be most of the write).
//! Entries written before that table kept their copy in `inbox.event`.

use std::collections::HashMap;

use async_trait::async_trait;
use sandcat_core::{
    ports::{number_inbox_items, Inbox, InboxEntry, InboxItem, InboxSeqs, SeqRange},
    Result,
};
use sqlx::{any::AnyRow, AnyConnection, Row};

use crate::sql::{db, params, value_rows, SqlStore};

/// Rows per statement (8 parameters each at most, well below SQLite's limit).
const ROWS_PER_INSERT: usize = 500;

fn entry(r: &AnyRow) -> Result<InboxEntry> {
    Ok(InboxEntry {
        item: InboxItem {
            user: r.try_get("user_id").map_err(db)?,
            pos: r.try_get("pos").map_err(db)?,
            room: r.try_get("room_id").map_err(db)?,
            event_id: r.try_get("event_id").map_err(db)?,
            sent: r.try_get::<i64, _>("sent").map_err(db)? != 0,
            event: r.try_get::<String, _>("event").map_err(db)?.into(),
            ts: r.try_get("ts").map_err(db)?,
        },
        seq: r.try_get("seq").map_err(db)?,
    })
}

/// The counters of `users`, as the transaction sees them.
async fn counters(tx: &mut AnyConnection, users: &[&str]) -> Result<HashMap<String, InboxSeqs>> {
    let mut out = HashMap::new();
    for chunk in users.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT user_id, seq, send_seq FROM inbox_counters WHERE user_id IN ({})",
            params(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, i64, i64)>(&sql);
        for u in chunk {
            q = q.bind(*u);
        }
        for (user, seq, send_seq) in q.fetch_all(&mut *tx).await.map_err(db)? {
            out.insert(user, InboxSeqs { seq, send_seq });
        }
    }
    Ok(out)
}

/// An entry's columns, its event read from `inbox_events` (or its own copy, if older); `FROM`
/// the inbox as `i`.
const ENTRY: &str = "SELECT i.user_id, i.sent, i.seq, i.pos, i.room_id, i.event_id, i.ts, \
     COALESCE(e.event, i.event) AS event \
     FROM inbox i LEFT JOIN inbox_events e ON e.pos = i.pos";

/// Each event of `entries` once.
async fn insert_events(tx: &mut AnyConnection, entries: &[InboxEntry]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let events: Vec<&InboxItem> = entries
        .iter()
        .map(|e| &e.item)
        .filter(|i| seen.insert(i.pos))
        .collect();
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inbox_events (pos, event) VALUES {} ON CONFLICT (pos) DO NOTHING",
            value_rows(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for i in chunk {
            q = q.bind(i.pos).bind(&*i.event);
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

async fn insert(tx: &mut AnyConnection, entries: &[InboxEntry]) -> Result<()> {
    insert_events(tx, entries).await?;
    for chunk in entries.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inbox (user_id, sent, seq, pos, room_id, event_id, event, ts) VALUES {}",
            value_rows(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.item.user)
                .bind(e.item.sent as i64)
                .bind(e.seq)
                .bind(e.item.pos)
                .bind(&e.item.room)
                .bind(&e.item.event_id)
                .bind("")
                .bind(e.item.ts);
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

async fn save_counters(
    tx: &mut AnyConnection,
    counters: &HashMap<String, InboxSeqs>,
) -> Result<()> {
    let all: Vec<(&String, &InboxSeqs)> = counters.iter().collect();
    for chunk in all.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inbox_counters (user_id, seq, send_seq) VALUES {} \
             ON CONFLICT (user_id) DO UPDATE SET seq = excluded.seq, send_seq = excluded.send_seq",
            value_rows(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for (user, c) in chunk {
            q = q.bind(user.as_str()).bind(c.seq).bind(c.send_seq);
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl Inbox for SqlStore {
    async fn append(&self, items: &[InboxItem], redacted: &[String], upto: i64) -> Result<()> {
        let mut tx = self.begin_read_write().await?;
        let indexed: i64 = sqlx::query_scalar("SELECT pos FROM inbox_indexed WHERE id = 0")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let fresh: Vec<InboxItem> = items.iter().filter(|i| i.pos > indexed).cloned().collect();
        if !fresh.is_empty() {
            let mut users: Vec<&str> = fresh.iter().map(|i| i.user.as_str()).collect();
            users.sort_unstable();
            users.dedup();
            let mut counters = counters(&mut tx, &users).await?;
            let entries = number_inbox_items(&fresh, &mut counters);
            insert(&mut tx, &entries).await?;
            save_counters(&mut tx, &counters).await?;
        }
        for event_id in redacted {
            sqlx::query(
                "DELETE FROM inbox_events WHERE pos IN \
                 (SELECT pos FROM inbox WHERE event_id = $1)",
            )
            .bind(event_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
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
        received: SeqRange,
        sent: SeqRange,
        limit: usize,
    ) -> Result<Vec<InboxEntry>> {
        let sql = format!(
            "{ENTRY} WHERE i.user_id = $1 \
             AND ((i.sent = 0 AND i.seq > $2 AND i.seq <= $3) \
             OR (i.sent = 1 AND i.seq > $4 AND i.seq <= $5)) \
             ORDER BY i.pos LIMIT $6"
        );
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(received.after)
            .bind(received.until)
            .bind(sent.after)
            .bind(sent.until)
            .bind(limit as i64)
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn since(&self, user: &str, after: i64, limit: usize) -> Result<Vec<InboxEntry>> {
        let sql =
            format!("{ENTRY} WHERE i.user_id = $1 AND i.pos > $2 ORDER BY i.pos, i.sent LIMIT $3");
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(after)
            .bind(limit as i64)
            .fetch_all(self.pool())
            .await
            .map_err(db)?;
        rows.iter().map(entry).collect()
    }

    async fn received(&self, user: &str, seq: i64) -> Result<Option<InboxEntry>> {
        let sql = format!("{ENTRY} WHERE i.user_id = $1 AND i.sent = 0 AND i.seq = $2");
        let row = sqlx::query(&sql)
            .bind(user)
            .bind(seq)
            .fetch_optional(self.pool())
            .await
            .map_err(db)?;
        row.as_ref().map(entry).transpose()
    }

    async fn latest(&self, user: &str) -> Result<InboxSeqs> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT seq, send_seq FROM inbox_counters WHERE user_id = $1")
                .bind(user)
                .fetch_optional(self.pool())
                .await
                .map_err(db)?;
        Ok(
            row.map_or_else(InboxSeqs::default, |(seq, send_seq)| InboxSeqs {
                seq,
                send_seq,
            }),
        )
    }

    async fn remove(&self, user: &str, seqs: &[i64]) -> Result<()> {
        for chunk in seqs.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "DELETE FROM inbox WHERE user_id = $1 AND sent = 0 AND seq IN ({})",
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
