//! Room lists: the recency and the state kinds of many rooms, one query per chunk of rooms.

use std::collections::HashMap;

use sandcat_core::ports::{RoomLists, BUMP_EVENT_TYPES};

use super::*;

/// Rooms per statement (SQLite takes at most 32,766 parameters; PostgreSQL 65,535).
const ROOMS_PER_QUERY: usize = 500;

#[async_trait]
impl RoomLists for SqlStore {
    async fn bump_stamps(
        &self,
        rooms: &[OwnedRoomId],
        until: i64,
    ) -> Result<HashMap<OwnedRoomId, i64>> {
        let mut out = HashMap::new();
        let kinds = BUMP_EVENT_TYPES
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        for chunk in rooms.chunks(ROOMS_PER_QUERY) {
            let sql = format!(
                "SELECT room_id, MAX(pos) AS p FROM events WHERE room_id IN ({}) AND pos > 0 \
                 AND pos <= $1 AND type IN ({kinds}) GROUP BY room_id",
                params(2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(until);
            for r in chunk {
                q = q.bind(r.as_str());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db)? {
                let room: String = row.try_get("room_id").map_err(db)?;
                let pos: i64 = row.try_get("p").map_err(db)?;
                out.insert(parse_id(room)?, pos);
            }
        }
        Ok(out)
    }

    async fn state_of_rooms(
        &self,
        rooms: &[OwnedRoomId],
        kinds: &[&str],
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        for chunk in rooms.chunks(ROOMS_PER_QUERY) {
            let kind_clause = if kinds.is_empty() {
                String::new()
            } else {
                format!(" AND s.type IN ({})", params(chunk.len() + 1, kinds.len()))
            };
            let sql = format!(
                "SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id \
                 FROM current_state s JOIN events e ON e.event_id = s.event_id \
                 WHERE s.room_id IN ({}){kind_clause} ORDER BY e.pos",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(r.as_str());
            }
            for k in kinds {
                q = q.bind(*k);
            }
            let rows = q.fetch_all(&self.pool).await.map_err(db)?;
            out.extend(self.events_from_rows(rows).await?);
        }
        out.sort_by_key(|e| e.pos);
        Ok(out)
    }
}
