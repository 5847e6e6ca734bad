-- Inbox entries are numbered with their owner's own counters: `seq` counts what the user
-- received, `send_seq` what they sent, each without gaps (Sandcat clients pull whenever a
-- number is skipped). `pos` keeps the stream position, for stream order and live delivery.
-- Entries from before keep their stream position as their number, and the counters start
-- from there, so a client's numbers stay valid.
CREATE TABLE inbox_numbered (
    user_id  TEXT NOT NULL,
    sent     INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    pos      INTEGER NOT NULL,
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event    TEXT NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (user_id, sent, seq)
);
INSERT INTO inbox_numbered (user_id, sent, seq, pos, room_id, event_id, event, ts)
    SELECT user_id, sent, seq, seq, room_id, event_id, event, ts FROM inbox;
DROP TABLE inbox;
ALTER TABLE inbox_numbered RENAME TO inbox;
CREATE INDEX inbox_event ON inbox (event_id);
CREATE INDEX inbox_user_pos ON inbox (user_id, pos);

-- The latest numbers of each user; deleting entries does not lower them.
CREATE TABLE inbox_counters (
    user_id  TEXT PRIMARY KEY,
    seq      INTEGER NOT NULL,
    send_seq INTEGER NOT NULL
);
INSERT INTO inbox_counters (user_id, seq, send_seq)
    SELECT user_id,
           MAX(CASE WHEN sent = 0 THEN seq ELSE 0 END),
           MAX(CASE WHEN sent = 1 THEN seq ELSE 0 END)
    FROM inbox GROUP BY user_id;
