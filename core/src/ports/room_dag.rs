//! What the room log keeps beyond a line of local events: the changes an event of another
//! server makes, and the events it holds back.

use std::collections::HashMap;

use ruma::{events::room::member::MembershipState, OwnedEventId, OwnedRoomId};

/// Stream positions below zero are never handed out by the stream, so no reader of it (`/sync`,
/// the inbox, application services, the Sandcat API) meets what they hold: events filled into
/// a room's history later (backfilled), counting down from -1, and below this bound, outliers
/// (events kept only for what they authorize), which no history reader meets either.
pub const OUTLIERS_BELOW: i64 = -(1 << 62);

/// The floor of a reader who may read a room's whole history, backfilled events included.
pub const HISTORY_START: i64 = OUTLIERS_BELOW;

/// A state: `(type, state_key)` → event id, as the store keeps it.
pub type StoredState = HashMap<(String, String), OwnedEventId>;

/// What an event of another server changes beyond its own row.
#[derive(Debug, Clone, Default)]
pub struct RemoteAppend {
    /// The entries of the room's current state that change: the resolution of the forward
    /// extremities' states, compared with the current state.
    pub current_state: Vec<StateChange>,
    /// What a reader of the stream cannot learn from the event itself: the entries set to
    /// another event than it (or left out), and its own entry when resolution kept another
    /// event there. Kept at its position for `/sync` (state resets).
    pub resets: Vec<StateChange>,
    /// `current_state` is the room's whole state, replacing whatever this server knew of the
    /// room before (a room joined through another server, of which this server may have held
    /// only invites).
    pub whole_state: bool,
}

/// An entry of a room's state that state resolution set at a stream position, other than
/// the event at that position says.
#[derive(Debug, Clone)]
pub struct StateReset {
    pub pos: i64,
    pub kind: String,
    pub state_key: String,
    /// The event now in the entry; `None` when resolution left it out.
    pub event: Option<crate::StoredEvent>,
}

/// One entry of a room's current state, set or removed.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub kind: String,
    pub state_key: String,
    /// The event now in the state, with its membership for an `m.room.member` event; `None`
    /// when resolution left the entry out.
    pub to: Option<(OwnedEventId, Option<MembershipState>)>,
}

/// Why an event of another server is kept but not part of the room's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldStatus {
    /// It failed authorization against its auth events or the state before it: never served,
    /// never state, never a prev event.
    Rejected,
    /// It passed those but failed against the room's current state: never sent to clients,
    /// never a prev event of a local event.
    SoftFailed,
}

impl HeldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldStatus::Rejected => "rejected",
            HeldStatus::SoftFailed => "soft_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rejected" => Some(HeldStatus::Rejected),
            "soft_failed" => Some(HeldStatus::SoftFailed),
            _ => None,
        }
    }
}

/// An event held back, with why.
#[derive(Debug, Clone)]
pub struct HeldEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    /// The PDU as received (verified).
    pub json: String,
    pub status: HeldStatus,
    pub reason: String,
}

/// Where the events a room's log lacks come from: the server that sent an event naming them.
/// Implemented by the federation client, which checks signatures and hashes of what it gets
/// (`verify_pdu`) before answering.
#[async_trait::async_trait]
pub trait RemoteFetch: Send + Sync {
    /// Events of `room_id` before `latest` and after `earliest`, up to `limit`, as `origin`
    /// has them (`/get_missing_events`): the gap between what this server has and an event
    /// it received.
    async fn missing_events(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
    ) -> crate::Result<Vec<crate::intent::ReceivedPdu>>;

    /// One event of `room_id` as `origin` has it (`/event/{eventId}`), if it has it.
    async fn event(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        event_id: &ruma::EventId,
    ) -> crate::Result<Option<crate::intent::ReceivedPdu>>;

    /// Up to `limit` events of `room_id` from `from` backwards, `from` included, as `origin`
    /// has them (`/backfill`): the history before this server's earliest events.
    async fn backfill(
        &self,
        origin: &ruma::ServerName,
        room_id: &ruma::RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> crate::Result<Vec<crate::intent::ReceivedPdu>>;
}

/// The fetcher of a server that talks to no other: no event can be fetched.
pub struct NoRemoteFetch;

#[async_trait::async_trait]
impl RemoteFetch for NoRemoteFetch {
    async fn missing_events(
        &self,
        _origin: &ruma::ServerName,
        _room_id: &ruma::RoomId,
        _earliest: &[OwnedEventId],
        _latest: &[OwnedEventId],
        _limit: usize,
    ) -> crate::Result<Vec<crate::intent::ReceivedPdu>> {
        Ok(Vec::new())
    }

    async fn event(
        &self,
        _origin: &ruma::ServerName,
        _room_id: &ruma::RoomId,
        _event_id: &ruma::EventId,
    ) -> crate::Result<Option<crate::intent::ReceivedPdu>> {
        Ok(None)
    }

    async fn backfill(
        &self,
        _origin: &ruma::ServerName,
        _room_id: &ruma::RoomId,
        _from: &[OwnedEventId],
        _limit: usize,
    ) -> crate::Result<Vec<crate::intent::ReceivedPdu>> {
        Ok(Vec::new())
    }
}

/// A place in a room's topological order: an event's depth, then its stream position (which
/// orders events of equal depth, as Synapse orders them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopoPoint {
    pub depth: i64,
    pub pos: i64,
}

/// Which of a room's events a page of history reads: those with a stream position in
/// `(floor, until]` (what the reader may see), strictly beyond `from` in the page's direction.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRange {
    pub floor: i64,
    pub until: i64,
    pub from: Option<TopoPoint>,
    /// The page stops before this point (exclusive).
    pub to: Option<TopoPoint>,
}

/// A page of a server's public room directory: each room's summary as the spec's
/// `PublicRoomsChunk` (JSON), the tokens of the pages around it, and how many rooms there are.
#[derive(Debug, Clone, Default)]
pub struct PublicRoomsPage {
    pub chunk: Vec<serde_json::Value>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: Option<u64>,
}

/// What a page of a public room directory asks for: a search term, the token of the page,
/// and how many rooms at most.
#[derive(Debug, Clone, Default)]
pub struct PublicRoomsQuery {
    pub filter: Option<String>,
    pub since: Option<String>,
    pub limit: Option<usize>,
}

/// A room of a space as its server shows it (`/hierarchy` of the federation API): its
/// summary with its `children_state`, the summaries of the children that server shows, and
/// the ids of those it does not.
#[derive(Debug, Clone, Default)]
pub struct RemoteSpace {
    pub room: serde_json::Value,
    pub children: Vec<serde_json::Value>,
    pub inaccessible: Vec<ruma::OwnedRoomId>,
}

/// Other servers as this server's users reach them — their rooms, aliases and users'
/// profiles: implemented by the federation client.
#[async_trait::async_trait]
pub trait RemoteRooms: Send + Sync {
    /// Joins `user_id` to `room_id` through the first of `via` that lets it in (`make_join`,
    /// the join signed here with `content`, `send_join`): what that server answered, every
    /// event of it verified, ready for the room's lane.
    async fn join(
        &self,
        via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        content: serde_json::Value,
    ) -> crate::Result<crate::intent::RemoteJoin>;
    /// Leaves `room_id` for `user_id` through the first of `via` that takes the leave
    /// (`make_leave`, the leave signed here with `content`, `send_leave`): the leave, as sent.
    async fn leave(
        &self,
        via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        content: serde_json::Value,
    ) -> crate::Result<crate::intent::OutsideMembership>;
    /// Knocks on `room_id` for `user_id` through the first of `via` that takes the knock
    /// (`make_knock`, the knock signed here with `content`, `send_knock`): the knock, with
    /// what the room told of itself.
    async fn knock(
        &self,
        via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        user_id: &ruma::UserId,
        content: serde_json::Value,
    ) -> crate::Result<crate::intent::OutsideMembership>;
    /// Asks the server an alias names which room it names, and which servers are in it
    /// (`/query/directory`).
    async fn query_alias(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> crate::Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>)>;
    /// Asks `server` for a page of its public room directory (`/publicRooms`).
    async fn public_rooms(
        &self,
        server: &ruma::ServerName,
        query: &PublicRoomsQuery,
    ) -> crate::Result<PublicRoomsPage>;
    /// Asks the first of `via` that answers how it shows `room_id` in a space hierarchy
    /// (`/hierarchy`).
    async fn hierarchy(
        &self,
        via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
    ) -> crate::Result<RemoteSpace>;
    /// Asks a user's server for the user's display name and avatar (`/query/profile`).
    async fn query_profile(
        &self,
        user_id: &ruma::UserId,
    ) -> crate::Result<(Option<String>, Option<String>)>;
    /// Asks the server of the invited user to counter-sign an invite built and signed here
    /// (`/invite`), telling it `invite_state` (PDUs) of the room: the invite as both signed,
    /// verified.
    async fn invite(
        &self,
        room_version: &ruma::RoomVersionId,
        invite: &crate::intent::ReceivedPdu,
        invite_state: &[String],
    ) -> crate::Result<crate::intent::ReceivedPdu>;
}

/// The rooms of a server that talks to no other: none can be joined.
pub struct NoRemoteRooms;

/// What a server that talks to no other answers for `what` it does not know itself.
fn not_asked(what: String) -> crate::Error {
    crate::Error::not_found(format!("{what}, and no other server was asked"))
}

#[async_trait::async_trait]
impl RemoteRooms for NoRemoteRooms {
    async fn join(
        &self,
        _via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        _user_id: &ruma::UserId,
        _content: serde_json::Value,
    ) -> crate::Result<crate::intent::RemoteJoin> {
        Err(not_asked(format!("{room_id} is not known here")))
    }

    async fn leave(
        &self,
        _via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        _user_id: &ruma::UserId,
        _content: serde_json::Value,
    ) -> crate::Result<crate::intent::OutsideMembership> {
        Err(not_asked(format!("{room_id} is not known here")))
    }

    async fn knock(
        &self,
        _via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
        _user_id: &ruma::UserId,
        _content: serde_json::Value,
    ) -> crate::Result<crate::intent::OutsideMembership> {
        Err(not_asked(format!("{room_id} is not known here")))
    }

    async fn query_alias(
        &self,
        alias: &ruma::RoomAliasId,
    ) -> crate::Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>)> {
        Err(not_asked(format!("{alias} is not an alias of this server")))
    }

    async fn public_rooms(
        &self,
        server: &ruma::ServerName,
        _query: &PublicRoomsQuery,
    ) -> crate::Result<PublicRoomsPage> {
        Err(not_asked(format!("{server} is not this server")))
    }

    async fn hierarchy(
        &self,
        _via: &[ruma::OwnedServerName],
        room_id: &ruma::RoomId,
    ) -> crate::Result<RemoteSpace> {
        Err(not_asked(format!("{room_id} is not known here")))
    }

    async fn query_profile(
        &self,
        user_id: &ruma::UserId,
    ) -> crate::Result<(Option<String>, Option<String>)> {
        Err(not_asked(format!("{user_id} is not a user of this server")))
    }

    async fn invite(
        &self,
        _room_version: &ruma::RoomVersionId,
        _invite: &crate::intent::ReceivedPdu,
        _invite_state: &[String],
    ) -> crate::Result<crate::intent::ReceivedPdu> {
        Err(crate::Error::forbidden(
            "this server does not federate: users of other servers cannot be invited",
        ))
    }
}
