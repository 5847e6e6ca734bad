//! When and from where each device was last used, as a device list shows it (Element's
//! "last activity"). Recording it on every request would add a write to every read, so an
//! instance writes it for a device at most once per [`LAST_SEEN_EVERY`]; several instances
//! each do so, and the latest write wins.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use ruma::{OwnedUserId, UserId};

/// How stale a device's last-seen time may get (Synapse batches its own updates similarly).
pub const LAST_SEEN_EVERY: Duration = Duration::from_secs(300);

/// Devices remembered at most; past that the memory starts over, which costs one extra write
/// per device.
const MAX_REMEMBERED: usize = 100_000;

/// When this instance last recorded each device's use.
#[derive(Default)]
pub(super) struct LastSeen {
    written: Mutex<HashMap<(OwnedUserId, String), Instant>>,
}

impl LastSeen {
    /// Whether the use of `device` at `now` should be written, and if so notes it as written.
    pub(super) fn due(&self, user: &UserId, device: &str, now: Instant) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_owned(), device.to_owned());
        if written
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < LAST_SEEN_EVERY)
        {
            return false;
        }
        if written.len() >= MAX_REMEMBERED {
            written.clear();
        }
        written.insert(key, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;

    #[test]
    fn a_device_is_written_once_per_period() {
        let seen = LastSeen::default();
        let alice = user_id!("@alice:localhost");
        let t = Instant::now();
        assert!(seen.due(alice, "A", t));
        assert!(!seen.due(alice, "A", t + Duration::from_secs(10)));
        assert!(seen.due(alice, "B", t), "devices are apart");
        assert!(seen.due(alice, "A", t + LAST_SEEN_EVERY));
    }
}
