//! Transactions other servers sent (`PUT /send/{txnId}`), kept a while so that a retried one
//! is answered as the first time and not taken twice: a sending server that lost the answer
//! sends the same transaction again, and its EDUs (to-device messages among them) must not
//! reach users twice.

use async_trait::async_trait;
use ruma::ServerName;

use crate::Result;

/// How long a transaction's answer is kept (ms): longer than any server retries one.
pub const TRANSACTION_KEPT_MS: u64 = 24 * 60 * 60 * 1000;

#[async_trait]
pub trait ReceivedTransactions: Send + Sync {
    /// The answer given to `origin`'s transaction `txn_id`, if it was taken.
    async fn transaction_answer(&self, origin: &ServerName, txn_id: &str)
        -> Result<Option<String>>;
    /// Keeps the answer to a transaction taken at `now_ms`, and forgets that origin's
    /// answers older than [`TRANSACTION_KEPT_MS`]. A transaction answered already keeps its
    /// first answer.
    async fn keep_transaction_answer(
        &self,
        origin: &ServerName,
        txn_id: &str,
        answer: &str,
        now_ms: u64,
    ) -> Result<()>;
}
