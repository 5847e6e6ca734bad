//! Simplified sliding sync (MSC4186), the sync of Element X and matrix-rust-sdk: the client
//! asks for windows of its room list sorted by recent activity, and for rooms it has open,
//! and is sent only what it does not hold yet.
//!
//! A connection is `(user, device, conn_id)`. Each response names a new position (`pos`)
//! under which the server saves what the client holds ([`connection::Connection`]); the next
//! request sends it back and is answered with what changed since. The position the request
//! came with is kept as well, so a request retried after a lost response is answered again
//! from the same point. Positions are stored, so any instance answers and restarts lose
//! nothing; an unknown one is `M_UNKNOWN_POS` and the client starts afresh.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use ruma::{events::room::member::MembershipState, OwnedRoomId};

mod connection;
mod extensions;
mod lists;
pub mod request;
mod room;

use connection::{spec_signature, Connection, SentRoom};
pub use extensions::{AccountDataOutput, E2eeOutput, ExtensionsOutput, ToDeviceOutput};
use lists::{Candidate, Selection};
pub use request::SlidingRequest;
pub use room::{Hero, SlidingRoom};

use super::Sync;
use crate::{
    changes::Change,
    error::ErrorCode,
    ports::{ConnectionKey, Direction},
    services::Session,
    Error, Result,
};

/// A sliding-sync response.
#[derive(Debug, Default)]
pub struct SlidingOutput {
    pub pos: String,
    pub txn_id: Option<String>,
    /// Each list's count of rooms.
    pub lists: BTreeMap<String, u64>,
    pub rooms: BTreeMap<OwnedRoomId, SlidingRoom>,
    pub extensions: ExtensionsOutput,
}

impl Sync {
    /// Answers a sliding-sync request, waiting up to its timeout for news when the client is
    /// up to date.
    pub async fn sliding_sync(
        &self,
        session: &Session,
        req: SlidingRequest,
    ) -> Result<SlidingOutput> {
        let key = ConnectionKey {
            user_id: &session.user_id,
            device_id: &session.device_id,
            conn_id: &req.conn_id,
        };
        let previous = match &req.pos {
            None => None,
            Some(pos) => {
                let saved = self
                    .connections
                    .connection_position(key, pos)
                    .await?
                    .ok_or_else(unknown_pos)?;
                Some(serde_json::from_str::<Connection>(&saved).map_err(|_| unknown_pos())?)
            }
        };
        self.set_presence(session, req.set_presence.as_deref());
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(req.timeout_ms.min(self.max_timeout_ms));
        let mut rx = self.notifier.subscribe();
        let (mut out, next) = loop {
            let (out, next) = self.slide(session, &req, previous.as_ref()).await?;
            let news = !out.rooms.is_empty()
                || !out.extensions.is_empty()
                || previous.as_ref().is_none_or(|p| p.lists != next.lists);
            if news {
                break (out, next);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                // What is answered is read now, not when the wait began.
                _ => break self.slide(session, &req, previous.as_ref()).await?,
            }
        };
        let pos = crate::token::random_string(12);
        let state = serde_json::to_string(&next).map_err(Error::internal)?;
        self.connections
            .save_connection_position(key, &pos, req.pos.as_deref(), &state, crate::now_ms())
            .await?;
        out.pos = pos;
        out.txn_id = req.txn_id.clone();
        Ok(out)
    }

    /// One answer to `req` given what the client holds (`previous`), and what it will hold.
    async fn slide(
        &self,
        session: &Session,
        req: &SlidingRequest,
        previous: Option<&Connection>,
    ) -> Result<(SlidingOutput, Connection)> {
        let user = &session.user_id;
        let now_pos = self.stream.current_pos();
        let now_eph = self.ephemeral.current();
        let empty = Connection::default();
        let held = previous.unwrap_or(&empty);
        let need_kinds = req.lists.values().any(|l| l.filters.need_kinds());
        let candidates = lists::candidates(
            self.rooms.as_ref(),
            self.client.as_ref(),
            user,
            held,
            now_pos,
            need_kinds,
        )
        .await?;
        let children = lists::space_children(self.rooms.as_ref(), req, &candidates).await?;
        let selection = lists::select(req, &candidates, &children);
        let mut next = Connection {
            pos: now_pos,
            ephemeral: now_eph,
            rooms: held.rooms.clone(),
            lists: selection.counts.clone(),
        };
        let rooms = self
            .rooms_to_send(user, &candidates, &selection, held, &mut next, now_pos)
            .await?;
        let fresh_rooms: HashSet<OwnedRoomId> = rooms
            .iter()
            .filter(|(_, r)| r.initial)
            .map(|(id, _)| id.clone())
            .collect();
        let window = extensions::ExtensionWindow {
            session,
            previous,
            now_pos,
            fresh_rooms: &fresh_rooms,
        };
        let extensions = self
            .extensions(&req.extensions, req, &selection, &window)
            .await?;
        let out = SlidingOutput {
            lists: selection.counts,
            rooms,
            extensions,
            ..Default::default()
        };
        Ok((out, next))
    }

    /// The rooms shown that the client does not hold as they are now, each as it is sent;
    /// `next` learns what the client holds after.
    async fn rooms_to_send(
        &self,
        user: &ruma::UserId,
        candidates: &[Candidate],
        selection: &Selection,
        held: &Connection,
        next: &mut Connection,
        now: i64,
    ) -> Result<BTreeMap<OwnedRoomId, SlidingRoom>> {
        let mut out = BTreeMap::new();
        let mut joined = Vec::new();
        for c in candidates {
            let room_id = &c.membership.room_id;
            let Some(spec) = selection.shown.get(room_id) else {
                continue;
            };
            let membership = c.membership.membership.to_string();
            let signature = spec_signature(spec);
            let sent = held
                .rooms
                .get(room_id)
                .filter(|s| s.membership == membership && s.spec == signature);
            let changed = sent.is_none_or(|s| {
                c.membership.pos > s.pos
                    || self
                        .changes
                        .has_changed(&Change::Room(room_id.clone()), s.pos)
            });
            if !changed {
                continue;
            }
            let record = SentRoom {
                pos: now,
                membership,
                spec: signature,
            };
            match c.membership.membership {
                MembershipState::Join => {
                    joined.push((c, spec, sent.cloned()));
                    next.rooms.insert(room_id.clone(), record);
                }
                MembershipState::Invite | MembershipState::Knock => {
                    if sent.is_none() {
                        let state = self.rooms.current_state(room_id).await?;
                        out.insert(room_id.clone(), room::outside_room(user, c, state));
                    }
                    next.rooms.insert(room_id.clone(), record);
                }
                _ => {
                    let after = held.rooms.get(room_id).map_or(0, |s| s.pos);
                    let events = self
                        .rooms
                        .timeline(
                            room_id,
                            after,
                            c.membership.pos,
                            Direction::Backward,
                            spec.timeline_limit + 1,
                        )
                        .await?;
                    out.insert(
                        room_id.clone(),
                        room::left_room(c, events, spec.timeline_limit),
                    );
                    next.rooms.remove(room_id);
                }
            }
        }
        if joined.is_empty() {
            return Ok(out);
        }
        let ids: Vec<OwnedRoomId> = joined
            .iter()
            .map(|(c, _, _)| c.membership.room_id.clone())
            .collect();
        let longest = joined
            .iter()
            .map(|(_, s, _)| s.timeline_limit)
            .max()
            .unwrap_or(0);
        let mut overviews = self
            .rooms
            .room_overviews(&ids, user, now, longest + 1)
            .await?;
        for (c, spec, sent) in joined {
            let room_id = &c.membership.room_id;
            let overview = overviews.remove(room_id).unwrap_or_default();
            let floor = if sent.is_none() {
                let setting = overview.state.iter().find(|e| {
                    e.pdu.kind.to_string() == "m.room.history_visibility"
                        && e.pdu.state_key.as_deref() == Some("")
                });
                crate::visibility::floor_with(self.rooms.as_ref(), setting, &c.membership).await?
            } else {
                0
            };
            let room = room::joined_room(user, c, spec, sent.as_ref(), overview, floor, now);
            out.insert(room_id.clone(), room);
        }
        Ok(out)
    }
}

fn unknown_pos() -> Error {
    Error::matrix(
        ErrorCode::UnknownPos,
        "unknown or expired position: start the connection again",
    )
}
