-- Application services: where each one's transaction stream stands.
CREATE TABLE appservice_state (
    appservice_id TEXT PRIMARY KEY,
    last_pos      INTEGER NOT NULL,
    next_txn      INTEGER NOT NULL,
    pending_txn   INTEGER,
    pending_upto  INTEGER,
    pending_body  TEXT
);
