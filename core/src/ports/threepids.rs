//! Third-party identifiers (3PIDs): email addresses proven by a token mailed to them, kept
//! with the account they identify, and the validation sessions that prove them.

use async_trait::async_trait;
use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::Result;

/// What a validation session proves an address for; a session proves it for that only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationPurpose {
    /// Registering a new account with the address (`/register/email/requestToken`).
    Register,
    /// Adding the address to an account (`/account/3pid/email/requestToken`).
    AddToAccount,
    /// Resetting the password of the account with the address
    /// (`/account/password/email/requestToken`).
    PasswordReset,
}

impl ValidationPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationPurpose::Register => "register",
            ValidationPurpose::AddToAccount => "add",
            ValidationPurpose::PasswordReset => "password",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "register" => Some(ValidationPurpose::Register),
            "add" => Some(ValidationPurpose::AddToAccount),
            "password" => Some(ValidationPurpose::PasswordReset),
            _ => None,
        }
    }
}

/// A validation session: a token mailed to `address`, for one purpose, tied to the client's
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationSession {
    pub sid: String,
    pub client_secret: String,
    /// The address, canonical (lower case).
    pub address: String,
    pub purpose: ValidationPurpose,
    /// The token mailed.
    pub token: String,
    /// The client's highest `send_attempt` so far: a request with no higher one sends nothing.
    pub send_attempt: u64,
    /// When the session began, ms since the epoch; it expires a lifetime later.
    pub created_ms: u64,
    /// When the token came back.
    pub validated_ms: Option<u64>,
    /// Where the link in the mail leads once it is followed.
    pub next_link: Option<String>,
}

/// An address kept with an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreePid {
    /// `email` (the only medium this server validates).
    pub medium: String,
    pub address: String,
    pub validated_at: u64,
    pub added_at: u64,
}

#[async_trait]
pub trait ThreePidStore: Send + Sync {
    /// The session a client opened for `address` and `purpose` with `client_secret`.
    async fn validation_for(
        &self,
        client_secret: &str,
        address: &str,
        purpose: ValidationPurpose,
    ) -> Result<Option<ValidationSession>>;
    /// Keeps a session, new or changed (by `sid`); sessions begun before `expired_before_ms`
    /// are dropped on the way, so the table stays small.
    async fn put_validation(
        &self,
        session: &ValidationSession,
        expired_before_ms: u64,
    ) -> Result<()>;
    async fn validation(&self, sid: &str) -> Result<Option<ValidationSession>>;
    /// Marks a session's token as returned.
    async fn mark_validated(&self, sid: &str, now_ms: u64) -> Result<()>;
    /// Forgets a session (its proof was used).
    async fn delete_validation(&self, sid: &str) -> Result<()>;

    /// The addresses kept with an account.
    async fn threepids(&self, user_id: &UserId) -> Result<Vec<ThreePid>>;
    /// The account an address is kept with.
    async fn threepid_owner(&self, medium: &str, address: &str) -> Result<Option<OwnedUserId>>;
    /// Keeps an address with an account; `false` (nothing changed) when another account has
    /// it. Adding one the account has already is a success that changes nothing.
    async fn add_threepid(&self, user_id: &UserId, threepid: &ThreePid) -> Result<bool>;
    /// Removes an address from an account; `false` when the account did not have it.
    async fn remove_threepid(&self, user_id: &UserId, medium: &str, address: &str) -> Result<bool>;
    /// Removes every address of an account (deactivation).
    async fn remove_threepids(&self, user_id: &UserId) -> Result<()>;

    /// Records that an identity server binds an address of the account, so that removing
    /// the address can unbind it there.
    async fn add_id_server_bind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()>;
    /// The identity servers that bind an address of the account.
    async fn id_server_binds(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<Vec<String>>;
    /// The addresses (medium, address) some identity server binds to the account.
    async fn bound_threepids(&self, user_id: &UserId) -> Result<Vec<(String, String)>>;
    async fn remove_id_server_bind(
        &self,
        user_id: &UserId,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()>;
}

/// Identity servers, as a homeserver talks to them: binding an address an identity server
/// validated to an account, and unbinding it.
#[async_trait]
pub trait IdentityServers: Send + Sync {
    /// Asks `id_server` (a server name, with its port if any) to bind the address it
    /// validated in session `sid` to `user_id`, with the user's access token there; answers
    /// the medium and address bound. The identity server's refusal comes back as an error.
    async fn bind(
        &self,
        id_server: &str,
        id_access_token: &str,
        sid: &str,
        client_secret: &str,
        user_id: &UserId,
    ) -> Result<(String, String)>;
    /// Asks `id_server` to forget that `address` is `user_id`'s (a request signed by this
    /// server); `false` when it does not support that.
    async fn unbind(
        &self,
        id_server: &str,
        user_id: &UserId,
        medium: &str,
        address: &str,
    ) -> Result<bool>;
    /// The Matrix user `id_server` binds the address to, if any (its hashed lookup, with
    /// the user's token there).
    async fn lookup(
        &self,
        id_server: &str,
        id_access_token: &str,
        medium: &str,
        address: &str,
    ) -> Result<Option<OwnedUserId>>;
    /// Asks `id_server` to keep an invite for an address no one has bound yet (it tells the
    /// invitee, and hands the invite on once the address is bound); answers what the room's
    /// `m.room.third_party_invite` event carries.
    async fn store_invite(
        &self,
        id_server: &str,
        id_access_token: &str,
        invite: &AddressInvite,
    ) -> Result<StoredInvite>;
}

/// An invite to a room by address, as an identity server keeps it.
#[derive(Debug, Clone)]
pub struct AddressInvite {
    pub medium: String,
    pub address: String,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub room_name: Option<String>,
    pub room_avatar_url: Option<String>,
    pub room_alias: Option<String>,
    pub room_join_rules: Option<String>,
    pub room_type: Option<String>,
    pub sender_display_name: Option<String>,
    pub sender_avatar_url: Option<String>,
}

/// What an identity server answers an invite it keeps with.
#[derive(Debug, Clone)]
pub struct StoredInvite {
    /// The invite's token: the state key of the room's `m.room.third_party_invite`.
    pub token: String,
    /// The address, obscured, to show in the room.
    pub display_name: String,
    /// The keys the identity server will sign the bound invite with, each with the URL
    /// that tells whether it is still valid; the first is its long-term key.
    pub public_keys: Vec<(String, String)>,
}
