-- The stream position as a row: every positioned write bumps it inside its transaction, so
-- positions commit in order. `stream_changes` is what each position changed (kept on
-- PostgreSQL, where several instances write); `bus_batches` makes sequencing idempotent when
-- the event bus redelivers a batch.
CREATE TABLE stream_pos (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    pos INTEGER NOT NULL
);
INSERT INTO stream_pos (id, pos)
SELECT 0, MAX(p) FROM (
    SELECT COALESCE(MAX(pos), 0) AS p FROM events
    UNION ALL SELECT COALESCE(MAX(pos), 0) FROM account_data
    UNION ALL SELECT COALESCE(MAX(pos), 0) FROM receipts
    UNION ALL SELECT COALESCE(MAX(pos), 0) FROM device_keys
    UNION ALL SELECT COALESCE(MAX(pos), 0) FROM cross_signing_keys
    UNION ALL SELECT COALESCE(MAX(pos), 0) FROM to_device
);

CREATE TABLE stream_changes (
    pos    INTEGER NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX stream_changes_pos ON stream_changes (pos);

CREATE TABLE bus_batches (
    batch_id  TEXT PRIMARY KEY,
    event_ids TEXT,
    error     TEXT,
    ts        INTEGER NOT NULL
);
