-- Refresh tokens of devices (Sandcat sessions; Matrix refresh tokens later): deleting a device
-- deletes them, and using one to rotate it replaces the row, so each is used once.
CREATE TABLE refresh_tokens (
    token     TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

-- Emailed verification codes (Sandcat registration and password change), shared by every
-- instance: a code is used once, expires, and is gone after a few wrong tries.
CREATE TABLE verification_codes (
    email      TEXT PRIMARY KEY,
    code       TEXT NOT NULL,
    issued_ms  INTEGER NOT NULL,
    tries      INTEGER NOT NULL DEFAULT 0
);
