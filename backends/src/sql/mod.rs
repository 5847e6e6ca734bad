//! The SQL store: users, rooms, events, state and client data, on SQLite (the embedded
//! default, one file) or PostgreSQL (the pipeline, shared by every instance). One code base:
//! the queries are written once in the SQL both understand (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`) and run through sqlx's `Any` driver; each dialect has its own migrations.
//!
//! Every persistent write takes its positions from one stream; how, and when readers see
//! them, is in `stream.rs`.

mod account_standing;
mod append;
mod client;
mod expiring_tokens;
mod federation_outbox;
mod key_backups;
mod keys;
mod native;
mod overview;
mod packed;
mod profile_fields;
mod push;
mod received_transactions;
mod registration_tokens;
mod reports;
mod room_dag;
mod room_lists;
mod room_times;
mod rooms;
mod rows;
mod search;
mod server_keys;
mod sliding_connections;
mod state_groups;
mod stream;
mod threads;
mod threepids;
mod tx;
mod users;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId};
use sandcat_core::{
    changes::{Change, ChangeLog},
    error::ErrorCode,
    ports::{
        AppendBatch, AppserviceState, AppserviceStore, BatchOutcome, ClientStore, CodeCheck,
        DeviceRecord, Direction, FriendRow, Friendship, KeyStore, MediaIndex, MediaRecord,
        Membership, NativeProfile, NativeStore, NewEvent, Receipt, RoomSnapshot, RoomStore,
        StreamPosition, ToDevice, UserRecord, UserStore,
    },
    Error, Pdu, Result, StoredEvent,
};
use serde_json::Value;
use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions, AnyRow},
    AnyConnection, AnyPool, Executor, Row,
};

/// Which SQL database a [`SqlStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    /// Highest position whose write has committed and whose changes are marked.
    committed: AtomicI64,
    /// Positioned writes of this process, one at a time (SQLite only).
    write: tokio::sync::Mutex<()>,
    /// Heads of the stream not yet safe to publish (PostgreSQL only).
    observations: tokio::sync::Mutex<stream::Observations>,
    changes: Arc<ChangeLog>,
}

/// How long a stopping server waits for its database connections in use.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn db(e: sqlx::Error) -> Error {
    Error::storage(e)
}

/// A timestamp or count as a signed 64-bit column (a larger one is as good as forever).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `$from, $from+1, …`: `n` numbered parameters, for statements built per batch.
pub(crate) fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `VALUES` of a multi-row insert: `rows` tuples of `width` placeholders, numbered from
/// `$1` — `($1, $2), ($3, $4), …`.
pub(crate) fn value_rows(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|i| format!("({})", params(i * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A count or a time in milliseconds as the databases store it (`BIGINT`), saturating.
fn to_db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored `BIGINT` as a count or a time; never negative.
fn from_db_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn parse_id<T: TryFrom<String>>(s: String) -> Result<T> {
    T::try_from(s).map_err(|_| Error::storage("invalid identifier in database"))
}

const EVENT_COLUMNS: &str =
    "pos, event_id, room_id, json, unsigned, redacted_by, txn_user, txn_device, txn_id";

/// A change as `stream_changes` keeps it.
fn encode_change(c: &Change) -> String {
    match c {
        Change::Room(r) => format!("r{r}"),
        Change::User(u) => format!("u{u}"),
        Change::Keys => "k".to_owned(),
    }
}

fn decode_change(s: &str) -> Option<Change> {
    match s.split_at_checked(1)? {
        ("r", r) => OwnedRoomId::try_from(r).ok().map(Change::Room),
        ("u", u) => OwnedUserId::try_from(u).ok().map(Change::User),
        ("k", _) => Some(Change::Keys),
        _ => None,
    }
}

/// A cluster-wide role held by this instance (a PostgreSQL session advisory lock on a
/// connection of its own): released when dropped, or when the instance or its connection dies.
pub struct Leadership {
    conn: Option<AnyConnection>,
}

impl Leadership {
    /// Whether the role is still held (the connection that holds the lock still answers).
    pub async fn alive(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(c) => sqlx::query("SELECT 1").execute(&mut *c).await.is_ok(),
        }
    }
}

/// Creates (if needed) a schema in the PostgreSQL database at `base_url` and returns a URL
/// whose connections use it: one server, several isolated Sandcat databases (tests use one per
/// test).
pub async fn create_schema(base_url: &str, schema: &str) -> Result<String> {
    use sqlx::Connection;
    if !schema
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::storage("schema names are letters, digits and _"));
    }
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(base_url)
        .await
        .map_err(|e| Error::storage(format!("connecting to the database: {e}")))?;
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
        .await
        .map_err(db)?;
    let sep = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{sep}options[search_path]={schema}"))
}

impl SqlStore {
    /// Opens (creating if needed) an SQLite database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect_with(&url, Dialect::Sqlite, 8).await
    }

    /// An in-memory SQLite database, for tests of single slices.
    pub async fn memory() -> Result<Self> {
        Self::connect_with("sqlite::memory:", Dialect::Sqlite, 1).await
    }

    /// Connects to PostgreSQL (`postgres://…`) and applies migrations. Fails at once when the
    /// server cannot be reached; later outages are retried by the pool on each query.
    pub async fn postgres(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, Dialect::Postgres, max_connections).await
    }

    async fn connect_with(url: &str, dialect: Dialect, max: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url
            .parse()
            .map_err(|e| Error::storage(format!("database URL: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match dialect {
                        Dialect::Sqlite => {
                            // Each connection has a page cache of its own; 2 MB (SQLite's
                            // default) bounds the pool's at 16 MB. 16 MB each held 8 MB more
                            // after the send benchmark, and up to 128 MB as the file grew, for
                            // no measurable speed: the OS caches the file for all of them.
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 10000; PRAGMA cache_size = -2000; \
                                 PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                        }
                        Dialect::Postgres => {
                            // How readers tell this store's transactions from other programs'.
                            let set =
                                format!("SET application_name = '{}'", stream::APPLICATION_NAME);
                            conn.execute(set.as_str()).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| Error::storage(format!("connecting to the database: {e}")))?;
        let migrated = match dialect {
            Dialect::Sqlite => sqlx::migrate!("../migrations/sqlite").run(&pool).await,
            Dialect::Postgres => sqlx::migrate!("../migrations/postgres").run(&pool).await,
        };
        migrated.map_err(|e| Error::storage(format!("migration failed: {e}")))?;
        let pos: i64 = match dialect {
            Dialect::Sqlite => sqlx::query_scalar("SELECT pos FROM stream_pos")
                .fetch_one(&pool)
                .await
                .map_err(db)?,
            Dialect::Postgres => Self::safe_position(&pool).await?,
        };
        Ok(SqlStore {
            pool,
            dialect,
            committed: AtomicI64::new(pos),
            write: Default::default(),
            observations: Default::default(),
            changes: Arc::new(ChangeLog::starting_at(pos)),
        })
    }

    /// Takes the cluster-wide role `name` if no other instance holds it. On SQLite (one
    /// process) the role is always this instance's.
    pub async fn try_lead(&self, name: &str) -> Result<Option<Leadership>> {
        if self.dialect == Dialect::Sqlite {
            return Ok(Some(Leadership { conn: None }));
        }
        // A connection of its own, closed (not pooled) when dropped, which releases the lock.
        // The lock is per schema: several Sandcat databases may share one PostgreSQL database.
        let mut conn = self.pool.acquire().await.map_err(db)?.detach();
        let got: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_lock(hashtext(current_schema() || ':' || $1))",
        )
        .bind(format!("sandcat:{name}"))
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
        Ok(got.then_some(Leadership { conn: Some(conn) }))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the pool when the server stops: connections in use have [`CLOSE_WAIT`] to come
    /// back, then every connection is closed. A closed SQLite connection rolls back whatever
    /// it had open, so a task of this instance that outlives it cannot keep the database
    /// locked for the next process (or the next instance in the same process).
    pub async fn close(&self) {
        if tokio::time::timeout(CLOSE_WAIT, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!("database connections still in use were closed");
        }
    }

    /// The pool, for other parts of the pipeline that keep their tables in this database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
        rows::EventRow::read(row)?.into_event()
    }

    /// Rows to events, attaching the redaction event of redacted ones.
    async fn events_from_rows(&self, rows: Vec<AnyRow>) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let row = rows::EventRow::read(&row)?;
            let mut ev = row.fields().into_event()?;
            if let Some(by) = &row.redacted_by {
                ev.redacted_because = self.redaction(by).await?.map(Box::new);
            }
            out.push(ev);
        }
        Ok(out)
    }

    /// The redaction event `event_id` (of a redacted event), if stored.
    async fn redaction(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
        ))
        .bind(event_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| Self::event_from_row(&r)).transpose()
    }

    /// Upserts a key (`sql` binds user, key name, JSON, position) as a change of the key set.
    async fn put_key(
        &self,
        sql: &'static str,
        user_id: &UserId,
        name: &str,
        key: &Value,
    ) -> Result<()> {
        let json = key.to_string();
        self.with_positions(1, vec![Change::Keys], async |conn, pos| {
            sqlx::query(sql)
                .bind(user_id.as_str())
                .bind(name)
                .bind(&json)
                .bind(pos[0])
                .execute(conn)
                .await
                .map_err(db)?;
            Ok(())
        })
        .await
    }

    /// The change log this store marks on every positioned write.
    pub fn changes(&self) -> Arc<ChangeLog> {
        self.changes.clone()
    }
}

impl StreamPosition for SqlStore {
    fn current_pos(&self) -> i64 {
        self.committed.load(Ordering::SeqCst)
    }
}
