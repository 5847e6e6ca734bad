//! The SQL store: users, rooms, events, state and client data, on SQLite (the embedded
//! default, one file) or PostgreSQL (the pipeline, shared by every instance). One code base:
//! the queries are written once in the SQL both understand (`$n` parameters, `ON CONFLICT`,
//! `RETURNING`) and run through sqlx's `Any` driver; each dialect has its own migrations.
//!
//! Every write that takes a stream position bumps the one-row `stream_pos` table inside its
//! own transaction. The row lock orders writers — across instances too — so positions commit in
//! order, and [`StreamPosition::current_pos`] never runs ahead of what readers can see. On
//! PostgreSQL each such write also records what it changed (`stream_changes`), so that an
//! instance learns the writes of the others ([`SqlStore::refresh`]) before it shows them.

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
        AppserviceState, AppserviceStore, BatchOutcome, ClientStore, DeviceRecord, Direction,
        FriendRow, Friendship, KeyStore, MediaIndex, MediaRecord, Membership, NativeProfile,
        NativeStore, NewEvent, Receipt, RoomSnapshot, RoomStore, StreamPosition, ToDevice,
        UserRecord, UserStore,
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
    /// Positioned writes of this process, one at a time.
    write: tokio::sync::Mutex<()>,
    refreshing: tokio::sync::Mutex<()>,
    changes: Arc<ChangeLog>,
}

pub(crate) fn db(e: sqlx::Error) -> Error {
    Error::storage(e)
}

/// `$from, $from+1, …`: `n` numbered parameters, for statements built per batch.
pub(crate) fn params(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
                    if dialect == Dialect::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16000; \
                             PRAGMA foreign_keys = ON;",
                        )
                        .await?;
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
        let pos: i64 = sqlx::query_scalar("SELECT pos FROM stream_pos")
            .fetch_one(&pool)
            .await
            .map_err(db)?;
        Ok(SqlStore {
            pool,
            dialect,
            committed: AtomicI64::new(pos),
            write: Default::default(),
            refreshing: Default::default(),
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

    /// The pool, for other parts of the pipeline that keep their tables in this database.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
        let event_id: OwnedEventId = parse_id(row.try_get("event_id").map_err(db)?)?;
        let room_id: OwnedRoomId = parse_id(row.try_get("room_id").map_err(db)?)?;
        let json: String = row.try_get("json").map_err(db)?;
        let pdu = Pdu::from_stored(&json, event_id, room_id)?;
        let unsigned: Option<String> = row.try_get("unsigned").map_err(db)?;
        let txn_user: Option<String> = row.try_get("txn_user").map_err(db)?;
        let txn_device: Option<String> = row.try_get("txn_device").map_err(db)?;
        let txn_id: Option<String> = row.try_get("txn_id").map_err(db)?;
        let txn = match (txn_user, txn_device, txn_id) {
            (Some(u), Some(d), Some(t)) => Some((parse_id(u)?, d, t)),
            _ => None,
        };
        Ok(StoredEvent {
            pos: row.try_get("pos").map_err(db)?,
            pdu,
            unsigned: unsigned.and_then(|u| serde_json::from_str(&u).ok()),
            redacted_because: None,
            txn,
        })
    }

    /// Rows to events, attaching the redaction event of redacted ones.
    async fn events_from_rows(&self, rows: Vec<AnyRow>) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut ev = Self::event_from_row(&row)?;
            let redacted_by: Option<String> = row.try_get("redacted_by").map_err(db)?;
            if let Some(r) = redacted_by {
                let r = sqlx::query(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
                ))
                .bind(r)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
                if let Some(r) = r {
                    ev.redacted_because = Some(Box::new(Self::event_from_row(&r)?));
                }
            }
            out.push(ev);
        }
        Ok(out)
    }

    /// Runs `f` in a transaction that has taken `n` positions (the first is passed to `f`),
    /// then publishes them as committed with what they changed.
    async fn with_positions<T>(
        &self,
        n: i64,
        changes: Vec<Change>,
        f: impl AsyncFnOnce(&mut AnyConnection, i64) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.write.lock().await;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let last: i64 = sqlx::query_scalar("UPDATE stream_pos SET pos = pos + $1 RETURNING pos")
            .bind(n)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let first = last - n + 1;
        let value = f(&mut *tx, first).await?;
        let mut changes = changes;
        changes.sort_by_key(encode_change);
        changes.dedup();
        if self.dialect == Dialect::Postgres {
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
                for c in &changes {
                    q = q.bind(encode_change(c));
                }
                q.execute(&mut *tx).await.map_err(db)?;
            }
            if last / 10_000 != (first - 1) / 10_000 {
                // Every 10,000 positions: instances read changes from where they stand, and
                // nobody stands this far back.
                sqlx::query("DELETE FROM stream_changes WHERE pos < $1")
                    .bind(last - 1_000_000)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
        }
        tx.commit().await.map_err(db)?;
        // Mark before publishing: whoever reads `last` also sees what changed.
        self.changes.mark(changes, last);
        if self.committed.load(Ordering::SeqCst) == first - 1 {
            self.committed.fetch_max(last, Ordering::SeqCst);
        } else {
            // Other instances wrote in between: learn what they changed before showing it.
            self.refresh().await?;
        }
        Ok(value)
    }

    /// Catches up with positions written by other instances sharing the database: marks what
    /// they changed, then publishes them. Call it before waking local readers for a remote
    /// write. A no-op on SQLite, which has one writer process.
    pub async fn refresh(&self) -> Result<()> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        let _guard = self.refreshing.lock().await;
        let seen = self.committed.load(Ordering::SeqCst);
        let head: i64 = sqlx::query_scalar("SELECT pos FROM stream_pos")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if head <= seen {
            return Ok(());
        }
        let rows = sqlx::query(
            "SELECT pos, change FROM stream_changes WHERE pos > $1 AND pos <= $2 ORDER BY pos",
        )
        .bind(seen)
        .bind(head)
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
        self.committed.fetch_max(head, Ordering::SeqCst);
        Ok(())
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
                .bind(pos)
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

fn user_from_row(row: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        user_id: parse_id(row.try_get("user_id").map_err(db)?)?,
        password_hash: row.try_get("password_hash").map_err(db)?,
        displayname: row.try_get("displayname").map_err(db)?,
        avatar_url: row.try_get("avatar_url").map_err(db)?,
        deactivated: row.try_get::<i64, _>("deactivated").map_err(db)? != 0,
    })
}

#[async_trait]
impl UserStore for SqlStore {
    async fn create_user(&self, user: &UserRecord) -> Result<()> {
        let r = sqlx::query("INSERT INTO users (user_id, password_hash, displayname, avatar_url, deactivated, created_ts) VALUES ($1, $2, $3, $4, 0, $5)")
            .bind(user.user_id.as_str())
            .bind(&user.password_hash)
            .bind(&user.displayname)
            .bind(&user.avatar_url)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&self.pool)
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(Error::matrix(ErrorCode::UserInUse, "user id already taken"))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        let row = sqlx::query("SELECT * FROM users WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn set_password(&self, user_id: &UserId, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
            .bind(password_hash)
            .bind(user_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn set_profile(
        &self,
        user_id: &UserId,
        displayname: Option<Option<&str>>,
        avatar_url: Option<Option<&str>>,
    ) -> Result<()> {
        if let Some(d) = displayname {
            sqlx::query("UPDATE users SET displayname = $1 WHERE user_id = $2")
                .bind(d)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        if let Some(a) = avatar_url {
            sqlx::query("UPDATE users SET avatar_url = $1 WHERE user_id = $2")
                .bind(a)
                .bind(user_id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db)?;
        }
        Ok(())
    }

    async fn add_device_token(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
        token: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO devices (user_id, device_id, display_name, last_seen_ts) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name)")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(display_name)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // One token per device: logging in again on a device replaces its token.
        sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("INSERT INTO access_tokens (token, user_id, device_id) VALUES ($1, $2, $3)")
            .bind(token)
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn find_token(&self, token: &str) -> Result<Option<(OwnedUserId, String)>> {
        let row = sqlx::query("SELECT user_id, device_id FROM access_tokens WHERE token = $1")
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(r) => Ok(Some((
                parse_id(r.try_get("user_id").map_err(db)?)?,
                r.try_get("device_id").map_err(db)?,
            ))),
            None => Ok(None),
        }
    }

    async fn delete_token(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM access_tokens WHERE token = $1")
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
        let rows = sqlx::query("SELECT * FROM devices WHERE user_id = $1 ORDER BY device_id")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRecord {
                    device_id: r.try_get("device_id").map_err(db)?,
                    display_name: r.try_get("display_name").map_err(db)?,
                    last_seen_ts: r
                        .try_get::<Option<i64>, _>("last_seen_ts")
                        .map_err(db)?
                        .map(|t| t as u64),
                    last_seen_ip: r.try_get("last_seen_ip").map_err(db)?,
                })
            })
            .collect()
    }

    async fn update_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3",
        )
        .bind(display_name)
        .bind(user_id.as_str())
        .bind(device_id)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn delete_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut tokens = Vec::new();
        for d in device_ids {
            let rows: Vec<String> = sqlx::query_scalar(
                "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 RETURNING token",
            )
            .bind(user_id.as_str())
            .bind(d)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
            tokens.extend(rows);
            sqlx::query("DELETE FROM devices WHERE user_id = $1 AND device_id = $2")
                .bind(user_id.as_str())
                .bind(d)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(tokens)
    }

    async fn delete_tokens_except(
        &self,
        user_id: &UserId,
        keep_device: Option<&str>,
    ) -> Result<Vec<String>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id IS DISTINCT FROM $2 RETURNING token",
        )
        .bind(user_id.as_str())
        .bind(keep_device)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows)
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        ts: u64,
        ip: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE devices SET last_seen_ts = $1, last_seen_ip = COALESCE($2, last_seen_ip) WHERE user_id = $3 AND device_id = $4").bind(ts as i64).bind(ip).bind(user_id.as_str()).bind(device_id).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn search_users(&self, term: &str, limit: usize) -> Result<Vec<UserRecord>> {
        let like = format!(
            "%{}%",
            term.to_lowercase().replace('%', "").replace('_', "\\_")
        );
        let rows = sqlx::query("SELECT * FROM users WHERE deactivated = 0 AND (lower(user_id) LIKE $1 ESCAPE '\\' OR lower(displayname) LIKE $2 ESCAPE '\\') ORDER BY user_id LIMIT $3")
            .bind(&like)
            .bind(&like)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(user_from_row).collect()
    }
}

/// A `bus_batches` row as an outcome.
fn outcome_of(ids: Option<String>, error: Option<String>) -> Result<BatchOutcome> {
    Ok(match (ids, error) {
        (Some(ids), _) => BatchOutcome::Appended(serde_json::from_str(&ids)?),
        (None, Some(e)) => {
            let (code, message): (ErrorCode, String) = serde_json::from_str(&e)?;
            BatchOutcome::Refused(code, message)
        }
        (None, None) => return Err(Error::storage("a batch outcome without content")),
    })
}

/// `(event_id, rel_type)` of an event's `m.relates_to`.
fn relation_of(pdu: &Pdu) -> (Option<String>, Option<String>) {
    let c = pdu.content_value();
    let rel = c.get("m.relates_to");
    let target = rel
        .and_then(|r| r.get("event_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = rel
        .and_then(|r| r.get("rel_type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (target, kind)
}

#[async_trait]
impl RoomStore for SqlStore {
    async fn load_room(&self, room_id: &RoomId) -> Result<Option<RoomSnapshot>> {
        let Some(row) =
            sqlx::query("SELECT room_version, last_event_id, depth FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
        else {
            return Ok(None);
        };
        let version: String = row.try_get("room_version").map_err(db)?;
        let state = self
            .current_state(room_id)
            .await?
            .into_iter()
            .map(|e| e.pdu)
            .collect();
        Ok(Some(RoomSnapshot {
            version: RoomVersionId::try_from(version.as_str()).map_err(Error::storage)?,
            last_event_id: parse_id(row.try_get("last_event_id").map_err(db)?)?,
            depth: row.try_get::<i64, _>("depth").map_err(db)? as u64,
            state,
        }))
    }

    async fn append(&self, events: &[NewEvent], batch_id: Option<&str>) -> Result<Vec<i64>> {
        let n = events.len() as i64;
        let mut changes = Vec::new();
        for ev in events {
            changes.push(Change::Room(ev.pdu.room_id().to_owned()));
            if let (Some(key), Some(_)) = (&ev.pdu.state_key, ev.pdu.membership()) {
                if let Ok(user) = OwnedUserId::try_from(key.as_str()) {
                    changes.push(Change::User(user));
                }
            }
        }
        self.with_positions(n, changes, async |tx, first| {
            let mut positions = Vec::with_capacity(events.len());
            for (i, ev) in events.iter().enumerate() {
                let pos = first + i as i64;
                let pdu = &ev.pdu;
                let room_id = pdu.room_id().as_str();
                let (relates_to, rel_type) = relation_of(pdu);
                let (txn_user, txn_device, txn_id) = match &ev.txn {
                    Some((u, d, t)) => (Some(u.as_str()), Some(d.as_str()), Some(t.as_str())),
                    None => (None, None, None),
                };
                sqlx::query("INSERT INTO events (pos, event_id, room_id, sender, type, state_key, json, unsigned, txn_user, txn_device, txn_id, relates_to, rel_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)")
                    .bind(pos)
                    .bind(pdu.event_id.as_str())
                    .bind(room_id)
                    .bind(pdu.sender.as_str())
                    .bind(pdu.kind.to_string())
                    .bind(&pdu.state_key)
                    .bind(&ev.json)
                    .bind(ev.unsigned.as_ref().map(|u| u.to_string()))
                    .bind(txn_user)
                    .bind(txn_device)
                    .bind(txn_id)
                    .bind(relates_to)
                    .bind(rel_type)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                if let Some(version) = &ev.room_version {
                    sqlx::query("INSERT INTO rooms (room_id, room_version, last_event_id, depth) VALUES ($1, $2, $3, $4)")
                        .bind(room_id)
                        .bind(version.as_str())
                        .bind(pdu.event_id.as_str())
                        .bind(u64::from(pdu.depth) as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                } else {
                    // Only on top of the head the sequencer built on: another sequencer may
                    // have appended to this room since it loaded it.
                    let prev = pdu.prev_events.first().map(|e| e.as_str()).unwrap_or("");
                    let moved = sqlx::query("UPDATE rooms SET last_event_id = $1, depth = $2 WHERE room_id = $3 AND last_event_id = $4")
                        .bind(pdu.event_id.as_str())
                        .bind(u64::from(pdu.depth) as i64)
                        .bind(room_id)
                        .bind(prev)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    if moved.rows_affected() == 0 {
                        return Err(Error::Conflict(format!("{room_id} has moved past {prev}")));
                    }
                }
                if let Some(key) = &pdu.state_key {
                    let membership = pdu.membership();
                    sqlx::query("INSERT INTO current_state (room_id, type, state_key, event_id, pos, membership) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos, membership = excluded.membership")
                        .bind(room_id)
                        .bind(pdu.kind.to_string())
                        .bind(key)
                        .bind(pdu.event_id.as_str())
                        .bind(pos)
                        .bind(&membership)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                    if membership.as_deref() == Some("join") || membership.as_deref() == Some("invite") {
                        sqlx::query("DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2").bind(key).bind(room_id).execute(&mut *tx).await.map_err(db)?;
                    }
                }
                if let Some((target, redacted_json)) = &ev.redaction {
                    sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3").bind(redacted_json).bind(pdu.event_id.as_str()).bind(target.as_str()).execute(&mut *tx).await.map_err(db)?;
                }
                positions.push(pos);
            }
            if let Some(id) = batch_id {
                let ids: Vec<&str> = events.iter().map(|e| e.pdu.event_id.as_str()).collect();
                sqlx::query("INSERT INTO bus_batches (batch_id, event_ids, error, ts) VALUES ($1, $2, NULL, $3)")
                    .bind(id)
                    .bind(serde_json::to_string(&ids)?)
                    .bind(sandcat_core::now_ms() as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            Ok(positions)
        })
        .await
    }

    async fn batch_outcome(&self, batch_id: &str) -> Result<Option<BatchOutcome>> {
        let row = sqlx::query("SELECT event_ids, error FROM bus_batches WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let ids: Option<String> = r.try_get("event_ids").map_err(db)?;
        let error: Option<String> = r.try_get("error").map_err(db)?;
        outcome_of(ids, error).map(Some)
    }

    async fn batch_outcomes(&self, batch_ids: &[String]) -> Result<Vec<(String, BatchOutcome)>> {
        let mut out = Vec::new();
        for chunk in batch_ids.chunks(500) {
            let sql = format!(
                "SELECT batch_id, event_ids, error FROM bus_batches WHERE batch_id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await.map_err(db)? {
                let id: String = r.try_get("batch_id").map_err(db)?;
                let ids: Option<String> = r.try_get("event_ids").map_err(db)?;
                let error: Option<String> = r.try_get("error").map_err(db)?;
                out.push((id, outcome_of(ids, error)?));
            }
        }
        Ok(out)
    }

    async fn record_batch_outcome(&self, batch_id: &str, outcome: &BatchOutcome) -> Result<()> {
        let (ids, error) = match outcome {
            BatchOutcome::Appended(ids) => (Some(serde_json::to_string(ids)?), None),
            BatchOutcome::Refused(code, message) => {
                (None, Some(serde_json::to_string(&(code, message))?))
            }
        };
        sqlx::query("INSERT INTO bus_batches (batch_id, event_ids, error, ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(batch_id)
            .bind(ids)
            .bind(error)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
        ))
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(self.events_from_rows(rows).await?.pop())
    }

    async fn txn_event(
        &self,
        user_id: &UserId,
        device_id: &str,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE txn_user = $1 AND txn_device = $2 AND txn_id = $3",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        id.map(parse_id).transpose()
    }

    async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        v.map(|v| RoomVersionId::try_from(v.as_str()).map_err(Error::storage))
            .transpose()
    }

    async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 ORDER BY e.pos")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.events_from_rows(rows).await
    }

    async fn state_event(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>> {
        let rows = sqlx::query("SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 AND s.type = $2 AND s.state_key = $3")
            .bind(room_id.as_str())
            .bind(kind)
            .bind(state_key)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(self.events_from_rows(rows).await?.pop())
    }

    async fn state_changes(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE pos IN (SELECT MAX(pos) FROM events WHERE room_id = $1 AND state_key IS NOT NULL AND pos > $2 AND pos <= $3 GROUP BY type, state_key) ORDER BY pos"
        ))
        .bind(room_id.as_str())
        .bind(after)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }

    async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Membership>> {
        let row = sqlx::query("SELECT room_id, membership, pos, event_id FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(membership_from_row).transpose()
    }

    async fn memberships(&self, user_id: &UserId) -> Result<Vec<Membership>> {
        let rows = sqlx::query("SELECT room_id, membership, pos, event_id FROM current_state WHERE state_key = $1 AND type = 'm.room.member' AND room_id NOT IN (SELECT room_id FROM forgotten_rooms WHERE user_id = $2) ORDER BY pos")
            .bind(user_id.as_str())
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(membership_from_row).collect()
    }

    async fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, String)>> {
        let rows = sqlx::query("SELECT state_key, membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member' ORDER BY pos").bind(room_id.as_str()).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(r.try_get("state_key").map_err(db)?)?,
                    r.try_get::<Option<String>, _>("membership")
                        .map_err(db)?
                        .unwrap_or_default(),
                ))
            })
            .collect()
    }

    async fn timeline(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let order = match dir {
            Direction::Forward => "ASC",
            Direction::Backward => "DESC",
        };
        let rows = sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos {order} LIMIT $4"))
            .bind(room_id.as_str())
            .bind(after)
            .bind(until)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.events_from_rows(rows).await
    }

    async fn relations(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND relates_to = $2 AND ($3 IS NULL OR rel_type = $4) AND ($5 IS NULL OR type = $6) AND pos <= $7 ORDER BY pos DESC LIMIT $8"
        ))
        .bind(room_id.as_str())
        .bind(event_id.as_str())
        .bind(rel_type)
        .bind(rel_type)
        .bind(event_type)
        .bind(event_type)
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }

    async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        sqlx::query(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn count_unread(&self, room_id: &RoomId, user_id: &UserId) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE room_id = $1 AND sender != $2 \
             AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker') AND redacted_by IS NULL \
             AND pos > COALESCE((SELECT MAX(e.pos) FROM receipts r JOIN events e ON e.event_id = r.event_id \
                                 WHERE r.room_id = $1 AND r.user_id = $2 AND r.receipt_type IN ('m.read', 'm.read.private')), 0)",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(n as u64)
    }

    async fn set_alias(&self, alias: &str, room_id: &RoomId, creator: &UserId) -> Result<()> {
        let r =
            sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
                .bind(alias)
                .bind(room_id.as_str())
                .bind(creator.as_str())
                .execute(&self.pool)
                .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::matrix(
                ErrorCode::RoomInUse,
                "room alias already exists",
            )),
            Err(e) => Err(db(e)),
        }
    }

    async fn alias(&self, alias: &str) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(r) => Ok(Some((
                parse_id(r.try_get("room_id").map_err(db)?)?,
                parse_id(r.try_get("creator").map_err(db)?)?,
            ))),
            None => Ok(None),
        }
    }

    async fn delete_alias(&self, alias: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn set_public(&self, room_id: &RoomId, public: bool) -> Result<()> {
        sqlx::query("UPDATE rooms SET is_public = $1 WHERE room_id = $2")
            .bind(public as i64)
            .bind(room_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_public(&self, room_id: &RoomId) -> Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT is_public FROM rooms WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(v == Some(1))
    }

    async fn public_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT room_id FROM rooms WHERE is_public = 1")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn events_between(
        &self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE pos > $1 AND pos <= $2 ORDER BY pos ASC LIMIT $3"
        ))
        .bind(after)
        .bind(until)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }
}

#[async_trait]
impl AppserviceStore for SqlStore {
    async fn appservice_state(&self, id: &str) -> Result<Option<AppserviceState>> {
        let row = sqlx::query("SELECT last_pos, next_txn, pending_txn, pending_upto, pending_body FROM appservice_state WHERE appservice_id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let txn: Option<i64> = r.try_get("pending_txn").map_err(db)?;
        let upto: Option<i64> = r.try_get("pending_upto").map_err(db)?;
        let body: Option<String> = r.try_get("pending_body").map_err(db)?;
        Ok(Some(AppserviceState {
            last_pos: r.try_get("last_pos").map_err(db)?,
            next_txn: r.try_get::<i64, _>("next_txn").map_err(db)? as u64,
            pending: match (txn, upto, body) {
                (Some(t), Some(u), Some(b)) => Some((t as u64, u, b)),
                _ => None,
            },
        }))
    }

    async fn set_appservice_state(&self, id: &str, state: &AppserviceState) -> Result<()> {
        let (txn, upto, body) = match &state.pending {
            Some((t, u, b)) => (Some(*t as i64), Some(*u), Some(b.as_str())),
            None => (None, None, None),
        };
        sqlx::query("INSERT INTO appservice_state (appservice_id, last_pos, next_txn, pending_txn, pending_upto, pending_body) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (appservice_id) DO UPDATE SET last_pos = excluded.last_pos, next_txn = excluded.next_txn, pending_txn = excluded.pending_txn, pending_upto = excluded.pending_upto, pending_body = excluded.pending_body")
            .bind(id)
            .bind(state.last_pos)
            .bind(state.next_txn as i64)
            .bind(txn)
            .bind(upto)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

fn membership_from_row(r: &AnyRow) -> Result<Membership> {
    Ok(Membership {
        room_id: parse_id(r.try_get("room_id").map_err(db)?)?,
        membership: r
            .try_get::<Option<String>, _>("membership")
            .map_err(db)?
            .unwrap_or_default(),
        pos: r.try_get("pos").map_err(db)?,
        event_id: parse_id(r.try_get("event_id").map_err(db)?)?,
    })
}

fn receipt_from_row(r: &AnyRow) -> Result<Receipt> {
    let thread: String = r.try_get("thread_id").map_err(db)?;
    Ok(Receipt {
        room_id: parse_id(r.try_get("room_id").map_err(db)?)?,
        user_id: parse_id(r.try_get("user_id").map_err(db)?)?,
        receipt_type: r.try_get("receipt_type").map_err(db)?,
        thread_id: (!thread.is_empty()).then_some(thread),
        event_id: parse_id(r.try_get("event_id").map_err(db)?)?,
        ts: r.try_get::<i64, _>("ts").map_err(db)? as u64,
        pos: r.try_get("pos").map_err(db)?,
    })
}

#[async_trait]
impl ClientStore for SqlStore {
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<i64> {
        let content = content.to_string();
        self.with_positions(1, vec![Change::User(user_id.to_owned())], async |conn, pos| {
            sqlx::query("INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos")
                .bind(user_id.as_str())
                .bind(room_id.map(|r| r.as_str()).unwrap_or(""))
                .bind(kind)
                .bind(&content)
                .bind(pos)
                .execute(conn)
                .await
                .map_err(db)?;
            Ok(pos)
        })
        .await
    }

    async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<Value>> {
        let c: Option<String> = sqlx::query_scalar(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
        )
        .bind(user_id.as_str())
        .bind(room_id.map(|r| r.as_str()).unwrap_or(""))
        .bind(kind)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(c.and_then(|c| serde_json::from_str(&c).ok()))
    }

    async fn account_data_since(
        &self,
        user_id: &UserId,
        after: i64,
    ) -> Result<Vec<(Option<OwnedRoomId>, String, Value)>> {
        let rows = sqlx::query("SELECT room_id, type, content FROM account_data WHERE user_id = $1 AND pos > $2 ORDER BY pos").bind(user_id.as_str()).bind(after).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let room: String = r.try_get("room_id").map_err(db)?;
                let room = if room.is_empty() {
                    None
                } else {
                    Some(parse_id(room)?)
                };
                let content: String = r.try_get("content").map_err(db)?;
                Ok((
                    room,
                    r.try_get("type").map_err(db)?,
                    serde_json::from_str(&content)?,
                ))
            })
            .collect()
    }

    async fn create_filter(&self, user_id: &UserId, filter: &Value) -> Result<String> {
        // One statement, so that concurrent instances cannot hand out the same id; a lost
        // race is a unique violation, retried.
        let mut attempt = 0;
        loop {
            let r: std::result::Result<i64, sqlx::Error> = sqlx::query_scalar(
                "INSERT INTO filters (user_id, filter_id, json) SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $1 RETURNING filter_id",
            )
            .bind(user_id.as_str())
            .bind(filter.to_string())
            .fetch_one(&self.pool)
            .await;
            match r {
                Ok(id) => return Ok(id.to_string()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && attempt < 10 => {
                    attempt += 1;
                }
                Err(e) => return Err(db(e)),
            }
        }
    }

    async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Option<Value>> {
        let Ok(id) = filter_id.parse::<i64>() else {
            return Ok(None);
        };
        let j: Option<String> =
            sqlx::query_scalar("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2")
                .bind(user_id.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(j.and_then(|j| serde_json::from_str(&j).ok()))
    }

    async fn set_receipt(&self, receipt: &Receipt) -> Result<i64> {
        self.with_positions(1, vec![Change::Room(receipt.room_id.clone())], async |conn, pos| {
            sqlx::query("INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, pos) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos")
                .bind(receipt.room_id.as_str())
                .bind(receipt.user_id.as_str())
                .bind(&receipt.receipt_type)
                .bind(receipt.thread_id.as_deref().unwrap_or(""))
                .bind(receipt.event_id.as_str())
                .bind(receipt.ts as i64)
                .bind(pos)
                .execute(conn)
                .await
                .map_err(db)?;
            Ok(pos)
        })
        .await
    }

    async fn receipts_since(&self, room_id: &RoomId, after: i64) -> Result<Vec<Receipt>> {
        let rows =
            sqlx::query("SELECT * FROM receipts WHERE room_id = $1 AND pos > $2 ORDER BY pos")
                .bind(room_id.as_str())
                .bind(after)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter().map(receipt_from_row).collect()
    }

    async fn receipt(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        receipt_type: &str,
    ) -> Result<Option<Receipt>> {
        let row = sqlx::query("SELECT * FROM receipts WHERE room_id = $1 AND user_id = $2 AND receipt_type = $3 ORDER BY pos DESC LIMIT 1")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .bind(receipt_type)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(receipt_from_row).transpose()
    }
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn set_device_keys(&self, user_id: &UserId, device_id: &str, keys: &Value) -> Result<()> {
        self.put_key(
            "INSERT INTO device_keys (user_id, device_id, json, pos) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json, pos = excluded.pos",
            user_id,
            device_id,
            keys,
        )
        .await
    }

    async fn device_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query("SELECT device_id, json FROM device_keys WHERE user_id = $1 AND device_id IN (SELECT device_id FROM devices WHERE user_id = $2)")
            .bind(user_id.as_str())
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("device_id").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn add_one_time_keys(
        &self,
        user_id: &UserId,
        device_id: &str,
        keys: &[(String, Value)],
        fallback: bool,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        if fallback {
            sqlx::query(
                "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 1",
            )
            .bind(user_id.as_str())
            .bind(device_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        for (id, key) in keys {
            let (algorithm, key_id) = id.split_once(':').unwrap_or((id.as_str(), ""));
            sqlx::query("INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, json, fallback, used) VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT (user_id, device_id, algorithm, key_id, fallback) DO UPDATE SET json = excluded.json, used = 0")
                .bind(user_id.as_str())
                .bind(device_id)
                .bind(algorithm)
                .bind(key_id)
                .bind(key.to_string())
                .bind(fallback as i64)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT algorithm, COUNT(*) AS n FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 0 GROUP BY algorithm").bind(user_id.as_str()).bind(device_id).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("algorithm").map_err(db)?,
                    r.try_get::<i64, _>("n").map_err(db)? as u64,
                ))
            })
            .collect()
    }

    async fn unused_fallback_algorithms(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT algorithm FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND fallback = 1 AND used = 0").bind(user_id.as_str()).bind(device_id).fetch_all(&self.pool).await.map_err(db)
    }

    async fn claim_key(
        &self,
        user_id: &UserId,
        device_id: &str,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>> {
        let _guard = self.write.lock().await;
        let row = sqlx::query("DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 0 AND key_id = (SELECT MIN(key_id) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 0) RETURNING key_id, json")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let row = match row {
            Some(r) => Some(r),
            None => sqlx::query("UPDATE one_time_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 1 AND key_id = (SELECT MIN(key_id) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND fallback = 1) RETURNING key_id, json")
                .bind(user_id.as_str())
                .bind(device_id)
                .bind(algorithm)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?,
        };
        match row {
            Some(r) => {
                let key_id: String = r.try_get("key_id").map_err(db)?;
                let json: String = r.try_get("json").map_err(db)?;
                Ok(Some((
                    format!("{algorithm}:{key_id}"),
                    serde_json::from_str(&json)?,
                )))
            }
            None => Ok(None),
        }
    }

    async fn set_cross_signing_key(&self, user_id: &UserId, kind: &str, key: &Value) -> Result<()> {
        self.put_key(
            "INSERT INTO cross_signing_keys (user_id, kind, json, pos) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, kind) DO UPDATE SET json = excluded.json, pos = excluded.pos",
            user_id,
            kind,
            key,
        )
        .await
    }

    async fn cross_signing_keys(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query("SELECT kind, json FROM cross_signing_keys WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("kind").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn key_changes(&self, after: i64, until: i64) -> Result<Vec<OwnedUserId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT user_id FROM device_keys WHERE pos > $1 AND pos <= $2 UNION SELECT user_id FROM cross_signing_keys WHERE pos > $3 AND pos <= $4")
            .bind(after)
            .bind(until)
            .bind(after)
            .bind(until)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn add_to_device(&self, messages: &[ToDevice]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let changes = messages
            .iter()
            .map(|m| Change::User(m.user_id.clone()))
            .collect();
        self.with_positions(messages.len() as i64, changes, async |tx, first| {
            for (i, m) in messages.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO to_device (pos, user_id, device_id, json) VALUES ($1, $2, $3, $4)",
                )
                .bind(first + i as i64)
                .bind(m.user_id.as_str())
                .bind(&m.device_id)
                .bind(m.event.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            Ok(())
        })
        .await
    }

    async fn to_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<(i64, Value)>> {
        let rows = sqlx::query("SELECT pos, json FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos > $3 AND pos <= $4 ORDER BY pos LIMIT $5")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(after)
            .bind(until)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("pos").map_err(db)?,
                    serde_json::from_str(&r.try_get::<String, _>("json").map_err(db)?)?,
                ))
            })
            .collect()
    }

    async fn ack_to_device(&self, user_id: &UserId, device_id: &str, up_to: i64) -> Result<()> {
        sqlx::query("DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND pos <= $3")
            .bind(user_id.as_str())
            .bind(device_id)
            .bind(up_to)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}

fn profile_from_row(r: &AnyRow) -> Result<NativeProfile> {
    Ok(NativeProfile {
        user_id: r.try_get("user_id").map_err(db)?,
        email: r.try_get("email").map_err(db)?,
        phone: r.try_get("phone").map_err(db)?,
        gender: r.try_get("gender").map_err(db)?,
        age: r.try_get::<i64, _>("age").map_err(db)? as i32,
        region: r.try_get("region").map_err(db)?,
        address: r.try_get("address").map_err(db)?,
        birthday: r.try_get("birthday").map_err(db)?,
        signature: r.try_get("signature").map_err(db)?,
        create_time: r.try_get("create_time").map_err(db)?,
        update_time: r.try_get("update_time").map_err(db)?,
    })
}

fn friendship_from_row(r: &AnyRow) -> Result<Friendship> {
    Ok(Friendship {
        fs_id: r.try_get("fs_id").map_err(db)?,
        user_id: r.try_get("user_id").map_err(db)?,
        friend_id: r.try_get("friend_id").map_err(db)?,
        status: r.try_get::<i64, _>("status").map_err(db)? as i32,
        apply_msg: r.try_get("apply_msg").map_err(db)?,
        req_remark: r.try_get("req_remark").map_err(db)?,
        resp_msg: r.try_get("resp_msg").map_err(db)?,
        resp_remark: r.try_get("resp_remark").map_err(db)?,
        source: r.try_get("source").map_err(db)?,
        create_time: r.try_get("create_time").map_err(db)?,
        update_time: r.try_get("update_time").map_err(db)?,
    })
}

fn friend_from_row(r: &AnyRow) -> Result<FriendRow> {
    Ok(FriendRow {
        user_id: r.try_get("user_id").map_err(db)?,
        friend_id: r.try_get("friend_id").map_err(db)?,
        fs_id: r.try_get("fs_id").map_err(db)?,
        status: r.try_get::<i64, _>("status").map_err(db)? as i32,
        remark: r.try_get("remark").map_err(db)?,
        source: r.try_get("source").map_err(db)?,
        room_id: r.try_get("room_id").map_err(db)?,
        create_time: r.try_get("create_time").map_err(db)?,
        update_time: r.try_get("update_time").map_err(db)?,
    })
}

#[async_trait]
impl NativeStore for SqlStore {
    async fn native_profile(&self, user_id: &str) -> Result<Option<NativeProfile>> {
        let row = sqlx::query("SELECT * FROM native_profiles WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(profile_from_row).transpose()
    }

    async fn put_native_profile(&self, p: &NativeProfile) -> Result<()> {
        let res = sqlx::query("INSERT INTO native_profiles (user_id, email, phone, gender, age, region, address, birthday, signature, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone, gender = excluded.gender, age = excluded.age, region = excluded.region, address = excluded.address, birthday = excluded.birthday, signature = excluded.signature, update_time = excluded.update_time")
            .bind(&p.user_id)
            .bind(&p.email)
            .bind(&p.phone)
            .bind(&p.gender)
            .bind(p.age as i64)
            .bind(&p.region)
            .bind(&p.address)
            .bind(p.birthday)
            .bind(&p.signature)
            .bind(p.create_time)
            .bind(p.update_time)
            .execute(&self.pool)
            .await;
        match res {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::matrix(
                ErrorCode::UserInUse,
                "that email or phone belongs to another user",
            )),
            other => other.map(|_| ()).map_err(db),
        }
    }

    async fn user_by_contact(&self, contact: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT user_id FROM native_profiles WHERE email = $1 OR phone = $2")
            .bind(contact)
            .bind(contact)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn put_friendship(&self, f: &Friendship) -> Result<()> {
        sqlx::query("INSERT INTO native_friendships (fs_id, user_id, friend_id, status, apply_msg, req_remark, resp_msg, resp_remark, source, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (fs_id) DO UPDATE SET status = excluded.status, apply_msg = excluded.apply_msg, req_remark = excluded.req_remark, resp_msg = excluded.resp_msg, resp_remark = excluded.resp_remark, update_time = excluded.update_time")
            .bind(&f.fs_id)
            .bind(&f.user_id)
            .bind(&f.friend_id)
            .bind(f.status as i64)
            .bind(&f.apply_msg)
            .bind(&f.req_remark)
            .bind(&f.resp_msg)
            .bind(&f.resp_remark)
            .bind(&f.source)
            .bind(f.create_time)
            .bind(f.update_time)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn friendship(&self, fs_id: &str) -> Result<Option<Friendship>> {
        let row = sqlx::query("SELECT * FROM native_friendships WHERE fs_id = $1")
            .bind(fs_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(friendship_from_row).transpose()
    }

    async fn friendships_to(
        &self,
        user_id: &str,
        status: i32,
        since: i64,
    ) -> Result<Vec<Friendship>> {
        let rows = sqlx::query("SELECT * FROM native_friendships WHERE friend_id = $1 AND status = $2 AND update_time > $3 ORDER BY create_time")
            .bind(user_id)
            .bind(status as i64)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(friendship_from_row).collect()
    }

    async fn put_friend(&self, f: &FriendRow) -> Result<()> {
        sqlx::query("INSERT INTO native_friends (user_id, friend_id, fs_id, status, remark, source, room_id, create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (user_id, friend_id) DO UPDATE SET fs_id = excluded.fs_id, status = excluded.status, remark = excluded.remark, source = excluded.source, room_id = excluded.room_id, update_time = excluded.update_time")
            .bind(&f.user_id)
            .bind(&f.friend_id)
            .bind(&f.fs_id)
            .bind(f.status as i64)
            .bind(&f.remark)
            .bind(&f.source)
            .bind(&f.room_id)
            .bind(f.create_time)
            .bind(f.update_time)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn friend(&self, user_id: &str, friend_id: &str) -> Result<Option<FriendRow>> {
        let row = sqlx::query("SELECT * FROM native_friends WHERE user_id = $1 AND friend_id = $2")
            .bind(user_id)
            .bind(friend_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(friend_from_row).transpose()
    }

    async fn friends(&self, user_id: &str, since: i64) -> Result<Vec<FriendRow>> {
        let rows = sqlx::query("SELECT * FROM native_friends WHERE user_id = $1 AND update_time > $2 ORDER BY create_time")
            .bind(user_id)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(friend_from_row).collect()
    }

    async fn friends_in_room(&self, room_id: &str) -> Result<Vec<FriendRow>> {
        let rows = sqlx::query("SELECT * FROM native_friends WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(friend_from_row).collect()
    }
}

#[async_trait]
impl MediaIndex for SqlStore {
    async fn put_media(&self, m: &MediaRecord) -> Result<()> {
        sqlx::query("INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts, uploaded) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (media_id) DO UPDATE SET content_type = excluded.content_type, filename = excluded.filename, size = excluded.size, uploaded = excluded.uploaded")
            .bind(&m.media_id)
            .bind(&m.uploader)
            .bind(&m.content_type)
            .bind(&m.filename)
            .bind(m.size as i64)
            .bind(m.created_ts as i64)
            .bind(m.uploaded as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn media(&self, media_id: &str) -> Result<Option<MediaRecord>> {
        let row = sqlx::query("SELECT * FROM media WHERE media_id = $1")
            .bind(media_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(MediaRecord {
            media_id: r.try_get("media_id").map_err(db)?,
            uploader: r.try_get("uploader").map_err(db)?,
            content_type: r.try_get("content_type").map_err(db)?,
            filename: r.try_get("filename").map_err(db)?,
            size: r.try_get::<i64, _>("size").map_err(db)? as u64,
            created_ts: r.try_get::<i64, _>("created_ts").map_err(db)? as u64,
            uploaded: r.try_get::<i64, _>("uploaded").map_err(db)? != 0,
        }))
    }
}
