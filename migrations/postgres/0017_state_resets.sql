-- Entries of a room's state that state resolution set, at the stream position of an event of
-- another server, to something other than that event says (another event, or nothing): what
-- a reader of the stream cannot learn from the timeline, told by /sync as state. Only rooms
-- other servers write to have any.
CREATE TABLE state_resets (
    room_id   TEXT NOT NULL,
    pos       BIGINT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT,
    PRIMARY KEY (room_id, pos, type, state_key)
);
