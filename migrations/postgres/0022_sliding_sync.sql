-- Sliding-sync connections: the positions each connection of a device was answered with,
-- and what the client was told by then (JSON). A connection keeps its latest position and
-- the one before (a retried request), until unused for a week.
CREATE TABLE sliding_positions (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    pos TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, conn_id, pos)
);
CREATE INDEX sliding_positions_created ON sliding_positions (created_ts);
