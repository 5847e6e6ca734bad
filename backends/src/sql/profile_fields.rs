//! Extended profile fields, one row each, the value as JSON text.

use ruma::UserId;
use sandcat_core::ports::ProfileFields;

use super::*;

#[async_trait]
impl ProfileFields for SqlStore {
    async fn profile_fields(&self, user_id: &UserId) -> Result<Vec<(String, Value)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT field, value FROM profile_fields WHERE user_id = $1 ORDER BY field",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|(field, value)| {
                Ok((
                    field,
                    serde_json::from_str(&value).map_err(Error::internal)?,
                ))
            })
            .collect()
    }

    async fn set_profile_field(&self, user_id: &UserId, field: &str, value: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
        )
        .bind(user_id.as_str())
        .bind(field)
        .bind(value.to_string())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn delete_profile_field(&self, user_id: &UserId, field: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 AND field = $2")
            .bind(user_id.as_str())
            .bind(field)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}
