//! Reports of events, rooms and users.

use sandcat_core::ports::{Report, Reported, Reports};
use sqlx::FromRow;

use super::*;

#[derive(FromRow)]
struct ReportRow {
    reporter: String,
    room_id: Option<String>,
    event_id: Option<String>,
    user_id: Option<String>,
    reason: String,
    received_ts: i64,
}

impl ReportRow {
    fn into_report(self) -> Result<Report> {
        let bad = |what: &str| Error::internal(format!("a report row without {what}"));
        let room = || -> Result<OwnedRoomId> {
            OwnedRoomId::try_from(self.room_id.clone().ok_or_else(|| bad("a room"))?)
                .map_err(Error::internal)
        };
        let subject = match (&self.event_id, &self.user_id) {
            (Some(event), _) => Reported::Event(
                room()?,
                OwnedEventId::try_from(event.as_str()).map_err(Error::internal)?,
            ),
            (None, Some(user)) => {
                Reported::User(OwnedUserId::try_from(user.as_str()).map_err(Error::internal)?)
            }
            (None, None) => Reported::Room(room()?),
        };
        Ok(Report {
            reporter: OwnedUserId::try_from(self.reporter).map_err(Error::internal)?,
            subject,
            reason: self.reason,
            received_ms: u64::try_from(self.received_ts).unwrap_or(0),
        })
    }
}

#[async_trait]
impl Reports for SqlStore {
    async fn keep_report(&self, report: &Report) -> Result<()> {
        let (room, event, user) = match &report.subject {
            Reported::Event(r, e) => (Some(r.as_str()), Some(e.as_str()), None),
            Reported::Room(r) => (Some(r.as_str()), None, None),
            Reported::User(u) => (None, None, Some(u.as_str())),
        };
        sqlx::query(
            "INSERT INTO reports (reporter, room_id, event_id, user_id, reason, received_ts) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(report.reporter.as_str())
        .bind(room)
        .bind(event)
        .bind(user)
        .bind(&report.reason)
        .bind(i64::try_from(report.received_ms).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn latest_reports(&self, limit: usize) -> Result<Vec<Report>> {
        let rows: Vec<ReportRow> = sqlx::query_as(
            "SELECT reporter, room_id, event_id, user_id, reason, received_ts FROM reports \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(ReportRow::into_report).collect()
    }
}
