//! Simplified sliding sync (MSC4186): `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`.
//! The wire request is read here, once, into the service's request; every limit is checked
//! here too.

use std::collections::BTreeMap;

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{api::client::sync::sync_events::v5, OwnedRoomId};
use sandcat_core::{
    services::sync::sliding::request::{
        ExtensionScope, ExtensionsSpec, ListFilters, ListSpec, RequiredState, RoomSpec,
        SlidingRequest, ToDeviceSpec, MAX_ENTRIES, MAX_TIMELINE_LIMIT, MAX_WINDOW,
    },
    Error,
};
use serde::Deserialize;

use super::sliding_body::SlidingBody;
use crate::{ruma_wrapper::Ruma, ApiError, AppState};

/// The longest `conn_id` or `txn_id` taken.
const MAX_ID_LEN: usize = 255;

/// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
pub(super) async fn sliding_sync(
    State(s): State<AppState>,
    req: Ruma<v5::Request>,
) -> Result<axum::response::Response, ApiError> {
    let session = req.session()?.clone();
    let spaces = spaces(&req.raw)?;
    let mut request = parse(req.body)?;
    for (name, list) in &mut request.lists {
        list.filters.spaces = spaces.get(name).cloned().unwrap_or_default();
    }
    let out = s.sync.sliding_sync(&session, request).await?;
    let viewer = (&*session.user_id, Some(session.device_id.as_str()));
    Ok(Json(SlidingBody::new(&out, viewer)).into_response())
}

/// Each list's `filters.spaces`, which ruma's request type does not carry (MSC4186 has it).
fn spaces(raw: &[u8]) -> Result<BTreeMap<String, Vec<OwnedRoomId>>, Error> {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        lists: BTreeMap<String, List>,
    }
    #[derive(Deserialize)]
    struct List {
        #[serde(default)]
        filters: Option<Filters>,
    }
    #[derive(Deserialize)]
    struct Filters {
        #[serde(default)]
        spaces: Vec<OwnedRoomId>,
    }
    let body: Body = serde_json::from_slice(raw)
        .map_err(|e| Error::bad_json(format!("a list's filters.spaces: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, list) in body.lists {
        let spaces = list.filters.map(|f| f.spaces).unwrap_or_default();
        if spaces.len() > MAX_ENTRIES {
            return Err(Error::invalid_param(format!(
                "at most {MAX_ENTRIES} spaces a list filters by"
            )));
        }
        out.insert(name, spaces);
    }
    Ok(out)
}

fn parse(b: v5::Request) -> Result<SlidingRequest, Error> {
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|s| s.len() > MAX_ID_LEN);
    if too_long(&b.conn_id) || too_long(&b.txn_id) || too_long(&b.pos) {
        return Err(Error::invalid_param(format!(
            "conn_id, txn_id and pos take at most {MAX_ID_LEN} bytes"
        )));
    }
    if b.lists.len() > MAX_ENTRIES || b.room_subscriptions.len() > MAX_ENTRIES {
        return Err(Error::invalid_param(format!(
            "at most {MAX_ENTRIES} lists and {MAX_ENTRIES} room subscriptions"
        )));
    }
    let lists = b
        .lists
        .into_iter()
        .map(|(name, l)| Ok((name, list(l)?)))
        .collect::<Result<_, Error>>()?;
    let subscriptions = b
        .room_subscriptions
        .into_iter()
        .map(|(room, sub)| Ok((room, room_spec(sub.required_state, sub.timeline_limit)?)))
        .collect::<Result<_, Error>>()?;
    Ok(SlidingRequest {
        conn_id: b.conn_id.unwrap_or_default(),
        pos: b.pos,
        txn_id: b.txn_id,
        timeout_ms: b.timeout.map_or(0, |t| t.as_millis() as u64),
        set_presence: Some(b.set_presence.as_str().to_owned()),
        lists,
        subscriptions,
        extensions: extensions(b.extensions),
    })
}

fn list(l: v5::request::List) -> Result<ListSpec, Error> {
    let mut ranges = Vec::with_capacity(l.ranges.len());
    if l.ranges.len() > MAX_ENTRIES {
        return Err(Error::invalid_param(format!(
            "at most {MAX_ENTRIES} ranges a list"
        )));
    }
    for (a, b) in l.ranges {
        let (a, b) = (u64::from(a), u64::from(b));
        if a > b || b - a >= MAX_WINDOW {
            return Err(Error::invalid_param(format!(
                "a range is [start, end] with start <= end, of at most {MAX_WINDOW} rooms"
            )));
        }
        ranges.push((a, b));
    }
    let filters = l.filters.map(filters).unwrap_or_default();
    Ok(ListSpec {
        ranges,
        room: room_spec(l.room_details.required_state, l.room_details.timeline_limit)?,
        filters,
    })
}

fn room_spec(
    required_state: Vec<(ruma::events::StateEventType, String)>,
    timeline_limit: ruma::UInt,
) -> Result<RoomSpec, Error> {
    if required_state.len() > MAX_ENTRIES {
        return Err(Error::invalid_param(format!(
            "at most {MAX_ENTRIES} required_state entries"
        )));
    }
    Ok(RoomSpec {
        required_state: RequiredState::new(
            required_state
                .into_iter()
                .map(|(kind, key)| (kind.to_string(), key)),
        ),
        timeline_limit: usize::try_from(u64::from(timeline_limit))
            .unwrap_or(usize::MAX)
            .min(MAX_TIMELINE_LIMIT),
    })
}

fn filters(f: v5::request::ListFilters) -> ListFilters {
    let types = |v: Vec<ruma::directory::RoomTypeFilter>| {
        v.iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    ListFilters {
        is_dm: f.is_dm,
        is_encrypted: f.is_encrypted,
        is_invite: f.is_invite,
        room_types: types(f.room_types),
        not_room_types: types(f.not_room_types),
        spaces: Vec::new(),
    }
}

fn scope(
    enabled: Option<bool>,
    lists: Option<Vec<String>>,
    rooms: Option<Vec<v5::request::ExtensionRoomConfig>>,
) -> Option<ExtensionScope> {
    enabled.filter(|e| *e).map(|_| ExtensionScope {
        lists,
        rooms: rooms.map(|r| {
            r.into_iter()
                .map(|c| match c {
                    v5::request::ExtensionRoomConfig::Room(id) => Some(id),
                    _ => None,
                })
                .collect()
        }),
    })
}

fn extensions(x: v5::request::Extensions) -> ExtensionsSpec {
    ExtensionsSpec {
        to_device: (x.to_device.enabled == Some(true)).then(|| ToDeviceSpec {
            limit: x
                .to_device
                .limit
                .map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)),
            since: x.to_device.since,
        }),
        e2ee: x.e2ee.enabled == Some(true),
        account_data: scope(
            x.account_data.enabled,
            x.account_data.lists,
            x.account_data.rooms,
        ),
        receipts: scope(x.receipts.enabled, x.receipts.lists, x.receipts.rooms),
        typing: scope(x.typing.enabled, x.typing.lists, x.typing.rooms),
    }
}
