//! The services the protocol crates call. Each holds only the handles it uses.

pub mod accounts;
pub mod data;
pub mod deactivation;
pub mod federation;
pub mod key_backup;
pub mod keys;
pub mod media;
pub mod openid;
pub mod push;
pub mod registration_tokens;
pub mod reports;
pub mod rooms;
pub mod server_keys;
pub mod sync;
pub mod third_party_invites;
pub mod threepids;
pub mod url_previews;
pub mod voip;

/// A user acting through a device.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: ruma::OwnedUserId,
    /// Empty for an application service acting without a device.
    pub device_id: String,
    /// The application service acting for the user, if the token was an `as_token`.
    pub appservice: Option<String>,
    /// What the account may do, as of the request's authentication.
    pub standing: crate::ports::Standing,
}

impl Session {
    pub fn new(user_id: ruma::OwnedUserId, device_id: String) -> Self {
        Session {
            user_id,
            device_id,
            appservice: None,
            standing: crate::ports::Standing::Active,
        }
    }

    /// The session with the account's standing.
    pub fn with_standing(mut self, standing: crate::ports::Standing) -> Self {
        self.standing = standing;
        self
    }

    /// Refuses what a suspended (`M_USER_SUSPENDED`) or locked (`M_USER_LOCKED`) account may
    /// not do: add to rooms, their membership or the user's profile.
    pub fn ensure_may_add(&self) -> crate::Result<()> {
        match self.standing {
            crate::ports::Standing::Active => Ok(()),
            crate::ports::Standing::Suspended => Err(crate::Error::matrix(
                crate::ErrorCode::UserSuspended,
                "this account is suspended: it may read, leave and redact, not add",
            )),
            crate::ports::Standing::Locked => Err(crate::Error::matrix(
                crate::ErrorCode::UserLocked,
                "this account is locked",
            )),
        }
    }
}
