//! Room summaries, and spaces: the rooms below a space — its `m.space.child` state events with a non-empty `via`
//! — walked breadth first, for a user (`/hierarchy` of the client API) or for another server
//! (`/hierarchy` of the federation API: the room and its children, one level). A room this
//! server is not in is asked of the servers its `m.space.child` event names.

use std::collections::{HashSet, VecDeque};

use ruma::{
    events::room::member::MembershipState, OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId,
};
use serde_json::{json, Value};

use super::*;
use crate::ports::RemoteSpace;

/// The most rooms one walk of a hierarchy visits (a page is cut from them), and the most
/// children it keeps waiting to be visited.
pub const MAX_HIERARCHY_ROOMS: usize = 1_000;
/// The most rooms of other servers one walk (or one summary) asks about: each ask may wait
/// for a slow server.
pub const MAX_REMOTE_ASKS: usize = 50;
/// The most `allowed_room_ids` of another server's summary checked against the user's rooms.
const MAX_ALLOWED_CHECKED: usize = 100;
/// The deepest a walk goes when the client sets no `max_depth`.
const DEFAULT_MAX_DEPTH: usize = 10;
/// The rooms of a page when the client sets no `limit`, and the most it may ask for.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 100;

/// What a page of a hierarchy asks for.
#[derive(Debug, Clone, Default)]
pub struct HierarchyQuery {
    /// The token of the page: where the previous one stopped in the walk.
    pub from: Option<String>,
    pub limit: Option<usize>,
    pub max_depth: Option<usize>,
    /// Only the children marked `suggested`.
    pub suggested_only: bool,
}

/// A page of a hierarchy: each room's summary with its `children_state`.
#[derive(Debug, Clone, Default)]
pub struct HierarchyPage {
    pub rooms: Vec<Value>,
    pub next_batch: Option<String>,
}

/// A child of a space, from its `m.space.child` event.
struct Child {
    room_id: OwnedRoomId,
    via: Vec<OwnedServerName>,
    order: String,
    suggested: bool,
    ts: u64,
}

/// The children a summary's `children_state` names (with a non-empty `via`), in the
/// spec's order: by `order`, then by the time of the event, then by room id.
fn children_of(summary: &Value, suggested_only: bool) -> Vec<Child> {
    let mut children: Vec<Child> = summary["children_state"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let room_id = RoomId::parse(e["state_key"].as_str()?).ok()?;
            let via: Vec<OwnedServerName> = e["content"]["via"]
                .as_array()?
                .iter()
                .filter_map(|v| ServerName::parse(v.as_str()?).ok())
                .collect();
            let order = e["content"]["order"]
                .as_str()
                .filter(|o| o.len() <= 50 && o.chars().all(|c| (' '..='~').contains(&c)))
                .map(|o| o.to_owned())
                .unwrap_or_else(|| "\u{7f}".into());
            (!via.is_empty()).then(|| Child {
                room_id,
                via,
                order,
                suggested: e["content"]["suggested"] == json!(true),
                ts: e["origin_server_ts"].as_u64().unwrap_or(0),
            })
        })
        .filter(|c| c.suggested || !suggested_only)
        .collect();
    children.sort_by(|a, b| (&a.order, a.ts, &a.room_id).cmp(&(&b.order, b.ts, &b.room_id)));
    children
}

impl Rooms {
    /// The hierarchy below `root` as `user` may see it: a page of a breadth-first walk.
    /// `M_FORBIDDEN` when the user may not see the root itself.
    pub async fn hierarchy(
        &self,
        user: &UserId,
        root: &RoomId,
        query: &HierarchyQuery,
    ) -> Result<HierarchyPage> {
        let skip = match query.from.as_deref() {
            Some(f) => f
                .parse::<usize>()
                .map_err(|_| Error::invalid_param("unknown pagination token"))?,
            None => 0,
        };
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let max_depth = query.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
        let mut queue = VecDeque::from([(root.to_owned(), 0, Vec::new())]);
        let mut seen = HashSet::new();
        let mut walked = Vec::new();
        let wanted = skip.saturating_add(limit);
        let mut remote_asks = MAX_REMOTE_ASKS;
        while let Some((room_id, depth, via)) = queue.pop_front() {
            if walked.len() > wanted || seen.len() >= MAX_HIERARCHY_ROOMS {
                break;
            }
            if !seen.insert(room_id.clone()) {
                continue;
            }
            let summary = self
                .space_room_for(Some(user), &room_id, &via, &mut remote_asks)
                .await?;
            let Some(summary) = summary else {
                if room_id == root {
                    return Err(Error::forbidden("you may not see this room"));
                }
                continue;
            };
            if depth < max_depth {
                for child in children_of(&summary, query.suggested_only) {
                    if queue.len() < MAX_HIERARCHY_ROOMS {
                        queue.push_back((child.room_id, depth + 1, child.via));
                    }
                }
            }
            walked.push(summary);
        }
        let next_batch = (walked.len() > wanted).then(|| wanted.to_string());
        Ok(HierarchyPage {
            rooms: walked.into_iter().skip(skip).take(limit).collect(),
            next_batch,
        })
    }

    /// A room of a hierarchy as `user` may see it, with its `children_state`: from this
    /// server's state when it is in the room, else from the first server of `via` that
    /// answers, while `remote_asks` lasts. `None` when the user may not see it or no server
    /// knows it.
    async fn space_room_for(
        &self,
        user: Option<&UserId>,
        room_id: &RoomId,
        via: &[OwnedServerName],
        remote_asks: &mut usize,
    ) -> Result<Option<Value>> {
        let summary = if self.store.is_resident(room_id).await? {
            self.space_summary(room_id).await?
        } else {
            let servers: Vec<OwnedServerName> = via
                .iter()
                .filter(|s| **s != self.config.server_name)
                .cloned()
                .collect();
            if servers.is_empty() || *remote_asks == 0 {
                return Ok(None);
            }
            *remote_asks -= 1;
            match self.remote.hierarchy(&servers, room_id).await {
                Ok(RemoteSpace { room, .. }) if room["room_id"] == json!(room_id) => room,
                Ok(_) => return Ok(None),
                Err(e) => {
                    tracing::info!(%room_id, error = %e, "no server told of a room of a space");
                    return Ok(None);
                }
            }
        };
        let member = match user {
            Some(user) => self
                .store
                .membership(room_id, user)
                .await?
                .is_some_and(|m| {
                    matches!(
                        m.membership,
                        MembershipState::Join | MembershipState::Invite
                    )
                }),
            None => false,
        };
        Ok((member || self.open_to(user, &summary).await?).then_some(summary))
    }

    /// A room's summary (`/room_summary`) for `user` (or anyone, without one), with the
    /// user's membership: from this server's state when it is in the room, else from the
    /// servers of `via`. `M_NOT_FOUND` for a room that is not known or not open to the user.
    pub async fn room_summary(
        &self,
        user: Option<&UserId>,
        room_id: &RoomId,
        via: &[OwnedServerName],
    ) -> Result<(Value, Option<MembershipState>)> {
        let mut remote_asks = 1;
        let summary = self
            .space_room_for(user, room_id, via, &mut remote_asks)
            .await?;
        let Some(mut summary) = summary else {
            return Err(Error::not_found(format!(
                "{room_id} is not known here, or not open to you"
            )));
        };
        if let Value::Object(fields) = &mut summary {
            fields.remove("children_state");
        }
        let membership = match user {
            Some(user) => self
                .store
                .membership(room_id, user)
                .await?
                .map(|m| m.membership),
            None => None,
        };
        Ok((summary, membership))
    }

    /// Whether a room's summary lets a user who is not in it see it: world-readable, public,
    /// taking knocks, or restricted to a room the user (if any) is joined to.
    async fn open_to(&self, user: Option<&UserId>, summary: &Value) -> Result<bool> {
        if summary["world_readable"] == json!(true) {
            return Ok(true);
        }
        // A summary without a join rule is of a public room (as the spec's summaries say).
        match summary["join_rule"].as_str() {
            None | Some("public" | "knock" | "knock_restricted") => Ok(true),
            Some("restricted") => {
                let Some(user) = user else {
                    return Ok(false);
                };
                let allowed_ids = summary["allowed_room_ids"].as_array().into_iter().flatten();
                for allowed in allowed_ids.take(MAX_ALLOWED_CHECKED) {
                    let Some(allowed) = allowed.as_str().and_then(|r| RoomId::parse(r).ok()) else {
                        continue;
                    };
                    let joined = self
                        .store
                        .membership(&allowed, user)
                        .await?
                        .is_some_and(|m| m.membership == MembershipState::Join);
                    if joined {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            _ => Ok(false),
        }
    }

    /// A room of this server and its children as another server (`origin`) may see them
    /// (`/hierarchy` of the federation API): the room, when `origin` has a member in it or
    /// it is open (world-readable, public, knock or restricted: the asking server judges
    /// its users against `allowed_room_ids`), and each child this server is in, or its id
    /// among the inaccessible ones.
    pub async fn hierarchy_for_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<RemoteSpace> {
        let not_found = || Error::not_found(format!("{room_id} is not a room this server shows"));
        if !self.store.is_resident(room_id).await? {
            return Err(not_found());
        }
        let room = self.space_summary(room_id).await?;
        if !self.open_to_server(origin, room_id, &room).await? {
            return Err(not_found());
        }
        let mut space = RemoteSpace {
            room: room.clone(),
            children: Vec::new(),
            inaccessible: Vec::new(),
        };
        for child in children_of(&room, suggested_only) {
            if !self.store.is_resident(&child.room_id).await? {
                continue;
            }
            let summary = self.space_summary(&child.room_id).await?;
            if self
                .open_to_server(origin, &child.room_id, &summary)
                .await?
            {
                space.children.push(summary);
            } else {
                space.inaccessible.push(child.room_id);
            }
        }
        Ok(space)
    }

    async fn open_to_server(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        summary: &Value,
    ) -> Result<bool> {
        let open = summary["world_readable"] == json!(true)
            || matches!(
                summary["join_rule"].as_str(),
                Some("public" | "knock" | "knock_restricted" | "restricted")
            );
        Ok(open || self.store.joined_servers(room_id).await?.contains(origin))
    }

    /// A room's directory summary with what a hierarchy adds: its `children_state` (the
    /// `m.space.child` events with a non-empty `via`, stripped, with their time).
    async fn space_summary(&self, room_id: &RoomId) -> Result<Value> {
        let state = self.store.current_state(room_id).await?;
        let mut summary = super::directory::summary_of(room_id, &state);
        let children: Vec<Value> = state
            .iter()
            .filter(|e| e.pdu.kind.to_string() == "m.space.child")
            .filter(|e| {
                e.pdu.content_value()["via"]
                    .as_array()
                    .is_some_and(|v| !v.is_empty())
            })
            .map(|e| {
                let mut stripped = serde_json::to_value(e.stripped_event()).unwrap_or_default();
                stripped["origin_server_ts"] = json!(e.pdu.origin_server_ts);
                stripped
            })
            .collect();
        summary["children_state"] = Value::Array(children);
        Ok(summary)
    }
}
