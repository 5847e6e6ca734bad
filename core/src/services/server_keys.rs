//! Server signing keys: the key document this server publishes (`/_matrix/key/v2/server`), and
//! the keys of other servers, fetched once and kept until their `valid_until_ts` so that later
//! verification never asks for a key it already has.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    canonical_json::{CanonicalJsonObject, CanonicalJsonValue},
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet},
    ServerName,
};
use serde_json::json;

use crate::{
    ports::{KeyFetch, NoKeyFetch, ServerKey, ServerKeyStore},
    sequencer::SigningKey,
    Error, ErrorCode, Result,
};

/// How long other servers may keep this server's keys without asking again: one day, as
/// Synapse's `key_refresh_interval` by default. A rotation reaches everyone within it.
pub const KEY_VALIDITY_MS: u64 = 24 * 60 * 60 * 1000;

/// The largest key document taken from another server (Synapse's are under 1 KiB).
pub const MAX_KEY_DOCUMENT: usize = 64 * 1024;

/// This server's keys and what it knows of other servers' keys.
pub struct ServerKeys {
    signing: Arc<SigningKey>,
    store: Arc<dyn ServerKeyStore>,
    fetch: Arc<dyn KeyFetch>,
}

impl ServerKeys {
    /// Keys for a server that fetches no remote keys (until a fetcher is given).
    pub fn new(signing: Arc<SigningKey>, store: Arc<dyn ServerKeyStore>) -> Self {
        ServerKeys {
            signing,
            store,
            fetch: Arc::new(NoKeyFetch),
        }
    }

    /// Fetches unknown and stale keys of other servers from `fetch`.
    pub fn with_fetch(mut self, fetch: Arc<dyn KeyFetch>) -> Self {
        self.fetch = fetch;
        self
    }

    /// The key this instance signs with, as a [`ServerKey`] of this server.
    pub fn own_key(&self) -> ServerKey {
        ServerKey {
            server_name: self.signing.server_name.clone(),
            key_id: self.signing.key_id(),
            public_key: self.signing.public_key(),
            valid_until_ts: 0,
            expired_ts: None,
        }
    }

    /// Records the key this instance signs with, so that every instance's key document lists
    /// it (instances that share a database may briefly sign with different keys during a
    /// rotation). Called at start-up.
    pub async fn publish_own(&self) -> Result<()> {
        self.store.store_server_keys(&[self.own_key()]).await
    }

    /// Records that this server's key `key_id` stopped signing at `expired_ts` (ms): it stays
    /// in the key document as an old key, so events it signed can still be checked.
    pub async fn retire(&self, key_id: &str, public_key: &str, expired_ts: u64) -> Result<()> {
        if key_id == self.signing.key_id() {
            return Err(Error::invalid_param("the key in use cannot be retired"));
        }
        self.store
            .store_server_keys(&[ServerKey {
                server_name: self.signing.server_name.clone(),
                key_id: key_id.to_owned(),
                public_key: public_key.to_owned(),
                valid_until_ts: 0,
                expired_ts: Some(expired_ts),
            }])
            .await
    }

    /// This server's key document at `now_ms`: the keys that sign, the old ones with their
    /// expiry, valid for [`KEY_VALIDITY_MS`], signed by the key this instance signs with.
    pub async fn key_document(&self, now_ms: u64) -> Result<String> {
        let known = self.store.server_keys(&self.signing.server_name).await?;
        signed_key_document(&self.signing, &known, now_ms + KEY_VALIDITY_MS)
    }

    /// The public keys among `key_ids` of `server` that check a signature made at `ts` (ms),
    /// keyed by key id. The server's keys are fetched (once per call) only when one of them
    /// is unknown or no longer valid at `ts`; a key that is still missing after that is left
    /// out, so the signature it made does not verify.
    pub async fn verify_keys(
        &self,
        server: &ServerName,
        key_ids: &[&str],
        ts: u64,
    ) -> Result<PublicKeySet> {
        let known = self.store.server_keys(server).await?;
        if server == self.signing.server_name {
            // This server's own keys are valid while they sign: nothing to fetch.
            let mut own: Vec<ServerKey> = known;
            own.push(self.own_key());
            for k in own.iter_mut().filter(|k| k.expired_ts.is_none()) {
                k.valid_until_ts = u64::MAX;
            }
            return Ok(usable(&own, key_ids, ts));
        }
        let mut set = usable(&known, key_ids, ts);
        if key_ids.iter().all(|id| set.contains_key(*id)) {
            return Ok(set);
        }
        let documents = self.fetch.key_documents(server).await?;
        let mut fetched = Vec::new();
        for doc in &documents {
            match check_key_document(server, doc) {
                Ok(keys) => fetched.extend(keys),
                Err(e) => tracing::info!(%server, error = %e, "a key document was refused"),
            }
        }
        if !fetched.is_empty() {
            self.store.store_server_keys(&fetched).await?;
            set = usable(&self.store.server_keys(server).await?, key_ids, ts);
        }
        Ok(set)
    }

    /// The public key map (`server → key id → key`) that checks an object signed by `servers`
    /// at `ts`, with the key ids each signature names.
    pub async fn key_map(
        &self,
        signers: &BTreeMap<ruma::OwnedServerName, Vec<String>>,
        ts: u64,
    ) -> Result<PublicKeyMap> {
        let mut map = PublicKeyMap::new();
        for (server, ids) in signers {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            map.insert(
                server.to_string(),
                self.verify_keys(server, &ids, ts).await?,
            );
        }
        Ok(map)
    }
}

/// The keys among `key_ids` that check a signature made at `ts`.
fn usable(known: &[ServerKey], key_ids: &[&str], ts: u64) -> PublicKeySet {
    known
        .iter()
        .filter(|k| key_ids.contains(&k.key_id.as_str()) && k.usable_at(ts))
        .filter_map(|k| Some((k.key_id.clone(), Base64::parse(&k.public_key).ok()?)))
        .collect()
}

/// A server's key document: `signing`'s key and the other current keys of `known` under
/// `verify_keys`, the expired ones under `old_verify_keys`, signed by `signing`. Pure, so a
/// test server builds its documents the way this server does.
pub fn signed_key_document(
    signing: &SigningKey,
    known: &[ServerKey],
    valid_until_ts: u64,
) -> Result<String> {
    let own = signing.key_id();
    let mut verify = serde_json::Map::new();
    let mut old = serde_json::Map::new();
    verify.insert(own.clone(), json!({ "key": signing.public_key() }));
    for k in known.iter().filter(|k| k.key_id != own) {
        match k.expired_ts {
            None => verify.insert(k.key_id.clone(), json!({ "key": k.public_key })),
            Some(at) => old.insert(
                k.key_id.clone(),
                json!({ "key": k.public_key, "expired_ts": at }),
            ),
        };
    }
    let doc = json!({
        "server_name": signing.server_name,
        "valid_until_ts": valid_until_ts,
        "verify_keys": verify,
        "old_verify_keys": old,
    });
    let mut object = canonical_object(doc)?;
    ruma::signatures::sign_json(signing.server_name.as_str(), &signing.key, &mut object)
        .map_err(Error::internal)?;
    Ok(serde_json::to_string(&object)?)
}

/// Checks a key document received for `server` and returns its keys: it must name `server`,
/// carry `valid_until_ts`, and be signed by `server` with one of the keys it lists as
/// current. Signatures of others (a notary's) are not checked here.
pub fn check_key_document(server: &ServerName, doc: &str) -> Result<Vec<ServerKey>> {
    let refuse = |why: String| Error::matrix(ErrorCode::Unauthorized, why);
    if doc.len() > MAX_KEY_DOCUMENT {
        return Err(refuse(format!(
            "key document over {MAX_KEY_DOCUMENT} bytes"
        )));
    }
    let object: CanonicalJsonObject = serde_json::from_str(doc)
        .map_err(|e| refuse(format!("key document is not canonical JSON: {e}")))?;
    let named = match object.get("server_name") {
        Some(CanonicalJsonValue::String(s)) => s.as_str(),
        _ => return Err(refuse("key document has no server_name".into())),
    };
    if named != server.as_str() {
        return Err(refuse(format!("key document is for {named}, not {server}")));
    }
    let valid_until_ts = match object.get("valid_until_ts") {
        Some(CanonicalJsonValue::Integer(t)) => u64::try_from(i64::from(*t)).unwrap_or(0),
        _ => return Err(refuse("key document has no valid_until_ts".into())),
    };
    let current = keys_of(&object, "verify_keys")?;
    if current.is_empty() {
        return Err(refuse("key document lists no verify_keys".into()));
    }
    // The server's own signature, by one of the keys it lists as current.
    let mut own_signed = object.clone();
    if let Some(CanonicalJsonValue::Object(sigs)) = own_signed.get_mut("signatures") {
        sigs.retain(|entity, _| entity == server.as_str());
    }
    let set: PublicKeySet = current
        .iter()
        .filter_map(|(id, key, _)| Some((id.clone(), Base64::parse(key).ok()?)))
        .collect();
    let map = PublicKeyMap::from([(server.to_string(), set)]);
    ruma::signatures::verify_json(&map, &own_signed)
        .map_err(|e| refuse(format!("key document of {server} is not self-signed: {e}")))?;
    let old = keys_of(&object, "old_verify_keys")?;
    Ok(current
        .into_iter()
        .map(|(key_id, public_key, _)| ServerKey {
            server_name: server.to_owned(),
            key_id,
            public_key,
            valid_until_ts,
            expired_ts: None,
        })
        .chain(
            old.into_iter()
                .map(|(key_id, public_key, expired)| ServerKey {
                    server_name: server.to_owned(),
                    key_id,
                    public_key,
                    valid_until_ts: 0,
                    expired_ts: Some(expired.unwrap_or(0)),
                }),
        )
        .collect())
}

/// `(key id, public key, expired_ts)` of each well-formed ed25519 key under `field`.
fn keys_of(
    object: &CanonicalJsonObject,
    field: &str,
) -> Result<Vec<(String, String, Option<u64>)>> {
    let Some(value) = object.get(field) else {
        return Ok(Vec::new());
    };
    let CanonicalJsonValue::Object(keys) = value else {
        return Err(Error::matrix(
            ErrorCode::Unauthorized,
            format!("{field} of a key document is not an object"),
        ));
    };
    Ok(keys
        .iter()
        .filter(|(id, _)| id.starts_with("ed25519:"))
        .filter_map(|(id, k)| {
            let CanonicalJsonValue::Object(k) = k else {
                return None;
            };
            let Some(CanonicalJsonValue::String(key)) = k.get("key") else {
                return None;
            };
            Base64::<ruma::serde::base64::Standard>::parse(key).ok()?;
            let expired = match k.get("expired_ts") {
                Some(CanonicalJsonValue::Integer(t)) => u64::try_from(i64::from(*t)).ok(),
                _ => None,
            };
            Some((id.clone(), key.clone(), expired))
        })
        .collect())
}

fn canonical_object(value: serde_json::Value) -> Result<CanonicalJsonObject> {
    match CanonicalJsonValue::try_from(value) {
        Ok(CanonicalJsonValue::Object(o)) => Ok(o),
        Ok(_) => Err(Error::internal("a key document is not an object")),
        Err(e) => Err(Error::internal(e)),
    }
}
