-- Identities of sign-in providers (GitHub, Google) and the Sandcat user each signs in as.
CREATE TABLE oauth_identities (
    provider TEXT NOT NULL,
    subject  TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user ON oauth_identities (user_id);
