//! Server administrators, and what they do to accounts: suspend them (read-only) and lock
//! them (no access), both undone as easily (`/admin/suspend`, `/admin/lock`). The flags live
//! in the store; every instance reads them when it authenticates a request (a session cache,
//! kept only when one process uses the store, is cleared by the change before it answers).

use ruma::UserId;

use super::Accounts;
use crate::{
    error::ErrorCode,
    ports::{AccountFlag, Standing},
    services::Session,
    Error, Result,
};

impl Accounts {
    /// What the account may do; a user without an account here is active (remote users,
    /// application-service users not registered).
    pub async fn standing(&self, user_id: &UserId) -> Result<Standing> {
        Ok(self
            .users
            .account_flags(user_id)
            .await?
            .map(|f| f.standing())
            .unwrap_or_default())
    }

    /// Refuses a locked account (`M_USER_LOCKED`): it opens no new session.
    pub(super) async fn ensure_not_locked(&self, user_id: &UserId) -> Result<()> {
        if self.standing(user_id).await? == Standing::Locked {
            return Err(locked());
        }
        Ok(())
    }

    /// Whether the user administers this server.
    pub async fn is_admin(&self, user_id: &UserId) -> Result<bool> {
        Ok(self
            .users
            .account_flags(user_id)
            .await?
            .is_some_and(|f| f.admin))
    }

    /// Makes a user a server administrator, or no longer one (the command line's job);
    /// `M_NOT_FOUND` when there is no such account.
    pub async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<()> {
        if !self
            .users
            .set_account_flag(user_id, AccountFlag::Admin, admin)
            .await?
        {
            return Err(Error::not_found(format!("no account {user_id}")));
        }
        tracing::info!(%user_id, admin, "server administrator flag set");
        Ok(())
    }

    /// Whether `target` has `flag` (suspended or locked), for an administrator.
    pub async fn account_flag(
        &self,
        session: &Session,
        target: &UserId,
        flag: AccountFlag,
    ) -> Result<bool> {
        // The caller is checked before the target is looked up: no one else learns which
        // accounts exist.
        self.require_admin(session).await?;
        self.local_target(target)?;
        let flags = self
            .users
            .account_flags(target)
            .await?
            .ok_or_else(|| Error::not_found(format!("no account {target}")))?;
        Ok(match flag {
            AccountFlag::Admin => flags.admin,
            AccountFlag::Suspended => flags.suspended,
            AccountFlag::Locked => flags.locked,
        })
    }

    /// Suspends or locks `target`, or undoes it, for an administrator. Takes effect on every
    /// instance with the next request.
    pub async fn set_account_flag(
        &self,
        session: &Session,
        target: &UserId,
        flag: AccountFlag,
        on: bool,
    ) -> Result<()> {
        self.require_admin(session).await?;
        self.local_target(target)?;
        if flag == AccountFlag::Admin {
            return Err(Error::forbidden(
                "administrators are named on the command line",
            ));
        }
        if !self.users.set_account_flag(target, flag, on).await? {
            return Err(Error::not_found(format!("no account {target}")));
        }
        self.cache.forget_all();
        tracing::info!(by = %session.user_id, %target, ?flag, on, "account standing changed");
        Ok(())
    }

    async fn require_admin(&self, session: &Session) -> Result<()> {
        if session.appservice.is_some() || !self.is_admin(&session.user_id).await? {
            return Err(Error::forbidden("only server administrators may do this"));
        }
        Ok(())
    }

    fn local_target(&self, target: &UserId) -> Result<()> {
        if target.server_name() != self.config.server_name {
            return Err(Error::invalid_param(format!(
                "{target} is not a user of this server"
            )));
        }
        Ok(())
    }
}

fn locked() -> Error {
    Error::matrix(ErrorCode::UserLocked, "this account is locked")
}
