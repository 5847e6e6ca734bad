//! Other servers' media, as this server's users reach it through the client media endpoints:
//! implemented by the federation client (`/_matrix/federation/v1/media/download`).

use async_trait::async_trait;
use ruma::ServerName;

use crate::{Error, Result};

/// A file of another server's content repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteFile {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

#[async_trait]
pub trait RemoteMedia: Send + Sync {
    /// The file `mxc://{server}/{media_id}`, from `server` itself. `M_NOT_FOUND` when that
    /// server has no such file, `M_TOO_LARGE` when it is larger than `max_bytes`.
    async fn download(
        &self,
        server: &ServerName,
        media_id: &str,
        max_bytes: usize,
    ) -> Result<RemoteFile>;
}

/// A server that talks to no other: no other server's media.
pub struct NoRemoteMedia;

#[async_trait]
impl RemoteMedia for NoRemoteMedia {
    async fn download(
        &self,
        server: &ServerName,
        _media_id: &str,
        _max_bytes: usize,
    ) -> Result<RemoteFile> {
        Err(Error::not_found(format!(
            "media of {server} is not available: this server does not federate"
        )))
    }
}
