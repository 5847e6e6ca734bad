//! Server signing keys: this server's own published keys and the keys of other servers, kept so
//! that a signature is verified without asking the signing server again while its key is
//! valid. One table serves both: this server is one more server name in it.

use async_trait::async_trait;
use ruma::{OwnedServerName, ServerName};

use crate::Result;

/// A signing key of a server, as its key document publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKey {
    pub server_name: OwnedServerName,
    /// `ed25519:<version>`.
    pub key_id: String,
    /// The public key, unpadded standard base64 as published.
    pub public_key: String,
    /// Until when (ms since the epoch) the key may be used without asking its server again.
    /// Unused (0) for this server's own keys, whose documents are signed when served.
    pub valid_until_ts: u64,
    /// When (ms) the key stopped signing: an old key (`old_verify_keys`), valid for
    /// signatures made before then.
    pub expired_ts: Option<u64>,
}

impl ServerKey {
    /// Whether a signature made at `ts` (ms) may be checked with this key without fetching
    /// the server's keys again.
    pub fn usable_at(&self, ts: u64) -> bool {
        match self.expired_ts {
            Some(expired) => ts <= expired,
            None => ts <= self.valid_until_ts,
        }
    }
}

/// The store of server keys.
#[async_trait]
pub trait ServerKeyStore: Send + Sync {
    /// Keeps keys, each under `(server_name, key_id)`. A key already known takes the new
    /// public key and validity only from a document at least as fresh (a later
    /// `valid_until_ts`); an expiry, once set, is kept.
    async fn store_server_keys(&self, keys: &[ServerKey]) -> Result<()>;
    /// Every known key of a server, current and old.
    async fn server_keys(&self, server: &ServerName) -> Result<Vec<ServerKey>>;
}

/// Where the key documents of other servers come from: the server itself
/// (`/_matrix/key/v2/server`) or a notary (`/_matrix/key/v2/query`). Implemented by the
/// federation client; documents are returned as received, and checked by the caller.
#[async_trait]
pub trait KeyFetch: Send + Sync {
    /// The key documents of `server`, each the JSON object as received.
    async fn key_documents(&self, server: &ServerName) -> Result<Vec<String>>;
}

/// The fetcher of a server that talks to no other: every remote key is unknown.
pub struct NoKeyFetch;

#[async_trait]
impl KeyFetch for NoKeyFetch {
    async fn key_documents(&self, server: &ServerName) -> Result<Vec<String>> {
        Err(crate::Error::matrix(
            crate::ErrorCode::Unauthorized,
            format!("the keys of {server} are unknown and federation is not enabled"),
        ))
    }
}
