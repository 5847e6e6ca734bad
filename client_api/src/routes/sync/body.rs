//! The `/sync` response body, serialized straight from what the sync service read: no JSON
//! tree is built in between (an initial sync of 200 rooms carries some 4,000 events).

use std::collections::BTreeMap;

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use sandcat_core::{
    services::sync::{
        JoinedRoomSync, LeftRoomSync, RoomSummary, StateSection, StrippedRoom, SyncOutput,
    },
    StoredEvent,
};
use serde::{
    ser::{SerializeMap, SerializeSeq},
    Serialize, Serializer,
};
use serde_json::Value;

/// Who reads the events: the sender's own device sees its transaction ids.
pub(super) type Viewer<'a> = (&'a UserId, Option<&'a str>);

#[derive(Serialize)]
pub(super) struct SyncBody<'a> {
    next_batch: &'a str,
    rooms: Rooms<'a>,
    account_data: Events<&'a [Value]>,
    presence: Events<&'a [Value]>,
    to_device: Events<&'a [Value]>,
    device_lists: DeviceLists<'a>,
    device_one_time_keys_count: &'a BTreeMap<String, u64>,
    device_unused_fallback_key_types: &'a [String],
}

impl<'a> SyncBody<'a> {
    pub(super) fn new(out: &'a SyncOutput, viewer: Viewer<'a>) -> Self {
        SyncBody {
            next_batch: &out.next_batch,
            rooms: Rooms {
                join: RoomMap(&out.joined, viewer),
                invite: StrippedMap(&out.invited, "invite_state"),
                leave: RoomMap(&out.left, viewer),
                knock: StrippedMap(&out.knocked, "knock_state"),
            },
            account_data: Events {
                events: &out.account_data,
            },
            presence: Events {
                events: &out.presence,
            },
            to_device: Events {
                events: &out.to_device,
            },
            device_lists: DeviceLists {
                changed: &out.device_lists_changed,
                left: &[],
            },
            device_one_time_keys_count: &out.one_time_key_counts,
            device_unused_fallback_key_types: &out.unused_fallback_key_types,
        }
    }
}

#[derive(Serialize)]
struct Rooms<'a> {
    join: RoomMap<'a, JoinedRoomSync>,
    invite: StrippedMap<'a>,
    leave: RoomMap<'a, LeftRoomSync>,
    knock: StrippedMap<'a>,
}

#[derive(Serialize)]
struct Events<T> {
    events: T,
}

#[derive(Serialize)]
struct DeviceLists<'a> {
    changed: &'a [OwnedUserId],
    left: &'a [OwnedUserId],
}

/// A section of rooms keyed by room id, each rendered for the viewer.
struct RoomMap<'a, R>(&'a BTreeMap<OwnedRoomId, R>, Viewer<'a>);

/// How one room of a section is written.
trait RoomSection {
    fn write<S: Serializer>(&self, viewer: Viewer<'_>, s: S) -> Result<S::Ok, S::Error>;
}

impl<R: RoomSection> Serialize for RoomMap<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (room_id, room) in self.0 {
            m.serialize_entry(room_id, &Section(room, self.1))?;
        }
        m.end()
    }
}

struct Section<'a, R>(&'a R, Viewer<'a>);

impl<R: RoomSection> Serialize for Section<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.write(self.1, s)
    }
}

/// A list of stored events in the client format.
pub(super) struct EventList<'a>(pub(super) &'a [StoredEvent], pub(super) Viewer<'a>);

impl Serialize for EventList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|e| e.client_event(false, Some(self.1))))
    }
}

#[derive(Serialize)]
struct Timeline<'a> {
    events: EventList<'a>,
    limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_batch: Option<&'a str>,
}

#[derive(Serialize)]
struct Joined<'a> {
    timeline: Timeline<'a>,
    /// One of the two: `state_after` when the request set `use_state_after`.
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Events<EventList<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_after: Option<Events<EventList<'a>>>,
    ephemeral: Events<&'a [Value]>,
    account_data: Events<&'a [Value]>,
    unread_notifications: Unread,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    unread_thread_notifications: BTreeMap<&'a OwnedEventId, Unread>,
    summary: Summary<'a>,
}

#[derive(Serialize)]
struct Unread {
    notification_count: u64,
    highlight_count: u64,
}

/// `summary`: empty when membership did not change.
#[derive(Serialize)]
struct Summary<'a> {
    #[serde(rename = "m.heroes", skip_serializing_if = "Option::is_none")]
    heroes: Option<&'a [OwnedUserId]>,
    #[serde(
        rename = "m.joined_member_count",
        skip_serializing_if = "Option::is_none"
    )]
    joined_count: Option<u64>,
    #[serde(
        rename = "m.invited_member_count",
        skip_serializing_if = "Option::is_none"
    )]
    invited_count: Option<u64>,
}

impl<'a> From<Option<&'a RoomSummary>> for Summary<'a> {
    fn from(s: Option<&'a RoomSummary>) -> Self {
        Summary {
            heroes: s.map(|s| s.heroes.as_slice()),
            joined_count: s.map(|s| s.joined_count),
            invited_count: s.map(|s| s.invited_count),
        }
    }
}

impl RoomSection for JoinedRoomSync {
    fn write<S: Serializer>(&self, viewer: Viewer<'_>, s: S) -> Result<S::Ok, S::Error> {
        Joined {
            timeline: Timeline {
                events: EventList(&self.timeline, viewer),
                limited: self.limited,
                prev_batch: self.prev_batch.as_deref(),
            },
            state: match &self.state {
                StateSection::Before(events) => Some(Events {
                    events: EventList(events, viewer),
                }),
                StateSection::After(_) => None,
            },
            state_after: match &self.state {
                StateSection::After(events) => Some(Events {
                    events: EventList(events, viewer),
                }),
                StateSection::Before(_) => None,
            },
            ephemeral: Events {
                events: &self.ephemeral,
            },
            account_data: Events {
                events: &self.account_data,
            },
            unread_notifications: Unread {
                notification_count: self.notification_count,
                highlight_count: self.highlight_count,
            },
            unread_thread_notifications: self
                .thread_counts
                .iter()
                .map(|(root, c)| {
                    (
                        root,
                        Unread {
                            notification_count: c.notifications,
                            highlight_count: c.highlights,
                        },
                    )
                })
                .collect(),
            summary: self.summary.as_ref().into(),
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
struct Left<'a> {
    timeline: Timeline<'a>,
    state: Events<EventList<'a>>,
}

impl RoomSection for LeftRoomSync {
    fn write<S: Serializer>(&self, viewer: Viewer<'_>, s: S) -> Result<S::Ok, S::Error> {
        Left {
            timeline: Timeline {
                events: EventList(&self.timeline, viewer),
                limited: false,
                prev_batch: self.prev_batch.as_deref(),
            },
            state: Events {
                events: EventList(&self.state, viewer),
            },
        }
        .serialize(s)
    }
}

/// Invites (`invite_state`) or knocks (`knock_state`): for each room, the stripped state
/// the user may see, under that key.
struct StrippedMap<'a>(&'a BTreeMap<OwnedRoomId, StrippedRoom>, &'static str);

impl Serialize for StrippedMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (room_id, room) in self.0 {
            let events = Events {
                events: Stripped(&room.state, &room.told),
            };
            m.serialize_entry(room_id, &BTreeMap::from([(self.1, events)]))?;
        }
        m.end()
    }
}

/// The room's state events as stripped events, then those another server told of it.
struct Stripped<'a>(&'a [StoredEvent], &'a [Value]);

impl Serialize for Stripped<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len() + self.1.len()))?;
        for e in self.0 {
            seq.serialize_element(&e.stripped_event())?;
        }
        for v in self.1 {
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}
