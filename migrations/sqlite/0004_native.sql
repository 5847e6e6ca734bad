-- Sandcat native API: what Sandcat clients know about users beyond the Matrix profile,
-- friend requests and friendships (each friendship is a Matrix DM room), and inbox entries a
-- user deleted.
CREATE TABLE native_profiles (
    user_id     TEXT PRIMARY KEY,
    email       TEXT UNIQUE,
    phone       TEXT UNIQUE,
    gender      TEXT NOT NULL DEFAULT '',
    age         INTEGER NOT NULL DEFAULT 0,
    region      TEXT,
    address     TEXT,
    birthday    INTEGER,
    signature   TEXT NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);

CREATE TABLE native_friendships (
    fs_id       TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    status      INTEGER NOT NULL,
    apply_msg   TEXT,
    req_remark  TEXT,
    resp_msg    TEXT,
    resp_remark TEXT,
    source      TEXT NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX native_friendships_friend ON native_friendships (friend_id, status);

CREATE TABLE native_friends (
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    fs_id       TEXT NOT NULL,
    status      INTEGER NOT NULL,
    remark      TEXT,
    source      TEXT NOT NULL DEFAULT '',
    room_id     TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX native_friends_room ON native_friends (room_id);

CREATE TABLE native_deleted (
    user_id TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    PRIMARY KEY (user_id, pos)
);
