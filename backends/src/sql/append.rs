//! Appending to room logs: one transaction for a group of batches (group commit), with one
//! multi-row insert for all their events and one head update per batch.

use super::state_groups::{self, GroupOf};
use super::*;
use ruma::events::room::member::MembershipState;
use sandcat_core::ports::AppendBatch;

/// Events per `INSERT`: 17 parameters each stays far below either database's limit.
const EVENTS_PER_INSERT: usize = 500;

/// `(event_id, rel_type)` of an event's `m.relates_to`.
fn relation_of(pdu: &Pdu) -> (Option<String>, Option<String>) {
    let c = pdu.content_value();
    let rel = c.get("m.relates_to");
    let target = rel
        .and_then(|r| r.get("event_id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = rel
        .and_then(|r| r.get("rel_type"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    (target, kind)
}

/// What an append changes, for `/sync`: the rooms, and the users whose membership moved.
fn changes_of(batches: &[AppendBatch<'_>]) -> Vec<Change> {
    let mut changes = Vec::new();
    for ev in batches.iter().flat_map(|b| b.events) {
        changes.push(Change::Room(ev.pdu.room_id().to_owned()));
        if let (Some(key), Some(_)) = (&ev.pdu.state_key, ev.pdu.membership()) {
            if let Ok(user) = OwnedUserId::try_from(key.as_str()) {
                changes.push(Change::User(user));
            }
        }
        // Memberships that resolution changed without an event of their own.
        for c in ev.remote.iter().flat_map(|r| &r.current_state) {
            if c.kind == "m.room.member" {
                if let Ok(user) = OwnedUserId::try_from(c.state_key.as_str()) {
                    changes.push(Change::User(user));
                }
            }
        }
    }
    changes
}

impl SqlStore {
    pub(super) async fn append_batches(
        &self,
        batches: &[AppendBatch<'_>],
    ) -> Result<Vec<Vec<i64>>> {
        let n: usize = batches.iter().map(|b| b.events.len()).sum();
        if n == 0 {
            return Ok(batches.iter().map(|_| Vec::new()).collect());
        }
        self.with_positions(n, changes_of(batches), async |tx, taken| {
            let events: Vec<&NewEvent> = batches.iter().flat_map(|b| b.events).collect();
            let (groups, before) = state_groups::plan(&events);
            let positioned: Vec<(&NewEvent, i64, GroupOf<'_>)> = events
                .iter()
                .copied()
                .zip(taken.iter().copied())
                .zip(groups)
                .map(|((e, p), g)| (e, p, g))
                .collect();
            for ev in events.iter().filter(|e| e.remote.is_some()) {
                drop_outlier(tx, ev).await?;
            }
            for chunk in positioned.chunks(EVENTS_PER_INSERT) {
                insert_events(tx, chunk).await?;
            }
            insert_push_actions(tx, &positioned).await?;
            for b in batches {
                match b.events {
                    [one] if one.remote.is_some() => merge_heads(tx, one).await?,
                    events => move_head(tx, events).await?,
                }
            }
            for ((ev, pos, _), parent) in positioned.iter().zip(before) {
                match &ev.state_before {
                    Some(resolved) => state_groups::add_resolved_group(tx, ev, resolved).await?,
                    None if ev.pdu.state_key.is_some() => {
                        state_groups::add_group(tx, ev, parent).await?
                    }
                    None => {}
                }
                apply_state(tx, ev, *pos).await?;
            }
            record_batches(tx, batches).await?;
            let mut out = Vec::with_capacity(batches.len());
            let mut rest = taken;
            for b in batches {
                let (mine, tail) = rest.split_at(b.events.len());
                out.push(mine.to_vec());
                rest = tail;
            }
            Ok(out)
        })
        .await
    }
}

async fn insert_events(
    tx: &mut AnyConnection,
    chunk: &[(&NewEvent, i64, GroupOf<'_>)],
) -> Result<()> {
    // The state group: one made in this append, or the prev event's.
    let rows: Vec<String> = (0..chunk.len())
        .map(|i| {
            let n = i * 17 + 1;
            format!(
                "({}, COALESCE(${}, (SELECT state_group FROM events WHERE event_id = ${})), \
                 COALESCE((SELECT federated FROM rooms WHERE room_id = ${}), FALSE))",
                params(n, 14),
                n + 14,
                n + 15,
                n + 16
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO events (pos, event_id, room_id, sender, type, state_key, json, unsigned, txn_user, txn_device, txn_id, relates_to, rel_type, depth, state_group, federated) VALUES {}",
        rows.join(", ")
    );
    let mut q = sqlx::query(&sql);
    for (ev, pos, group) in chunk {
        let (group_id, as_event) = group.binds();
        let pdu = &ev.pdu;
        let (relates_to, rel_type) = relation_of(pdu);
        let (txn_user, txn_device, txn_id) = match &ev.txn {
            Some((u, d, t)) => (Some(u.as_str()), Some(d.as_str()), Some(t.as_str())),
            None => (None, None, None),
        };
        q = q
            .bind(*pos)
            .bind(pdu.event_id.as_str())
            .bind(pdu.room_id().as_str())
            .bind(pdu.sender.as_str())
            .bind(pdu.kind.to_string())
            .bind(pdu.state_key.as_deref())
            .bind(ev.json.as_str())
            .bind(ev.unsigned.as_ref().map(|u| u.to_string()))
            .bind(txn_user)
            .bind(txn_device)
            .bind(txn_id)
            .bind(relates_to)
            .bind(rel_type)
            .bind(u64::from(pdu.depth) as i64)
            .bind(group_id)
            .bind(as_event)
            .bind(pdu.room_id().as_str());
    }
    q.execute(&mut *tx).await.map_err(db)?;
    Ok(())
}

/// Push actions per `INSERT`: 8 parameters each.
const PUSH_ACTIONS_PER_INSERT: usize = 1000;

/// What push rules asked of local users for the appended events, in the same transaction.
async fn insert_push_actions(
    tx: &mut AnyConnection,
    positioned: &[(&NewEvent, i64, GroupOf<'_>)],
) -> Result<()> {
    let ts = sandcat_core::now_ms() as i64;
    let rows: Vec<(&NewEvent, i64, &sandcat_core::ports::PushAction)> = positioned
        .iter()
        .flat_map(|(ev, pos, _)| ev.push.iter().map(move |a| (*ev, *pos, a)))
        .collect();
    for chunk in rows.chunks(PUSH_ACTIONS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO push_actions (user_id, room_id, pos, event_id, thread_id, highlight, actions, ts) \
             VALUES {} ON CONFLICT DO NOTHING",
            value_rows(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for (ev, pos, action) in chunk {
            q = q
                .bind(action.user_id.as_str())
                .bind(ev.pdu.room_id().as_str())
                .bind(*pos)
                .bind(ev.pdu.event_id.as_str())
                .bind(action.thread.as_ref().map_or("", |t| t.as_str()))
                .bind(i64::from(action.highlight))
                .bind(serde_json::to_string(&action.actions)?)
                .bind(ts);
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

/// Moves the room's heads: the prev events of the batch's first event stop being forward
/// extremities and its last event becomes one (a batch is a chain, each event on the one
/// before). Only from the heads the sequencer built on: if one of them is gone, another
/// sequencer appended to the room since it loaded it, and the batch is rebuilt. One statement
/// in the usual case of one prev event, as the single head it replaces took.
async fn move_head(tx: &mut AnyConnection, events: &[NewEvent]) -> Result<()> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Ok(());
    };
    let room_id = first.pdu.room_id().as_str();
    let depth = u64::from(last.pdu.depth) as i64;
    let new = last.pdu.event_id.as_str();
    let prevs = &first.pdu.prev_events;
    if let Some(version) = &first.room_version {
        add_room(tx, room_id, version).await?;
    } else if let [prev] = prevs.as_slice() {
        let moved = sqlx::query(
            "UPDATE room_extremities SET event_id = $1, depth = $2 WHERE room_id = $3 AND event_id = $4",
        )
        .bind(new)
        .bind(depth)
        .bind(room_id)
        .bind(prev.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        return moved_past(moved.rows_affected(), 1, room_id);
    } else {
        let gone = drop_heads(tx, room_id, prevs).await?;
        moved_past(gone, prevs.len(), room_id)?;
    }
    add_head(tx, room_id, new, depth).await
}

/// The room's row, for its first event here.
async fn add_room(tx: &mut AnyConnection, room_id: &str, version: &RoomVersionId) -> Result<()> {
    sqlx::query("INSERT INTO rooms (room_id, room_version) VALUES ($1, $2)")
        .bind(room_id)
        .bind(version.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// The room's row for an event of another server that starts what this server knows of the
/// room: a join with the room's whole state, or a membership outside it. A room already known
/// only by such memberships keeps its row; its heads go (they were never the room's heads
/// here), and so does its current state when the event brings the whole state.
async fn restart_room(
    tx: &mut AnyConnection,
    ev: &NewEvent,
    version: &RoomVersionId,
) -> Result<()> {
    let room_id = ev.pdu.room_id().as_str();
    sqlx::query(
        "INSERT INTO rooms (room_id, room_version) VALUES ($1, $2) ON CONFLICT (room_id) DO NOTHING",
    )
    .bind(room_id)
    .bind(version.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    sqlx::query("DELETE FROM room_extremities WHERE room_id = $1")
        .bind(room_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    if ev.remote.as_ref().is_some_and(|r| r.whole_state) {
        sqlx::query("DELETE FROM current_state WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Makes `event_id` (at `depth`) a forward extremity of the room.
async fn add_head(tx: &mut AnyConnection, room_id: &str, event_id: &str, depth: i64) -> Result<()> {
    sqlx::query("INSERT INTO room_extremities (room_id, event_id, depth) VALUES ($1, $2, $3)")
        .bind(room_id)
        .bind(event_id)
        .bind(depth)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    Ok(())
}

/// Adds an event of another server to the room's heads: its prev events that were heads stop
/// being heads. No check that they all were: another server builds on events of its own that
/// were never heads here, and the room's lane is the one writer of its heads.
async fn merge_heads(tx: &mut AnyConnection, ev: &NewEvent) -> Result<()> {
    let pdu = &ev.pdu;
    let room_id = pdu.room_id().as_str();
    // A room joined through another server starts with the join; one known only by
    // memberships outside it (invites) starts again from its event.
    if let Some(version) = &ev.room_version {
        restart_room(tx, ev, version).await?;
    }
    drop_heads(tx, room_id, &pdu.prev_events).await?;
    add_head(
        tx,
        room_id,
        pdu.event_id.as_str(),
        u64::from(pdu.depth) as i64,
    )
    .await?;
    // The room's first event of another server: from now on its history is read by depth.
    let became =
        sqlx::query("UPDATE rooms SET federated = TRUE WHERE room_id = $1 AND NOT federated")
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
    if became > 0 {
        sqlx::query("UPDATE events SET federated = TRUE WHERE room_id = $1")
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Removes the outlier an event of another server was stored as, if it was: the event now
/// takes its place in the stream.
async fn drop_outlier(tx: &mut AnyConnection, ev: &NewEvent) -> Result<()> {
    sqlx::query(&format!(
        "DELETE FROM events WHERE event_id = $1 AND pos < {}",
        sandcat_core::ports::OUTLIERS_BELOW
    ))
    .bind(ev.pdu.event_id.as_str())
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Removes those of `events` that are heads of the room; answers how many were.
async fn drop_heads(tx: &mut AnyConnection, room_id: &str, events: &[OwnedEventId]) -> Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "DELETE FROM room_extremities WHERE room_id = $1 AND event_id IN ({})",
        params(2, events.len())
    );
    let mut q = sqlx::query(&sql).bind(room_id);
    for e in events {
        q = q.bind(e.as_str());
    }
    Ok(q.execute(&mut *tx).await.map_err(db)?.rows_affected())
}

/// `Conflict` unless every one of the `expected` heads a batch was built on was still there.
fn moved_past(found: u64, expected: usize, room_id: &str) -> Result<()> {
    if found == expected as u64 {
        Ok(())
    } else {
        Err(Error::Conflict(format!(
            "{room_id} has moved past the heads its batch was built on"
        )))
    }
}

/// Current state, the forgotten flag a join or invite clears, and redactions.
async fn apply_state(tx: &mut AnyConnection, ev: &NewEvent, pos: i64) -> Result<()> {
    let pdu = &ev.pdu;
    let room_id = pdu.room_id().as_str();
    if let Some(remote) = &ev.remote {
        record_resets(tx, room_id, pos, &remote.resets).await?;
        // The resolution of the room's heads, as the sequencer computed it.
        for change in &remote.current_state {
            match &change.to {
                Some((event_id, membership)) => {
                    let at = if *event_id == pdu.event_id {
                        Some(pos)
                    } else {
                        None
                    };
                    set_current(
                        tx,
                        room_id,
                        &change.kind,
                        &change.state_key,
                        event_id,
                        at,
                        membership.as_ref(),
                    )
                    .await?
                }
                None => {
                    sqlx::query("DELETE FROM current_state WHERE room_id = $1 AND type = $2 AND state_key = $3")
                        .bind(room_id)
                        .bind(&change.kind)
                        .bind(&change.state_key)
                        .execute(&mut *tx)
                        .await
                        .map_err(db)?;
                }
            }
        }
    } else if let Some(key) = &pdu.state_key {
        let membership = pdu.membership();
        set_current(
            tx,
            room_id,
            pdu.kind.to_string().as_str(),
            key,
            &pdu.event_id,
            Some(pos),
            membership.as_ref(),
        )
        .await?;
    }
    if let Some((target, redacted_json)) = &ev.redaction {
        sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3")
            .bind(redacted_json)
            .bind(pdu.event_id.as_str())
            .bind(target.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Keeps the state resets of the event at `pos`, in one statement.
async fn record_resets(
    tx: &mut AnyConnection,
    room_id: &str,
    pos: i64,
    resets: &[sandcat_core::ports::StateChange],
) -> Result<()> {
    if resets.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO state_resets (room_id, pos, type, state_key, event_id) VALUES {}",
        value_rows(resets.len(), 5)
    );
    let mut q = sqlx::query(&sql);
    for r in resets {
        q = q
            .bind(room_id)
            .bind(pos)
            .bind(r.kind.as_str())
            .bind(r.state_key.as_str())
            .bind(r.to.as_ref().map(|(id, _)| id.as_str()));
    }
    q.execute(&mut *tx).await.map_err(db)?;
    Ok(())
}

/// Sets one entry of a room's current state to `event_id` (at stream position `pos`, or that
/// of the stored event), and clears the forgotten flag of a user who joins or is invited.
async fn set_current(
    tx: &mut AnyConnection,
    room_id: &str,
    kind: &str,
    key: &str,
    event_id: &EventId,
    pos: Option<i64>,
    membership: Option<&MembershipState>,
) -> Result<()> {
    sqlx::query("INSERT INTO current_state (room_id, type, state_key, event_id, pos, membership) VALUES ($1, $2, $3, $4, COALESCE($5, (SELECT pos FROM events WHERE event_id = $7)), $6) ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id, pos = excluded.pos, membership = excluded.membership")
        .bind(room_id)
        .bind(kind)
        .bind(key)
        .bind(event_id.as_str())
        .bind(pos)
        .bind(membership.map(MembershipState::as_str))
        .bind(event_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    if matches!(
        membership,
        Some(MembershipState::Join | MembershipState::Invite)
    ) {
        sqlx::query("DELETE FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2")
            .bind(key)
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Records the bus batches among `batches` with their event ids, in one statement.
async fn record_batches(tx: &mut AnyConnection, batches: &[AppendBatch<'_>]) -> Result<()> {
    let recorded: Vec<(&str, String)> = batches
        .iter()
        .filter_map(|b| {
            let ids: Vec<&str> = b.events.iter().map(|e| e.pdu.event_id.as_str()).collect();
            Some((b.batch_id?, serde_json::to_string(&ids).ok()?))
        })
        .collect();
    if recorded.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (0..recorded.len())
        .map(|i| format!("(${}, ${}, NULL, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3))
        .collect();
    let sql = format!(
        "INSERT INTO bus_batches (batch_id, event_ids, error, ts) VALUES {}",
        rows.join(", ")
    );
    let mut q = sqlx::query(&sql);
    let ts = sandcat_core::now_ms() as i64;
    for (id, ids) in recorded {
        q = q.bind(id).bind(ids).bind(ts);
    }
    q.execute(&mut *tx).await.map_err(db)?;
    Ok(())
}
