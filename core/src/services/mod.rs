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
pub mod voip;

/// A user acting through a device.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: ruma::OwnedUserId,
    /// Empty for an application service acting without a device.
    pub device_id: String,
    /// The application service acting for the user, if the token was an `as_token`.
    pub appservice: Option<String>,
}

impl Session {
    pub fn new(user_id: ruma::OwnedUserId, device_id: String) -> Self {
        Session {
            user_id,
            device_id,
            appservice: None,
        }
    }
}
