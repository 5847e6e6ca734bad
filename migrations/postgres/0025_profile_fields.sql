-- Extended profile fields: each user's fields beyond the display name and avatar, the value
-- any JSON (as text).
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);
