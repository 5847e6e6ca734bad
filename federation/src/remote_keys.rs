//! Other servers' users' end-to-end encryption keys (`RemoteKeys`): `/user/keys/query` and
//! `/user/keys/claim` of their servers, answered as JSON for the `Keys` service to merge.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ruma::{
    api::federation::keys::{claim_keys, get_keys},
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, ServerName,
};
use sandcat_core::{ports::RemoteKeys, Result};
use serde_json::{json, Value};

use crate::client::RemoteEvents;

#[async_trait]
impl RemoteKeys for RemoteEvents {
    async fn query(
        &self,
        server: &ServerName,
        wanted: &BTreeMap<OwnedUserId, Vec<String>>,
    ) -> Result<Value> {
        let asked = wanted
            .iter()
            .map(|(user, devices)| {
                let ids = devices.iter().map(|d| OwnedDeviceId::from(d.as_str()));
                (user.clone(), ids.collect())
            })
            .collect();
        let answer = self
            .client
            .send(server, get_keys::v1::Request::new(asked))
            .await?;
        // Only the users asked, of that server: it speaks for no one else.
        let own = |user: &OwnedUserId| user.server_name() == server && wanted.contains_key(user);
        let device_keys: BTreeMap<_, _> = answer
            .device_keys
            .into_iter()
            .filter(|(u, _)| own(u))
            .collect();
        let master: BTreeMap<_, _> = answer
            .master_keys
            .into_iter()
            .filter(|(u, _)| own(u))
            .collect();
        let self_signing: BTreeMap<_, _> = answer
            .self_signing_keys
            .into_iter()
            .filter(|(u, _)| own(u))
            .collect();
        Ok(json!({
            "device_keys": device_keys,
            "master_keys": master,
            "self_signing_keys": self_signing,
        }))
    }

    async fn claim(
        &self,
        server: &ServerName,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<String, String>>,
    ) -> Result<Value> {
        let asked = wanted
            .iter()
            .map(|(user, devices)| {
                let per_device = devices
                    .iter()
                    .map(|(d, alg)| {
                        (
                            OwnedDeviceId::from(d.as_str()),
                            OneTimeKeyAlgorithm::from(alg.as_str()),
                        )
                    })
                    .collect();
                (user.clone(), per_device)
            })
            .collect();
        let answer = self
            .client
            .send(server, claim_keys::v1::Request::new(asked))
            .await?;
        let keys: BTreeMap<_, _> = answer
            .one_time_keys
            .into_iter()
            .filter(|(u, _)| u.server_name() == server && wanted.contains_key(u))
            .collect();
        Ok(serde_json::to_value(keys)?)
    }
}
