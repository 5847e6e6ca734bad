//! `/sync`: what changed for a user since a token, waiting for something to change when
//! nothing has. Tokens are `s{stream position}_{ephemeral counter}`.

use ruma::events::room::member::MembershipState;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use ruma::{events::TimelineEventType, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{json, Map, Value};

mod filter;
mod invites;
pub use filter::{EventFilter, SyncFilter};
use invites::stripped_room;
mod room_state;
pub use room_state::StateSection;
pub mod sliding;

use crate::{
    changes::{Change, ChangeLog},
    ephemeral::Ephemeral,
    notifier::Notifier,
    ports::{
        ClientStore, Counts, Direction, FederationEdus, KeyStore, Receipt, RoomOverview, RoomStore,
        SlidingConnections, StreamPosition,
    },
    services::{data::presence_content, rooms::make_token, Session},
    Error, Result, StoredEvent,
};

#[derive(Debug, Default)]
pub struct JoinedRoomSync {
    pub timeline: Vec<StoredEvent>,
    pub limited: bool,
    pub prev_batch: Option<String>,
    /// `state`, or `state_after` when the request asked for it.
    pub state: StateSection,
    pub ephemeral: Vec<Value>,
    pub account_data: Vec<Value>,
    pub notification_count: u64,
    pub highlight_count: u64,
    /// Each thread's counts, apart from the room's, when the filter asks for them.
    pub thread_counts: std::collections::BTreeMap<ruma::OwnedEventId, Counts>,
    /// Present when membership may have changed.
    pub summary: Option<RoomSummary>,
}

#[derive(Debug, Default)]
pub struct RoomSummary {
    pub heroes: Vec<OwnedUserId>,
    pub joined_count: u64,
    pub invited_count: u64,
}

#[derive(Debug, Default)]
pub struct LeftRoomSync {
    pub timeline: Vec<StoredEvent>,
    pub state: Vec<StoredEvent>,
    pub prev_batch: Option<String>,
}

/// A room the user is invited to or knocking on: what the client may know of it before
/// joining.
#[derive(Debug, Default)]
pub struct StrippedRoom {
    /// The room's state events a client is shown (the invite or knock among them), when
    /// this server is in the room.
    pub state: Vec<StoredEvent>,
    /// What the room's server told of a room this server is not in, as stripped events
    /// (`type`, `state_key`, `sender`, `content`), beside the invite or knock in `state`.
    pub told: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct SyncOutput {
    pub next_batch: String,
    pub joined: BTreeMap<OwnedRoomId, JoinedRoomSync>,
    pub invited: BTreeMap<OwnedRoomId, StrippedRoom>,
    pub knocked: BTreeMap<OwnedRoomId, StrippedRoom>,
    pub left: BTreeMap<OwnedRoomId, LeftRoomSync>,
    pub account_data: Vec<Value>,
    pub presence: Vec<Value>,
    pub to_device: Vec<Value>,
    pub device_lists_changed: Vec<OwnedUserId>,
    pub one_time_key_counts: BTreeMap<String, u64>,
    pub unused_fallback_key_types: Vec<String>,
}

impl SyncOutput {
    pub fn is_empty(&self) -> bool {
        self.to_device.is_empty()
            && self.device_lists_changed.is_empty()
            && self.joined.is_empty()
            && self.invited.is_empty()
            && self.knocked.is_empty()
            && self.left.is_empty()
            && self.account_data.is_empty()
            && self.presence.is_empty()
    }
}

/// One sync request.
#[derive(Debug, Clone, Default)]
pub struct SyncRequest {
    pub since: Option<String>,
    pub full_state: bool,
    /// Answer `state_after` (the state up to the end of the timeline) instead of `state`.
    pub use_state_after: bool,
    pub timeout_ms: u64,
    pub filter: SyncFilter,
    pub set_presence: Option<String>,
}

pub struct Sync {
    rooms: Arc<dyn RoomStore>,
    client: Arc<dyn ClientStore>,
    keys: Arc<dyn KeyStore>,
    stream: Arc<dyn StreamPosition>,
    changes: Arc<ChangeLog>,
    connections: Arc<dyn SlidingConnections>,
    ephemeral: Arc<Ephemeral>,
    notifier: Notifier,
    max_timeout_ms: u64,
    /// Where a presence change `set_presence` makes goes to other servers.
    federation: Option<Arc<dyn FederationEdus>>,
}

/// A `/sync` token, `s{pos}_{ephemeral}_{to_device}`: the stream position, the ephemeral
/// counter, and the last to-device position the response carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken {
    pub pos: i64,
    pub ephemeral: u64,
    pub to_device: i64,
}

impl std::str::FromStr for SyncToken {
    type Err = Error;

    /// The later parts may be missing (tokens of older versions).
    fn from_str(token: &str) -> Result<Self> {
        let invalid = || Error::invalid_param("invalid since token");
        let mut parts = token.strip_prefix('s').ok_or_else(invalid)?.split('_');
        let pos = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(invalid)?;
        let ephemeral = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let to_device = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Ok(SyncToken {
            pos,
            ephemeral,
            to_device,
        })
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{}_{}_{}", self.pos, self.ephemeral, self.to_device)
    }
}

/// The stores sync reads.
pub struct SyncStores {
    pub rooms: Arc<dyn RoomStore>,
    pub client: Arc<dyn ClientStore>,
    pub keys: Arc<dyn KeyStore>,
    pub stream: Arc<dyn StreamPosition>,
    pub changes: Arc<ChangeLog>,
    /// Where sliding-sync connections keep their positions.
    pub connections: Arc<dyn SlidingConnections>,
}

impl Sync {
    pub fn new(
        stores: SyncStores,
        ephemeral: Arc<Ephemeral>,
        notifier: Notifier,
        max_timeout_ms: u64,
    ) -> Self {
        let SyncStores {
            rooms,
            client,
            keys,
            stream,
            changes,
            connections,
        } = stores;
        Sync {
            rooms,
            client,
            keys,
            stream,
            changes,
            connections,
            ephemeral,
            notifier,
            max_timeout_ms,
            federation: None,
        }
    }

    /// Presence changes made by `set_presence` go to other servers through `edus`.
    pub fn with_federation_edus(mut self, edus: Arc<dyn FederationEdus>) -> Self {
        self.federation = Some(edus);
        self
    }

    pub async fn sync(&self, session: &Session, req: SyncRequest) -> Result<SyncOutput> {
        let since = req
            .since
            .as_deref()
            .map(str::parse::<SyncToken>)
            .transpose()?;
        self.set_presence(session, req.set_presence.as_deref());
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(req.timeout_ms.min(self.max_timeout_ms));
        let mut rx = self.notifier.subscribe();
        // The device's key counts as the request began: a change while it waits (keys
        // uploaded or claimed) is news too.
        let mut counts_at_start = None;
        loop {
            let out = self.compute(session, since, &req).await?;
            let keys = (&out.one_time_key_counts, &out.unused_fallback_key_types);
            let counts_changed = counts_at_start
                .as_ref()
                .is_some_and(|(c, f)| (c, f) != keys);
            if !out.is_empty() || counts_changed || since.is_none() || req.full_state {
                return Ok(out);
            }
            if counts_at_start.is_none() {
                counts_at_start = Some((
                    out.one_time_key_counts.clone(),
                    out.unused_fallback_key_types.clone(),
                ));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // What is answered is read now, not when the wait began.
                _ => return self.compute(session, since, &req).await,
            }
        }
    }

    /// The presence a sync request sets (`set_presence`), told to other servers when it
    /// changed.
    fn set_presence(&self, session: &Session, presence: Option<&str>) {
        let Some(p) = presence.filter(|p| matches!(*p, "online" | "unavailable" | "offline"))
        else {
            return;
        };
        let changed = self.ephemeral.set_presence(&session.user_id, p, None);
        if let Some(f) = self.federation.as_ref().filter(|_| changed) {
            let record = self.ephemeral.presence(&session.user_id);
            f.presence(
                &session.user_id,
                presence_content(&session.user_id, record.as_ref()),
            );
        }
    }

    /// The users whose keys changed in `(since, now]` that `user` shares a joined room with
    /// (or `user`), whatever rooms the filter shows.
    async fn shared_key_changes(
        &self,
        user: &UserId,
        since: i64,
        now: i64,
    ) -> Result<Vec<OwnedUserId>> {
        if !self.changes.has_changed(&Change::Keys, since) {
            return Ok(Vec::new());
        }
        crate::services::keys::shared_key_changes(
            self.keys.as_ref(),
            self.rooms.as_ref(),
            user,
            since,
            now,
        )
        .await
    }

    async fn compute(
        &self,
        session: &Session,
        since: Option<SyncToken>,
        req: &SyncRequest,
    ) -> Result<SyncOutput> {
        let user = &session.user_id;
        let now_pos = self.stream.current_pos();
        let now_eph = self.ephemeral.current();
        let SyncToken {
            pos: since_pos,
            ephemeral: since_eph,
            to_device: since_to_device,
        } = since.unwrap_or_default();
        let initial = since.is_none();
        let filter = &req.filter;
        // To-device messages stay until a later sync acknowledges them by its since token.
        if since.is_some() && since_to_device > 0 {
            self.keys
                .ack_to_device(user, &session.device_id, since_to_device)
                .await?;
        }
        const TO_DEVICE_LIMIT: usize = 100;
        let pending = if initial
            || self
                .changes
                .has_changed(&Change::User(user.clone()), since_to_device)
        {
            self.keys
                .to_device(user, &session.device_id, 0, now_pos, TO_DEVICE_LIMIT)
                .await?
        } else {
            Vec::new()
        };
        // Everything up to now_pos was delivered unless the page was full.
        let last_to_device = match pending.last() {
            Some((p, _)) if pending.len() == TO_DEVICE_LIMIT => *p,
            _ => now_pos,
        };
        let mut out = SyncOutput {
            next_batch: SyncToken {
                pos: now_pos,
                ephemeral: now_eph,
                to_device: last_to_device,
            }
            .to_string(),
            to_device: pending.into_iter().map(|(_, v)| v).collect(),
            ..Default::default()
        };
        let memberships = self.rooms.memberships(user).await?;
        // Account data changed since the token, read once for the global and every room section.
        let changed_data = if initial
            || self
                .changes
                .has_changed(&Change::User(user.clone()), since_pos)
        {
            self.client
                .account_data_since(user, if initial { 0 } else { since_pos })
                .await?
        } else {
            Vec::new()
        };
        // Rooms sent whole are read together: a few queries for all of them.
        let whole: Vec<OwnedRoomId> = memberships
            .iter()
            .filter(|m| {
                m.membership == MembershipState::Join
                    && filter.allows_room(&m.room_id)
                    && (initial || req.full_state || m.pos > since_pos)
            })
            .map(|m| m.room_id.clone())
            .collect();
        let (mut overviews, mut whole_receipts) = if whole.is_empty() {
            (HashMap::new(), HashMap::new())
        } else {
            (
                self.rooms
                    .room_overviews(&whole, user, now_pos, filter.timeline_limit + 1)
                    .await?,
                self.client.receipts_of(&whole).await?,
            )
        };
        for m in memberships {
            if !filter.allows_room(&m.room_id) {
                continue;
            }
            match m.membership {
                MembershipState::Join => {
                    let fresh = initial || req.full_state || m.pos > since_pos;
                    let quiet = !fresh
                        && !self
                            .changes
                            .has_changed(&Change::Room(m.room_id.clone()), since_pos)
                        && self.ephemeral.typing_since(&m.room_id, since_eph).is_none()
                        && !changed_data
                            .iter()
                            .any(|(r, _, _)| r.as_deref() == Some(&*m.room_id));
                    if quiet {
                        continue;
                    }
                    // A room joined since the token gets all its account data, not only changes.
                    let room_data = if fresh && !initial {
                        self.client.account_data_since(user, 0).await?
                    } else {
                        Vec::new()
                    };
                    let source = if fresh && !initial {
                        &room_data
                    } else {
                        &changed_data
                    };
                    let account_data: Vec<Value> = source
                        .iter()
                        .filter(|(room, kind, _)| {
                            room.as_deref() == Some(&*m.room_id)
                                && filter.room_account_data.allows(kind, None)
                        })
                        .map(|(_, kind, content)| json!({ "type": kind, "content": content }))
                        .collect();
                    let overview = overviews.remove(&m.room_id).map(|o| Prefetched {
                        receipts: whole_receipts.remove(&m.room_id).unwrap_or_default(),
                        room: o,
                    });
                    let floor = match (&overview, fresh) {
                        (_, false) => 0,
                        (Some(o), true) => {
                            let setting = o.room.state.iter().find(|e| {
                                e.pdu.kind.to_string() == "m.room.history_visibility"
                                    && e.pdu.state_key.as_deref() == Some("")
                            });
                            crate::visibility::floor_with(self.rooms.as_ref(), setting, &m).await?
                        }
                        (None, true) => {
                            crate::visibility::floor(self.rooms.as_ref(), &m.room_id, &m).await?
                        }
                    };
                    let room = self
                        .joined_room(
                            user,
                            &m.room_id,
                            since_pos,
                            since_eph,
                            now_pos,
                            fresh,
                            initial,
                            filter,
                            account_data,
                            floor,
                            overview,
                            req.use_state_after,
                        )
                        .await?;
                    if let Some(room) = room {
                        out.joined.insert(m.room_id, room);
                    }
                }
                MembershipState::Invite | MembershipState::Knock
                    if initial || m.pos > since_pos =>
                {
                    if m.pos > now_pos {
                        continue;
                    }
                    let state = self.rooms.current_state(&m.room_id).await?;
                    let room = stripped_room(state, &m, user);
                    match m.membership {
                        MembershipState::Invite => out.invited.insert(m.room_id, room),
                        _ => out.knocked.insert(m.room_id, room),
                    };
                }
                MembershipState::Leave | MembershipState::Ban
                    if (!initial && m.pos > since_pos && m.pos <= now_pos)
                        || (initial && filter.include_leave) =>
                {
                    let after = if initial { 0 } else { since_pos };
                    let mut timeline = self
                        .rooms
                        .timeline(
                            &m.room_id,
                            after,
                            m.pos,
                            Direction::Backward,
                            filter.timeline_limit,
                        )
                        .await?;
                    timeline.reverse();
                    let prev_batch = timeline.first().map(|e| make_token(e.pos - 1));
                    out.left.insert(
                        m.room_id,
                        LeftRoomSync {
                            timeline,
                            state: vec![],
                            prev_batch,
                        },
                    );
                }
                _ => {}
            }
        }

        if !initial {
            out.device_lists_changed = self.shared_key_changes(user, since_pos, now_pos).await?;
        }
        out.one_time_key_counts = self
            .keys
            .one_time_key_counts(user, &session.device_id)
            .await?
            .into_iter()
            .collect();
        out.unused_fallback_key_types = self
            .keys
            .unused_fallback_algorithms(user, &session.device_id)
            .await?;

        for (room, kind, content) in changed_data {
            if room.is_none() && filter.account_data.allows(&kind, None) {
                out.account_data
                    .push(json!({ "type": kind, "content": content }));
            }
        }
        if initial && !out.account_data.iter().any(|e| e["type"] == "m.push_rules") {
            out.account_data.push(json!({ "type": "m.push_rules", "content": { "global": ruma::push::Ruleset::server_default(user) } }));
        }

        if initial || since_eph < now_eph {
            let changed: Vec<_> = self
                .ephemeral
                .presence_changed_since(since_eph)
                .into_iter()
                .filter(|(u, _)| filter.presence.allows("m.presence", Some(u.as_str())))
                .collect();
            let users: Vec<OwnedUserId> = changed.iter().map(|(u, _)| u.clone()).collect();
            let sharing = self.rooms.sharing_rooms_with(user, &users).await?;
            for (u, rec) in changed.into_iter().filter(|(u, _)| sharing.contains(u)) {
                out.presence.push(json!({ "type": "m.presence", "sender": u, "content": presence_content(&u, Some(&rec)) }));
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)] // one room's section, from the sync's own reads
    async fn joined_room(
        &self,
        user: &UserId,
        room_id: &RoomId,
        since_pos: i64,
        since_eph: u64,
        now_pos: i64,
        fresh: bool,
        initial: bool,
        filter: &SyncFilter,
        account_data: Vec<Value>,
        floor: i64,
        prefetched: Option<Prefetched>,
        state_after: bool,
    ) -> Result<Option<JoinedRoomSync>> {
        let limit = filter.timeline_limit;
        let after = if fresh { floor } else { since_pos };
        let (mut events, mut whole_state, receipts, unread) = match prefetched {
            Some(p) => (
                p.room
                    .latest
                    .into_iter()
                    .filter(|e| e.pos > after)
                    .take(limit + 1)
                    .collect(),
                Some(p.room.state),
                Some(p.receipts),
                Some(p.room.unread),
            ),
            None => (
                self.rooms
                    .timeline(room_id, after, now_pos, Direction::Backward, limit + 1)
                    .await?,
                None,
                None,
                None,
            ),
        };
        let limited = events.len() > limit;
        events.truncate(limit);
        events.reverse();
        let timeline_start = events.first().map(|e| e.pos);
        let prev_batch = Some(make_token(timeline_start.map(|p| p - 1).unwrap_or(now_pos)));
        let current = match whole_state.take() {
            Some(state) if fresh => Some(state),
            _ if fresh => Some(self.rooms.current_state(room_id).await?),
            _ => None,
        };
        // Members, for the summary, as the current state has them.
        let members_of_state = current.as_ref().map(|state| {
            state
                .iter()
                .filter(|e| e.pdu.kind == TimelineEventType::RoomMember)
                .filter_map(|e| {
                    let user = OwnedUserId::try_from(e.pdu.state_key.as_deref()?).ok()?;
                    Some((user, e.pdu.membership()?))
                })
                .collect::<Vec<_>>()
        });
        let window = room_state::Window {
            since: since_pos,
            now: now_pos,
            limited,
            timeline: &events,
            current,
        };
        let mut state = self.room_state(user, room_id, window, state_after).await?;
        state.retain(|e| filter.state.allows_event(e));
        let timeline: Vec<StoredEvent> = events
            .into_iter()
            .filter(|e| filter.timeline.allows_event(e))
            .collect();

        let mut ephemeral = Vec::new();
        let eph_since = if initial { 0 } else { since_eph };
        if let Some(users) = self.ephemeral.typing_since(room_id, eph_since) {
            if filter.ephemeral.allows("m.typing", None) {
                ephemeral.push(json!({ "type": "m.typing", "content": { "user_ids": users } }));
            }
        }
        let receipts = match receipts {
            Some(r) => r,
            None => {
                self.client
                    .receipts_since(room_id, if fresh { 0 } else { since_pos })
                    .await?
            }
        };
        let content = receipt_content(&receipts, user);
        if !content.is_empty() && filter.ephemeral.allows("m.receipt", None) {
            ephemeral.push(json!({ "type": "m.receipt", "content": content }));
        }

        let changed = fresh
            || !timeline.is_empty()
            || !state.events().is_empty()
            || !ephemeral.is_empty()
            || !account_data.is_empty();
        if !changed {
            return Ok(None);
        }
        let unread = match unread {
            Some(n) => n,
            None => self.rooms.count_unread(room_id, user).await?,
        };
        let (counts, thread_counts) = if filter.unread_thread_notifications {
            (unread.main, unread.threads)
        } else {
            (unread.total(), Default::default())
        };
        let members_changed = fresh
            || timeline
                .iter()
                .chain(state.events())
                .any(|e| e.pdu.kind == TimelineEventType::RoomMember);
        let summary = if members_changed {
            let members = match members_of_state {
                Some(m) => m,
                None => self.rooms.members(room_id).await?,
            };
            let joined_count = members
                .iter()
                .filter(|(_, m)| *m == MembershipState::Join)
                .count() as u64;
            let invited_count = members
                .iter()
                .filter(|(_, m)| *m == MembershipState::Invite)
                .count() as u64;
            let heroes = members
                .iter()
                .filter(|(u, m)| {
                    u != user && matches!(m, MembershipState::Join | MembershipState::Invite)
                })
                .take(5)
                .map(|(u, _)| u.clone())
                .collect();
            Some(RoomSummary {
                heroes,
                joined_count,
                invited_count,
            })
        } else {
            None
        };
        Ok(Some(JoinedRoomSync {
            timeline,
            limited,
            prev_batch,
            state,
            ephemeral,
            account_data,
            notification_count: counts.notifications,
            highlight_count: counts.highlights,
            thread_counts,
            summary,
        }))
    }
}

/// The content of an `m.receipt` event of `receipts`, as `user` may see them (private
/// receipts are the reader's alone).
fn receipt_content(receipts: &[Receipt], user: &UserId) -> Map<String, Value> {
    let mut content: Map<String, Value> = Map::new();
    for r in receipts
        .iter()
        .filter(|r| r.receipt_type != "m.read.private" || r.user_id == user)
    {
        let mut entry = json!({ "ts": r.ts });
        if let Some(t) = &r.thread_id {
            entry["thread_id"] = json!(t);
        }
        let ev = content
            .entry(r.event_id.to_string())
            .or_insert_with(|| json!({}));
        ev[&r.receipt_type][r.user_id.as_str()] = entry;
    }
    content
}

/// What was read for a room sent whole, together with the other such rooms.
struct Prefetched {
    room: RoomOverview,
    receipts: Vec<Receipt>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_tokens_parse_and_reject_garbage() {
        let t = |pos, ephemeral, to_device| SyncToken {
            pos,
            ephemeral,
            to_device,
        };
        assert_eq!("s12_3_7".parse::<SyncToken>().unwrap(), t(12, 3, 7));
        assert_eq!("s12_3".parse::<SyncToken>().unwrap(), t(12, 3, 0));
        assert_eq!("s12".parse::<SyncToken>().unwrap(), t(12, 0, 0));
        assert!("12_3".parse::<SyncToken>().is_err());
        assert!("sx_1".parse::<SyncToken>().is_err());
        assert_eq!(t(12, 3, 7).to_string(), "s12_3_7");
    }
}
