-- Sandcat pipeline schema (PostgreSQL), shared by every instance. The same tables as the
-- embedded SQLite schema; integers are BIGINT throughout. Every persistent write takes a position from one stream
-- (events, account data, receipts), which orders /sync.

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT,
    displayname   TEXT,
    avatar_url    TEXT,
    deactivated   BIGINT NOT NULL DEFAULT 0,
    created_ts    BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    token     TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    is_public     BIGINT NOT NULL DEFAULT 0,
    last_event_id TEXT NOT NULL,
    depth         BIGINT NOT NULL
);

CREATE TABLE events (
    pos         BIGINT PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,
    room_id     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    type        TEXT NOT NULL,
    state_key   TEXT,
    json        TEXT NOT NULL,
    unsigned    TEXT,
    redacted_by TEXT,
    txn_user    TEXT,
    txn_device  TEXT,
    txn_id      TEXT,
    relates_to  TEXT,
    rel_type    TEXT
);
CREATE INDEX events_room_pos ON events (room_id, pos);
CREATE INDEX events_relates ON events (relates_to);
CREATE UNIQUE INDEX events_txn ON events (txn_user, txn_device, txn_id) WHERE txn_id IS NOT NULL;

CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    type       TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    pos        BIGINT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);
CREATE INDEX current_state_user ON current_state (state_key, type);

CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL DEFAULT '',
    type    TEXT NOT NULL,
    content TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX account_data_pos ON account_data (user_id, pos);

CREATE TABLE filters (
    user_id   TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    json      TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    thread_id    TEXT NOT NULL DEFAULT '',
    event_id     TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    pos          BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_pos ON receipts (room_id, pos);

-- End-to-end encryption support: device keys, one-time and fallback keys, cross-signing keys,
-- and the to-device inbox. Positions come from the same stream as everything else.

CREATE TABLE device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX device_keys_pos ON device_keys (pos);

CREATE TABLE one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    json      TEXT NOT NULL,
    fallback  BIGINT NOT NULL DEFAULT 0,
    used      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm, key_id, fallback)
);

CREATE TABLE cross_signing_keys (
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    json    TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE INDEX cross_signing_keys_pos ON cross_signing_keys (pos);

CREATE TABLE to_device (
    pos       BIGINT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    json      TEXT NOT NULL
);
CREATE INDEX to_device_target ON to_device (user_id, device_id, pos);

-- Application services: where each one's transaction stream stands.
CREATE TABLE appservice_state (
    appservice_id TEXT PRIMARY KEY,
    last_pos      BIGINT NOT NULL,
    next_txn      BIGINT NOT NULL,
    pending_txn   BIGINT,
    pending_upto  BIGINT,
    pending_body  TEXT
);

-- Sandcat native API: what Sandcat clients know about users beyond the Matrix profile,
-- friend requests and friendships (each friendship is a Matrix DM room), and inbox entries a
-- user deleted.
CREATE TABLE native_profiles (
    user_id     TEXT PRIMARY KEY,
    email       TEXT UNIQUE,
    phone       TEXT UNIQUE,
    gender      TEXT NOT NULL DEFAULT '',
    age         BIGINT NOT NULL DEFAULT 0,
    region      TEXT,
    address     TEXT,
    birthday    BIGINT,
    signature   TEXT NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);

CREATE TABLE native_friendships (
    fs_id       TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    status      BIGINT NOT NULL,
    apply_msg   TEXT,
    req_remark  TEXT,
    resp_msg    TEXT,
    resp_remark TEXT,
    source      TEXT NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX native_friendships_friend ON native_friendships (friend_id, status);

CREATE TABLE native_friends (
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    fs_id       TEXT NOT NULL,
    status      BIGINT NOT NULL,
    remark      TEXT,
    source      TEXT NOT NULL DEFAULT '',
    room_id     TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX native_friends_room ON native_friends (room_id);

CREATE TABLE native_deleted (
    user_id TEXT NOT NULL,
    pos     BIGINT NOT NULL,
    PRIMARY KEY (user_id, pos)
);

-- Media: one row per content URI of this server. The bytes live in the media store (files
-- under the data directory, or S3 in the pipeline); thumbnails are stored beside them.
CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    uploader     TEXT NOT NULL,
    content_type TEXT,
    filename     TEXT,
    size         BIGINT NOT NULL DEFAULT 0,
    created_ts   BIGINT NOT NULL,
    uploaded     BIGINT NOT NULL DEFAULT 0
);

-- The stream position as a row: every positioned write bumps it inside its transaction, so
-- positions commit in order across instances. `stream_changes` is what each position changed,
-- read by the other instances; `bus_batches` makes sequencing idempotent when Kafka redelivers
-- a batch, and carries its outcome back to the instance that submitted it.
CREATE TABLE stream_pos (
    id  BIGINT PRIMARY KEY CHECK (id = 0),
    pos BIGINT NOT NULL
);
INSERT INTO stream_pos (id, pos) VALUES (0, 0);

CREATE TABLE stream_changes (
    pos    BIGINT NOT NULL,
    change TEXT NOT NULL
);
CREATE INDEX stream_changes_pos ON stream_changes (pos);

CREATE TABLE bus_batches (
    batch_id  TEXT PRIMARY KEY,
    event_ids TEXT,
    error     TEXT,
    ts        BIGINT NOT NULL
);
