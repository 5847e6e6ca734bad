//! Sessions: access tokens, devices and refresh tokens, and what revokes them.
//!
//! A session is a device. A Matrix access token names its device; a Sandcat JWT names its
//! device too (`sid`), so deleting the device — logout, logout/all, a password change,
//! deactivation, device deletion from Element — ends both kinds at once.
//!
//! **Revocation is cluster-wide before the revoking request returns.** With a store that only
//! this process uses (SQLite), sessions are cached in memory and a revocation clears the cache
//! before it answers. With a store shared by several instances (PostgreSQL), nothing is cached:
//! every request checks its token against the store with one primary-key lookup, so a
//! revocation committed on one instance is refused by every other on its next request.

use std::collections::HashMap;

use ruma::{OwnedUserId, UserId};

use super::{Accounts, LoginResult, NewDevice};
use crate::{
    error::ErrorCode,
    ports::{Standing, TokenRotation},
    services::Session,
    token, Error, Result,
};

/// Sessions known valid, when this process is the store's only user.
#[derive(Default)]
pub(super) struct SessionCache {
    enabled: bool,
    /// Each token's session and expiry.
    tokens: std::sync::RwLock<HashMap<String, (Session, Option<u64>)>>,
    /// Each device known to exist, with its account's standing.
    devices: std::sync::RwLock<HashMap<(OwnedUserId, String), Standing>>,
}

impl SessionCache {
    pub(super) fn new(enabled: bool) -> Self {
        SessionCache {
            enabled,
            ..Default::default()
        }
    }

    fn token(&self, token: &str) -> Option<(Session, Option<u64>)> {
        if !self.enabled {
            return None;
        }
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn keep_token(&self, token: &str, session: &Session, expires_ms: Option<u64>) {
        if self.enabled {
            self.tokens
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(token.to_owned(), (session.clone(), expires_ms));
        }
    }

    fn device(&self, user_id: &UserId, device_id: &str) -> Option<Standing> {
        if !self.enabled {
            return None;
        }
        self.devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(user_id.to_owned(), device_id.to_owned()))
            .copied()
    }

    fn keep_device(&self, user_id: &UserId, device_id: &str, standing: Standing) {
        if self.enabled {
            self.devices
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert((user_id.to_owned(), device_id.to_owned()), standing);
        }
    }

    /// After any revocation or change of standing: they are rare, and clearing everything
    /// cannot miss one.
    pub(super) fn forget_all(&self) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// A session opened for a client that authenticates with its own tokens (a Sandcat client):
/// the device its tokens name, and its first refresh token.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    pub user_id: OwnedUserId,
    pub device_id: String,
    pub refresh_token: String,
}

fn unknown_token() -> Error {
    Error::matrix(ErrorCode::UnknownToken, "unknown or expired access token")
}

fn expired_token() -> Error {
    Error::matrix(
        ErrorCode::ExpiredToken,
        "the access token expired: refresh it",
    )
}

/// How long a device's access token keeps working after the device refreshed it.
const EARLIER_TOKEN_GRACE_MS: u64 = 60_000;

impl Accounts {
    pub async fn login_new_device(
        &self,
        user_id: &UserId,
        device: NewDevice<'_>,
    ) -> Result<LoginResult> {
        self.ensure_not_locked(user_id).await?;
        let device_id = device.device_id.unwrap_or_else(token::device_id);
        let access_token = token::access_token();
        let lifetime = self
            .config
            .access_token_lifetime_ms
            .filter(|_| device.refresh);
        self.users
            .add_device_token(
                user_id,
                &device_id,
                device.display_name,
                &access_token,
                lifetime.map(|l| crate::now_ms().saturating_add(l)),
            )
            .await?;
        let refresh_token = if device.refresh {
            let t = token::random_string(32);
            self.users
                .add_refresh_token(user_id, &device_id, &t)
                .await?;
            Some(t)
        } else {
            None
        };
        Ok(LoginResult {
            user_id: user_id.to_owned(),
            access_token,
            device_id,
            refresh_token,
            expires_in_ms: lifetime,
        })
    }

    /// `POST /refresh`: a new access token (expiring as configured) and a new refresh token
    /// for the device of `refresh_token`, which never works again. The device's earlier
    /// access token keeps working a little while, for requests already on their way.
    pub async fn refresh(&self, refresh_token: &str) -> Result<LoginResult> {
        let now = crate::now_ms();
        let lifetime = self.config.access_token_lifetime_ms;
        let rotation = TokenRotation {
            refresh: token::random_string(32),
            access: token::access_token(),
            access_expires_ms: lifetime.map(|l| now.saturating_add(l)),
            earlier_until_ms: now + EARLIER_TOKEN_GRACE_MS,
        };
        let (user_id, device_id) = self
            .users
            .refresh_session(refresh_token, &rotation)
            .await?
            .ok_or_else(unknown_token)?;
        // The earlier token's expiry changed: cached sessions are read again.
        self.cache.forget_all();
        Ok(LoginResult {
            user_id,
            access_token: rotation.access,
            device_id,
            refresh_token: Some(rotation.refresh),
            expires_in_ms: lifetime,
        })
    }

    /// Opens a device whose client holds tokens of its own (signed by another API) that name
    /// the device, with a refresh token.
    pub async fn open_device_session(
        &self,
        user_id: &UserId,
        display_name: &str,
    ) -> Result<DeviceSession> {
        self.ensure_not_locked(user_id).await?;
        let device_id = token::device_id();
        self.users
            .add_device(user_id, &device_id, Some(display_name))
            .await?;
        let refresh_token = token::random_string(32);
        self.users
            .add_refresh_token(user_id, &device_id, &refresh_token)
            .await?;
        Ok(DeviceSession {
            user_id: user_id.to_owned(),
            device_id,
            refresh_token,
        })
    }

    /// The session behind an access token: `M_UNKNOWN_TOKEN` if there is none, with
    /// `soft_logout` if it expired.
    pub async fn authenticate(&self, access_token: &str) -> Result<Session> {
        let now = crate::now_ms();
        if let Some((s, expires)) = self.cache.token(access_token) {
            return match expires {
                Some(e) if e <= now => Err(expired_token()),
                _ => Ok(s),
            };
        }
        let owner = self
            .users
            .find_token(access_token)
            .await?
            .ok_or_else(unknown_token)?;
        if owner.expires_ms.is_some_and(|e| e <= now) {
            return Err(expired_token());
        }
        let session = Session::new(owner.user_id, owner.device_id).with_standing(owner.standing);
        self.cache
            .keep_token(access_token, &session, owner.expires_ms);
        Ok(session)
    }

    /// The session of a device named by a token this server signed, while the device exists,
    /// with its account's standing.
    pub async fn device_session(&self, user_id: &UserId, device_id: &str) -> Result<Session> {
        let standing = match self.cache.device(user_id, device_id) {
            Some(standing) => standing,
            None => {
                let standing = self
                    .users
                    .device_standing(user_id, device_id)
                    .await?
                    .ok_or_else(unknown_token)?;
                self.cache.keep_device(user_id, device_id, standing);
                standing
            }
        };
        Ok(Session::new(user_id.to_owned(), device_id.to_owned()).with_standing(standing))
    }

    /// The device of a valid refresh token.
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<Session> {
        let (user_id, device_id) = self
            .users
            .find_refresh_token(refresh_token)
            .await?
            .ok_or_else(unknown_token)?;
        Ok(Session::new(user_id, device_id))
    }

    /// Replaces a refresh token by a new one; the old one never works again.
    pub async fn rotate_refresh_token(&self, refresh_token: &str) -> Result<(Session, String)> {
        let new = token::random_string(32);
        let (user_id, device_id) = self
            .users
            .replace_refresh_token(refresh_token, &new)
            .await?
            .ok_or_else(unknown_token)?;
        Ok((Session::new(user_id, device_id), new))
    }

    pub async fn logout(&self, session: &Session) -> Result<()> {
        self.delete_devices(&session.user_id, std::slice::from_ref(&session.device_id))
            .await
    }

    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        self.users.delete_tokens_except(user_id, None).await?;
        let devices: Vec<String> = self
            .users
            .devices(user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        self.delete_devices(user_id, &devices).await
    }

    /// Ends every session of the user except `keep`'s.
    pub(super) async fn logout_others(&self, user_id: &UserId, keep: Option<&str>) -> Result<()> {
        let others: Vec<String> = self
            .users
            .devices(user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .filter(|d| Some(d.as_str()) != keep)
            .collect();
        self.delete_devices(user_id, &others).await
    }

    /// Deletes devices with their tokens. Other servers sharing a room with the user are
    /// told first (`m.device_list_update`, deleted), kept until they accept it: a failure
    /// here deletes nothing, and the request can be made again.
    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<()> {
        if let Some(edus) = &self.federation {
            let existing = self.users.devices(user_id).await?;
            for device in existing
                .iter()
                .filter(|d| device_ids.contains(&d.device_id))
            {
                edus.device_list_update(user_id, &device.device_id, None)
                    .await?;
            }
        }
        self.users.delete_devices(user_id, device_ids).await?;
        self.cache.forget_all();
        if let Some(n) = &self.notifier {
            n.notify();
        }
        Ok(())
    }

    /// Deactivates the account for good: every session ends, the password and profile are
    /// cleared, and the user id stays taken.
    pub async fn deactivate(&self, user_id: &UserId) -> Result<()> {
        self.users.deactivate_user(user_id).await?;
        self.cache.forget_all();
        tracing::info!(%user_id, "account deactivated");
        Ok(())
    }
}

/// How long a login token works.
pub const LOGIN_TOKEN_TTL_MS: u64 = 120_000;

impl Accounts {
    /// `login/get_token`: a single-use token another device of the user signs in with.
    pub async fn issue_login_token(&self, session: &Session) -> Result<(String, u64)> {
        let token = token::random_string(32);
        let now = crate::now_ms();
        self.users
            .keep_login_token(&token, &session.user_id, now + LOGIN_TOKEN_TTL_MS, now)
            .await?;
        Ok((token, LOGIN_TOKEN_TTL_MS))
    }

    /// `m.login.token`: opens a device for the user a valid login token was given to.
    pub async fn login_with_token(
        &self,
        login_token: &str,
        device: NewDevice<'_>,
    ) -> Result<LoginResult> {
        let invalid = || Error::forbidden("invalid or expired login token");
        let user_id = self
            .users
            .take_login_token(login_token, crate::now_ms())
            .await?
            .ok_or_else(invalid)?;
        match self.users.user(&user_id).await? {
            Some(u) if !u.deactivated => self.login_new_device(&user_id, device).await,
            _ => Err(invalid()),
        }
    }
}
