//! Threads of a room: the roots `m.thread` replies name, by latest activity.

use ruma::{OwnedEventId, RoomId, UserId};
use sandcat_core::ports::{RoomThreads, ThreadActivity, OUTLIERS_BELOW};
use sqlx::FromRow;

use super::*;

#[derive(FromRow)]
struct ThreadRow {
    root: String,
    latest_pos: i64,
    replies: i64,
    replied: i64,
    latest: String,
}

#[async_trait]
impl RoomThreads for SqlStore {
    async fn thread_activity(
        &self,
        room_id: &RoomId,
        reader: &UserId,
        until: i64,
        before: i64,
        limit: usize,
    ) -> Result<Vec<ThreadActivity>> {
        let rows: Vec<ThreadRow> = sqlx::query_as(&format!(
            "SELECT t.root, t.latest_pos, t.replies, t.replied, e.event_id AS latest FROM ( \
             SELECT relates_to AS root, MAX(pos) AS latest_pos, COUNT(*) AS replies, \
             MAX(CASE WHEN sender = $2 THEN 1 ELSE 0 END) AS replied FROM events \
             WHERE room_id = $1 AND rel_type = 'm.thread' AND relates_to IS NOT NULL \
             AND pos > {OUTLIERS_BELOW} AND pos <= $3 \
             GROUP BY relates_to HAVING MAX(pos) <= $4) t \
             JOIN events e ON e.pos = t.latest_pos ORDER BY t.latest_pos DESC LIMIT $5"
        ))
        .bind(room_id.as_str())
        .bind(reader.as_str())
        .bind(until)
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(ThreadActivity {
                    root: OwnedEventId::try_from(r.root).map_err(Error::internal)?,
                    latest: OwnedEventId::try_from(r.latest).map_err(Error::internal)?,
                    latest_pos: r.latest_pos,
                    replies: u64::try_from(r.replies).unwrap_or(0),
                    reader_replied: r.replied != 0,
                })
            })
            .collect()
    }
}
