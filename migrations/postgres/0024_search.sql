-- Message search: a GIN index of the text of messages (`body`), room names and topics, as
-- `tsvector`s of the `simple` configuration (no stemming: rooms speak every language). The
-- search query repeats this expression word for word so that the planner uses the index
-- (backends/src/sql/search.rs, `PG_SEARCH_TEXT`).
CREATE INDEX events_search ON events USING GIN (
    to_tsvector('simple'::regconfig, COALESCE(
        CAST(json AS jsonb) -> 'content' ->> 'body',
        CAST(json AS jsonb) -> 'content' ->> 'name',
        CAST(json AS jsonb) -> 'content' ->> 'topic',
        ''))
) WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic');
