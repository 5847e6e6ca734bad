-- Access tokens handed out with a refresh token expire (milliseconds since the epoch; NULL:
-- never). An expired token is kept a while so its client is told to refresh, not to log in.
ALTER TABLE access_tokens ADD COLUMN expires_ts BIGINT;
