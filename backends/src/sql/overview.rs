//! What a sync needs of many rooms at once: one query per kind of data for all of them,
//! instead of several per room (an initial sync of 200 rooms made 1,200).

use std::collections::HashMap;

use super::packed;
use super::*;
use sandcat_core::ports::RoomOverview;

/// Rooms per statement: on PostgreSQL the latest events are one `UNION ALL` term per room.
const ROOMS_PER_QUERY: usize = 100;

impl SqlStore {
    pub(super) async fn overviews(
        &self,
        rooms: &[OwnedRoomId],
        user_id: &UserId,
        until: i64,
        latest: usize,
    ) -> Result<HashMap<OwnedRoomId, RoomOverview>> {
        let mut out: HashMap<OwnedRoomId, RoomOverview> = rooms
            .iter()
            .map(|r| (r.clone(), RoomOverview::default()))
            .collect();
        for chunk in rooms.chunks(ROOMS_PER_QUERY) {
            for ev in self.states_of(chunk).await? {
                if let Some(o) = out.get_mut(ev.pdu.room_id()) {
                    o.state.push(ev);
                }
            }
            for ev in self.latest_of(chunk, until, latest).await? {
                if let Some(o) = out.get_mut(ev.pdu.room_id()) {
                    o.latest.push(ev);
                }
            }
            for (room, n) in self.unread_in(user_id, Some(chunk), until).await? {
                if let Some(o) = out.get_mut(&room) {
                    o.unread = n;
                }
            }
        }
        Ok(out)
    }

    /// The current state of `rooms`, oldest first.
    async fn states_of(&self, rooms: &[OwnedRoomId]) -> Result<Vec<StoredEvent>> {
        let inner = format!(
            "SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id \
             FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id IN ({})",
            params(1, rooms.len())
        );
        let sql = packed::events_query(self.dialect, &inner);
        let mut q = sqlx::query(&sql);
        for r in rooms {
            q = q.bind(r.as_str());
        }
        self.read_events(q).await
    }

    /// Each room's latest `limit` events with `pos <= until`, newest first: an indexed
    /// `ORDER BY … LIMIT` per room. On SQLite one statement of any number of rooms, which
    /// takes them as a JSON array (`json_each`) and looks up each room's latest positions in
    /// a correlated subquery: prepared once, where a `UNION ALL` of a term per room was a
    /// statement per room count, each costing more to prepare than to run. PostgreSQL has no
    /// `json_each` and joins such terms.
    async fn latest_of(
        &self,
        rooms: &[OwnedRoomId],
        until: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let mut events = match self.dialect {
            Dialect::Sqlite => {
                let columns = EVENT_COLUMNS.replace(", ", ", e.");
                let inner = format!(
                    "SELECT e.{columns} FROM json_each($3) AS r JOIN events e ON e.pos IN \
                     (SELECT pos FROM events WHERE room_id = r.value AND pos > 0 AND pos <= $1 \
                     ORDER BY pos DESC LIMIT $2)"
                );
                let sql = packed::events_query(self.dialect, &inner);
                let rooms: Vec<&str> = rooms.iter().map(|r| r.as_str()).collect();
                let q = sqlx::query(&sql)
                    .bind(until)
                    .bind(limit as i64)
                    .bind(serde_json::to_string(&rooms)?);
                self.read_events(q).await?
            }
            Dialect::Postgres => {
                let terms: Vec<String> = (0..rooms.len())
                    .map(|i| {
                        format!(
                            "SELECT * FROM (SELECT {EVENT_COLUMNS} FROM events WHERE room_id = ${} AND pos > 0 AND pos <= $1 ORDER BY pos DESC LIMIT $2) AS t{i}",
                            i + 3
                        )
                    })
                    .collect();
                let sql = terms.join(" UNION ALL ");
                let mut q = sqlx::query(&sql).bind(until).bind(limit as i64);
                for r in rooms {
                    q = q.bind(r.as_str());
                }
                self.read_events(q).await?
            }
        };
        events.reverse();
        Ok(events)
    }

    pub(super) async fn receipts_of_rooms(
        &self,
        rooms: &[OwnedRoomId],
    ) -> Result<HashMap<OwnedRoomId, Vec<Receipt>>> {
        let mut out: HashMap<OwnedRoomId, Vec<Receipt>> = HashMap::new();
        for chunk in rooms.chunks(500) {
            let sql = format!(
                "SELECT * FROM receipts WHERE room_id IN ({}) ORDER BY pos",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q.bind(r.as_str());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db)? {
                let receipt = super::rows::ReceiptRow::read(&row)?;
                out.entry(receipt.room_id.clone())
                    .or_default()
                    .push(receipt);
            }
        }
        Ok(out)
    }
}
