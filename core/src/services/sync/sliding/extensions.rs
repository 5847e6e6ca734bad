//! The extensions of a sliding-sync response: to-device messages, end-to-end encryption
//! (device lists, key counts), account data, read receipts and typing.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{json, Value};

use super::{
    connection::Connection,
    lists::Selection,
    request::{ExtensionScope, ExtensionsSpec, SlidingRequest},
};
use crate::{
    services::{sync::receipt_content, Session},
    Result,
};

/// The most to-device messages one response carries unless the client asks for fewer.
const TO_DEVICE_LIMIT: usize = 100;

#[derive(Debug, Default)]
pub struct ExtensionsOutput {
    pub to_device: Option<ToDeviceOutput>,
    pub e2ee: Option<E2eeOutput>,
    pub account_data: Option<AccountDataOutput>,
    /// `m.receipt` events by room.
    pub receipts: BTreeMap<OwnedRoomId, Value>,
    /// `m.typing` events by room.
    pub typing: BTreeMap<OwnedRoomId, Value>,
}

impl ExtensionsOutput {
    /// Whether there is nothing new for the client (the key counts are always sent and are
    /// no news by themselves).
    pub fn is_empty(&self) -> bool {
        self.to_device.as_ref().is_none_or(|t| t.events.is_empty())
            && self
                .e2ee
                .as_ref()
                .is_none_or(|e| e.device_lists_changed.is_empty())
            && self
                .account_data
                .as_ref()
                .is_none_or(|a| a.global.is_empty() && a.rooms.is_empty())
            && self.receipts.is_empty()
            && self.typing.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct ToDeviceOutput {
    pub next_batch: String,
    pub events: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct E2eeOutput {
    pub device_lists_changed: Vec<OwnedUserId>,
    pub one_time_key_counts: BTreeMap<String, u64>,
    pub unused_fallback_key_types: Vec<String>,
}

#[derive(Debug, Default)]
pub struct AccountDataOutput {
    pub global: Vec<Value>,
    pub rooms: BTreeMap<OwnedRoomId, Vec<Value>>,
}

/// The rooms an extension covers: those the named lists show and the named subscriptions.
fn scope_rooms(
    scope: &ExtensionScope,
    req: &SlidingRequest,
    selection: &Selection,
) -> BTreeSet<OwnedRoomId> {
    let mut out = BTreeSet::new();
    for (name, rooms) in &selection.by_list {
        if scope.lists.as_ref().is_none_or(|l| l.contains(name)) {
            out.extend(rooms.iter().cloned());
        }
    }
    for room in req.subscriptions.keys() {
        let named = scope
            .rooms
            .as_ref()
            .is_none_or(|r| r.iter().any(|x| x.as_ref().is_none_or(|x| x == room)));
        if named && selection.shown.contains_key(room) {
            out.insert(room.clone());
        }
    }
    out
}

/// What one response's extensions read: who asks, from where, up to where.
pub(super) struct ExtensionWindow<'a> {
    pub session: &'a Session,
    pub previous: Option<&'a Connection>,
    pub now_pos: i64,
    /// Rooms sent afresh in this response: they get all their data, not only changes.
    pub fresh_rooms: &'a HashSet<OwnedRoomId>,
}

impl super::super::Sync {
    pub(super) async fn extensions(
        &self,
        spec: &ExtensionsSpec,
        req: &SlidingRequest,
        selection: &Selection,
        w: &ExtensionWindow<'_>,
    ) -> Result<ExtensionsOutput> {
        let mut out = ExtensionsOutput::default();
        let user = &w.session.user_id;
        let device = &w.session.device_id;
        let since = w.previous.map(|c| c.pos);
        if let Some(td) = &spec.to_device {
            let acked = td.since.as_deref().and_then(|s| s.parse::<i64>().ok());
            if let Some(up_to) = acked.filter(|p| *p > 0) {
                self.keys.ack_to_device(user, device, up_to).await?;
            }
            let limit = td
                .limit
                .unwrap_or(TO_DEVICE_LIMIT)
                .clamp(1, TO_DEVICE_LIMIT);
            let pending = self
                .keys
                .to_device(user, device, 0, w.now_pos, limit)
                .await?;
            let next = match pending.last() {
                Some((p, _)) if pending.len() == limit => *p,
                _ => w.now_pos,
            };
            out.to_device = Some(ToDeviceOutput {
                next_batch: next.to_string(),
                events: pending.into_iter().map(|(_, v)| v).collect(),
            });
        }
        if spec.e2ee {
            let changed = match since {
                Some(since) => self.shared_key_changes(user, since, w.now_pos).await?,
                None => Vec::new(),
            };
            out.e2ee = Some(E2eeOutput {
                device_lists_changed: changed,
                one_time_key_counts: self
                    .keys
                    .one_time_key_counts(user, device)
                    .await?
                    .into_iter()
                    .collect(),
                unused_fallback_key_types: self
                    .keys
                    .unused_fallback_algorithms(user, device)
                    .await?,
            });
        }
        if let Some(scope) = &spec.account_data {
            let rooms = scope_rooms(scope, req, selection);
            out.account_data = Some(self.account_data_extension(user, since, &rooms, w).await?);
        }
        if let Some(scope) = &spec.receipts {
            let rooms: Vec<OwnedRoomId> = scope_rooms(scope, req, selection).into_iter().collect();
            let changed: Vec<OwnedRoomId> = rooms
                .into_iter()
                .filter(|r| {
                    w.fresh_rooms.contains(r)
                        || since.is_none_or(|s| {
                            self.changes
                                .has_changed(&crate::changes::Change::Room(r.clone()), s)
                        })
                })
                .collect();
            let mut all = if changed.is_empty() {
                Default::default()
            } else {
                self.client.receipts_of(&changed).await?
            };
            for room in changed {
                let mut receipts = all.remove(&room).unwrap_or_default();
                if !w.fresh_rooms.contains(&room) {
                    receipts.retain(|r| since.is_none_or(|s| r.pos > s));
                }
                let content = receipt_content(&receipts, user);
                if !content.is_empty() {
                    out.receipts
                        .insert(room, json!({ "type": "m.receipt", "content": content }));
                }
            }
        }
        if let Some(scope) = &spec.typing {
            let since_eph = w.previous.map_or(0, |c| c.ephemeral);
            for room in scope_rooms(scope, req, selection) {
                let from = if w.fresh_rooms.contains(&room) {
                    0
                } else {
                    since_eph
                };
                if let Some(users) = self.ephemeral.typing_since(&room, from) {
                    out.typing.insert(
                        room,
                        json!({ "type": "m.typing", "content": { "user_ids": users } }),
                    );
                }
            }
        }
        Ok(out)
    }

    /// Global account data changed since the connection's position (all of it at first), and
    /// the room account data of `rooms` (all of it for rooms sent afresh).
    async fn account_data_extension(
        &self,
        user: &ruma::UserId,
        since: Option<i64>,
        rooms: &BTreeSet<OwnedRoomId>,
        w: &ExtensionWindow<'_>,
    ) -> Result<AccountDataOutput> {
        let mut out = AccountDataOutput::default();
        let changed = match since {
            Some(s)
                if !self
                    .changes
                    .has_changed(&crate::changes::Change::User(user.to_owned()), s) =>
            {
                Vec::new()
            }
            _ => {
                self.client
                    .account_data_since(user, since.unwrap_or(0))
                    .await?
            }
        };
        let needs_all = since.is_some() && rooms.iter().any(|r| w.fresh_rooms.contains(r));
        let all = if needs_all {
            self.client.account_data_since(user, 0).await?
        } else {
            Vec::new()
        };
        let event = |kind: &str, content: &Value| json!({ "type": kind, "content": content });
        for (room, kind, content) in &changed {
            match room {
                None => out.global.push(event(kind, content)),
                Some(r) if rooms.contains(r) && !(needs_all && w.fresh_rooms.contains(r)) => {
                    out.rooms
                        .entry(r.clone())
                        .or_default()
                        .push(event(kind, content));
                }
                _ => {}
            }
        }
        for (room, kind, content) in &all {
            if let Some(r) = room
                .as_ref()
                .filter(|r| rooms.contains(*r) && w.fresh_rooms.contains(*r))
            {
                out.rooms
                    .entry(r.clone())
                    .or_default()
                    .push(event(kind, content));
            }
        }
        if since.is_none() && !out.global.iter().any(|e| e["type"] == "m.push_rules") {
            out.global.push(json!({ "type": "m.push_rules", "content": { "global": ruma::push::Ruleset::server_default(user) } }));
        }
        Ok(out)
    }
}
