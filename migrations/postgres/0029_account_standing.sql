-- An account's standing: its user administers the server; an administrator suspended it
-- (read-only) or locked it (no access). 1: set.
ALTER TABLE users ADD COLUMN admin BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked BIGINT NOT NULL DEFAULT 0;
