//! Rooms: the log, state, memberships, aliases, the directory, timelines.

use super::packed;
use super::rows::MembershipRow;
use super::*;
use ruma::events::room::member::MembershipState;
use sandcat_core::ports::{StateReset, OUTLIERS_BELOW};

/// A `bus_batches` row as an outcome.
fn outcome_of(ids: Option<String>, error: Option<String>) -> Result<BatchOutcome> {
    Ok(match (ids, error) {
        (Some(ids), _) => BatchOutcome::Appended(serde_json::from_str(&ids)?),
        (None, Some(e)) => {
            let (code, message): (ErrorCode, String) = serde_json::from_str(&e)?;
            BatchOutcome::Refused(code, message)
        }
        (None, None) => return Err(Error::storage("a batch outcome without content")),
    })
}

#[async_trait]
impl RoomStore for SqlStore {
    async fn load_room(&self, room_id: &RoomId) -> Result<Option<RoomSnapshot>> {
        let Some(version) =
            sqlx::query_scalar::<_, String>("SELECT room_version FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
        else {
            return Ok(None);
        };
        // Newest first: a new event names the newest 20.
        let rows = sqlx::query(
            "SELECT x.event_id, x.depth FROM room_extremities x LEFT JOIN events e ON e.event_id = x.event_id WHERE x.room_id = $1 ORDER BY e.pos DESC",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut extremities = Vec::with_capacity(rows.len());
        let mut depth = 0;
        for r in &rows {
            extremities.push(parse_id(r.try_get("event_id").map_err(db)?)?);
            depth = depth.max(r.try_get::<i64, _>("depth").map_err(db)?.max(0) as u64);
        }
        if extremities.is_empty() {
            return Err(Error::storage(format!(
                "{room_id} has no forward extremity"
            )));
        }
        let state = self
            .current_state(room_id)
            .await?
            .into_iter()
            .map(|e| e.pdu)
            .collect();
        Ok(Some(RoomSnapshot {
            version: RoomVersionId::try_from(version.as_str()).map_err(Error::storage)?,
            extremities,
            depth,
            state,
        }))
    }

    async fn append_group(&self, batches: &[AppendBatch<'_>]) -> Result<Vec<Vec<i64>>> {
        self.append_batches(batches).await
    }

    async fn batch_outcome(&self, batch_id: &str) -> Result<Option<BatchOutcome>> {
        let row = sqlx::query("SELECT event_ids, error FROM bus_batches WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let ids: Option<String> = r.try_get("event_ids").map_err(db)?;
        let error: Option<String> = r.try_get("error").map_err(db)?;
        outcome_of(ids, error).map(Some)
    }

    async fn batch_outcomes(&self, batch_ids: &[String]) -> Result<Vec<(String, BatchOutcome)>> {
        let mut out = Vec::new();
        for chunk in batch_ids.chunks(500) {
            let sql = format!(
                "SELECT batch_id, event_ids, error FROM bus_batches WHERE batch_id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q.fetch_all(&self.pool).await.map_err(db)? {
                let id: String = r.try_get("batch_id").map_err(db)?;
                let ids: Option<String> = r.try_get("event_ids").map_err(db)?;
                let error: Option<String> = r.try_get("error").map_err(db)?;
                out.push((id, outcome_of(ids, error)?));
            }
        }
        Ok(out)
    }

    async fn record_batch_outcome(&self, batch_id: &str, outcome: &BatchOutcome) -> Result<()> {
        let (ids, error) = match outcome {
            BatchOutcome::Appended(ids) => (Some(serde_json::to_string(ids)?), None),
            BatchOutcome::Refused(code, message) => {
                (None, Some(serde_json::to_string(&(code, message))?))
            }
        };
        sqlx::query("INSERT INTO bus_batches (batch_id, event_ids, error, ts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(batch_id)
            .bind(ids)
            .bind(error)
            .bind(sandcat_core::now_ms() as i64)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
        ))
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(self.events_from_rows(rows).await?.pop())
    }

    async fn txn_event(
        &self,
        user_id: &UserId,
        device_id: &str,
        room_id: &RoomId,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE txn_user = $1 AND txn_device = $2 AND room_id = $3 AND txn_id = $4",
        )
        .bind(user_id.as_str())
        .bind(device_id)
        .bind(room_id.as_str())
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        id.map(parse_id).transpose()
    }

    async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        v.map(|v| RoomVersionId::try_from(v.as_str()).map_err(Error::storage))
            .transpose()
    }

    async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        let sql = packed::events_query(
            self.dialect,
            "SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1",
        );
        self.read_events(sqlx::query(&sql).bind(room_id.as_str()))
            .await
    }

    async fn state_after(
        &self,
        event_id: &EventId,
    ) -> Result<Option<std::collections::HashMap<(String, String), OwnedEventId>>> {
        self.state_after_event(event_id).await
    }

    async fn auth_graph(&self, event_ids: &[OwnedEventId]) -> Result<Vec<Pdu>> {
        self.auth_graph_of(event_ids).await
    }

    async fn add_outlier(&self, pdu: &Pdu, json: &str) -> Result<()> {
        self.add_outlier_event(pdu, json).await
    }

    async fn add_backfilled(&self, pdu: &Pdu, json: &str) -> Result<()> {
        self.add_backfilled_event(pdu, json).await
    }

    async fn earliest_events(&self, room_id: &RoomId) -> Result<Vec<StoredEvent>> {
        self.earliest_events_of(room_id).await
    }

    async fn hold(&self, event: &sandcat_core::ports::HeldEvent) -> Result<()> {
        self.hold_event(event).await
    }

    async fn held(
        &self,
        event_id: &EventId,
    ) -> Result<Option<(sandcat_core::ports::HeldStatus, String)>> {
        Ok(self
            .held_event(event_id)
            .await?
            .map(|h| (h.status, h.reason)))
    }

    async fn federated_servers(&self) -> Result<Vec<ruma::OwnedServerName>> {
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT state_key FROM current_state WHERE type = 'm.room.member' \
             AND membership = 'join' AND room_id IN (SELECT room_id FROM rooms WHERE federated)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let servers: std::collections::BTreeSet<ruma::OwnedServerName> = users
            .iter()
            .filter_map(|u| UserId::parse(u.as_str()).ok())
            .map(|u| u.server_name().to_owned())
            .collect();
        Ok(servers.into_iter().collect())
    }

    async fn event_json(&self, event_id: &EventId) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT json FROM events WHERE event_id = $1")
            .bind(event_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)
    }

    async fn events_json(&self, event_ids: &[OwnedEventId]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(500) {
            let sql = format!(
                "SELECT json FROM events WHERE event_id IN ({})",
                params(1, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            out.extend(q.fetch_all(&self.pool).await.map_err(db)?);
        }
        Ok(out)
    }

    async fn held_pdu(&self, event_id: &EventId) -> Result<Option<sandcat_core::ports::HeldEvent>> {
        self.held_event(event_id).await
    }

    async fn state_event(
        &self,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<StoredEvent>> {
        let rows = sqlx::query("SELECT e.pos, e.event_id, e.room_id, e.json, e.unsigned, e.redacted_by, e.txn_user, e.txn_device, e.txn_id FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 AND s.type = $2 AND s.state_key = $3")
            .bind(room_id.as_str())
            .bind(kind)
            .bind(state_key)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(self.events_from_rows(rows).await?.pop())
    }

    async fn state_changes(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE pos IN (SELECT MAX(pos) FROM events WHERE room_id = $1 AND state_key IS NOT NULL AND pos > $2 AND pos <= $3 GROUP BY type, state_key) ORDER BY pos"
        ))
        .bind(room_id.as_str())
        .bind(after)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let events = self.events_from_rows(rows).await?;
        let resets = self.state_resets_in(room_id, after, until).await?;
        Ok(super::room_dag::merge_resets(events, resets))
    }

    async fn state_resets(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
    ) -> Result<Vec<StateReset>> {
        self.state_resets_in(room_id, after, until).await
    }

    async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<Membership>> {
        let row = sqlx::query("SELECT room_id, membership, pos, event_id FROM current_state WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2")
            .bind(room_id.as_str())
            .bind(user_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(MembershipRow::read).transpose()
    }

    async fn memberships(&self, user_id: &UserId) -> Result<Vec<Membership>> {
        let rows = sqlx::query("SELECT room_id, membership, pos, event_id FROM current_state WHERE state_key = $1 AND type = 'm.room.member' AND room_id NOT IN (SELECT room_id FROM forgotten_rooms WHERE user_id = $2) ORDER BY pos")
            .bind(user_id.as_str())
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(MembershipRow::read).collect()
    }

    async fn members(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        let rows = sqlx::query("SELECT state_key, membership FROM current_state WHERE room_id = $1 AND type = 'm.room.member' ORDER BY pos").bind(room_id.as_str()).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id(r.try_get("state_key").map_err(db)?)?,
                    MembershipState::from(
                        r.try_get::<Option<String>, _>("membership")
                            .map_err(db)?
                            .unwrap_or_default(),
                    ),
                ))
            })
            .collect()
    }

    async fn sharing_rooms_with(
        &self,
        user_id: &UserId,
        users: &[OwnedUserId],
    ) -> Result<std::collections::HashSet<OwnedUserId>> {
        let mut out = std::collections::HashSet::new();
        if users.iter().any(|u| u == user_id) {
            out.insert(user_id.to_owned());
        }
        for chunk in users.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT o.state_key FROM current_state m \
                 JOIN current_state o ON o.room_id = m.room_id AND o.type = 'm.room.member' AND o.membership = 'join' \
                 WHERE m.type = 'm.room.member' AND m.state_key = $1 AND m.membership = 'join' \
                 AND o.state_key IN ({})",
                params(2, chunk.len())
            );
            let mut q = sqlx::query_scalar::<_, String>(&sql).bind(user_id.as_str());
            for u in chunk {
                q = q.bind(u.as_str());
            }
            for u in q.fetch_all(&self.pool).await.map_err(db)? {
                out.insert(parse_id(u)?);
            }
        }
        Ok(out)
    }

    async fn servers_sharing_rooms_with(
        &self,
        user_id: &UserId,
    ) -> Result<std::collections::BTreeSet<ruma::OwnedServerName>> {
        // Rooms only this server writes to (not `federated`) have members of this server alone.
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT o.state_key FROM current_state m \
             JOIN rooms r ON r.room_id = m.room_id AND r.federated \
             JOIN current_state o ON o.room_id = m.room_id AND o.type = 'm.room.member' AND o.membership = 'join' \
             WHERE m.type = 'm.room.member' AND m.state_key = $1 AND m.membership = 'join'",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut servers = std::collections::BTreeSet::new();
        for m in members {
            let server = parse_id::<OwnedUserId>(m)?.server_name().to_owned();
            if server != user_id.server_name() {
                servers.insert(server);
            }
        }
        Ok(servers)
    }

    async fn members_at(
        &self,
        room_id: &RoomId,
        at: i64,
    ) -> Result<Vec<(OwnedUserId, MembershipState)>> {
        let rows = sqlx::query("SELECT state_key, membership, pos FROM current_state WHERE room_id = $1 AND type = 'm.room.member' ORDER BY pos")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let user: OwnedUserId = parse_id(r.try_get("state_key").map_err(db)?)?;
            let pos: i64 = r.try_get("pos").map_err(db)?;
            if pos <= at {
                let m: Option<String> = r.try_get("membership").map_err(db)?;
                out.push((user, MembershipState::from(m.unwrap_or_default())));
                continue;
            }
            let earlier = sqlx::query(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND type = 'm.room.member' AND state_key = $2 AND pos > 0 AND pos <= $3 ORDER BY pos DESC LIMIT 1"
            ))
            .bind(room_id.as_str())
            .bind(user.as_str())
            .bind(at)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            if let Some(ev) = self.events_from_rows(earlier).await?.pop() {
                if let Some(m) = ev.pdu.membership() {
                    out.push((user, m));
                }
            }
        }
        Ok(out)
    }

    async fn timeline(
        &self,
        room_id: &RoomId,
        after: i64,
        until: i64,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let order = match dir {
            Direction::Forward => "ASC",
            Direction::Backward => "DESC",
        };
        let sql = packed::events_query(
            self.dialect,
            &format!("SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND pos > $2 AND pos <= $3 ORDER BY pos {order} LIMIT $4"),
        );
        let query = sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(after)
            .bind(until)
            .bind(limit as i64);
        let mut events = self.read_events(query).await?;
        if dir == Direction::Backward {
            events.reverse();
        }
        Ok(events)
    }

    async fn history(
        &self,
        room_id: &RoomId,
        range: sandcat_core::ports::HistoryRange,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        self.history_page(room_id, range, dir, limit).await
    }

    async fn relations(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        rel_type: Option<&str>,
        event_type: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND relates_to = $2 AND ($3 IS NULL OR rel_type = $4) AND ($5 IS NULL OR type = $6) AND pos > {OUTLIERS_BELOW} AND pos <= $7 ORDER BY pos DESC LIMIT $8"
        ))
        .bind(room_id.as_str())
        .bind(event_id.as_str())
        .bind(rel_type)
        .bind(rel_type)
        .bind(event_type)
        .bind(event_type)
        .bind(before)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }

    async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        sqlx::query(
            "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn room_overviews(
        &self,
        rooms: &[OwnedRoomId],
        user_id: &UserId,
        until: i64,
        latest: usize,
    ) -> Result<std::collections::HashMap<OwnedRoomId, sandcat_core::ports::RoomOverview>> {
        self.overviews(rooms, user_id, until, latest).await
    }

    async fn count_unread(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<sandcat_core::ports::UnreadCounts> {
        Ok(self
            .unread_in(user_id, Some(&[room_id.to_owned()]), i64::MAX)
            .await?
            .remove(room_id)
            .unwrap_or_default())
    }

    async fn set_alias(&self, alias: &str, room_id: &RoomId, creator: &UserId) -> Result<()> {
        let r =
            sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
                .bind(alias)
                .bind(room_id.as_str())
                .bind(creator.as_str())
                .execute(&self.pool)
                .await;
        match r {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(Error::matrix(
                ErrorCode::RoomInUse,
                "room alias already exists",
            )),
            Err(e) => Err(db(e)),
        }
    }

    async fn alias(&self, alias: &str) -> Result<Option<(OwnedRoomId, OwnedUserId)>> {
        let row = sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        match row {
            Some(r) => Ok(Some((
                parse_id(r.try_get("room_id").map_err(db)?)?,
                parse_id(r.try_get("creator").map_err(db)?)?,
            ))),
            None => Ok(None),
        }
    }

    async fn delete_alias(&self, alias: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn aliases_of(&self, room_id: &RoomId) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn set_public(&self, room_id: &RoomId, public: bool) -> Result<()> {
        sqlx::query("UPDATE rooms SET is_public = $1 WHERE room_id = $2")
            .bind(public as i64)
            .bind(room_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_public(&self, room_id: &RoomId) -> Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT is_public FROM rooms WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(v == Some(1))
    }

    async fn public_rooms(&self) -> Result<Vec<OwnedRoomId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT room_id FROM rooms WHERE is_public = 1")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        ids.into_iter().map(parse_id).collect()
    }

    async fn events_between(
        &self,
        after: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE pos > $1 AND pos <= $2 ORDER BY pos ASC LIMIT $3"
        ))
        .bind(after)
        .bind(until)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.events_from_rows(rows).await
    }
}
