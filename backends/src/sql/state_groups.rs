//! The state of a room after each of its events, as skip deltas.
//!
//! A state group is the state after one event, named by that event's id; each event records
//! its group (`events.state_group`): its own if it is a state event, else its prev event's.
//! A room's groups form a chain numbered from 0. Group 0 (the create event's) is stored whole;
//! group `i` stores only the entries that differ from group `i & (i - 1)` of its chain, its
//! base. So reading any state reads at most `log2(i) + 1` groups, and group `i` holds at most
//! `lowbit(i)` entries: about `log2(n) / 2` rows per state change on average over `n` changes,
//! where a full snapshot every 100 changes (Synapse's bound) costs the room's whole state per
//! 100 changes. The base of `i` is found from `i - 1` by following bases, which clears the
//! low bits of `i - 1` one at a time until `i & (i - 1)` is reached, and the entries of the
//! groups passed on the way are exactly the delta of `i`.

use std::collections::{BTreeMap, HashMap};

use super::*;

/// The group of the event before an appended one: known in this append, or that of an event
/// already stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum GroupOf<'a> {
    /// A group made in this append (or, for the first events of a room, none yet: see
    /// `AsEvent`).
    Known(&'a str),
    /// The group of this stored event.
    AsEvent(&'a str),
}

impl<'a> GroupOf<'a> {
    /// `(group id, event id)`: one is bound, the other NULL, for
    /// `COALESCE($group, (SELECT state_group FROM events WHERE event_id = $event))`.
    pub(super) fn binds(self) -> (Option<&'a str>, Option<&'a str>) {
        match self {
            GroupOf::Known(g) => (Some(g), None),
            GroupOf::AsEvent(e) => (None, Some(e)),
        }
    }
}

/// The group each appended event is in, in order, and for each state event the group before
/// it (`None` for a create event, which starts the chain).
pub(super) fn plan<'a>(events: &[&'a NewEvent]) -> (Vec<GroupOf<'a>>, Vec<Option<GroupOf<'a>>>) {
    let mut current: HashMap<&str, Option<GroupOf<'a>>> = HashMap::new();
    let mut of = Vec::with_capacity(events.len());
    let mut before = Vec::with_capacity(events.len());
    for ev in events {
        let pdu = &ev.pdu;
        let room = pdu.room_id().as_str();
        let slot = current.entry(room).or_insert_with(|| {
            (ev.room_version.is_none())
                .then(|| {
                    pdu.prev_events
                        .first()
                        .map(|p| GroupOf::AsEvent(p.as_str()))
                })
                .flatten()
        });
        before.push(*slot);
        // An event whose prev events' states were resolved has a group of its own.
        if pdu.state_key.is_some() || has_resolved_state(ev) {
            *slot = Some(GroupOf::Known(pdu.event_id.as_str()));
        }
        // Every event but a create has a prev event, so a group is known by now.
        of.push(slot.unwrap_or(GroupOf::Known(pdu.event_id.as_str())));
    }
    (of, before)
}

/// Stores the group of state event `ev`, whose room's state before it is group `parent`
/// (`None`: `ev` starts the room). Runs before `ev` is applied to `current_state`.
pub(super) async fn add_group(
    tx: &mut AnyConnection,
    ev: &NewEvent,
    parent: Option<GroupOf<'_>>,
) -> Result<()> {
    let pdu = &ev.pdu;
    let Some(key) = &pdu.state_key else {
        return Ok(());
    };
    let room = pdu.room_id().as_str();
    let own = (pdu.kind.to_string(), key.clone());
    let (idx, base, mut delta) = match parent {
        None => (0, None, BTreeMap::new()),
        Some(parent) => match delta_after(tx, parent).await? {
            Some(d) => d,
            // The state before it was never grouped (written by an older version): this
            // group starts a chain, stored whole from the current state.
            None => (0, None, current_state_of(tx, room).await?),
        },
    };
    delta.insert(own, pdu.event_id.to_string());
    insert_group(tx, pdu, idx, base, delta).await
}

async fn insert_group(
    tx: &mut AnyConnection,
    pdu: &Pdu,
    idx: i64,
    base: Option<String>,
    delta: Entries,
) -> Result<()> {
    let room = pdu.room_id().as_str();
    sqlx::query(
        "INSERT INTO state_groups (group_id, room_id, idx, base_id) VALUES ($1, $2, $3, $4)",
    )
    .bind(pdu.event_id.as_str())
    .bind(room)
    .bind(idx)
    .bind(base)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let entries: Vec<_> = delta.into_iter().collect();
    for chunk in entries.chunks(200) {
        let sql = format!(
            "INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES {}",
            value_rows(chunk.len(), 4)
        );
        let mut q = sqlx::query(&sql);
        for ((kind, key), event_id) in chunk {
            q = q
                .bind(pdu.event_id.as_str())
                .bind(kind.as_str())
                .bind(key.as_str())
                .bind(event_id.as_str());
        }
        q.execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

/// Whether the state before `ev` was resolved from its prev events' states rather than taken
/// from its first prev event.
pub(super) fn has_resolved_state(ev: &NewEvent) -> bool {
    ev.state_before.is_some()
}

/// Stores the group of `ev` whose state before it was resolved: whole, starting a chain (a
/// merge of forks is rarer than a state change; its delta against either side would need
/// removals, which a delta cannot express).
pub(super) async fn add_resolved_group(
    tx: &mut AnyConnection,
    ev: &NewEvent,
    before: &sandcat_core::ports::StoredState,
) -> Result<()> {
    let pdu = &ev.pdu;
    let mut entries: Entries = before
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    if let Some(key) = &pdu.state_key {
        entries.insert(
            (pdu.kind.to_string(), key.clone()),
            pdu.event_id.to_string(),
        );
    }
    insert_group(tx, pdu, 0, None, entries).await
}

type Entries = BTreeMap<(String, String), String>;

/// A group passed on the way from the parent to the new group's base.
struct Passed {
    base: Option<String>,
    entries: Vec<((String, String), String)>,
}

/// `(index, base, delta)` of the group that follows `parent` (without the new event's entry),
/// or `None` when `parent` names no stored group.
async fn delta_after(
    tx: &mut AnyConnection,
    parent: GroupOf<'_>,
) -> Result<Option<(i64, Option<String>, Entries)>> {
    let (group, event) = parent.binds();
    // The parent, then the bases passed on the way down to the new group's base (`target`,
    // the new index with its lowest bit cleared), with their entries.
    let rows = sqlx::query(
        "WITH RECURSIVE chain(group_id, base_id, idx, target) AS ( \
           SELECT group_id, base_id, idx, (idx + 1) & idx FROM state_groups \
            WHERE group_id = COALESCE($1, (SELECT state_group FROM events WHERE event_id = $2)) \
           UNION ALL \
           SELECT g.group_id, g.base_id, g.idx, c.target FROM state_groups g \
             JOIN chain c ON g.group_id = c.base_id WHERE g.idx > c.target) \
         SELECT c.group_id, c.base_id, c.idx, c.target, e.type, e.state_key, e.event_id \
           FROM chain c LEFT JOIN state_group_entries e ON e.group_id = c.group_id",
    )
    .bind(group)
    .bind(event)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let target: i64 = first.try_get("target").map_err(db)?;
    // Groups above the target, by index.
    let mut walked: BTreeMap<i64, Passed> = BTreeMap::new();
    let mut anchor: Option<(i64, String)> = None;
    for r in &rows {
        let idx: i64 = r.try_get("idx").map_err(db)?;
        if anchor.as_ref().is_none_or(|(i, _)| idx > *i) {
            anchor = Some((idx, r.try_get("group_id").map_err(db)?));
        }
        if idx <= target {
            continue;
        }
        let passed = walked.entry(idx).or_insert_with(|| Passed {
            base: r.try_get("base_id").ok().flatten(),
            entries: Vec::new(),
        });
        if let Some(kind) = r.try_get::<Option<String>, _>("type").map_err(db)? {
            passed.entries.push((
                (kind, r.try_get("state_key").map_err(db)?),
                r.try_get("event_id").map_err(db)?,
            ));
        }
    }
    let Some((parent_idx, parent_id)) = anchor else {
        return Ok(None);
    };
    let base = match walked.values().next() {
        // The lowest group passed: its base is the new group's.
        Some(lowest) => lowest.base.clone(),
        None => Some(parent_id),
    };
    // Applied from the lowest index up: a later entry of a key wins.
    let delta: Entries = walked.into_values().flat_map(|p| p.entries).collect();
    Ok(Some((parent_idx + 1, base, delta)))
}

async fn current_state_of(tx: &mut AnyConnection, room: &str) -> Result<Entries> {
    let rows =
        sqlx::query("SELECT type, state_key, event_id FROM current_state WHERE room_id = $1")
            .bind(room)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok((
                (
                    r.try_get("type").map_err(db)?,
                    r.try_get("state_key").map_err(db)?,
                ),
                r.try_get("event_id").map_err(db)?,
            ))
        })
        .collect()
}

impl SqlStore {
    /// The state after `event_id`: `(type, state_key) → event id`; `None` for an unknown event
    /// or one older than state groups.
    pub(super) async fn state_after_event(
        &self,
        event_id: &EventId,
    ) -> Result<Option<HashMap<(String, String), OwnedEventId>>> {
        // A base always has a lower index than its group: the walk ends even on damaged rows.
        let rows = sqlx::query(
            "WITH RECURSIVE chain(group_id, base_id, idx) AS ( \
               SELECT group_id, base_id, idx FROM state_groups \
                WHERE group_id = (SELECT state_group FROM events WHERE event_id = $1) \
               UNION ALL \
               SELECT g.group_id, g.base_id, g.idx FROM state_groups g \
                 JOIN chain c ON g.group_id = c.base_id WHERE g.idx < c.idx) \
             SELECT c.idx, e.type, e.state_key, e.event_id \
               FROM chain c JOIN state_group_entries e ON e.group_id = c.group_id \
              ORDER BY c.idx",
        )
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut state = HashMap::new();
        for r in &rows {
            state.insert(
                (
                    r.try_get("type").map_err(db)?,
                    r.try_get("state_key").map_err(db)?,
                ),
                parse_id(r.try_get("event_id").map_err(db)?)?,
            );
        }
        Ok(Some(state))
    }
}
