//! An account's standing with the server: whether its user administers the server, and
//! whether an administrator suspended (read-only) or locked (no access) it. Kept with the
//! account in the store, so that every instance reads the same answer.

use async_trait::async_trait;
use ruma::UserId;

use crate::Result;

/// What an account may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Standing {
    /// Everything its permissions allow.
    #[default]
    Active,
    /// It reads, leaves, redacts and manages its devices and keys, but adds nothing new to
    /// rooms or profiles (`M_USER_SUSPENDED`).
    Suspended,
    /// Every request but logging out is refused (`M_USER_LOCKED`, `soft_logout`).
    Locked,
}

/// The flags an administrator sets on an account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountFlags {
    /// The user administers the server (may suspend and lock accounts).
    pub admin: bool,
    pub suspended: bool,
    pub locked: bool,
}

impl AccountFlags {
    /// The account's standing: locking outranks suspension.
    pub fn standing(&self) -> Standing {
        if self.locked {
            Standing::Locked
        } else if self.suspended {
            Standing::Suspended
        } else {
            Standing::Active
        }
    }
}

/// One of the flags of [`AccountFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountFlag {
    Admin,
    Suspended,
    Locked,
}

#[async_trait]
pub trait AccountStanding: Send + Sync {
    /// The flags of a user of this server; `None` when there is no such account.
    async fn account_flags(&self, user: &UserId) -> Result<Option<AccountFlags>>;
    /// Sets or clears one flag; `false` when there is no such account.
    async fn set_account_flag(&self, user: &UserId, flag: AccountFlag, on: bool) -> Result<bool>;
}
