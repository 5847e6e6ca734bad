//! Transactions that stay whole when the future running them is dropped.
//!
//! A write runs in whatever future asks for it: an HTTP handler's, which is dropped when the
//! client disconnects, as often as a bus lane's. sqlx's own PostgreSQL `begin` is not safe to
//! drop: a future dropped while `BEGIN` is in flight leaves the connection inside a
//! transaction nothing ends, and the pool hands it to the next borrower (sqlx issue 4393,
//! unfixed in 0.8.6 and 0.9.0). Whatever that borrower writes then waits for someone else's
//! `COMMIT`, and a stream observation made on it reads a frozen list of open transactions
//! (PostgreSQL keeps activity statistics for the length of a transaction), so readers could
//! pass a position still being written. [`Tx`] begins, commits and rolls back itself: a
//! transaction dropped before it ended, at any point, is rolled back before its connection
//! is used again, and a connection that cannot be rolled back is closed, which ends the
//! transaction on the server.
//!
//! SQLite's `begin` in sqlx is already safe to drop, and an in-memory database lives only as
//! long as its one connection, so SQLite keeps sqlx's transaction.

use std::ops::{Deref, DerefMut};

use sqlx::{pool::PoolConnection, Any, AnyConnection, Executor, Transaction};

use super::*;

/// An open transaction on one pooled connection.
pub(crate) struct Tx {
    conn: Conn,
}

enum Conn {
    Sqlite(Transaction<'static, Any>),
    /// A connection whose transaction may still be open on the server.
    Postgres(PoolConnection<Any>),
    /// Committed, or handed to the rollback that runs after a drop.
    Ended,
}

impl SqlStore {
    /// Begins a transaction on a connection of the pool.
    /// A transaction that reads before it writes. On SQLite it takes the write lock at its
    /// start (`BEGIN IMMEDIATE`, waiting as long as the busy timeout allows): a read snapshot
    /// that another writer's commit outdated cannot become a write (`SQLITE_BUSY` at once,
    /// which waiting does not cure).
    pub(crate) async fn begin_read_write(&self) -> Result<Tx> {
        match self.dialect {
            Dialect::Sqlite => Ok(Tx {
                conn: Conn::Sqlite(self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db)?),
            }),
            Dialect::Postgres => self.begin().await,
        }
    }

    pub(crate) async fn begin(&self) -> Result<Tx> {
        let conn = match self.dialect {
            Dialect::Sqlite => Conn::Sqlite(self.pool.begin().await.map_err(db)?),
            Dialect::Postgres => Conn::Postgres(self.pool.acquire().await.map_err(db)?),
        };
        let mut tx = Tx { conn };
        if let Conn::Postgres(conn) = &mut tx.conn {
            // The guard exists before `BEGIN` is sent: dropped from here on, it ends whatever
            // reached the server.
            conn.execute("BEGIN").await.map_err(db)?;
        }
        Ok(tx)
    }
}

impl Tx {
    /// Commits. If this future is dropped before `COMMIT` is answered, the transaction
    /// either committed or is rolled back with its connection; nothing is left open.
    pub(crate) async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        match &mut self.conn {
            Conn::Sqlite(_) => match std::mem::replace(&mut self.conn, Conn::Ended) {
                Conn::Sqlite(tx) => tx.commit().await,
                _ => unreachable!(),
            },
            Conn::Postgres(conn) => {
                // The connection stays guarded while `COMMIT` is in flight.
                conn.execute("COMMIT").await?;
                self.conn = Conn::Ended;
                Ok(())
            }
            Conn::Ended => Ok(()),
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.conn {
            Conn::Sqlite(tx) => tx,
            Conn::Postgres(conn) => conn,
            Conn::Ended => unreachable!("a transaction is used only until it ends"),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.conn {
            Conn::Sqlite(tx) => tx,
            Conn::Postgres(conn) => conn,
            Conn::Ended => unreachable!("a transaction is used only until it ends"),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        // sqlx's SQLite transaction rolls itself back.
        let Conn::Postgres(mut conn) = std::mem::replace(&mut self.conn, Conn::Ended) else {
            return;
        };
        // Before anything else uses the connection: roll back (waiting first for whatever
        // it was still answering), or close it if that fails or no runtime is left to do it.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = conn.execute("ROLLBACK").await {
                        tracing::warn!(error = %e, "closing a connection whose transaction could not be rolled back");
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}
