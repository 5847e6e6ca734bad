//! Message search on each dialect's full-text engine: FTS5's `MATCH` ranked by `bm25` on
//! SQLite, `@@` on the indexed `tsvector` ranked by `ts_rank` on PostgreSQL. The rooms and
//! the positions the searcher may read in each are a derived table joined to the hits.

use sandcat_core::ports::{RoomSearch, SearchHits, SearchOrder, SearchQuery};

use super::*;

/// The indexed text on PostgreSQL: exactly the expression of the `events_search` index.
const PG_SEARCH_TEXT: &str = "to_tsvector('simple'::regconfig, COALESCE(\
    CAST(json AS jsonb) -> 'content' ->> 'body', \
    CAST(json AS jsonb) -> 'content' ->> 'name', \
    CAST(json AS jsonb) -> 'content' ->> 'topic', \
    ''))";

/// The words as an FTS5 query: each a quoted string (quotes doubled), all required.
fn fts5_query(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words as a PostgreSQL `tsquery` in `plainto_tsquery`'s input: all required.
fn pg_query(words: &[String]) -> String {
    words.join(" ")
}

impl SqlStore {
    /// `FROM … WHERE …` of a search, its parameters from `$1` (the query) on.
    fn search_from(&self, query: &SearchQuery) -> (String, usize) {
        let mut n = 2;
        let rooms: Vec<String> = query
            .rooms
            .iter()
            .map(|_| {
                let term = format!(
                    "SELECT CAST(${} AS TEXT) AS room_id, CAST(${} AS BIGINT) AS floor, CAST(${} AS BIGINT) AS until",
                    n,
                    n + 1,
                    n + 2
                );
                n += 3;
                term
            })
            .collect();
        let rooms = rooms.join(" UNION ALL ");
        let types = format!(" AND e.type IN ({})", params(n, query.types.len()));
        n += query.types.len();
        let below = query
            .below
            .map(|_| {
                let c = format!(" AND e.pos < ${n}");
                n += 1;
                c
            })
            .unwrap_or_default();
        let from = match self.dialect {
            Dialect::Sqlite => format!(
                "FROM event_search JOIN events e ON e.pos = event_search.rowid \
                 JOIN ({rooms}) r ON r.room_id = e.room_id \
                 WHERE event_search MATCH $1 AND e.pos > r.floor AND e.pos <= r.until \
                 AND e.redacted_by IS NULL{types}{below}"
            ),
            Dialect::Postgres => format!(
                "FROM events e JOIN ({rooms}) r ON r.room_id = e.room_id \
                 WHERE e.type IN ('m.room.message', 'm.room.name', 'm.room.topic') \
                 AND {PG_SEARCH_TEXT} @@ plainto_tsquery('simple'::regconfig, $1) \
                 AND e.pos > r.floor AND e.pos <= r.until AND e.redacted_by IS NULL{types}{below}"
            ),
        };
        (from, n)
    }

    fn bind_search<'q>(
        &self,
        mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        query: &'q SearchQuery,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        q = q.bind(match self.dialect {
            Dialect::Sqlite => fts5_query(&query.words),
            Dialect::Postgres => pg_query(&query.words),
        });
        for r in &query.rooms {
            q = q.bind(r.room_id.as_str()).bind(r.floor).bind(r.until);
        }
        for t in &query.types {
            q = q.bind(*t);
        }
        if let Some(b) = query.below {
            q = q.bind(b);
        }
        q
    }
}

#[async_trait]
impl RoomSearch for SqlStore {
    async fn search_events(&self, query: &SearchQuery) -> Result<SearchHits> {
        if query.rooms.is_empty() || query.words.is_empty() || query.types.is_empty() {
            return Ok(SearchHits::default());
        }
        let (from, next) = self.search_from(query);
        let rank = match self.dialect {
            Dialect::Sqlite => "-bm25(event_search)".to_owned(),
            Dialect::Postgres => {
                format!("ts_rank({PG_SEARCH_TEXT}, plainto_tsquery('simple'::regconfig, $1))")
            }
        };
        let order = match query.order {
            SearchOrder::Rank => "score DESC, e.pos DESC",
            SearchOrder::Recent => "e.pos DESC",
        };
        let sql = format!(
            "SELECT e.pos AS pos, CAST({rank} AS DOUBLE PRECISION) AS score {from} \
             ORDER BY {order} LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let rows = self
            .bind_search(sqlx::query(&sql), query)
            .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(query.skip).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut ranked = Vec::with_capacity(rows.len());
        for row in &rows {
            let pos: i64 = row.try_get("pos").map_err(db)?;
            let rank: f64 = row.try_get("score").map_err(db)?;
            ranked.push((pos, rank));
        }
        let count_sql = format!("SELECT COUNT(*) AS n {from}");
        let count: i64 = self
            .bind_search(sqlx::query(&count_sql), query)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?
            .try_get("n")
            .map_err(db)?;
        let mut events = self
            .events_at(&ranked.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            .await?;
        let hits = ranked
            .into_iter()
            .filter_map(|(pos, rank)| {
                let i = events.iter().position(|e| e.pos == pos)?;
                Some((events.swap_remove(i), rank))
            })
            .collect();
        Ok(SearchHits {
            hits,
            count: from_db_int(count),
        })
    }
}

impl SqlStore {
    /// The events at these stream positions, in no particular order.
    async fn events_at(&self, positions: &[i64]) -> Result<Vec<StoredEvent>> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE pos IN ({})",
            params(1, positions.len())
        );
        let mut q = sqlx::query(&sql);
        for p in positions {
            q = q.bind(*p);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        self.events_from_rows(rows).await
    }
}
