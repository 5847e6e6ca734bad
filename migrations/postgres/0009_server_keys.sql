-- Signing keys of servers: this server's own (current and old) and other servers', so that a
-- signature is checked without asking the signing server again while its key is valid.
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    -- Until when (ms) the key may be used without fetching it again; 0 for this server's own.
    valid_until_ts BIGINT NOT NULL,
    -- When (ms) the key stopped signing (an old key), or NULL.
    expired_ts BIGINT,
    PRIMARY KEY (server_name, key_id)
);
