//! Application service state and client data: account data, filters, receipts.

use super::rows::ReceiptRow;
use super::*;

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
            sqlx::query("INSERT INTO account_data (user_id, room_id, type, content, pos) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, pos = excluded.pos WHERE account_data.pos < excluded.pos")
                .bind(user_id.as_str())
                .bind(room_id.map(|r| r.as_str()).unwrap_or(""))
                .bind(kind)
                .bind(&content)
                .bind(pos[0])
                .execute(conn)
                .await
                .map_err(db)?;
            Ok(pos[0])
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
            sqlx::query("INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, pos) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos = excluded.pos WHERE receipts.pos < excluded.pos")
                .bind(receipt.room_id.as_str())
                .bind(receipt.user_id.as_str())
                .bind(&receipt.receipt_type)
                .bind(receipt.thread_id.as_deref().unwrap_or(""))
                .bind(receipt.event_id.as_str())
                .bind(receipt.ts as i64)
                .bind(pos[0])
                .execute(conn)
                .await
                .map_err(db)?;
            Ok(pos[0])
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
        rows.iter().map(ReceiptRow::read).collect()
    }

    async fn receipts_of(
        &self,
        rooms: &[OwnedRoomId],
    ) -> Result<std::collections::HashMap<OwnedRoomId, Vec<Receipt>>> {
        self.receipts_of_rooms(rooms).await
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
        row.as_ref().map(ReceiptRow::read).transpose()
    }
}
