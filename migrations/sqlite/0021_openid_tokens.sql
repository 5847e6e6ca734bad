-- OpenID tokens a user asked for (`/user/{userId}/openid/request_token`), which a third party
-- (an integration manager, a call's media service) trades for the user's id at
-- `/_matrix/federation/v1/openid/userinfo`. Each expires after an hour.
CREATE TABLE openid_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    expires_ts BIGINT NOT NULL
);
CREATE INDEX openid_tokens_expiry ON openid_tokens (expires_ts);
