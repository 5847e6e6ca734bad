//! Another homeserver, in this process: its own ed25519 keys, its key documents signed as it
//! would serve them, and events built and signed the way it would send them.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use async_trait::async_trait;
use ruma::{
    canonical_json::CanonicalJsonObject, server_name, signatures::Ed25519KeyPair, OwnedEventId,
    OwnedServerName, RoomId, RoomVersionId, ServerName,
};
use sandcat_backends::sql::SqlStore;
use sandcat_core::{
    intent::EventIntent,
    ports::{KeyFetch, ServerKey},
    sequencer::{build_pdu, SigningKey},
    services::server_keys::{signed_key_document, ServerKeys, KEY_VALIDITY_MS},
    Error, ErrorCode, Pdu, Result,
};

pub(crate) const DAY: u64 = KEY_VALIDITY_MS;
pub(crate) const T0: u64 = 1_800_000_000_000;

pub(crate) fn new_key(server: &ServerName, version: &str) -> SigningKey {
    SigningKey {
        server_name: server.to_owned(),
        key: Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), version.into()).unwrap(),
    }
}

/// The other server: it signs its key documents, counts how often it is asked, and can
/// rotate its key (the old one then published with its expiry) or serve a forged document.
pub(crate) struct RemoteServer {
    pub(crate) name: OwnedServerName,
    pub(crate) signing: Mutex<SigningKey>,
    old: Mutex<Vec<ServerKey>>,
    pub(crate) valid_until: Mutex<u64>,
    pub(crate) forge_as: Mutex<Option<OwnedServerName>>,
    pub(crate) asked: AtomicUsize,
    /// The events it built, by id: what it serves to a server that lacks them.
    pub(crate) built: Mutex<HashMap<OwnedEventId, (Pdu, String)>>,
    /// How often it was asked for history (`/backfill`).
    pub(crate) backfills: AtomicUsize,
}

impl RemoteServer {
    pub(crate) fn new(name: &ServerName) -> Arc<Self> {
        Arc::new(RemoteServer {
            name: name.to_owned(),
            signing: Mutex::new(new_key(name, "a_one")),
            old: Mutex::new(Vec::new()),
            valid_until: Mutex::new(T0 + DAY),
            forge_as: Mutex::new(None),
            asked: AtomicUsize::new(0),
            built: Mutex::new(HashMap::new()),
            backfills: AtomicUsize::new(0),
        })
    }

    pub(crate) fn key_id(&self) -> String {
        self.signing.lock().unwrap().key_id()
    }

    pub(crate) fn rotate(&self, version: &str, at: u64) {
        let mut signing = self.signing.lock().unwrap();
        self.old.lock().unwrap().push(ServerKey {
            server_name: self.name.clone(),
            key_id: signing.key_id(),
            public_key: signing.public_key(),
            valid_until_ts: 0,
            expired_ts: Some(at),
        });
        *signing = new_key(&self.name, version);
    }

    /// An object signed now by the server's current key.
    pub(crate) fn sign(&self, object: serde_json::Value) -> CanonicalJsonObject {
        let mut object: CanonicalJsonObject = serde_json::from_value(object).unwrap();
        let signing = self.signing.lock().unwrap();
        ruma::signatures::sign_json(self.name.as_str(), &signing.key, &mut object).unwrap();
        object
    }
}

#[async_trait]
impl KeyFetch for RemoteServer {
    async fn key_documents(&self, server: &ServerName) -> Result<Vec<String>> {
        if server != self.name {
            return Err(Error::matrix(
                ErrorCode::Unauthorized,
                format!("{server} cannot be reached"),
            ));
        }
        self.asked.fetch_add(1, Ordering::SeqCst);
        let signing = self.signing.lock().unwrap();
        let forged;
        let signer = match &*self.forge_as.lock().unwrap() {
            // A document for another name, signed by this server's key.
            Some(other) => {
                forged = SigningKey {
                    server_name: other.clone(),
                    key: Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "a_one".into())
                        .unwrap(),
                };
                &forged
            }
            None => &*signing,
        };
        let doc = signed_key_document(
            signer,
            &self.old.lock().unwrap(),
            *self.valid_until.lock().unwrap(),
        )?;
        Ok(vec![doc])
    }
}

impl RemoteServer {
    /// An event of this server's, built, hashed and signed as it would send it (as this
    /// server builds its own), at `ts`.
    pub(crate) fn event(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        mut intent: EventIntent,
        prev_events: Vec<OwnedEventId>,
        ts: u64,
    ) -> (Pdu, String) {
        intent.origin_server_ts = ts;
        let rules = version.rules().unwrap();
        let signing = self.signing.lock().unwrap();
        build_pdu(
            &signing,
            room_id,
            &rules,
            &intent,
            prev_events,
            Vec::new(),
            1,
        )
        .unwrap()
    }
}

impl RemoteServer {
    /// An event of this server's on `prev_events`, naming `auth_events`, at `depth`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn event_on(
        &self,
        room_id: &RoomId,
        version: &RoomVersionId,
        mut intent: EventIntent,
        prev_events: Vec<OwnedEventId>,
        auth_events: Vec<OwnedEventId>,
        depth: u64,
        ts: u64,
    ) -> (Pdu, String) {
        intent.origin_server_ts = ts;
        let rules = version.rules().unwrap();
        let signing = self.signing.lock().unwrap();
        let (pdu, json) = build_pdu(
            &signing,
            room_id,
            &rules,
            &intent,
            prev_events,
            auth_events,
            depth,
        )
        .unwrap();
        self.built
            .lock()
            .unwrap()
            .insert(pdu.event_id.clone(), (pdu.clone(), json.clone()));
        (pdu, json)
    }

    /// Its events before `latest` and not before `earliest` (`/get_missing_events`): walking
    /// back along prev events until an event it did not build or one of `earliest`.
    pub(crate) fn missing(
        &self,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
    ) -> Vec<String> {
        let built = self.built.lock().unwrap();
        let mut out = Vec::new();
        let mut seen: HashSet<OwnedEventId> = earliest.iter().cloned().collect();
        let mut todo: Vec<OwnedEventId> = latest
            .iter()
            .filter_map(|id| built.get(id))
            .flat_map(|(p, _)| p.prev_events.clone())
            .collect();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some((pdu, json)) = built.get(&id) {
                out.push(json.clone());
                todo.extend(pdu.prev_events.iter().cloned());
            }
        }
        out
    }
}

impl RemoteServer {
    /// Its events from `from` backwards, `from` included (`/backfill`): the deepest first, at
    /// most `limit`.
    pub(crate) fn backfill(&self, from: &[OwnedEventId], limit: usize) -> Vec<String> {
        self.backfills.fetch_add(1, Ordering::SeqCst);
        let built = self.built.lock().unwrap();
        let mut found: Vec<&(Pdu, String)> = Vec::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut todo: Vec<OwnedEventId> = from.to_vec();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some(entry) = built.get(&id) {
                found.push(entry);
                todo.extend(entry.0.prev_events.iter().cloned());
            }
        }
        found.sort_by_key(|(pdu, _)| std::cmp::Reverse(u64::from(pdu.depth)));
        found
            .into_iter()
            .take(limit)
            .map(|(_, json)| json.clone())
            .collect()
    }
}

/// The key service of `localhost`, fetching remote keys from `remote`.
pub(crate) fn key_service(store: Arc<SqlStore>, remote: &Arc<RemoteServer>) -> ServerKeys {
    let own = Arc::new(new_key(server_name!("localhost"), "a_own"));
    ServerKeys::new(own, store).with_fetch(remote.clone())
}
