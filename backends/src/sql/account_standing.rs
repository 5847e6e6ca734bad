//! An account's flags (`admin`, `suspended`, `locked`): columns of `users`.

use ruma::UserId;
use sandcat_core::ports::{AccountFlag, AccountFlags, AccountStanding};

use super::*;

/// The column of a flag.
fn column(flag: AccountFlag) -> &'static str {
    match flag {
        AccountFlag::Admin => "admin",
        AccountFlag::Suspended => "suspended",
        AccountFlag::Locked => "locked",
    }
}

#[async_trait]
impl AccountStanding for SqlStore {
    async fn account_flags(&self, user: &UserId) -> Result<Option<AccountFlags>> {
        let row = sqlx::query("SELECT admin, suspended, locked FROM users WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(AccountFlags {
                admin: r.try_get::<i64, _>("admin").map_err(db)? != 0,
                suspended: r.try_get::<i64, _>("suspended").map_err(db)? != 0,
                locked: r.try_get::<i64, _>("locked").map_err(db)? != 0,
            })
        })
        .transpose()
    }

    async fn set_account_flag(&self, user: &UserId, flag: AccountFlag, on: bool) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE users SET {} = $1 WHERE user_id = $2",
            column(flag)
        ))
        .bind(i64::from(on))
        .bind(user.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}
