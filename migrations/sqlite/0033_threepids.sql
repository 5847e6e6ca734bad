-- Email addresses of accounts (3PIDs), the validation sessions that prove them (a token
-- mailed to the address), and the identity servers an address was bound through.
CREATE TABLE user_threepids (
    medium       TEXT NOT NULL,
    address      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    validated_at INTEGER NOT NULL,
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (medium, address)
);
CREATE INDEX user_threepids_user ON user_threepids (user_id);

CREATE TABLE threepid_validations (
    sid           TEXT PRIMARY KEY,
    client_secret TEXT NOT NULL,
    address       TEXT NOT NULL,
    -- register | add | password
    purpose       TEXT NOT NULL,
    token         TEXT NOT NULL,
    send_attempt  INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL,
    validated_ms  INTEGER,
    next_link     TEXT
);
CREATE INDEX threepid_validations_secret ON threepid_validations (client_secret, address, purpose);
CREATE INDEX threepid_validations_created ON threepid_validations (created_ms);

CREATE TABLE threepid_id_server_binds (
    user_id   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
