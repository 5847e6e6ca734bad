-- Login tokens (`login/get_token`): single-use, short-lived, until `expires_ts` (ms).
CREATE TABLE login_tokens (
    token TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
