//! Extended profile fields (spec 1.16): fields beyond the display name and avatar, read by
//! anyone who may read the profile and written by the user alone. A field's name is at most
//! 255 bytes; a whole profile at most 64 KiB of JSON.

use ruma::UserId;
use serde_json::Value;

use super::Accounts;
use crate::{error::ErrorCode, services::Session, Error, Result};

/// The longest field name.
pub const MAX_FIELD_NAME: usize = 255;
/// The largest profile, all its fields as JSON.
pub const MAX_PROFILE_BYTES: usize = 64 * 1024;

/// The fields kept by the account itself, with their own endpoints and propagation.
const CORE_FIELDS: &[&str] = &["displayname", "avatar_url"];

impl Accounts {
    /// The extended fields of a local user's profile (`M_NOT_FOUND` for nobody).
    pub async fn profile_fields(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        if self.user(user_id).await?.is_none() {
            return Err(Error::not_found("profile not found"));
        }
        self.users.profile_fields(user_id).await
    }

    /// One extended field, or `M_NOT_FOUND`.
    pub async fn profile_field(&self, user_id: &UserId, field: &str) -> Result<Value> {
        self.profile_fields(user_id)
            .await?
            .into_iter()
            .find(|(name, _)| name == field)
            .map(|(_, v)| v)
            .ok_or_else(|| Error::not_found(format!("the profile has no {field}")))
    }

    /// Sets one of the user's own extended fields.
    pub async fn set_profile_field(
        &self,
        session: &Session,
        user_id: &UserId,
        field: &str,
        value: Value,
    ) -> Result<()> {
        check_field(session, user_id, field)?;
        let mut fields = self.users.profile_fields(user_id).await?;
        fields.retain(|(name, _)| name != field);
        let size: usize = fields
            .iter()
            .map(|(name, v)| name.len() + v.to_string().len())
            .sum::<usize>()
            + field.len()
            + value.to_string().len();
        if size > MAX_PROFILE_BYTES {
            return Err(Error::matrix(
                ErrorCode::TooLarge,
                format!("a profile holds at most {MAX_PROFILE_BYTES} bytes"),
            ));
        }
        self.users.set_profile_field(user_id, field, &value).await
    }

    /// Removes one of the user's own extended fields.
    pub async fn delete_profile_field(
        &self,
        session: &Session,
        user_id: &UserId,
        field: &str,
    ) -> Result<()> {
        check_field(session, user_id, field)?;
        self.users.delete_profile_field(user_id, field).await?;
        Ok(())
    }
}

fn check_field(session: &Session, user_id: &UserId, field: &str) -> Result<()> {
    if session.user_id != user_id {
        return Err(Error::forbidden("you may only change your own profile"));
    }
    session.ensure_may_add()?;
    if field.is_empty() || field.len() > MAX_FIELD_NAME {
        return Err(Error::matrix(
            ErrorCode::TooLarge,
            format!("a field name is 1 to {MAX_FIELD_NAME} bytes"),
        ));
    }
    if CORE_FIELDS.contains(&field) {
        return Err(Error::invalid_param(format!(
            "{field} has its own endpoint"
        )));
    }
    Ok(())
}
