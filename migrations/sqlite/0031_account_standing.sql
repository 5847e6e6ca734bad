-- An account's standing: its user administers the server; an administrator suspended it
-- (read-only) or locked it (no access). 1: set.
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
