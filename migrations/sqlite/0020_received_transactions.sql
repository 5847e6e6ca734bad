-- Transactions other servers sent, by origin and transaction id, with the answer they got: a
-- retried transaction is answered the same and taken once. Kept a day.
CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX received_transactions_age ON received_transactions (origin, received_ts);
