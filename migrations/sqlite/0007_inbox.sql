-- The per-user inbox: a copy of each room message for every local member of its room (and its
-- sender), at the event's stream position; filled by the inbox indexer, read by Sandcat
-- offline delivery. Deletions by the user remove entries, so the old table of hidden
-- positions goes.
CREATE TABLE inbox (
    user_id  TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    sent     INTEGER NOT NULL,
    event    TEXT NOT NULL,
    ts       INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX inbox_event ON inbox (event_id);

-- How far the indexer got in the stream.
CREATE TABLE inbox_indexed (
    id  INTEGER PRIMARY KEY CHECK (id = 0),
    pos INTEGER NOT NULL
);
INSERT INTO inbox_indexed (id, pos) VALUES (0, 0);

DROP TABLE native_deleted;
