//! Server-side key backup: versions, and the encrypted room keys in each.

use ruma::{OwnedRoomId, UserId};
use sandcat_core::ports::{BackedUpKey, BackupVersion, KeyBackups, KeyScope};
use sqlx::FromRow;

use super::*;

#[derive(FromRow)]
struct VersionRow {
    version: i64,
    algorithm: String,
    auth_data: String,
    etag: i64,
}

#[derive(FromRow)]
struct KeyRow {
    room_id: String,
    session_id: String,
    first_message_index: i64,
    forwarded_count: i64,
    is_verified: i64,
    session_data: String,
}

impl KeyRow {
    fn into_key(self) -> Result<BackedUpKey> {
        Ok(BackedUpKey {
            room_id: OwnedRoomId::try_from(self.room_id).map_err(Error::internal)?,
            session_id: self.session_id,
            first_message_index: from_db_int(self.first_message_index),
            forwarded_count: from_db_int(self.forwarded_count),
            is_verified: self.is_verified != 0,
            session_data: self.session_data,
        })
    }
}

/// The `AND …` that narrows a statement on `key_backup_keys` (parameters `$1` user, `$2`
/// version) to `scope`, with the values it binds.
fn scope_sql(scope: KeyScope<'_>) -> (&'static str, Vec<String>) {
    match scope {
        KeyScope::All => ("", Vec::new()),
        KeyScope::Room(room) => (" AND room_id = $3", vec![room.to_string()]),
        KeyScope::Session(room, session) => (
            " AND room_id = $3 AND session_id = $4",
            vec![room.to_string(), session.to_owned()],
        ),
    }
}

/// Moves a version's etag on (within the transaction that changed its keys).
async fn bump_etag(tx: &mut AnyConnection, user: &UserId, version: u64) -> Result<()> {
    sqlx::query(
        "UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2",
    )
    .bind(user.as_str())
    .bind(to_db_int(version))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl KeyBackups for SqlStore {
    async fn create_backup_version(
        &self,
        user: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> Result<u64> {
        // Reads the last version, then writes the next.
        let mut tx = self.begin_read_write().await?;
        // Numbered after every version the user had, deleted ones too: a client never sees
        // a version number come back.
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM key_backup_versions WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        let version = last.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data, etag, deleted) \
             VALUES ($1, $2, $3, $4, 0, 0)",
        )
        .bind(user.as_str())
        .bind(version)
        .bind(algorithm)
        .bind(auth_data)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(from_db_int(version))
    }

    async fn backup_version(
        &self,
        user: &UserId,
        version: Option<u64>,
    ) -> Result<Option<BackupVersion>> {
        let row: Option<VersionRow> = match version {
            Some(v) => sqlx::query_as(
                "SELECT version, algorithm, auth_data, etag FROM key_backup_versions \
                 WHERE user_id = $1 AND version = $2 AND deleted = 0",
            )
            .bind(user.as_str())
            .bind(to_db_int(v)),
            None => sqlx::query_as(
                "SELECT version, algorithm, auth_data, etag FROM key_backup_versions \
                 WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
            )
            .bind(user.as_str()),
        }
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM key_backup_keys WHERE user_id = $1 AND version = $2",
        )
        .bind(user.as_str())
        .bind(row.version)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Some(BackupVersion {
            version: from_db_int(row.version),
            algorithm: row.algorithm,
            auth_data: row.auth_data,
            etag: from_db_int(row.etag),
            count: from_db_int(count),
        }))
    }

    async fn update_backup_version(
        &self,
        user: &UserId,
        version: u64,
        auth_data: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE key_backup_versions SET auth_data = $3 \
             WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user.as_str())
        .bind(to_db_int(version))
        .bind(auth_data)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_backup_version(&self, user: &UserId, version: u64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE key_backup_versions SET deleted = 1 \
             WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user.as_str())
        .bind(to_db_int(version))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user.as_str())
            .bind(to_db_int(version))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(done.rows_affected() > 0)
    }

    async fn put_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        keys: &[BackedUpKey],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO key_backup_keys (user_id, version, room_id, session_id, \
                 first_message_index, forwarded_count, is_verified, session_data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
                 first_message_index = excluded.first_message_index, \
                 forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, \
                 session_data = excluded.session_data",
            )
            .bind(user.as_str())
            .bind(to_db_int(version))
            .bind(key.room_id.as_str())
            .bind(&key.session_id)
            .bind(to_db_int(key.first_message_index))
            .bind(to_db_int(key.forwarded_count))
            .bind(i64::from(key.is_verified))
            .bind(&key.session_data)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        bump_etag(&mut tx, user, version).await?;
        tx.commit().await.map_err(db)
    }

    async fn backup_keys(
        &self,
        user: &UserId,
        version: u64,
        scope: KeyScope<'_>,
    ) -> Result<Vec<BackedUpKey>> {
        let (narrow, values) = scope_sql(scope);
        let sql = format!(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, \
             session_data FROM key_backup_keys WHERE user_id = $1 AND version = $2{narrow} \
             ORDER BY room_id, session_id"
        );
        let mut query = sqlx::query_as::<_, KeyRow>(&sql)
            .bind(user.as_str())
            .bind(to_db_int(version));
        for v in values {
            query = query.bind(v);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(KeyRow::into_key)
            .collect()
    }

    async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        scope: KeyScope<'_>,
    ) -> Result<()> {
        let (narrow, values) = scope_sql(scope);
        let sql =
            format!("DELETE FROM key_backup_keys WHERE user_id = $1 AND version = $2{narrow}");
        let mut tx = self.begin().await?;
        let mut query = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(to_db_int(version));
        for v in values {
            query = query.bind(v);
        }
        query.execute(&mut *tx).await.map_err(db)?;
        bump_etag(&mut tx, user, version).await?;
        tx.commit().await.map_err(db)
    }
}
