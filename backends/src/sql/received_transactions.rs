//! Transactions other servers sent, with their answers.

use ruma::ServerName;
use sandcat_core::ports::{ReceivedTransactions, TRANSACTION_KEPT_MS};

use super::*;

#[async_trait]
impl ReceivedTransactions for SqlStore {
    async fn transaction_answer(
        &self,
        origin: &ServerName,
        txn_id: &str,
    ) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT answer FROM received_transactions WHERE origin = $1 AND txn_id = $2",
        )
        .bind(origin.as_str())
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)
    }

    async fn keep_transaction_answer(
        &self,
        origin: &ServerName,
        txn_id: &str,
        answer: &str,
        now_ms: u64,
    ) -> Result<()> {
        let now = i64::try_from(now_ms).unwrap_or(i64::MAX);
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM received_transactions WHERE origin = $1 AND received_ts < $2")
            .bind(origin.as_str())
            .bind(now.saturating_sub(TRANSACTION_KEPT_MS as i64))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "INSERT INTO received_transactions (origin, txn_id, answer, received_ts) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (origin, txn_id) DO NOTHING",
        )
        .bind(origin.as_str())
        .bind(txn_id)
        .bind(answer)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }
}
