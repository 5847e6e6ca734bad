//! What the room DAG reads and keeps beyond the timeline: auth chains for state resolution,
//! and the events of other servers held back (rejected or soft-failed).

use super::*;
use std::collections::HashMap;

use super::rows::HeldRow;

use sandcat_core::ports::{
    Direction, HeldEvent, HistoryRange, RoomStore, StateReset, OUTLIERS_BELOW,
};

/// Auth chains from the events' own `auth_events`, followed in the database: no table to keep
/// up on the write path, one round trip per read. Each dialect reads JSON its own way.
const AUTH_CHAIN_SQLITE: &str = "WITH RECURSIVE chain(id) AS ( \
       SELECT value FROM json_each($1) \
       UNION \
       SELECT a.value FROM chain c JOIN events e ON e.event_id = c.id, \
              json_each(e.json, '$.auth_events') a) \
     SELECT e.event_id, e.room_id, e.json FROM chain c JOIN events e ON e.event_id = c.id";

const AUTH_CHAIN_POSTGRES: &str = "WITH RECURSIVE chain(id) AS ( \
       SELECT jsonb_array_elements_text($1::jsonb) \
       UNION \
       SELECT a.id FROM chain c JOIN events e ON e.event_id = c.id \
         CROSS JOIN LATERAL jsonb_array_elements_text(e.json::jsonb -> 'auth_events') AS a(id)) \
     SELECT e.event_id, e.room_id, e.json FROM chain c JOIN events e ON e.event_id = c.id";

impl SqlStore {
    pub(super) async fn auth_graph_of(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Pdu>> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = match self.dialect {
            Dialect::Sqlite => AUTH_CHAIN_SQLITE,
            Dialect::Postgres => AUTH_CHAIN_POSTGRES,
        };
        let rows = sqlx::query(sql)
            .bind(serde_json::to_string(event_ids)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Pdu::from_stored(
                    r.try_get::<String, _>("json").map_err(db)?.as_str(),
                    parse_id(r.try_get("event_id").map_err(db)?)?,
                    parse_id(r.try_get("room_id").map_err(db)?)?,
                )
            })
            .collect()
    }

    /// Outliers take positions below [`OUTLIERS_BELOW`], counting down: below every position
    /// the stream hands out and every history reader's floor, so no reader meets them.
    pub(super) async fn add_outlier_event(&self, pdu: &Pdu, json: &str) -> Result<()> {
        let pos = match self.dialect {
            // One writer: the lowest position, read and taken in one statement (a bare
            // `MIN(pos)`, which SQLite reads from the key's end, not by a scan).
            Dialect::Sqlite => {
                format!("(MIN(COALESCE((SELECT MIN(pos) FROM events), 0), {OUTLIERS_BELOW}) - 1)")
            }
            Dialect::Postgres => format!("(nextval('outlier_seq') + {OUTLIERS_BELOW})"),
        };
        self.insert_unstreamed(pdu, json, &pos, "").await
    }

    /// Backfilled events take positions below zero and above the outliers', counting down:
    /// in history (depth orders it), never in the stream. An outlier moves there.
    pub(super) async fn add_backfilled_event(&self, pdu: &Pdu, json: &str) -> Result<()> {
        let pos = match self.dialect {
            Dialect::Sqlite => format!(
                "(MIN(COALESCE((SELECT MIN(pos) FROM events WHERE pos > {OUTLIERS_BELOW}), 0), 0) - 1)"
            ),
            Dialect::Postgres => "nextval('backfill_seq')".to_owned(),
        };
        let promote = format!(
            " DO UPDATE SET pos = excluded.pos, federated = TRUE WHERE events.pos < {OUTLIERS_BELOW}"
        );
        self.insert_unstreamed(pdu, json, &pos, &promote).await
    }

    /// Inserts an event at position `pos` (an SQL expression); on an event id stored before,
    /// `on_conflict` (after `ON CONFLICT (event_id)`), or nothing.
    async fn insert_unstreamed(
        &self,
        pdu: &Pdu,
        json: &str,
        pos: &str,
        on_conflict: &str,
    ) -> Result<()> {
        let on_conflict = if on_conflict.is_empty() {
            " DO NOTHING"
        } else {
            on_conflict
        };
        sqlx::query(&format!(
            "INSERT INTO events (pos, event_id, room_id, sender, type, state_key, json, depth, federated) \
             VALUES ({pos}, $1, $2, $3, $4, $5, $6, $7, TRUE) ON CONFLICT (event_id){on_conflict}"
        ))
        .bind(pdu.event_id.as_str())
        .bind(pdu.room_id().as_str())
        .bind(pdu.sender.as_str())
        .bind(pdu.kind.to_string())
        .bind(pdu.state_key.as_deref())
        .bind(json)
        .bind(i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The room's history events of the least depth, in a room other servers write to.
    pub(super) async fn earliest_events_of(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND federated AND pos > {OUTLIERS_BELOW} \
             AND depth = (SELECT MIN(depth) FROM events WHERE room_id = $2 AND federated AND pos > {OUTLIERS_BELOW}) \
             ORDER BY pos"
        ))
        .bind(room_id.as_str())
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }

    pub(super) async fn hold_event(&self, event: &HeldEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO held_events (event_id, room_id, json, status, reason, ts) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id.as_str())
        .bind(event.room_id.as_str())
        .bind(event.json.as_str())
        .bind(event.status.as_str())
        .bind(event.reason.as_str())
        .bind(sandcat_core::now_ms() as i64)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    pub(super) async fn held_event(&self, event_id: &EventId) -> Result<Option<HeldEvent>> {
        let row = sqlx::query(
            "SELECT event_id, room_id, json, status, reason FROM held_events WHERE event_id = $1",
        )
        .bind(event_id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(HeldRow::read).transpose()
    }
}

impl SqlStore {
    /// The latest state reset per entry of the room at positions in `(after, until]`.
    pub(super) async fn state_resets_in(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StateReset>> {
        let rows = sqlx::query(
            "SELECT pos, type, state_key, event_id FROM state_resets \
             WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos",
        )
        .bind(room_id.as_str())
        .bind(after)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut latest: HashMap<(String, String), (i64, Option<String>)> = HashMap::new();
        for r in rows {
            let key = (
                r.try_get::<String, _>("type").map_err(db)?,
                r.try_get::<String, _>("state_key").map_err(db)?,
            );
            let to = (
                r.try_get::<i64, _>("pos").map_err(db)?,
                r.try_get::<Option<String>, _>("event_id").map_err(db)?,
            );
            latest.insert(key, to);
        }
        let mut out = Vec::with_capacity(latest.len());
        for ((kind, state_key), (pos, id)) in latest {
            let event = match id {
                Some(id) => RoomStore::event(self, &parse_id::<OwnedEventId>(id)?).await?,
                None => None,
            };
            out.push(StateReset {
                pos,
                kind,
                state_key,
                event,
            });
        }
        out.sort_by_key(|r| r.pos);
        Ok(out)
    }
}

/// The latest state event per entry, `events`, with the entries that `resets` set later (or
/// at the same position, which the event there lost) replaced: an entry left out is dropped.
pub(super) fn merge_resets(events: Vec<StoredEvent>, resets: Vec<StateReset>) -> Vec<StoredEvent> {
    if resets.is_empty() {
        return events;
    }
    let key_of = |e: &StoredEvent| {
        (
            e.pdu.kind.to_string(),
            e.pdu.state_key.clone().unwrap_or_default(),
        )
    };
    let mut by_key: HashMap<(String, String), (i64, Option<StoredEvent>)> = events
        .into_iter()
        .map(|e| (key_of(&e), (e.pos, Some(e))))
        .collect();
    for r in resets {
        let key = (r.kind, r.state_key);
        if by_key.get(&key).is_none_or(|(pos, _)| *pos <= r.pos) {
            by_key.insert(key, (r.pos, r.event));
        }
    }
    let mut out: Vec<StoredEvent> = by_key.into_values().filter_map(|(_, e)| e).collect();
    out.sort_by_key(|e| e.pos);
    out
}

impl SqlStore {
    /// A page of a room's history in topological order; see `RoomStore::history`.
    pub(super) async fn history_page(
        &self,
        room_id: &RoomId,
        range: HistoryRange,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let (beyond, before, order) = match dir {
            Direction::Forward => (">", "<", "ASC"),
            Direction::Backward => ("<", ">", "DESC"),
        };
        // A count: the `Any` driver reads no SQLite boolean.
        let federated = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM rooms WHERE room_id = $1 AND federated",
        )
        .bind(room_id.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?
            > 0;
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3"
        );
        let mut n = 4;
        let mut binds: Vec<i64> = Vec::new();
        for (point, cmp) in [(range.from, beyond), (range.to, before)] {
            let Some(p) = point else { continue };
            if federated {
                sql.push_str(&format!(
                    " AND (depth {cmp} ${} OR (depth = ${} AND pos {cmp} ${}))",
                    n,
                    n + 1,
                    n + 2
                ));
                n += 3;
                binds.extend([p.depth, p.depth, p.pos]);
            } else {
                // Depth grows with the position in a room only this server writes to.
                sql.push_str(&format!(" AND pos {cmp} ${n}"));
                n += 1;
                binds.push(p.pos);
            }
        }
        if federated {
            // `federated` in the query, for the partial index on (room_id, depth, pos).
            sql.push_str(&format!(
                " AND federated ORDER BY depth {order}, pos {order} LIMIT ${n}"
            ));
        } else {
            sql.push_str(&format!(" ORDER BY pos {order} LIMIT ${n}"));
        }
        let mut q = sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(range.floor)
            .bind(range.until);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.events_from_rows(rows).await
    }
}
