//! Push: the notifications push rules asked for (`push_actions`, written with the events by
//! `append.rs`), the unread counts read from them, and pushers.
//!
//! A notification is unread while no read receipt of its user (public or private) covers it
//! (an unthreaded receipt, or one of its own thread — `main` for the main timeline — on an
//! event at or after it) and it came after the user's current membership event. Redacted
//! events no longer count.

use std::collections::HashMap;

use ruma::{push::Action, OwnedDeviceId};
use sandcat_core::ports::{
    Counts, Notified, PushFormat, PushStore, PusherRecord, StoredRules, UnreadCounts,
};

use super::*;

/// Rooms or users per statement (far below either database's parameter limit).
const PER_QUERY: usize = 500;

/// The position up to which the notification `a` counts as read: the latest event the user's
/// receipts cover (an unthreaded receipt, or one of its thread), or the user's current
/// membership event, whichever is later — what came before a join is not news of the room.
const READ_UP_TO: &str = "COALESCE((SELECT MAX(p) FROM ( \
       SELECT x.pos AS p FROM receipts r JOIN events x ON x.event_id = r.event_id \
       WHERE r.room_id = a.room_id AND r.user_id = a.user_id \
         AND r.receipt_type IN ('m.read', 'm.read.private') \
         AND r.thread_id IN ('', CASE WHEN a.thread_id = '' THEN 'main' ELSE a.thread_id END) \
       UNION ALL \
       SELECT m.pos AS p FROM current_state m \
       WHERE m.room_id = a.room_id AND m.type = 'm.room.member' AND m.state_key = a.user_id \
     ) floors), 0)";

/// The user's floors in each room they have a membership in (`c`, its current membership
/// event): the membership event's position (`joined`), and the latest events their
/// unthreaded and `main` receipts cover. Continued by a condition on `c` and `)`.
const UNREAD_FLOORS: &str = "raw_floors AS (SELECT c.room_id AS room_id, c.pos AS joined, \
       COALESCE((SELECT MAX(x.pos) FROM receipts r JOIN events x ON x.event_id = r.event_id \
         WHERE r.room_id = c.room_id AND r.user_id = c.state_key \
           AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = ''), 0) AS unthreaded, \
       COALESCE((SELECT MAX(x.pos) FROM receipts r JOIN events x ON x.event_id = r.event_id \
         WHERE r.room_id = c.room_id AND r.user_id = c.state_key \
           AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = 'main'), 0) AS main \
     FROM current_state c WHERE c.type = 'm.room.member' AND c.state_key = $1";

/// The latest event the user's receipts in the thread of the notification `a` cover.
const THREAD_RECEIPT: &str = "COALESCE((SELECT MAX(x.pos) FROM receipts r \
       JOIN events x ON x.event_id = r.event_id \
       WHERE r.room_id = a.room_id AND r.user_id = a.user_id \
         AND r.receipt_type IN ('m.read', 'm.read.private') AND r.thread_id = a.thread_id), 0)";

/// Columns of a notification: the event's, then the action's.
const NOTIFIED_COLUMNS: &str = "e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, \
     e.txn_user, e.txn_device, e.txn_id, a.highlight AS push_highlight, a.actions AS push_actions, \
     a.ts AS push_ts";

impl SqlStore {
    /// The user's unread counts in `rooms` (all rooms when `None`) as of `until`.
    ///
    /// The floors are read once per room (see [`UNREAD_FLOORS`]); then the main timeline's
    /// unread notifications are one range of `push_actions_room` per room, and those in
    /// threads are checked against their thread's receipt.
    pub(super) async fn unread_in(
        &self,
        user: &UserId,
        rooms: Option<&[OwnedRoomId]>,
        until: i64,
    ) -> Result<HashMap<OwnedRoomId, UnreadCounts>> {
        let mut out: HashMap<OwnedRoomId, UnreadCounts> = HashMap::new();
        let chunks: Vec<&[OwnedRoomId]> = match rooms {
            Some(rooms) => rooms.chunks(PER_QUERY).collect(),
            None => vec![&[]],
        };
        for chunk in chunks {
            let in_rooms = match rooms {
                Some(_) => format!(" AND c.room_id IN ({})", params(3, chunk.len())),
                None => String::new(),
            };
            let sql = format!(
                "WITH {UNREAD_FLOORS}{in_rooms}), \
                 floors AS (SELECT room_id, main, \
                   CASE WHEN joined > unthreaded THEN joined ELSE unthreaded END AS room_floor \
                   FROM raw_floors) \
                 SELECT a.room_id AS room_id, a.thread_id AS thread_id, COUNT(*) AS n, \
                   COUNT(CASE WHEN a.highlight = 1 THEN 1 END) AS h \
                 FROM floors f JOIN push_actions a ON a.user_id = $1 AND a.room_id = f.room_id \
                   AND a.thread_id = '' \
                   AND a.pos > CASE WHEN f.main > f.room_floor THEN f.main ELSE f.room_floor END \
                   AND a.pos <= $2 \
                 JOIN events e ON e.pos = a.pos \
                 WHERE e.redacted_by IS NULL \
                 GROUP BY a.room_id, a.thread_id \
                 UNION ALL \
                 SELECT a.room_id AS room_id, a.thread_id AS thread_id, COUNT(*) AS n, \
                   COUNT(CASE WHEN a.highlight = 1 THEN 1 END) AS h \
                 FROM floors f JOIN push_actions a ON a.user_id = $1 AND a.room_id = f.room_id \
                   AND a.thread_id > '' AND a.pos > f.room_floor AND a.pos <= $2 \
                 JOIN events e ON e.pos = a.pos \
                 WHERE e.redacted_by IS NULL AND a.pos > {THREAD_RECEIPT} \
                 GROUP BY a.room_id, a.thread_id"
            );
            let mut q = sqlx::query(&sql).bind(user.as_str()).bind(until);
            for r in chunk {
                q = q.bind(r.as_str());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db)? {
                let room: OwnedRoomId = parse_id(row.try_get("room_id").map_err(db)?)?;
                let thread: String = row.try_get("thread_id").map_err(db)?;
                let counts = Counts {
                    notifications: row.try_get::<i64, _>("n").map_err(db)?.max(0) as u64,
                    highlights: row.try_get::<i64, _>("h").map_err(db)?.max(0) as u64,
                };
                let entry = out.entry(room).or_default();
                if thread.is_empty() {
                    entry.main.add(counts);
                } else {
                    entry
                        .threads
                        .entry(parse_id(thread)?)
                        .or_default()
                        .add(counts);
                }
            }
        }
        Ok(out)
    }

    /// The user's notifications with `after < pos <= until`, oldest or newest first.
    async fn notified(
        &self,
        user: &UserId,
        (after, until): (i64, i64),
        limit: usize,
        highlights_only: bool,
        dir: Direction,
    ) -> Result<Vec<Notified>> {
        let order = match dir {
            Direction::Forward => "ASC",
            Direction::Backward => "DESC",
        };
        let only = if highlights_only {
            " AND a.highlight = 1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {NOTIFIED_COLUMNS}, CASE WHEN a.pos <= {READ_UP_TO} THEN 1 ELSE 0 END AS is_read \
             FROM push_actions a JOIN events e ON e.pos = a.pos \
             WHERE a.user_id = $1 AND a.pos > $2 AND a.pos <= $3{only} ORDER BY a.pos {order} LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(after)
            .bind(until)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.notified_from_rows(rows).await
    }

    /// Notifications of the rows of a query selecting [`NOTIFIED_COLUMNS`] and `is_read`.
    async fn notified_from_rows(&self, rows: Vec<AnyRow>) -> Result<Vec<Notified>> {
        let mut extra = Vec::with_capacity(rows.len());
        for row in &rows {
            let actions: String = row.try_get("push_actions").map_err(db)?;
            let actions: Vec<Action> = serde_json::from_str(&actions)
                .map_err(|e| Error::storage(format!("stored push actions: {e}")))?;
            extra.push((
                actions,
                row.try_get::<i64, _>("push_highlight").map_err(db)? == 1,
                row.try_get::<i64, _>("push_ts").map_err(db)?.max(0) as u64,
                row.try_get::<i64, _>("is_read").map_err(db)? == 1,
            ));
        }
        let events = self.events_from_rows(rows).await?;
        Ok(events
            .into_iter()
            .zip(extra)
            .map(|(event, (actions, highlight, ts, read))| Notified {
                room_id: event.pdu.room_id().to_owned(),
                event,
                actions,
                highlight,
                ts,
                read,
            })
            .collect())
    }
}

/// A pusher as stored.
#[derive(sqlx::FromRow)]
struct PusherRow {
    user_id: String,
    app_id: String,
    pushkey: String,
    device_id: Option<String>,
    url: String,
    event_id_only: i64,
    body: String,
    created_ts: i64,
}

impl PusherRow {
    fn into_record(self) -> Result<PusherRecord> {
        Ok(PusherRecord {
            user_id: parse_id(self.user_id)?,
            device_id: self.device_id.map(OwnedDeviceId::from),
            app_id: self.app_id,
            pushkey: self.pushkey,
            url: self.url,
            format: if self.event_id_only == 1 {
                PushFormat::EventIdOnly
            } else {
                PushFormat::Full
            },
            body: serde_json::from_str(&self.body)
                .map_err(|e| Error::storage(format!("stored pusher: {e}")))?,
            created_ts: self.created_ts.max(0) as u64,
        })
    }
}

#[async_trait]
impl PushStore for SqlStore {
    async fn push_rules_of(
        &self,
        users: &[OwnedUserId],
    ) -> Result<HashMap<OwnedUserId, StoredRules>> {
        let mut out = HashMap::new();
        for chunk in users.chunks(PER_QUERY) {
            let sql = format!(
                "SELECT user_id, content, pos FROM account_data \
                 WHERE room_id = '' AND type = 'm.push_rules' AND user_id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u.as_str());
            }
            for row in q.fetch_all(&self.pool).await.map_err(db)? {
                let user: OwnedUserId = parse_id(row.try_get("user_id").map_err(db)?)?;
                let rules = StoredRules {
                    pos: row.try_get("pos").map_err(db)?,
                    json: row.try_get("content").map_err(db)?,
                };
                out.insert(user, rules);
            }
        }
        Ok(out)
    }

    async fn unread_counts(
        &self,
        user: &UserId,
        rooms: &[OwnedRoomId],
        until: i64,
    ) -> Result<HashMap<OwnedRoomId, UnreadCounts>> {
        self.unread_in(user, Some(rooms), until).await
    }

    async fn unread_total(&self, user: &UserId) -> Result<u64> {
        Ok(self
            .unread_in(user, None, i64::MAX)
            .await?
            .values()
            .map(|c| c.total().notifications)
            .sum())
    }

    async fn notifications(
        &self,
        user: &UserId,
        before: Option<i64>,
        limit: usize,
        highlights_only: bool,
    ) -> Result<Vec<Notified>> {
        let below = before.map_or(i64::MAX, |b| b.saturating_sub(1));
        self.notified(
            user,
            (i64::MIN, below),
            limit,
            highlights_only,
            Direction::Backward,
        )
        .await
    }

    async fn notifications_after(
        &self,
        user: &UserId,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Notified>> {
        self.notified(user, (after, until), limit, false, Direction::Forward)
            .await
    }

    async fn forget_notifications(&self, before_ts: u64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM push_actions WHERE ts < $1")
            .bind(before_ts.min(i64::MAX as u64) as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected())
    }

    async fn pushers(&self, user: &UserId) -> Result<Vec<PusherRecord>> {
        sqlx::query_as::<_, PusherRow>(
            "SELECT * FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?
        .into_iter()
        .map(PusherRow::into_record)
        .collect()
    }

    async fn all_pushers(&self) -> Result<Vec<PusherRecord>> {
        sqlx::query_as::<_, PusherRow>("SELECT * FROM pushers")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?
            .into_iter()
            .map(PusherRow::into_record)
            .collect()
    }

    async fn set_pusher(&self, pusher: &PusherRecord, append: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        if !append {
            sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id != $3")
                .bind(&pusher.app_id)
                .bind(&pusher.pushkey)
                .bind(pusher.user_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, device_id, url, event_id_only, body, created_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, \
             url = excluded.url, event_id_only = excluded.event_id_only, body = excluded.body",
        )
        .bind(pusher.user_id.as_str())
        .bind(&pusher.app_id)
        .bind(&pusher.pushkey)
        .bind(pusher.device_id.as_ref().map(|d| d.as_str()))
        .bind(&pusher.url)
        .bind(i64::from(pusher.format == PushFormat::EventIdOnly))
        .bind(pusher.body.to_string())
        .bind(pusher.created_ts as i64)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn delete_pusher(
        &self,
        user: Option<&UserId>,
        app_id: &str,
        pushkey: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND ($3 IS NULL OR user_id = $3)",
        )
        .bind(app_id)
        .bind(pushkey)
        .bind(user.map(|u| u.as_str()))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
