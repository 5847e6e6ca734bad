//! Reads of many rows, answered as one.
//!
//! SQLite runs on a worker thread of its own (sqlx), which hands each row of a result to the
//! calling task through a channel: a wake-up and often a context switch per row, which costs
//! more than reading the row. Reading 3,600 event rows took 17–125 ms depending on what else
//! the machine did, the same rows as one JSON array built by the database 10–32 ms (same
//! machine, same run; typed `Sqlite` rows instead of `Any` ones were no faster). So the reads
//! that return lists ask the database for one row holding them all — `[[col, …], …]`, in an
//! order the statement names — on both dialects (PostgreSQL's `json_agg` is the same
//! statement to it, with fewer protocol messages).

use std::{borrow::Cow, collections::HashMap};

use ruma::events::room::member::MembershipState;
use serde::Deserialize;
use sqlx::{any::AnyArguments, query::Query, Any};

use super::*;

/// A statement built on [`one_row`], ready to be bound and run.
pub(crate) type OneRowQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Wraps `select` (whose result has the columns `columns`) so that its rows come back as one
/// text value, a JSON array of arrays ordered by `order` (`[]` when there are none). The
/// caller binds the parameters of `select` as it would have.
pub(crate) fn one_row(dialect: Dialect, columns: &str, select: &str, order: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "SELECT json_group_array(json_array({columns}) ORDER BY {order}) FROM ({select}) AS r"
        ),
        Dialect::Postgres => format!(
            "SELECT COALESCE(json_agg(json_build_array({columns}) ORDER BY {order})::text, '[]') FROM ({select}) AS r"
        ),
    }
}

/// Runs a statement built on [`one_row`] and answers its rows' JSON.
pub(crate) async fn fetch_rows(pool: &AnyPool, q: OneRowQuery<'_>) -> Result<String> {
    q.fetch_one(pool).await.map_err(db)?.try_get(0).map_err(db)
}

/// Parses what [`fetch_rows`] answered as rows of type `T` (a tuple struct of the columns).
pub(crate) fn parse_rows<'a, T: Deserialize<'a>>(json: &'a str) -> Result<Vec<T>> {
    serde_json::from_str(json).map_err(|e| Error::storage(format!("reading rows: {e}")))
}

/// One row of [`EVENT_COLUMNS`], in that order.
#[derive(Deserialize)]
struct EventRow<'a>(
    i64,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Option<Cow<'a, str>>,
);

impl EventRow<'_> {
    fn into_event(self) -> Result<(StoredEvent, Option<String>)> {
        let EventRow(pos, event_id, room_id, json, unsigned, redacted_by, user, device, txn) = self;
        let pdu = Pdu::from_stored(
            &json,
            parse_id(event_id.into_owned())?,
            parse_id(room_id.into_owned())?,
        )?;
        let txn = match (user, device, txn) {
            (Some(u), Some(d), Some(t)) => {
                Some((parse_id(u.into_owned())?, d.into_owned(), t.into_owned()))
            }
            _ => None,
        };
        let event = StoredEvent {
            pos,
            pdu,
            unsigned: unsigned.and_then(|u| serde_json::from_str(&u).ok()),
            redacted_because: None,
            txn,
        };
        Ok((event, redacted_by.map(Cow::into_owned)))
    }
}

/// What a membership row of `current_state` holds: room, membership, position, event.
pub(crate) const MEMBERSHIP_COLUMNS: &str = "room_id, membership, pos, event_id";

#[derive(Deserialize)]
pub(crate) struct MembershipRow(String, Option<String>, i64, String);

impl MembershipRow {
    pub(crate) fn into_membership(self) -> Result<Membership> {
        let MembershipRow(room_id, membership, pos, event_id) = self;
        Ok(Membership {
            room_id: parse_id(room_id)?,
            membership: MembershipState::from(membership.unwrap_or_default()),
            pos,
            event_id: parse_id(event_id)?,
        })
    }
}

/// The columns of a receipt, in the order [`ReceiptRow`] reads them.
pub(crate) const RECEIPT_COLUMNS: &str =
    "room_id, user_id, receipt_type, thread_id, event_id, ts, pos";

#[derive(Deserialize)]
pub(crate) struct ReceiptRow(String, String, String, String, String, i64, i64);

impl ReceiptRow {
    pub(crate) fn into_receipt(self) -> Result<Receipt> {
        let ReceiptRow(room_id, user_id, receipt_type, thread, event_id, ts, pos) = self;
        Ok(Receipt {
            room_id: parse_id(room_id)?,
            user_id: parse_id(user_id)?,
            receipt_type,
            thread_id: (!thread.is_empty()).then_some(thread),
            event_id: parse_id(event_id)?,
            ts: ts as u64,
            pos,
        })
    }
}

impl SqlStore {
    /// `select` (of [`EVENT_COLUMNS`]) as a statement for [`SqlStore::events_in`].
    pub(crate) fn events_sql(&self, select: &str, order: &str) -> String {
        one_row(self.dialect, EVENT_COLUMNS, select, order)
    }

    /// Runs a statement built by [`SqlStore::events_sql`]: its events, in its order, each
    /// redacted one with the event that redacted it.
    pub(crate) async fn events_in(&self, q: OneRowQuery<'_>) -> Result<Vec<StoredEvent>> {
        let json = fetch_rows(&self.pool, q).await?;
        let mut events = Vec::new();
        let mut redactions = Vec::new();
        for row in parse_rows::<EventRow>(&json)? {
            let (event, redacted_by) = row.into_event()?;
            if let Some(r) = redacted_by {
                redactions.push((events.len(), r));
            }
            events.push(event);
        }
        if !redactions.is_empty() {
            let ids: Vec<&str> = redactions.iter().map(|(_, r)| r.as_str()).collect();
            let mut because = self.events_by_id(&ids).await?;
            for (i, r) in redactions {
                if let Some(e) = because.remove(r.as_str()) {
                    events[i].redacted_because = Some(Box::new(e));
                }
            }
        }
        Ok(events)
    }

    /// The events with the given ids (those that exist), by id; redactions not attached.
    async fn events_by_id(&self, ids: &[&str]) -> Result<HashMap<String, StoredEvent>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let select = format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({})",
                params(1, chunk.len())
            );
            let sql = self.events_sql(&select, "pos");
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let json = fetch_rows(&self.pool, q).await?;
            for row in parse_rows::<EventRow>(&json)? {
                let (event, _) = row.into_event()?;
                out.insert(event.pdu.event_id.to_string(), event);
            }
        }
        Ok(out)
    }
}
