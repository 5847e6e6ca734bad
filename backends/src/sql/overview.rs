//! What a sync needs of many rooms at once: one query per kind of data for all of them,
//! instead of several per room (an initial sync of 200 rooms made 1,200).

use std::collections::HashMap;

use super::*;
use sandcat_core::ports::RoomOverview;

/// Rooms per statement: the latest events are one `UNION ALL` term per room, and SQLite takes
/// at most 500 terms.
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
        let sql = format!(
            "SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id \
             FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id IN ({}) ORDER BY e.pos",
            params(1, rooms.len())
        );
        let mut q = sqlx::query(&sql);
        for r in rooms {
            q = q.bind(r.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        self.events_from_rows(rows).await
    }

    /// Each room's latest `limit` events with `pos <= until`, newest first: one indexed
    /// `ORDER BY … LIMIT` per room, joined in one statement.
    async fn latest_of(
        &self,
        rooms: &[OwnedRoomId],
        until: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
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
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        let mut events = self.events_from_rows(rows).await?;
        // `UNION ALL` keeps no order across terms: newest first within each room.
        events.sort_by_key(|e| std::cmp::Reverse(e.pos));
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
