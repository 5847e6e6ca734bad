-- Media: one row per content URI of this server. The bytes live in the media store (files
-- under the data directory, or S3 in the pipeline); thumbnails are stored beside them.
CREATE TABLE media (
    media_id     TEXT PRIMARY KEY,
    uploader     TEXT NOT NULL,
    content_type TEXT,
    filename     TEXT,
    size         INTEGER NOT NULL DEFAULT 0,
    created_ts   INTEGER NOT NULL,
    uploaded     INTEGER NOT NULL DEFAULT 0
);
