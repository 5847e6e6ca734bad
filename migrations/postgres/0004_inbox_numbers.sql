-- Inbox entries are numbered with their owner's own counters: `seq` counts what the user
-- received, `send_seq` what they sent, each without gaps (Sandcat clients pull whenever a
-- number is skipped). `pos` keeps the stream position, for stream order and live delivery.
-- Entries from before keep their stream position as their number, and the counters start
-- from there, so a client's numbers stay valid.
ALTER TABLE inbox ADD COLUMN pos BIGINT;
UPDATE inbox SET pos = seq;
ALTER TABLE inbox ALTER COLUMN pos SET NOT NULL;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (user_id, sent, seq);
CREATE INDEX inbox_user_pos ON inbox (user_id, pos);

-- The latest numbers of each user; deleting entries does not lower them.
CREATE TABLE inbox_counters (
    user_id  TEXT PRIMARY KEY,
    seq      BIGINT NOT NULL,
    send_seq BIGINT NOT NULL
);
INSERT INTO inbox_counters (user_id, seq, send_seq)
    SELECT user_id,
           MAX(CASE WHEN sent = 0 THEN seq ELSE 0 END),
           MAX(CASE WHEN sent = 1 THEN seq ELSE 0 END)
    FROM inbox GROUP BY user_id;
