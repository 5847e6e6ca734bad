//! Server-side key backup (`/room_keys`): a user's devices store the room keys they hold,
//! encrypted to a key only the user has, so a new device can read old messages. The latest
//! version that is not deleted is the current one: keys go only there
//! (`M_WRONG_ROOM_KEYS_VERSION` otherwise). Of two keys for one session the better is kept:
//! a verified one over an unverified one, then the one that decrypts from an earlier message,
//! then the one forwarded fewer times.

use std::{cmp::Ordering, collections::BTreeMap, sync::Arc};

use ruma::{OwnedRoomId, UserId};
use serde_json::Value;

use crate::{
    ports::{BackedUpKey, BackupVersion, KeyBackups, KeyScope},
    Error, Result,
};

/// The most keys one request may carry.
pub const MAX_KEYS_PER_REQUEST: usize = 10_000;

/// What a write of keys answers: how many keys the version holds now, and its etag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCount {
    pub count: u64,
    pub etag: String,
}

pub struct KeyBackup {
    store: Arc<dyn KeyBackups>,
}

/// A version number as the client API spells it: unknown (`M_NOT_FOUND`) unless it is one.
fn parse_version(version: &str) -> Result<u64> {
    version
        .parse()
        .map_err(|_| Error::not_found(format!("no backup version {version}")))
}

/// Whether `new` is a better key for its session than `old`.
fn better(new: &BackedUpKey, old: &BackedUpKey) -> bool {
    let rank = new
        .is_verified
        .cmp(&old.is_verified)
        .then(old.first_message_index.cmp(&new.first_message_index))
        .then(old.forwarded_count.cmp(&new.forwarded_count));
    rank == Ordering::Greater
}

impl KeyBackup {
    pub fn new(store: Arc<dyn KeyBackups>) -> Self {
        KeyBackup { store }
    }

    /// A new backup version, which becomes the current one.
    pub async fn create(
        &self,
        user: &UserId,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<String> {
        let version = self
            .store
            .create_backup_version(user, algorithm, &auth_data.to_string())
            .await?;
        Ok(version.to_string())
    }

    /// A version (the current one when `version` is `None`); `M_NOT_FOUND` when there is none.
    pub async fn info(&self, user: &UserId, version: Option<&str>) -> Result<BackupVersion> {
        let number = version.map(parse_version).transpose()?;
        self.store
            .backup_version(user, number)
            .await?
            .ok_or_else(|| match version {
                Some(v) => Error::not_found(format!("no backup version {v}")),
                None => Error::not_found("no current backup version"),
            })
    }

    /// Replaces a version's `auth_data`; its algorithm cannot change.
    pub async fn update(
        &self,
        user: &UserId,
        version: &str,
        algorithm: &str,
        auth_data: &Value,
    ) -> Result<()> {
        let kept = self.info(user, Some(version)).await?;
        if kept.algorithm != algorithm {
            return Err(Error::invalid_param(
                "the algorithm of a backup version cannot change",
            ));
        }
        self.store
            .update_backup_version(user, kept.version, &auth_data.to_string())
            .await?;
        Ok(())
    }

    pub async fn delete(&self, user: &UserId, version: &str) -> Result<()> {
        let number = parse_version(version)?;
        if !self.store.delete_backup_version(user, number).await? {
            return Err(Error::not_found(format!("no backup version {version}")));
        }
        Ok(())
    }

    /// Stores `keys` in `version`, which must be the current one, each only if it is better
    /// than the key held for its session.
    pub async fn put(
        &self,
        user: &UserId,
        version: &str,
        keys: Vec<BackedUpKey>,
    ) -> Result<BackupCount> {
        if keys.len() > MAX_KEYS_PER_REQUEST {
            return Err(Error::matrix(
                crate::ErrorCode::TooLarge,
                format!("at most {MAX_KEYS_PER_REQUEST} keys a request"),
            ));
        }
        let Some(current) = self.store.backup_version(user, None).await? else {
            return Err(Error::not_found("no current backup version"));
        };
        if Some(current.version) != version.parse().ok() {
            return Err(Error::WrongRoomKeysVersion(current.version.to_string()));
        }
        let rooms: std::collections::BTreeSet<OwnedRoomId> =
            keys.iter().map(|k| k.room_id.clone()).collect();
        let mut held: BTreeMap<(OwnedRoomId, String), BackedUpKey> = BTreeMap::new();
        for room in &rooms {
            for key in self
                .store
                .backup_keys(user, current.version, KeyScope::Room(room))
                .await?
            {
                held.insert((key.room_id.clone(), key.session_id.clone()), key);
            }
        }
        let mut winners: BTreeMap<(OwnedRoomId, String), BackedUpKey> = BTreeMap::new();
        for key in keys {
            let slot = (key.room_id.clone(), key.session_id.clone());
            let beats = |other: Option<&BackedUpKey>| other.is_none_or(|o| better(&key, o));
            if beats(held.get(&slot)) && beats(winners.get(&slot)) {
                winners.insert(slot, key);
            }
        }
        let winners: Vec<BackedUpKey> = winners.into_values().collect();
        self.store
            .put_backup_keys(user, current.version, &winners)
            .await?;
        self.count(user, current.version).await
    }

    /// The keys of a version in `scope`; `M_NOT_FOUND` for a version that is not there, or
    /// a session without a key.
    pub async fn keys(
        &self,
        user: &UserId,
        version: &str,
        scope: KeyScope<'_>,
    ) -> Result<Vec<BackedUpKey>> {
        let kept = self.info(user, Some(version)).await?;
        let keys = self.store.backup_keys(user, kept.version, scope).await?;
        if keys.is_empty() && matches!(scope, KeyScope::Session(..)) {
            return Err(Error::not_found("no key for this session"));
        }
        Ok(keys)
    }

    /// Deletes the keys of a version in `scope`.
    pub async fn delete_keys(
        &self,
        user: &UserId,
        version: &str,
        scope: KeyScope<'_>,
    ) -> Result<BackupCount> {
        let kept = self.info(user, Some(version)).await?;
        self.store
            .delete_backup_keys(user, kept.version, scope)
            .await?;
        self.count(user, kept.version).await
    }

    async fn count(&self, user: &UserId, version: u64) -> Result<BackupCount> {
        let now = self
            .store
            .backup_version(user, Some(version))
            .await?
            .ok_or_else(|| Error::not_found(format!("no backup version {version}")))?;
        Ok(BackupCount {
            count: now.count,
            etag: now.etag.to_string(),
        })
    }
}

/// Keys by room and session, as the client API nests them.
pub fn nested(keys: Vec<BackedUpKey>) -> BTreeMap<OwnedRoomId, BTreeMap<String, BackedUpKey>> {
    let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, BackedUpKey>> = BTreeMap::new();
    for key in keys {
        rooms
            .entry(key.room_id.clone())
            .or_default()
            .insert(key.session_id.clone(), key);
    }
    rooms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: u64, forwarded: u64) -> BackedUpKey {
        BackedUpKey {
            room_id: "!r:x".try_into().unwrap(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: "{}".into(),
        }
    }

    #[test]
    fn the_better_key_of_a_session_is_kept() {
        assert!(better(&key(true, 5, 3), &key(false, 0, 0)));
        assert!(!better(&key(false, 0, 0), &key(true, 5, 3)));
        assert!(better(&key(false, 1, 3), &key(false, 2, 0)));
        assert!(better(&key(false, 2, 0), &key(false, 2, 1)));
        assert!(!better(&key(false, 2, 1), &key(false, 2, 1)));
    }
}
