//! Stream positions: how a write takes them, and when readers may see them.
//!
//! The invariant `/sync` rests on: a reader that sees position `p` never misses a write below
//! `p`, however late that write commits and whichever instance made it.
//!
//! - **SQLite** has one writer process and one writer at a time anyway: positioned writes
//!   take the process's write lock, bump the one-row `stream_pos` in their transaction, and
//!   publish their positions at commit.
//! - **PostgreSQL** is shared by many instances, and nothing is held to commit. A write takes
//!   its positions from the sequence `stream_seq` (`stream_take`, which first gives the
//!   transaction an id) and commits when it is done, concurrently with every other. A reader
//!   publishes position `h` only once every transaction that could still commit a position at
//!   or below `h` has ended: `stream_observe` reads the sequence's head `h` and then the ids
//!   of the transactions open on Sandcat's connections ([`APPLICATION_NAME`]); when none of
//!   those is open any more at a later observation, `h` is safe ([`Observations`]). A writer
//!   that dies is ended by PostgreSQL with its connection, so it holds nobody back for long,
//!   and other programs' transactions, which hold no position, are never waited for.
//!
//!   Each write also records what it changed (`stream_changes`), so that an instance learns
//!   the writes of the others ([`SqlStore::refresh`]) before it shows them.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use super::*;

/// The `application_name` of every connection this store opens on PostgreSQL: what tells
/// its transactions from those of other programs sharing the server.
pub(super) const APPLICATION_NAME: &str = "sandcat";

/// Observations kept at most: a reader that cannot resolve any keeps the newest.
const MAX_OBSERVATIONS: usize = 32;

/// How long opening the store waits for the writes open at that moment to end before it
/// gives up: a transaction held open that long is stuck, and start-up says so.
const STARTUP_PATIENCE: Duration = Duration::from_secs(60);

/// How long a write waits for its positions to be published before it returns anyway (it is
/// committed, and readers see it once whatever held it back has ended).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(5);

/// A head of the sequence, and the transactions that were open just after it was read.
#[derive(Debug)]
struct Observation {
    head: i64,
    running: Vec<u64>,
}

/// Heads seen on PostgreSQL that cannot be published yet.
#[derive(Debug, Default)]
pub(super) struct Observations {
    pending: Vec<Observation>,
}

/// `id,id,…`: the open transactions `stream_observe` lists.
fn running_of(list: &str) -> Result<Vec<u64>> {
    list.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse()
                .map_err(|_| Error::storage(format!("unreadable transaction list {list:?}")))
        })
        .collect()
}

impl Observations {
    /// Adds what one `stream_observe` returned and answers the highest head that is now
    /// safe: every transaction open when it was observed has ended.
    fn add(&mut self, head: i64, running: Vec<u64>) -> Option<i64> {
        let now: HashSet<u64> = running.iter().copied().collect();
        let mut safe = None;
        self.pending.retain(|o| {
            let done = o.running.iter().all(|x| !now.contains(x));
            if done {
                safe = safe.max(Some(o.head));
            }
            !done
        });
        if running.is_empty() {
            safe = safe.max(Some(head));
        } else {
            self.pending.push(Observation { head, running });
        }
        if let Some(s) = safe {
            self.pending.retain(|o| o.head > s);
        }
        if self.pending.len() > MAX_OBSERVATIONS {
            self.pending.drain(..self.pending.len() - MAX_OBSERVATIONS);
        }
        safe
    }
}

impl SqlStore {
    /// Runs `f` in a transaction that has taken `n` positions (ascending, passed to `f`), then
    /// publishes them with what they changed: when this returns, readers on this instance
    /// see the write.
    pub(super) async fn with_positions<T>(
        &self,
        n: usize,
        changes: Vec<Change>,
        f: impl AsyncFnOnce(&mut AnyConnection, &[i64]) -> Result<T>,
    ) -> Result<T> {
        let mut changes = changes;
        changes.sort_by_key(encode_change);
        changes.dedup();
        match self.dialect {
            Dialect::Sqlite => {
                let _guard = self.write.lock().await;
                let mut tx = self.begin().await?;
                let last: i64 =
                    sqlx::query_scalar("UPDATE stream_pos SET pos = pos + $1 RETURNING pos")
                        .bind(n as i64)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db)?;
                let positions: Vec<i64> = (last - n as i64 + 1..=last).collect();
                let value = f(&mut *tx, &positions).await?;
                tx.commit().await.map_err(db)?;
                // Mark before publishing: whoever reads `last` also sees what changed.
                self.changes.mark(changes, last);
                self.committed.fetch_max(last, Ordering::SeqCst);
                Ok(value)
            }
            Dialect::Postgres => {
                let mut tx = self.begin().await?;
                let mut positions: Vec<i64> =
                    sqlx::query_scalar("SELECT p FROM stream_take($1) AS p")
                        .bind(n as i64)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db)?;
                positions.sort_unstable();
                let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
                    return Err(Error::storage("no stream position was taken"));
                };
                let value = f(&mut *tx, &positions).await?;
                record_changes(&mut tx, &changes, first, last).await?;
                tx.commit().await.map_err(db)?;
                self.changes.mark(changes, last);
                self.publish_through(last).await?;
                Ok(value)
            }
        }
    }

    /// Waits until readers on this instance see `pos` (another write's transaction may hold
    /// it back for the time it takes to finish).
    async fn publish_through(&self, pos: i64) -> Result<()> {
        let started = Instant::now();
        let mut pause = Duration::from_micros(200);
        while self.committed.load(Ordering::SeqCst) < pos {
            self.advance(Some(pos)).await?;
            if self.committed.load(Ordering::SeqCst) >= pos {
                break;
            }
            if started.elapsed() > PUBLISH_PATIENCE {
                tracing::warn!(pos, "a committed write is not yet visible: an open transaction holds the stream back");
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        Ok(())
    }

    /// On PostgreSQL, the highest position that is safe when the store opens.
    pub(super) async fn safe_position(pool: &AnyPool) -> Result<i64> {
        let mut seen = Observations::default();
        let started = Instant::now();
        loop {
            let (head, running) = observe(pool).await?;
            if let Some(s) = seen.add(head, running) {
                return Ok(s);
            }
            if started.elapsed() > STARTUP_PATIENCE {
                return Err(Error::storage(format!(
                    "a transaction of another Sandcat instance has held stream positions open for over {} s; see pg_stat_activity (application_name = '{APPLICATION_NAME}')",
                    STARTUP_PATIENCE.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Catches up with positions written by other instances sharing the database: marks what
    /// they changed, then publishes them — everything committed before the call, once the
    /// writes still open then have ended. Call it before waking local readers for a remote
    /// write. A no-op on SQLite, which has one writer process.
    pub async fn refresh(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        match self.advance(None).await? {
            Some(head) => self.publish_through(head).await,
            None => Ok(()),
        }
    }

    /// One observation, unless `wanted` is published by the time it is this caller's turn;
    /// the head it observed.
    async fn advance(&self, wanted: Option<i64>) -> Result<Option<i64>> {
        let mut seen = self.observations.lock().await;
        if wanted.is_some_and(|w| self.committed.load(Ordering::SeqCst) >= w) {
            return Ok(None);
        }
        let (head, running) = observe(&self.pool).await?;
        let safe = seen.add(head, running);
        let from = self.committed.load(Ordering::SeqCst);
        let Some(upto) = safe.filter(|s| *s > from) else {
            return Ok(Some(head));
        };
        let rows = sqlx::query(
            "SELECT pos, change FROM stream_changes WHERE pos > $1 AND pos <= $2 ORDER BY pos",
        )
        .bind(from)
        .bind(upto)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        for r in rows {
            let pos: i64 = r.try_get("pos").map_err(db)?;
            let change: String = r.try_get("change").map_err(db)?;
            if let Some(c) = decode_change(&change) {
                self.changes.mark([c], pos);
            }
        }
        self.committed.fetch_max(upto, Ordering::SeqCst);
        Ok(Some(head))
    }
}

/// Records what a write changed, at its last position, in its transaction.
async fn record_changes(
    tx: &mut AnyConnection,
    changes: &[Change],
    first: i64,
    last: i64,
) -> Result<()> {
    if !changes.is_empty() {
        // One statement for all of them: this is on every write's path.
        let rows: Vec<String> = (0..changes.len())
            .map(|i| format!("($1, ${})", i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO stream_changes (pos, change) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(last);
        for c in changes {
            q = q.bind(encode_change(c));
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    if (first..=last).any(|p| p % 10_000 == 0) {
        // Every 10,000 positions: instances read changes from where they stand, and nobody
        // stands this far back.
        sqlx::query("DELETE FROM stream_changes WHERE pos < $1")
            .bind(last - 1_000_000)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// The sequence's head and Sandcat's transactions open just after it was read.
async fn observe(pool: &AnyPool) -> Result<(i64, Vec<u64>)> {
    let row = sqlx::query("SELECT head, running FROM stream_observe($1)")
        .bind(APPLICATION_NAME)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let head: i64 = row.try_get("head").map_err(db)?;
    let running: String = row.try_get("running").map_err(db)?;
    Ok((head, running_of(&running)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_lists_are_read() {
        assert_eq!(running_of("").unwrap(), Vec::<u64>::new());
        assert_eq!(running_of("10,12").unwrap(), vec![10, 12]);
        assert!(running_of("10:12").is_err());
    }

    #[test]
    fn a_head_is_safe_once_what_ran_then_has_ended() {
        let mut o = Observations::default();
        assert_eq!(o.add(5, vec![]), Some(5), "nothing in progress");
        assert_eq!(o.add(8, vec![100, 101]), None);
        assert_eq!(o.add(9, vec![101, 102]), None, "101 still runs");
        assert_eq!(o.add(9, vec![102]), Some(8), "100 and 101 ended");
        assert_eq!(o.add(12, vec![]), Some(12));
        assert!(o.pending.is_empty());
    }
}
