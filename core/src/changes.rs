//! What changed where, by stream position: lets `/sync` skip rooms and users with nothing new
//! without asking the store (Synapse's "stream change cache").
//!
//! The store marks a change before it publishes the position as committed, so a reader that
//! sees position `p` also sees every change at or below `p`.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
};

use ruma::{OwnedRoomId, OwnedUserId};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Change {
    /// Events, receipts or membership in a room.
    Room(OwnedRoomId),
    /// A user's account data, to-device inbox or memberships.
    User(OwnedUserId),
    /// Anyone's device or cross-signing keys.
    Keys,
}

pub struct ChangeLog {
    /// Changes before this position are not recorded: everything counts as changed.
    start: AtomicI64,
    latest: Mutex<HashMap<Change, i64>>,
}

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog {
            start: AtomicI64::new(i64::MAX),
            latest: Mutex::default(),
        }
    }
}

impl ChangeLog {
    /// Starts recording at `pos` (the committed position when the process started).
    pub fn starting_at(pos: i64) -> Self {
        ChangeLog {
            start: AtomicI64::new(pos),
            latest: Mutex::default(),
        }
    }

    pub fn mark(&self, changes: impl IntoIterator<Item = Change>, pos: i64) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        for c in changes {
            let p = latest.entry(c).or_insert(pos);
            *p = (*p).max(pos);
        }
    }

    /// Whether `change` may have happened after `since`.
    pub fn has_changed(&self, change: &Change, since: i64) -> bool {
        if since < self.start.load(Ordering::SeqCst) {
            return true;
        }
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(change)
            .is_some_and(|p| *p > since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_history_counts_as_changed() {
        let log = ChangeLog::starting_at(10);
        let room = Change::Room(ruma::room_id!("!r:x").to_owned());
        assert!(
            log.has_changed(&room, 5),
            "before the log started: assume changed"
        );
        assert!(!log.has_changed(&room, 10));
        log.mark([room.clone()], 12);
        assert!(log.has_changed(&room, 11));
        assert!(!log.has_changed(&room, 12));
        assert!(ChangeLog::default().has_changed(&Change::Keys, 1_000_000));
    }
}
