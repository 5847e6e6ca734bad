-- Registration tokens (`m.login.registration_token`), created by admins from the command line.
CREATE TABLE registration_tokens (
    token        TEXT PRIMARY KEY,
    -- NULL: any number of registrations.
    uses_allowed INTEGER,
    completed    INTEGER NOT NULL DEFAULT 0,
    -- ms since the epoch; NULL: never expires.
    expiry_time  INTEGER
);
