//! Data that never enters a room log: typing notifications and presence. Kept in memory with a
//! counter of its own, which `/sync` tokens carry beside the stream position.
//!
//! The counter is a hybrid clock (microseconds since the epoch, kept strictly increasing), so
//! the counters of several instances — and of one instance across restarts — are comparable.
//! Changes made here are handed to [`Ephemeral::forward_to`]'s channel; a cross-instance
//! backend carries them to the other instances, which [`Ephemeral::apply`] them.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, OnceLock,
    },
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::notifier::Notifier;

#[derive(Debug, Clone)]
pub struct PresenceRecord {
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: u64,
    /// Ephemeral counter value at the last change.
    pub serial: u64,
}

#[derive(Default)]
struct Typing {
    /// user → expiry (ms since epoch)
    users: HashMap<OwnedUserId, u64>,
    serial: u64,
}

/// A change of ephemeral state, as other instances receive it: the whole new state of one
/// room's typing or of one user's presence, with its counter value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EphemeralUpdate {
    Typing {
        room_id: OwnedRoomId,
        /// `(user, expiry in ms since the epoch)`
        users: Vec<(OwnedUserId, u64)>,
        serial: u64,
    },
    Presence {
        user_id: OwnedUserId,
        state: String,
        status_msg: Option<String>,
        last_active_ts: u64,
        serial: u64,
    },
}

pub struct Ephemeral {
    counter: AtomicU64,
    typing: Mutex<HashMap<OwnedRoomId, Typing>>,
    presence: Mutex<HashMap<OwnedUserId, PresenceRecord>>,
    notifier: Notifier,
    forward: OnceLock<mpsc::UnboundedSender<EphemeralUpdate>>,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Ephemeral {
    pub fn new(notifier: Notifier) -> Self {
        Ephemeral {
            counter: AtomicU64::new(now_us()),
            typing: Mutex::default(),
            presence: Mutex::default(),
            notifier,
            forward: OnceLock::new(),
        }
    }

    pub fn current(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// The next counter value: after every value seen, and not behind the clock.
    fn bump(&self) -> u64 {
        let mut cur = self.counter.load(Ordering::SeqCst);
        loop {
            let next = (cur + 1).max(now_us());
            match self
                .counter
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return next,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Hands every later local change to `tx`, for the other instances (set once).
    pub fn forward_to(&self, tx: mpsc::UnboundedSender<EphemeralUpdate>) -> bool {
        self.forward.set(tx).is_ok()
    }

    fn forward(&self, update: EphemeralUpdate) {
        if let Some(f) = self.forward.get() {
            let _ = f.send(update);
        }
    }

    /// A change made on another instance: kept if newer than what is here, and readers woken.
    pub fn apply(&self, update: EphemeralUpdate) {
        match update {
            EphemeralUpdate::Typing {
                room_id,
                users,
                serial,
            } => {
                self.counter.fetch_max(serial, Ordering::SeqCst);
                let mut rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
                let room = rooms.entry(room_id).or_default();
                if serial > room.serial {
                    room.users = users.into_iter().collect();
                    room.serial = serial;
                }
            }
            EphemeralUpdate::Presence {
                user_id,
                state,
                status_msg,
                last_active_ts,
                serial,
            } => {
                self.counter.fetch_max(serial, Ordering::SeqCst);
                let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
                if map.get(&user_id).is_none_or(|r| serial > r.serial) {
                    map.insert(
                        user_id,
                        PresenceRecord {
                            state,
                            status_msg,
                            last_active_ts,
                            serial,
                        },
                    );
                }
            }
        }
        self.notifier.notify_local();
    }

    pub fn set_typing(&self, room_id: &RoomId, user_id: &UserId, typing: bool, timeout_ms: u64) {
        let changed = {
            let mut rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            let room = rooms.entry(room_id.to_owned()).or_default();
            let changed = if typing {
                room.users
                    .insert(
                        user_id.to_owned(),
                        crate::now_ms() + timeout_ms.min(120_000),
                    )
                    .is_none()
            } else {
                room.users.remove(user_id).is_some()
            };
            if changed {
                room.serial = self.bump();
                self.forward(EphemeralUpdate::Typing {
                    room_id: room_id.to_owned(),
                    users: room.users.iter().map(|(u, e)| (u.clone(), *e)).collect(),
                    serial: room.serial,
                });
            }
            changed
        };
        if changed {
            self.notifier.notify();
        }
    }

    /// Drops expired typing entries; called periodically.
    pub fn expire_typing(&self) {
        let now = crate::now_ms();
        let mut changed = false;
        {
            let mut rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            for room in rooms.values_mut() {
                let before = room.users.len();
                room.users.retain(|_, exp| *exp > now);
                if room.users.len() != before {
                    room.serial = self.bump();
                    changed = true;
                }
            }
            rooms.retain(|_, r| !r.users.is_empty() || r.serial > 0);
        }
        if changed {
            self.notifier.notify();
        }
    }

    /// Users typing in the room, if that changed after `since`.
    pub fn typing_since(&self, room_id: &RoomId, since: u64) -> Option<Vec<OwnedUserId>> {
        let rooms = self.typing.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.get(room_id)?;
        (room.serial > since).then(|| room.users.keys().cloned().collect())
    }

    /// Sets a user's presence; answers whether it changed (beyond being active again).
    pub fn set_presence(&self, user_id: &UserId, state: &str, status_msg: Option<String>) -> bool {
        let changed = {
            let mut map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
            let now = crate::now_ms();
            let changed = match map.get_mut(user_id) {
                Some(rec)
                    if rec.state == state
                        && (status_msg.is_none() || rec.status_msg == status_msg) =>
                {
                    rec.last_active_ts = now;
                    false
                }
                Some(rec) => {
                    rec.state = state.to_owned();
                    if status_msg.is_some() {
                        rec.status_msg = status_msg;
                    }
                    rec.last_active_ts = now;
                    rec.serial = self.bump();
                    true
                }
                None => {
                    let serial = self.bump();
                    map.insert(
                        user_id.to_owned(),
                        PresenceRecord {
                            state: state.to_owned(),
                            status_msg,
                            last_active_ts: now,
                            serial,
                        },
                    );
                    true
                }
            };
            // The new record, as the other instances are told it.
            changed.then(|| map.get(user_id).cloned()).flatten()
        };
        let Some(r) = changed else { return false };
        self.forward(EphemeralUpdate::Presence {
            user_id: user_id.to_owned(),
            state: r.state,
            status_msg: r.status_msg,
            last_active_ts: r.last_active_ts,
            serial: r.serial,
        });
        self.notifier.notify();
        true
    }

    pub fn presence(&self, user_id: &UserId) -> Option<PresenceRecord> {
        self.presence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user_id)
            .cloned()
    }

    /// Everyone whose presence changed after `since`.
    pub fn presence_changed_since(&self, since: u64) -> Vec<(OwnedUserId, PresenceRecord)> {
        let map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, r)| r.serial > since)
            .map(|(u, r)| (u.clone(), r.clone()))
            .collect()
    }

    /// Presence of `users` that changed after `since`.
    pub fn presence_since(
        &self,
        users: &[OwnedUserId],
        since: u64,
    ) -> Vec<(OwnedUserId, PresenceRecord)> {
        let map = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        users
            .iter()
            .filter_map(|u| {
                map.get(u)
                    .filter(|r| r.serial > since)
                    .map(|r| (u.clone(), r.clone()))
            })
            .collect()
    }
}
