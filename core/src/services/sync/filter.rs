//! The parts of a Matrix filter that `/sync` honours.

use ruma::RoomId;

use crate::StoredEvent;

/// Which events a sync returns.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
}

fn glob(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl EventFilter {
    pub fn allows(&self, kind: &str, sender: Option<&str>) -> bool {
        if self.not_types.iter().any(|p| glob(p, kind)) {
            return false;
        }
        if let Some(types) = &self.types {
            if !types.iter().any(|p| glob(p, kind)) {
                return false;
            }
        }
        if let Some(s) = sender {
            if self.not_senders.iter().any(|p| p == s) {
                return false;
            }
            if let Some(senders) = &self.senders {
                if !senders.iter().any(|p| p == s) {
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn allows_event(&self, e: &StoredEvent) -> bool {
        self.allows(&e.pdu.kind.to_string(), Some(e.pdu.sender.as_str()))
    }
}

/// The parts of a Matrix filter that sync honours.
#[derive(Debug, Clone)]
pub struct SyncFilter {
    pub timeline_limit: usize,
    pub timeline: EventFilter,
    pub state: EventFilter,
    pub ephemeral: EventFilter,
    pub room_account_data: EventFilter,
    pub account_data: EventFilter,
    pub presence: EventFilter,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub include_leave: bool,
    /// Count threads' notifications apart from the main timeline's.
    pub unread_thread_notifications: bool,
}

impl Default for SyncFilter {
    fn default() -> Self {
        SyncFilter {
            timeline_limit: 10,
            timeline: Default::default(),
            state: Default::default(),
            ephemeral: Default::default(),
            room_account_data: Default::default(),
            account_data: Default::default(),
            presence: Default::default(),
            rooms: None,
            not_rooms: vec![],
            include_leave: false,
            unread_thread_notifications: false,
        }
    }
}

impl SyncFilter {
    pub(super) fn allows_room(&self, room_id: &RoomId) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id.as_str())
            && self
                .rooms
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r == room_id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_match_wildcards_and_senders() {
        let f = EventFilter {
            types: Some(vec!["m.room.*".into()]),
            not_types: vec!["m.room.member".into()],
            senders: None,
            not_senders: vec!["@spam:x".into()],
        };
        assert!(f.allows("m.room.message", Some("@a:x")));
        assert!(!f.allows("m.room.member", Some("@a:x")));
        assert!(!f.allows("m.reaction", Some("@a:x")));
        assert!(!f.allows("m.room.message", Some("@spam:x")));
    }
}
