//! The sliding-sync response body, serialized straight from what the service read.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId};
use sandcat_core::services::sync::sliding::{ExtensionsOutput, Hero, SlidingOutput, SlidingRoom};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::body::{EventList, Viewer};

#[derive(Serialize)]
pub(super) struct SlidingBody<'a> {
    pos: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    txn_id: Option<&'a str>,
    lists: BTreeMap<&'a str, ListCount>,
    rooms: Rooms<'a>,
    extensions: Extensions<'a>,
}

impl<'a> SlidingBody<'a> {
    pub(super) fn new(out: &'a SlidingOutput, viewer: Viewer<'a>) -> Self {
        SlidingBody {
            pos: &out.pos,
            txn_id: out.txn_id.as_deref(),
            lists: out
                .lists
                .iter()
                .map(|(name, count)| (name.as_str(), ListCount { count: *count }))
                .collect(),
            rooms: Rooms(&out.rooms, viewer),
            extensions: Extensions::new(&out.extensions),
        }
    }
}

#[derive(Serialize)]
struct ListCount {
    count: u64,
}

struct Rooms<'a>(&'a BTreeMap<OwnedRoomId, SlidingRoom>, Viewer<'a>);

impl Serialize for Rooms<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(id, r)| (id, Room::new(r, self.1))))
    }
}

#[derive(Serialize)]
struct Room<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Absent: unchanged; `null`: removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    initial: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_dm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invite_state: Option<&'a [Value]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeline: Option<EventList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_state: Option<EventList<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_batch: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    limited: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    joined_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invited_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_live: Option<u64>,
    bump_stamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    heroes: Option<Vec<HeroBody<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    highlight_count: Option<u64>,
}

impl<'a> Room<'a> {
    fn new(r: &'a SlidingRoom, viewer: Viewer<'a>) -> Self {
        let events =
            |e: &'a [sandcat_core::StoredEvent]| (!e.is_empty()).then_some(EventList(e, viewer));
        Room {
            name: r.name.as_deref(),
            avatar: r.avatar.as_ref().map(|a| a.as_deref()),
            initial: r.initial,
            is_dm: r.is_dm,
            invite_state: r.invite_state.as_deref(),
            timeline: events(&r.timeline),
            required_state: events(&r.required_state),
            prev_batch: r.prev_batch.as_deref(),
            limited: r.limited,
            joined_count: r.joined_count,
            invited_count: r.invited_count,
            num_live: r.num_live,
            bump_stamp: r.bump_stamp,
            heroes: r
                .heroes
                .as_ref()
                .map(|h| h.iter().map(HeroBody::from).collect()),
            notification_count: r.notification_count,
            highlight_count: r.highlight_count,
        }
    }
}

#[derive(Serialize)]
struct HeroBody<'a> {
    user_id: &'a OwnedUserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    displayname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<&'a str>,
}

impl<'a> From<&'a Hero> for HeroBody<'a> {
    fn from(h: &'a Hero) -> Self {
        HeroBody {
            user_id: &h.user_id,
            displayname: h.displayname.as_deref(),
            avatar_url: h.avatar_url.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct Extensions<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    to_device: Option<ToDevice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    e2ee: Option<E2ee<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account_data: Option<AccountData<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts: Option<ByRoom<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    typing: Option<ByRoom<'a>>,
}

impl<'a> Extensions<'a> {
    fn new(x: &'a ExtensionsOutput) -> Self {
        let by_room =
            |m: &'a BTreeMap<OwnedRoomId, Value>| (!m.is_empty()).then_some(ByRoom { rooms: m });
        Extensions {
            to_device: x.to_device.as_ref().map(|t| ToDevice {
                next_batch: &t.next_batch,
                events: &t.events,
            }),
            e2ee: x.e2ee.as_ref().map(|e| E2ee {
                device_lists: DeviceLists {
                    changed: &e.device_lists_changed,
                    left: &[],
                },
                device_one_time_keys_count: &e.one_time_key_counts,
                device_unused_fallback_key_types: &e.unused_fallback_key_types,
            }),
            account_data: x.account_data.as_ref().map(|a| AccountData {
                global: &a.global,
                rooms: &a.rooms,
            }),
            receipts: by_room(&x.receipts),
            typing: by_room(&x.typing),
        }
    }
}

#[derive(Serialize)]
struct ToDevice<'a> {
    next_batch: &'a str,
    events: &'a [Value],
}

#[derive(Serialize)]
struct E2ee<'a> {
    device_lists: DeviceLists<'a>,
    device_one_time_keys_count: &'a BTreeMap<String, u64>,
    device_unused_fallback_key_types: &'a [String],
}

#[derive(Serialize)]
struct DeviceLists<'a> {
    changed: &'a [OwnedUserId],
    left: &'a [OwnedUserId],
}

#[derive(Serialize)]
struct AccountData<'a> {
    global: &'a [Value],
    rooms: &'a BTreeMap<OwnedRoomId, Vec<Value>>,
}

#[derive(Serialize)]
struct ByRoom<'a> {
    rooms: &'a BTreeMap<OwnedRoomId, Value>,
}
