//! The Server-Server API: what other homeservers ask of this one — this server's signing keys
//! (`/_matrix/key/v2/server`), federation discovery (`/.well-known/matrix/server`), reads of
//! rooms' events, joins and transactions of events by servers that sign their requests
//! (`X-Matrix`) — and the client that asks the same of other servers. Every path comes from ruma's endpoint metadata.

use std::sync::Arc;

use axum::Router;
use ruma::OwnedServerName;
use sandcat_core::ratelimit::Limiter;
use sandcat_core::services::{
    data::ClientData,
    federation::{Inbound, ServerReads},
    keys::Keys,
    media::Media,
    openid::OpenId,
    rooms::Rooms,
    server_keys::ServerKeys,
    third_party_invites::ThirdPartyInvites,
};

pub mod client;
mod directory;
mod discovery;
pub mod edus;
pub mod identity;
mod keys;
mod media;
mod membership;
mod openid;
mod query;
mod remote_keys;
mod remote_media;
mod remote_rooms;
mod resolve;
mod rooms;
pub mod sender;
pub mod signed;
mod third_party;
mod transactions;
mod user_keys;

/// The services the federation endpoints answer with.
pub struct FederationServices {
    /// This server's and other servers' signing keys.
    pub keys: Arc<ServerKeys>,
    pub reads: Arc<ServerReads>,
    pub inbound: Arc<Inbound>,
    /// Where other servers' typing and receipts go.
    pub data: Arc<ClientData>,
    /// This server's users' encryption keys, and where other servers' to-device messages and
    /// device changes go.
    pub e2ee: Arc<Keys>,
    /// This server's media, served to other servers.
    pub media: Arc<Media>,
    /// This server's rooms: the public room directory.
    pub rooms: Arc<Rooms>,
    /// Whose an OpenID token is.
    pub openid: Arc<OpenId>,
    /// Invites by address that identity servers hand on.
    pub third_party_invites: Arc<ThirdPartyInvites>,
}

/// What the federation endpoints share.
#[derive(Clone)]
pub struct FederationState {
    /// This server's name: the destination every signed request must name.
    server_name: OwnedServerName,
    keys: Arc<ServerKeys>,
    reads: Arc<ServerReads>,
    inbound: Arc<Inbound>,
    data: Arc<ClientData>,
    e2ee: Arc<Keys>,
    media: Arc<Media>,
    rooms: Arc<Rooms>,
    openid: Arc<OpenId>,
    third_party_invites: Arc<ThirdPartyInvites>,
    /// Requests per other server.
    limiter: Arc<Limiter>,
    /// `m.server` of `/.well-known/matrix/server`; none: the document is not served.
    well_known_server: Option<OwnedServerName>,
    /// Told of every server whose signed request arrives, to retry what waits for it.
    sender: Option<Arc<sender::FederationSender>>,
}

impl FederationState {
    pub fn new(
        server_name: OwnedServerName,
        services: FederationServices,
        well_known_server: Option<OwnedServerName>,
        limiter: Limiter,
    ) -> Self {
        let FederationServices {
            keys,
            reads,
            inbound,
            data,
            e2ee,
            media,
            rooms,
            openid,
            third_party_invites,
        } = services;
        FederationState {
            server_name,
            keys,
            reads,
            inbound,
            data,
            e2ee,
            media,
            rooms,
            openid,
            third_party_invites,
            well_known_server,
            limiter: Arc::new(limiter),
            sender: None,
        }
    }

    /// The sender to tell when another server makes a signed request (it is up).
    pub fn with_sender(mut self, sender: Arc<sender::FederationSender>) -> Self {
        self.sender = Some(sender);
        self
    }
}

/// The federation router, without a fallback of its own (it is merged with the client API's,
/// which answers unknown paths).
pub fn router(state: FederationState) -> Router {
    let r = Router::new();
    let r = keys::routes(r);
    let r = discovery::routes(r);
    let r = rooms::routes(r);
    let r = membership::routes(r);
    let r = transactions::routes(r);
    let r = query::routes(r);
    let r = directory::routes(r);
    let r = openid::routes(r);
    let r = third_party::routes(r);
    let r = user_keys::routes(r);
    let r = media::routes(r);
    r.with_state(state)
}
