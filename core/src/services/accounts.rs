//! Accounts: registration, login, access tokens, devices, passwords and profiles.

use std::{collections::HashMap, sync::Arc};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use ruma::{OwnedUserId, UserId};

use crate::{
    error::ErrorCode,
    ports::{DeviceRecord, UserRecord, UserStore},
    services::Session,
    token, Error, Result, ServerConfig,
};

pub struct Accounts {
    users: Arc<dyn UserStore>,
    config: Arc<ServerConfig>,
    /// token → session; filled on first use, cleared on logout.
    tokens: std::sync::RwLock<HashMap<String, Session>>,
    hasher: HashPool,
}

/// What a successful login or registration hands the client.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub user_id: OwnedUserId,
    pub access_token: String,
    pub device_id: String,
}

impl Accounts {
    pub fn new(users: Arc<dyn UserStore>, config: Arc<ServerConfig>) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .min(4);
        Accounts {
            users,
            config,
            tokens: Default::default(),
            hasher: HashPool::new(threads),
        }
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

    pub async fn login_new_device(
        &self,
        user_id: &UserId,
        device_id: Option<String>,
        display_name: Option<&str>,
    ) -> Result<LoginResult> {
        let device_id = device_id.unwrap_or_else(token::device_id);
        let access_token = token::access_token();
        self.users
            .add_device_token(user_id, &device_id, display_name, &access_token)
            .await?;
        Ok(LoginResult {
            user_id: user_id.to_owned(),
            access_token,
            device_id,
        })
    }

    /// `m.login.password`: checks the password and opens a device.
    pub async fn login_password(
        &self,
        user: &str,
        password: &str,
        device_id: Option<String>,
        display_name: Option<&str>,
    ) -> Result<LoginResult> {
        let user_id = self
            .user_id_from(user)
            .map_err(|_| Error::forbidden("invalid username or password"))?;
        if !self.check_password(&user_id, password).await? {
            return Err(Error::forbidden("invalid username or password"));
        }
        self.login_new_device(&user_id, device_id, display_name)
            .await
    }

    pub async fn exists(&self, user_id: &UserId) -> Result<bool> {
        Ok(self.users.user(user_id).await?.is_some())
    }

    pub async fn check_password(&self, user_id: &UserId, password: &str) -> Result<bool> {
        let Some(user) = self.users.user(user_id).await? else {
            return Ok(false);
        };
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

    /// The session behind an access token, or `M_UNKNOWN_TOKEN`.
    pub async fn authenticate(&self, access_token: &str) -> Result<Session> {
        if let Some(s) = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(access_token)
        {
            return Ok(s.clone());
        }
        match self.users.find_token(access_token).await? {
            Some((user_id, device_id)) => {
                let session = Session::new(user_id, device_id);
                self.tokens
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(access_token.to_owned(), session.clone());
                Ok(session)
            }
            None => Err(Error::matrix(
                ErrorCode::UnknownToken,
                "unknown or expired access token",
            )),
        }
    }

    fn forget_tokens(&self, tokens: &[String]) {
        let mut cache = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        for t in tokens {
            cache.remove(t);
        }
    }

    pub async fn logout(&self, session: &Session) -> Result<()> {
        let tokens = self
            .users
            .delete_devices(&session.user_id, std::slice::from_ref(&session.device_id))
            .await?;
        self.forget_tokens(&tokens);
        Ok(())
    }

    pub async fn logout_all(&self, user_id: &UserId) -> Result<()> {
        let tokens = self.users.delete_tokens_except(user_id, None).await?;
        let devices: Vec<String> = self
            .users
            .devices(user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
        let more = self.users.delete_devices(user_id, &devices).await?;
        self.forget_tokens(&tokens);
        self.forget_tokens(&more);
        Ok(())
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
            let others: Vec<String> = self
                .users
                .devices(&session.user_id)
                .await?
                .into_iter()
                .map(|d| d.device_id)
                .filter(|d| *d != session.device_id)
                .collect();
            let tokens = self.users.delete_devices(&session.user_id, &others).await?;
            self.forget_tokens(&tokens);
        }
        Ok(())
    }

    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRecord>> {
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

    pub async fn delete_devices(&self, user_id: &UserId, device_ids: &[String]) -> Result<()> {
        let tokens = self.users.delete_devices(user_id, device_ids).await?;
        self.forget_tokens(&tokens);
        Ok(())
    }

    pub async fn touch(&self, session: &Session, ip: Option<&str>) -> Result<()> {
        self.users
            .touch_device(&session.user_id, &session.device_id, crate::now_ms(), ip)
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
        self.users
            .set_profile(user_id, displayname, avatar_url)
            .await
    }

    pub async fn search(&self, term: &str, limit: usize) -> Result<Vec<UserRecord>> {
        self.users.search_users(term, limit).await
    }
}

/// The threads that do all password hashing. Argon2 takes 19 MiB per hash; running it on a
/// fixed pair of threads bounds that memory (the allocator keeps freed memory per thread).
struct HashPool {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HashPool {
    fn new(threads: usize) -> Self {
        let (jobs, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name("password-hash".into())
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        HashPool { jobs }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| Error::internal("password hashing stopped"))?;
        rx.await
            .map_err(|_| Error::internal("password hashing failed"))
    }

    async fn hash(&self, password: &str) -> Result<String> {
        let password = password.to_owned();
        self.run(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(Error::internal)
        })
        .await?
    }
}
