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
    inner: Inner,
}

enum Inner {
    Sqlite(Transaction<'static, Any>),
    Postgres {
        /// `None` once handed to the rollback that runs after a drop.
        conn: Option<PoolConnection<Any>>,
        /// Whether the transaction may still be open on the server.
        open: bool,
    },
    /// Between `commit` and the end of the value.
    Done,
}

impl SqlStore {
    /// Begins a transaction on a connection of the pool.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        match self.dialect {
            Dialect::Sqlite => Ok(Tx {
                inner: Inner::Sqlite(self.pool.begin().await.map_err(db)?),
            }),
            Dialect::Postgres => {
                let conn = self.pool.acquire().await.map_err(db)?;
                // The guard exists before `BEGIN` is sent: dropped from here on, it ends
                // whatever reached the server.
                let mut tx = Tx {
                    inner: Inner::Postgres {
                        conn: Some(conn),
                        open: true,
                    },
                };
                tx.deref_mut().execute("BEGIN").await.map_err(db)?;
                Ok(tx)
            }
        }
    }
}

impl Tx {
    /// Commits. If this future is dropped before `COMMIT` is answered, the transaction
    /// either committed or is rolled back with its connection; nothing is left open.
    pub(crate) async fn commit(mut self) -> std::result::Result<(), sqlx::Error> {
        match std::mem::replace(&mut self.inner, Inner::Done) {
            Inner::Sqlite(tx) => tx.commit().await,
            Inner::Postgres { conn, open } => {
                self.inner = Inner::Postgres { conn, open };
                self.deref_mut().execute("COMMIT").await?;
                if let Inner::Postgres { open, .. } = &mut self.inner {
                    *open = false;
                }
                Ok(())
            }
            Inner::Done => Ok(()),
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            Inner::Sqlite(tx) => tx,
            Inner::Postgres {
                conn: Some(conn), ..
            } => conn,
            _ => unreachable!("a transaction is used only while it holds its connection"),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Inner::Sqlite(tx) => tx,
            Inner::Postgres {
                conn: Some(conn), ..
            } => conn,
            _ => unreachable!("a transaction is used only while it holds its connection"),
        }
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Inner::Postgres {
            conn: Some(conn),
            open: true,
        } = &mut self.inner
        else {
            return;
        };
        // Before anything else uses the connection: roll back (waiting first for whatever
        // it was still answering), or close it if that fails or no runtime is left to do it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            conn.close_on_drop();
            return;
        };
        let Inner::Postgres {
            conn: Some(mut conn),
            ..
        } = std::mem::replace(&mut self.inner, Inner::Done)
        else {
            return;
        };
        runtime.spawn(async move {
            if let Err(e) = conn.execute("ROLLBACK").await {
                tracing::warn!(error = %e, "closing a connection whose transaction could not be rolled back");
                conn.close_on_drop();
            }
        });
    }
}
