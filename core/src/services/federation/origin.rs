//! What another server may speak for: its own users only.

use ruma::{ServerName, UserId};

use crate::{Error, Result};

/// Refuses a user that `origin` names but that is not one of its own.
pub fn check_user_of(origin: &ServerName, user_id: &UserId) -> Result<()> {
    if user_id.server_name() == origin {
        Ok(())
    } else {
        Err(Error::forbidden(format!(
            "{user_id} is not a user of {origin}"
        )))
    }
}
