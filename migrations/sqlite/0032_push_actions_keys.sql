-- Cheaper to write: the table is its primary key (position, user), so a notification is
-- appended at its end as events are, and the push senders read recent ranges of it. One
-- index by user serves the unread counts (a room's main timeline is one range of it from
-- the user's floor) and `/notifications`; every extra tree keyed by user costs a page write
-- per notification. Forgetting old notifications (hourly) scans the table rather than
-- keeping an index on `ts`.
CREATE TABLE push_actions_keyed (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    pos       INTEGER NOT NULL,
    event_id  TEXT NOT NULL,
    -- The thread root; '' on the main timeline.
    thread_id TEXT NOT NULL DEFAULT '',
    highlight INTEGER NOT NULL, -- 1: highlighted
    actions   TEXT NOT NULL,
    ts        INTEGER NOT NULL,
    PRIMARY KEY (pos, user_id)
) WITHOUT ROWID;
INSERT INTO push_actions_keyed
    SELECT user_id, room_id, pos, event_id, thread_id, highlight, actions, ts FROM push_actions;
DROP TABLE push_actions;
ALTER TABLE push_actions_keyed RENAME TO push_actions;
CREATE INDEX push_actions_room ON push_actions (user_id, room_id, thread_id, pos, highlight);
