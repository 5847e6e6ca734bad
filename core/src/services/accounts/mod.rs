//! Accounts: registration, login, passwords, profiles and deactivation; sessions (access
//! tokens, devices, refresh tokens) in [`sessions`].

mod hash;
mod last_seen;
mod profile_fields;
pub use profile_fields::{MAX_FIELD_NAME, MAX_PROFILE_BYTES};
mod sessions;
mod standing;
pub use sessions::LOGIN_TOKEN_TTL_MS;

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{PasswordHash, PasswordVerifier},
    Argon2,
};
use ruma::{OwnedUserId, UserId};

use crate::{
    error::ErrorCode,
    notifier::Notifier,
    ports::{DeviceRecord, FederationEdus, UserRecord, UserStore},
    ratelimit::Lockout,
    services::Session,
    Error, Result, ServerConfig,
};
use hash::HashPool;
use last_seen::LastSeen;
pub use last_seen::LAST_SEEN_EVERY;
pub use sessions::DeviceSession;
use sessions::SessionCache;

/// Longest display name, in characters (as Synapse).
pub const MAX_DISPLAYNAME: usize = 256;
/// Longest avatar URL, in bytes.
pub const MAX_AVATAR_URL: usize = 1000;

pub struct Accounts {
    users: Arc<dyn UserStore>,
    config: Arc<ServerConfig>,
    cache: SessionCache,
    hasher: HashPool,
    /// Failed passwords per account, whichever API they come through.
    failures: Lockout,
    /// When this instance last recorded each device's use.
    last_seen: LastSeen,
    /// Tells other servers of devices deleted, when federating.
    federation: Option<Arc<dyn FederationEdus>>,
    /// Wakes `/sync` long-polls when a device is deleted (its users' key change).
    notifier: Option<Notifier>,
}

/// What a successful login, registration or refresh hands the client.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub user_id: OwnedUserId,
    pub access_token: String,
    pub device_id: String,
    /// When the client asked for one.
    pub refresh_token: Option<String>,
    /// How long the access token lives, when it expires.
    pub expires_in_ms: Option<u64>,
}

/// The device a login opens: its id (a new one when `None`), its name, and whether the
/// client takes a refresh token (and so an access token that expires).
#[derive(Debug, Clone, Default)]
pub struct NewDevice<'a> {
    pub device_id: Option<String>,
    pub display_name: Option<&'a str>,
    pub refresh: bool,
}

impl Accounts {
    /// `shared_store`: whether other instances use the same store, in which case no session
    /// is cached (see [`sessions`]).
    pub fn new(users: Arc<dyn UserStore>, config: Arc<ServerConfig>, shared_store: bool) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4);
        let failures = Lockout::new(
            config.max_login_failures,
            Duration::from_secs(config.login_lockout_secs),
        );
        Accounts {
            users,
            config,
            cache: SessionCache::new(!shared_store),
            hasher: HashPool::new(threads),
            failures,
            last_seen: LastSeen::default(),
            federation: None,
            notifier: None,
        }
    }

    /// Wakes `/sync` long-polls (here and on other instances) when devices are deleted.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// Tells the servers that share a room with a user when one of its devices is deleted.
    pub fn with_federation_edus(mut self, edus: Arc<dyn FederationEdus>) -> Self {
        self.federation = Some(edus);
        self
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Parses a localpart or full user id into a user id on this server.
    pub fn user_id_from(&self, input: &str) -> Result<OwnedUserId> {
        let id = if input.starts_with('@') {
            UserId::parse(input)
                .map_err(|_| Error::matrix(ErrorCode::InvalidUsername, "invalid user id"))?
        } else {
            UserId::parse_with_server_name(input.to_lowercase(), &self.config.server_name)
                .map_err(|_| Error::matrix(ErrorCode::InvalidUsername, "invalid username"))?
        };
        if id.server_name() != self.config.server_name {
            return Err(Error::matrix(
                ErrorCode::InvalidUsername,
                "user is not on this server",
            ));
        }
        Ok(id)
    }

    /// Checks that a localpart is valid and free.
    pub async fn check_available(&self, localpart: &str) -> Result<OwnedUserId> {
        let valid = !localpart.is_empty()
            && localpart.len() <= 200
            && localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'));
        if !valid {
            return Err(Error::matrix(
                ErrorCode::InvalidUsername,
                "user names may only contain a-z, 0-9, . _ = - / +",
            ));
        }
        let user_id = self.user_id_from(localpart)?;
        if self.users.user(&user_id).await?.is_some() {
            return Err(Error::matrix(ErrorCode::UserInUse, "user id already taken"));
        }
        Ok(user_id)
    }

    /// Creates a user (no device). Used by registration and the admin CLI.
    pub async fn create_user(
        &self,
        localpart: &str,
        password: Option<&str>,
    ) -> Result<OwnedUserId> {
        let user_id = self.check_available(localpart).await?;
        let password_hash = match password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        self.users
            .create_user(&UserRecord {
                user_id: user_id.clone(),
                password_hash,
                displayname: Some(user_id.localpart().to_owned()),
                avatar_url: None,
                deactivated: false,
            })
            .await?;
        tracing::info!(%user_id, "user created");
        Ok(user_id)
    }

    /// `m.login.password`: checks the password and opens a device.
    pub async fn login_password(
        &self,
        user: &str,
        password: &str,
        device: NewDevice<'_>,
    ) -> Result<LoginResult> {
        let user_id = self
            .user_id_from(user)
            .map_err(|_| Error::forbidden("invalid username or password"))?;
        if !self.check_password(&user_id, password).await? {
            return Err(Error::forbidden("invalid username or password"));
        }
        self.login_new_device(&user_id, device).await
    }

    pub async fn exists(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.users.user(user_id).await?.is_some())
    }

    /// Whether `password` is the user's. After `max_login_failures` wrong ones within the
    /// lockout window, every try is refused with `M_LIMIT_EXCEEDED` until the window ends.
    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<bool> {
        if let Err(wait) = self.failures.check(user_id.as_str()) {
            return Err(Error::matrix(
                ErrorCode::LimitExceeded,
                format!(
                    "too many failed attempts; retry in {} s",
                    wait.as_secs().max(1)
                ),
            ));
        }
        let Some(user) = self.users.user(user_id).await? else {
            // Not counted: the lockout keeps an entry per existing account, never more.
            return Ok(false);
        };
        let right = self.verify_password(user, password).await?;
        if right {
            self.failures.clear(user_id.as_str());
        } else {
            self.failures.fail(user_id.as_str());
        }
        Ok(right)
    }

    async fn verify_password(&self, user: UserRecord, password: &str) -> Result<bool> {
        if user.deactivated {
            return Err(Error::matrix(
                ErrorCode::UserDeactivated,
                "this account has been deactivated",
            ));
        }
        let Some(hash) = user.password_hash else {
            return Ok(false);
        };
        let password = password.to_owned();
        self.hasher
            .run(move || {
                PasswordHash::new(&hash).is_ok_and(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
            })
            .await
    }

    pub async fn change_password(
        &self,
        session: &Session,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<()> {
        if new_password.is_empty() {
            return Err(Error::invalid_param("password must not be empty"));
        }
        let hash = self.hasher.hash(new_password).await?;
        self.users.set_password(&session.user_id, &hash).await?;
        if logout_devices {
            self.logout_others(&session.user_id, Some(&session.device_id))
                .await?;
        }
        Ok(())
    }

    /// Sets a new password proven by something other than a session (an emailed code);
    /// every session of the user ends when `logout_devices`.
    pub async fn reset_password(
        &self,
        user_id: &UserId,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<()> {
        if new_password.is_empty() {
            return Err(Error::invalid_param("password must not be empty"));
        }
        let hash = self.hasher.hash(new_password).await?;
        self.users.set_password(user_id, &hash).await?;
        if logout_devices {
            self.logout_others(user_id, None).await?;
        }
        Ok(())
    }

    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
        self.users.devices(user_id).await
    }

    /// A user's devices with where and when each was last seen (`/admin/whois`): for the
    /// user alone, as this server has no admin accounts (its admins use the command line).
    pub async fn whois(&self, session: &Session, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
        if session.user_id != user_id {
            return Err(Error::forbidden(
                "whois is only for one's own account on this server",
            ));
        }
        self.users.devices(user_id).await
    }

    pub async fn device(&self, user_id: &UserId, device_id: &str) -> Result<DeviceRecord> {
        self.users
            .devices(user_id)
            .await?
            .into_iter()
            .find(|d| d.device_id == device_id)
            .ok_or_else(|| Error::not_found("no such device"))
    }

    pub async fn update_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<()> {
        if self
            .users
            .update_device(user_id, device_id, display_name)
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("no such device"))
        }
    }

    /// Records that `session`'s device was used now (from `ip`), at most once per
    /// [`LAST_SEEN_EVERY`] per device on this instance.
    pub async fn touch(&self, session: &Session, ip: Option<IpAddr>) -> Result<()> {
        if !self
            .last_seen
            .due(&session.user_id, &session.device_id, Instant::now())
        {
            return Ok(());
        }
        self.users
            .touch_device(
                &session.user_id,
                &session.device_id,
                crate::now_ms(),
                ip.map(|a| a.to_string()).as_deref(),
            )
            .await
    }

    pub async fn user(&self, user_id: &UserId) -> Result<Option<UserRecord>> {
        self.users.user(user_id).await
    }

    pub async fn set_profile(
        &self,
        user_id: &UserId,
        displayname: Option<Option<&str>>,
        avatar_url: Option<Option<&str>>,
    ) -> Result<()> {
        check_profile(displayname.flatten(), avatar_url.flatten())?;
        self.users
            .set_profile(user_id, displayname, avatar_url)
            .await
    }

    pub async fn search(&self, term: &str, limit: usize) -> Result<Vec<UserRecord>> {
        self.users.search_users(term, limit).await
    }
}

/// Refuses profile fields over their limits, so a profile stays small enough to copy into
/// every membership event and lookup.
pub fn check_profile(displayname: Option<&str>, avatar_url: Option<&str>) -> Result<()> {
    if displayname.is_some_and(|d| d.chars().count() > MAX_DISPLAYNAME) {
        return Err(Error::matrix(
            ErrorCode::BadJson,
            format!("display name is longer than {MAX_DISPLAYNAME} characters"),
        ));
    }
    if avatar_url.is_some_and(|a| a.len() > MAX_AVATAR_URL) {
        return Err(Error::matrix(
            ErrorCode::BadJson,
            format!("avatar URL is longer than {MAX_AVATAR_URL} bytes"),
        ));
    }
    Ok(())
}
