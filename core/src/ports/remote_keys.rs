//! Other servers' users' end-to-end encryption keys, as this server's users reach them:
//! implemented by the federation client (`/user/keys/query`, `/user/keys/claim`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use ruma::{OwnedUserId, ServerName};
use serde_json::Value;

use crate::{Error, Result};

#[async_trait]
pub trait RemoteKeys: Send + Sync {
    /// The device and cross-signing keys of users of `server` (the devices named, or all):
    /// `{"device_keys": …, "master_keys": …, "self_signing_keys": …}`.
    async fn query(
        &self,
        server: &ServerName,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value>;
    /// One-time keys of devices of users of `server`, one per device and algorithm asked:
    /// `{user: {device: {key id: key}}}`.
    async fn claim(
        &self,
        server: &ServerName,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value>;
}

/// A server that talks to no other: no other server's keys.
pub struct NoRemoteKeys;

#[async_trait]
impl RemoteKeys for NoRemoteKeys {
    async fn query(
        &self,
        server: &ServerName,
        _wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value> {
        Err(Error::not_found(format!(
            "{server} was not asked: this server does not federate"
        )))
    }

    async fn claim(
        &self,
        server: &ServerName,
        _wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value> {
        Err(Error::not_found(format!(
            "{server} was not asked: this server does not federate"
        )))
    }
}
