//! Email addresses of accounts (3PIDs): a token mailed to the address proves it, for one
//! purpose — registering with it, adding it to an account, or resetting the password of the
//! account that has it. The link in the mail comes back to this server
//! ([`VALIDATE_PATH`]); a client that has the token may post it ([`SUBMIT_PATH`]).
//!
//! One set of users: an email a Sandcat client registered with (its native profile) is an
//! address of the account here too, and an address added through Matrix signs in Sandcat
//! clients.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{OwnedUserId, UserId};

use crate::{
    ports::{
        IdentityServers, Mail, Mailer, NativeStore, ThreePid, ThreePidStore, ValidationPurpose,
        ValidationSession,
    },
    services::accounts::Accounts,
    Error, ErrorCode, Result, ServerConfig,
};

/// The only medium this server validates.
pub const EMAIL: &str = "email";
/// Where the link in a validation mail leads (a page that validates and says so).
pub const VALIDATE_PATH: &str = "/_sandcat/email/validate";
/// Where a client posts a token (`submit_url`).
pub const SUBMIT_PATH: &str = "/_sandcat/email/submit_token";
/// The longest address (RFC 5321's path limit).
pub const MAX_ADDRESS: usize = 254;
/// The longest `next_link`.
pub const MAX_NEXT_LINK: usize = 2000;

/// What a token request answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    pub sid: String,
    pub submit_url: String,
}

/// Whether removing an address unbound it from the identity servers that bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unbound {
    Success,
    NoSupport,
}

/// An address as it is kept: an email address trimmed and in lower case, others as given.
fn normalized(medium: &str, address: &str) -> String {
    if medium == EMAIL {
        address.trim().to_lowercase()
    } else {
        address.to_owned()
    }
}

/// The address in canonical form (lower case), or `M_INVALID_PARAM`.
pub fn canonical_email(input: &str) -> Result<String> {
    let address = input.trim().to_lowercase();
    let mut parts = address.split('@');
    let ok = matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(local), Some(domain), None)
            if !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
    ) && address.len() <= MAX_ADDRESS
        && !address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'));
    if ok {
        Ok(address)
    } else {
        Err(Error::invalid_param(format!(
            "{input:?} is not an email address"
        )))
    }
}

pub struct ThreePids {
    store: Arc<dyn ThreePidStore>,
    native: Arc<dyn NativeStore>,
    accounts: Arc<Accounts>,
    config: Arc<ServerConfig>,
    mailer: Option<Arc<dyn Mailer>>,
    identity: Option<Arc<dyn IdentityServers>>,
    lifetime_ms: u64,
}

impl ThreePids {
    /// `mailer`: `None` when no mail relay is configured (email addresses cannot be
    /// validated then); `lifetime_ms`: how long a validation session lasts.
    pub fn new(
        store: Arc<dyn ThreePidStore>,
        native: Arc<dyn NativeStore>,
        accounts: Arc<Accounts>,
        config: Arc<ServerConfig>,
        mailer: Option<Arc<dyn Mailer>>,
        lifetime_ms: u64,
    ) -> Self {
        ThreePids {
            store,
            native,
            accounts,
            config,
            mailer,
            identity: None,
            lifetime_ms,
        }
    }

    /// Talks to identity servers for `/account/3pid/bind` and unbinding.
    pub fn with_identity_servers(mut self, identity: Arc<dyn IdentityServers>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Whether addresses can be validated (a mail relay is configured).
    pub fn email_enabled(&self) -> bool {
        self.mailer.is_some()
    }

    fn mailer(&self) -> Result<&Arc<dyn Mailer>> {
        self.mailer.as_ref().ok_or_else(|| {
            Error::matrix(
                ErrorCode::ThreepidMediumNotSupported,
                "this server sends no email (no mail relay is configured)",
            )
        })
    }

    /// The account an address belongs to: kept as a 3PID, or a Sandcat profile's email.
    pub async fn owner(&self, address: &str) -> Result<Option<OwnedUserId>> {
        if let Some(user) = self.store.threepid_owner(EMAIL, address).await? {
            return Ok(Some(user));
        }
        let Some(localpart) = self.native.user_by_contact(address).await? else {
            return Ok(None);
        };
        UserId::parse_with_server_name(localpart.as_str(), &self.config.server_name)
            .map(Some)
            .map_err(Error::internal)
    }

    /// Opens (or, with a higher `send_attempt`, mails again) a validation session for
    /// `email`, and mails its token. A request whose `send_attempt` is not higher than the
    /// session's mails nothing and answers the same session.
    pub async fn request_token(
        &self,
        purpose: ValidationPurpose,
        client_secret: &str,
        email: &str,
        send_attempt: u64,
        next_link: Option<&str>,
    ) -> Result<Requested> {
        let mailer = self.mailer()?;
        let address = canonical_email(email)?;
        if let Some(link) = next_link {
            let web = link.starts_with("https://") || link.starts_with("http://");
            if !web || link.len() > MAX_NEXT_LINK {
                return Err(Error::invalid_param(
                    "next_link must be an http or https URL of at most 2000 bytes",
                ));
            }
        }
        let owner = self.owner(&address).await?;
        match (purpose, owner) {
            (ValidationPurpose::PasswordReset, None) => {
                return Err(Error::matrix(
                    ErrorCode::ThreepidNotFound,
                    "no account has this email address",
                ))
            }
            (ValidationPurpose::Register | ValidationPurpose::AddToAccount, Some(_)) => {
                return Err(Error::matrix(
                    ErrorCode::ThreepidInUse,
                    "an account has this email address already",
                ))
            }
            _ => {}
        }
        let now = crate::now_ms();
        let live = self
            .store
            .validation_for(client_secret, &address, purpose)
            .await?
            .filter(|s| self.is_live(s, now));
        let session = match live {
            Some(s) if send_attempt <= s.send_attempt => return Ok(self.requested(s.sid)),
            Some(mut s) => {
                s.send_attempt = send_attempt;
                s.next_link = next_link.map(str::to_owned);
                s
            }
            None => ValidationSession {
                sid: crate::token::random_string(18),
                client_secret: client_secret.to_owned(),
                address,
                purpose,
                token: crate::token::random_string(24),
                send_attempt,
                created_ms: now,
                validated_ms: None,
                next_link: next_link.map(str::to_owned),
            },
        };
        self.store
            .put_validation(&session, now.saturating_sub(self.lifetime_ms))
            .await?;
        mailer.send(self.mail(&session)).await?;
        tracing::info!(sid = %session.sid, purpose = purpose.as_str(), "validation mail sent");
        Ok(self.requested(session.sid))
    }

    fn requested(&self, sid: String) -> Requested {
        Requested {
            sid,
            submit_url: format!(
                "{}{SUBMIT_PATH}",
                self.config.public_base_url.trim_end_matches('/')
            ),
        }
    }

    fn is_live(&self, session: &ValidationSession, now: u64) -> bool {
        session.created_ms.saturating_add(self.lifetime_ms) > now
    }

    fn mail(&self, s: &ValidationSession) -> Mail {
        let server = &self.config.server_name;
        let (subject, what) = match s.purpose {
            ValidationPurpose::Register => (
                format!("Confirm your email address to register on {server}"),
                "register an account with this address",
            ),
            ValidationPurpose::AddToAccount => (
                format!("Confirm your email address on {server}"),
                "add this address to an account",
            ),
            ValidationPurpose::PasswordReset => (
                format!("Reset your password on {server}"),
                "reset the password of the account with this address",
            ),
        };
        let link = format!(
            "{}{VALIDATE_PATH}?sid={}&client_secret={}&token={}",
            self.config.public_base_url.trim_end_matches('/'),
            s.sid,
            s.client_secret,
            s.token
        );
        let minutes = self.lifetime_ms / 60_000;
        Mail {
            to: s.address.clone(),
            subject,
            text: format!(
                "Someone asked to {what} on {server}.\n\n\
                 If it was you, open this link within {minutes} minutes, then go back to \
                 your app:\n\n{link}\n\nor enter this code there: {}\n\n\
                 If it was not you, ignore this message.\n",
                s.token
            ),
        }
    }

    /// A token that came back (the mailed link, or a client posting it): the session is
    /// validated. Answers the session's `next_link`.
    pub async fn submit_token(
        &self,
        sid: &str,
        client_secret: &str,
        token: &str,
    ) -> Result<Option<String>> {
        let now = crate::now_ms();
        let session = self
            .store
            .validation(sid)
            .await?
            .filter(|s| s.client_secret == client_secret && self.is_live(s, now))
            .ok_or_else(|| {
                Error::matrix(
                    ErrorCode::ThreepidAuthFailed,
                    "no such validation session, or it expired: ask for a new mail",
                )
            })?;
        if !crate::token::same(session.token.as_bytes(), token.trim().as_bytes()) {
            return Err(Error::matrix(
                ErrorCode::ThreepidAuthFailed,
                "the token is not the one mailed",
            ));
        }
        if session.validated_ms.is_none() {
            self.store.mark_validated(sid, now).await?;
        }
        Ok(session.next_link)
    }

    /// The address a validated session proves for `purpose`, or `M_THREEPID_AUTH_FAILED`.
    pub async fn validated(
        &self,
        sid: &str,
        client_secret: &str,
        purpose: ValidationPurpose,
    ) -> Result<String> {
        let now = crate::now_ms();
        let session = self.store.validation(sid).await?.filter(|s| {
            s.client_secret == client_secret && s.purpose == purpose && self.is_live(s, now)
        });
        match session {
            Some(s) if s.validated_ms.is_some() => Ok(s.address),
            Some(_) => Err(Error::matrix(
                ErrorCode::ThreepidAuthFailed,
                "the email address is not validated yet: follow the link in the mail",
            )),
            None => Err(Error::matrix(
                ErrorCode::ThreepidAuthFailed,
                "no such validation session, or it expired",
            )),
        }
    }

    /// Adds the address a validated session proves to the user's account; the session is
    /// used up.
    pub async fn add_to_account(
        &self,
        user_id: &UserId,
        sid: &str,
        client_secret: &str,
        purpose: ValidationPurpose,
    ) -> Result<()> {
        let address = self.validated(sid, client_secret, purpose).await?;
        if self
            .owner(&address)
            .await?
            .is_some_and(|owner| owner != user_id)
        {
            return Err(Error::matrix(
                ErrorCode::ThreepidInUse,
                "another account has this email address",
            ));
        }
        let now = crate::now_ms();
        let threepid = ThreePid {
            medium: EMAIL.to_owned(),
            address,
            validated_at: now,
            added_at: now,
        };
        if !self.store.add_threepid(user_id, &threepid).await? {
            return Err(Error::matrix(
                ErrorCode::ThreepidInUse,
                "another account has this email address",
            ));
        }
        self.store.delete_validation(sid).await?;
        tracing::info!(%user_id, "email address added");
        Ok(())
    }

    /// Sets a new password for the account whose address a validated session proves; every
    /// session of the account ends when `logout_devices`.
    pub async fn reset_password(
        &self,
        sid: &str,
        client_secret: &str,
        new_password: &str,
        logout_devices: bool,
    ) -> Result<OwnedUserId> {
        let address = self
            .validated(sid, client_secret, ValidationPurpose::PasswordReset)
            .await?;
        let user_id = self.owner(&address).await?.ok_or_else(|| {
            Error::matrix(
                ErrorCode::ThreepidNotFound,
                "no account has this email address any more",
            )
        })?;
        self.accounts
            .reset_password(&user_id, new_password, logout_devices)
            .await?;
        self.store.delete_validation(sid).await?;
        tracing::info!(%user_id, "password reset by email");
        Ok(user_id)
    }

    /// The account's addresses: those kept as 3PIDs and its Sandcat profile's email.
    pub async fn list(&self, user_id: &UserId) -> Result<Vec<ThreePid>> {
        let mut list = self.store.threepids(user_id).await?;
        if let Some(profile) = self.native.native_profile(user_id.localpart()).await? {
            if let Some(email) = profile.email {
                if !list.iter().any(|t| t.medium == EMAIL && t.address == email) {
                    let at = u64::try_from(profile.create_time).unwrap_or_default();
                    list.push(ThreePid {
                        medium: EMAIL.to_owned(),
                        address: email,
                        validated_at: at,
                        added_at: at,
                    });
                }
            }
        }
        Ok(list)
    }

    /// Removes an address from the account (and from its Sandcat profile), unbinding it
    /// from the identity servers that bind it (or from `id_server` alone, when given).
    pub async fn remove(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: Option<&str>,
    ) -> Result<Unbound> {
        let address = normalized(medium, address);
        self.store
            .remove_threepid(user_id, medium, &address)
            .await?;
        if medium == EMAIL {
            if let Some(mut profile) = self.native.native_profile(user_id.localpart()).await? {
                if profile.email.as_deref() == Some(address.as_str()) {
                    profile.email = None;
                    profile.update_time = crate::now_ms() as i64;
                    self.native.put_native_profile(&profile).await?;
                }
            }
        }
        self.unbind(user_id, medium, &address, id_server).await
    }

    /// Unbinds an address from `id_server`, or when not given from every identity server
    /// this server bound it through.
    pub async fn unbind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: Option<&str>,
    ) -> Result<Unbound> {
        let address = &normalized(medium, address);
        let servers = match id_server {
            Some(server) => vec![server.to_owned()],
            None => self.store.id_server_binds(user_id, medium, address).await?,
        };
        if servers.is_empty() {
            return Ok(Unbound::Success);
        }
        let Some(identity) = &self.identity else {
            return Ok(Unbound::NoSupport);
        };
        let mut all = true;
        for server in servers {
            match identity.unbind(&server, user_id, medium, address).await {
                Ok(true) => {
                    self.store
                        .remove_id_server_bind(user_id, medium, address, &server)
                        .await?
                }
                Ok(false) => all = false,
                Err(e) => {
                    tracing::warn!(%user_id, id_server = %server, error = %e, "unbind failed");
                    all = false;
                }
            }
        }
        Ok(if all {
            Unbound::Success
        } else {
            Unbound::NoSupport
        })
    }

    /// Binds an address an identity server validated to the account, through that server,
    /// and remembers it for unbinding.
    pub async fn bind(
        &self,
        user_id: &UserId,
        id_server: &str,
        id_access_token: &str,
        sid: &str,
        client_secret: &str,
    ) -> Result<()> {
        let identity = self.identity.as_ref().ok_or_else(|| {
            Error::matrix(
                ErrorCode::Unknown,
                "this server does not talk to identity servers",
            )
        })?;
        let (medium, address) = identity
            .bind(id_server, id_access_token, sid, client_secret, user_id)
            .await?;
        self.store
            .add_id_server_bind(user_id, &medium, &address, id_server)
            .await
    }

    /// Forgets every address of an account (deactivation), unbinding each, and every
    /// address an identity server binds to it through this server.
    pub async fn forget(&self, user_id: &UserId) -> Result<Unbound> {
        let mut addresses: BTreeSet<(String, String)> = self
            .store
            .threepids(user_id)
            .await?
            .into_iter()
            .map(|t| (t.medium, t.address))
            .collect();
        addresses.extend(self.store.bound_threepids(user_id).await?);
        let mut result = Unbound::Success;
        for (medium, address) in addresses {
            if self.unbind(user_id, &medium, &address, None).await? == Unbound::NoSupport {
                result = Unbound::NoSupport;
            }
        }
        self.store.remove_threepids(user_id).await?;
        Ok(result)
    }
}
