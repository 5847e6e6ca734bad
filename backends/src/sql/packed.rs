//! Lists of events read as one value on SQLite.
//!
//! sqlx runs each SQLite connection on a thread of its own and hands every row to the calling
//! task: the worker copies each column (`sqlite3_value_dup`), sends the row through a channel,
//! and the task converts it to an `Any` row and then to an event row. For an initial sync
//! (3,600 event rows) that was most of the time. Here SQLite concatenates the rows into one
//! string, each column written as `{byte length}:{text}` (`:` alone for NULL), so any text —
//! an event's JSON, an id, a client's transaction id — reads back exactly, without escaping.
//! Each row is one `concat` (one copy of its text), and the list is put in order here rather
//! than by an `ORDER BY` in the aggregate, which made SQLite build a sorter.
//! (A JSON array built by SQLite was tried before and cost as much as it saved: SQLite
//! escaped every event's JSON into it and the server unescaped it again.)
//!
//! PostgreSQL hands rows over its socket as they are parsed, with no thread in between: it
//! reads them as rows.

use sqlx::{any::AnyArguments, query::Query, Any};

use super::{db, rows::EventFields, Dialect, SqlStore, EVENT_COLUMNS};
use sandcat_core::{Error, Result, StoredEvent};

/// One column of `EVENT_COLUMNS` as `{bytes}:{text}`; NULL is `:` (`concat` writes NULL as
/// nothing).
fn packed_column(column: &str) -> String {
    format!("octet_length({column}), ':', {column}")
}

/// The query that reads the events of `inner` (a `SELECT` of `EVENT_COLUMNS`) in the
/// dialect's best way: on SQLite one value holding every row, on PostgreSQL `inner` itself. Read it with [`SqlStore::read_events`].
pub(super) fn events_query(dialect: Dialect, inner: &str) -> String {
    match dialect {
        Dialect::Postgres => inner.to_owned(),
        Dialect::Sqlite => {
            let row = EVENT_COLUMNS
                .split(", ")
                .map(packed_column)
                .collect::<Vec<_>>()
                .join(", ");
            format!("SELECT group_concat(concat({row}), '') FROM ({inner}) AS packed")
        }
    }
}

/// Reads one packed column at the start of `rest`.
fn column<'a>(rest: &mut &'a str) -> Result<Option<&'a str>> {
    let bad = || Error::storage("a packed event row is malformed");
    let (len, after) = rest.split_once(':').ok_or_else(bad)?;
    if len.is_empty() {
        *rest = after;
        return Ok(None);
    }
    let len: usize = len.parse().map_err(|_| bad())?;
    let value = after.get(..len).ok_or_else(bad)?;
    *rest = after.get(len..).ok_or_else(bad)?;
    Ok(Some(value))
}

/// A column that is never NULL.
fn need(c: Option<&str>) -> Result<&str> {
    c.ok_or_else(|| Error::storage("a packed event lacks a column"))
}

/// The rows of a packed list, in order.
pub(super) fn unpack(packed: &str) -> Result<Vec<EventFields<'_>>> {
    let mut rest = packed;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let pos = need(column(&mut rest)?)?;
        out.push(EventFields {
            pos: pos
                .parse()
                .map_err(|_| Error::storage("a packed event's position is not a number"))?,
            event_id: need(column(&mut rest)?)?,
            room_id: need(column(&mut rest)?)?,
            json: need(column(&mut rest)?)?,
            unsigned: column(&mut rest)?,
            redacted_by: column(&mut rest)?,
            txn_user: column(&mut rest)?,
            txn_device: column(&mut rest)?,
            txn_id: column(&mut rest)?,
        });
    }
    Ok(out)
}

impl SqlStore {
    /// The events of a query made by [`events_query`], with the redaction event of redacted
    /// ones, in position order.
    pub(super) async fn read_events<'q>(
        &self,
        query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<Vec<StoredEvent>> {
        let mut events = match self.dialect {
            Dialect::Postgres => {
                let rows = query.fetch_all(&self.pool).await.map_err(db)?;
                self.events_from_rows(rows).await?
            }
            Dialect::Sqlite => {
                let packed: Option<String> =
                    sqlx::Row::try_get(&query.fetch_one(&self.pool).await.map_err(db)?, 0)
                        .map_err(db)?;
                let fields = unpack(packed.as_deref().unwrap_or(""))?;
                let mut out = Vec::with_capacity(fields.len());
                for f in fields {
                    let redacted_by = f.redacted_by;
                    let mut ev = f.into_event()?;
                    if let Some(by) = redacted_by {
                        ev.redacted_because = self.redaction(by).await?.map(Box::new);
                    }
                    out.push(ev);
                }
                out
            }
        };
        events.sort_unstable_by_key(|e| e.pos);
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows packed as SQLite packs them.
    fn pack(rows: &[[Option<&str>; 9]]) -> String {
        rows.iter()
            .flatten()
            .map(|c| c.map_or(":".to_owned(), |c| format!("{}:{c}", c.len())))
            .collect()
    }

    #[test]
    fn packed_rows_read_back_exactly() {
        let json = r#"{"a":"b:c-d","n":1}"#;
        let packed = pack(&[
            [
                Some("17"),
                Some("$x:y"),
                Some("!r:é"),
                Some(json),
                None,
                Some("$red:y"),
                Some("@u:y"),
                Some("D"),
                Some("t:-\u{1e}9:"),
            ],
            [
                Some("18"),
                Some("$z:y"),
                Some("!r:é"),
                Some(json),
                Some("{}"),
                None,
                None,
                None,
                Some(""),
            ],
        ]);
        let rows = unpack(&packed).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].pos, 17);
        assert_eq!(rows[0].event_id, "$x:y");
        assert_eq!(rows[0].room_id, "!r:é");
        assert_eq!(rows[0].json, json);
        assert_eq!(rows[0].unsigned, None);
        assert_eq!(rows[0].redacted_by, Some("$red:y"));
        assert_eq!(rows[0].txn_id, Some("t:-\u{1e}9:"));
        assert_eq!(rows[1].pos, 18);
        assert_eq!(rows[1].unsigned, Some("{}"));
        assert_eq!(rows[1].txn_user, None);
        assert_eq!(rows[1].txn_id, Some(""));
    }

    #[test]
    fn malformed_packing_is_an_error_not_a_panic() {
        for bad in ["x", "2:1", "99:17", "2:17-", "-", "2:1a", "2:17:", "a:"] {
            assert!(unpack(bad).is_err(), "{bad}");
        }
        assert!(unpack("").unwrap().is_empty());
    }
}
