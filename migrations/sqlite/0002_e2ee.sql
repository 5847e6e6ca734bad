-- End-to-end encryption support: device keys, one-time and fallback keys, cross-signing keys,
-- and the to-device inbox. Positions come from the same stream as everything else.

CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    pos       INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX device_keys_pos ON device_keys (pos);

CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    fallback  INTEGER NOT NULL DEFAULT 0,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm, key_id, fallback)
);

CREATE TABLE cross_signing_keys (
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    json    TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE INDEX cross_signing_keys_pos ON cross_signing_keys (pos);

CREATE TABLE to_device (
    pos       INTEGER PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL
);
CREATE INDEX to_device_target ON to_device (user_id, device_id, pos);
