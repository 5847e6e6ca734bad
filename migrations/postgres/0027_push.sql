-- Push: what each local user's push rules asked for each event that notifies them, appended
-- with the event (`pos` is the event's stream position), and the HTTP pushers of devices.
CREATE TABLE push_actions (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    event_id  TEXT NOT NULL,
    -- The thread root; '' on the main timeline.
    thread_id TEXT NOT NULL DEFAULT '',
    highlight BIGINT NOT NULL, -- 1: highlighted
    actions   TEXT NOT NULL,
    ts        BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, pos)
);
CREATE INDEX push_actions_user_pos ON push_actions (user_id, pos);
CREATE INDEX push_actions_ts ON push_actions (ts);

CREATE TABLE pushers (
    user_id    TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    pushkey    TEXT NOT NULL,
    device_id  TEXT,
    url        TEXT NOT NULL,
    event_id_only BIGINT NOT NULL, -- 1: the event_id_only format
    body       TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
