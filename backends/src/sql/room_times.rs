//! Events by time: each dialect reads `origin_server_ts` out of the stored event JSON.

use ruma::{OwnedEventId, RoomId};
use sandcat_core::ports::{Direction, RoomTimes};

use super::*;

#[async_trait]
impl RoomTimes for SqlStore {
    async fn event_at_time(
        &self,
        room_id: &RoomId,
        ts: u64,
        dir: Direction,
        after: i64,
        until: i64,
    ) -> Result<Option<(OwnedEventId, u64)>> {
        let ts_of = match self.dialect {
            Dialect::Sqlite => "CAST(json_extract(json, '$.origin_server_ts') AS INTEGER)",
            Dialect::Postgres => "CAST((CAST(json AS jsonb) ->> 'origin_server_ts') AS BIGINT)",
        };
        let (cmp, order) = match dir {
            Direction::Forward => (">=", "ASC"),
            Direction::Backward => ("<=", "DESC"),
        };
        let sql = format!(
            "SELECT event_id, ts FROM (SELECT event_id, pos, {ts_of} AS ts FROM events \
             WHERE room_id = $1 AND pos > $2 AND pos <= $3) t \
             WHERE ts {cmp} $4 ORDER BY ts {order}, pos {order} LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(after)
            .bind(until)
            .bind(to_db_int(ts))
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            let id: String = r.try_get("event_id").map_err(db)?;
            let ts: i64 = r.try_get("ts").map_err(db)?;
            Ok((parse_id(id)?, from_db_int(ts)))
        })
        .transpose()
    }
}
