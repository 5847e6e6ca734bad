-- The inbox's events, once each: an inbox entry finds its event's JSON here by stream position
-- instead of carrying a copy (a membership change of a group of N members has N entries, so N
-- joins copied the event N² times). Entries written before keep their copy in inbox.event;
-- new ones leave it empty.
CREATE TABLE inbox_events (
    pos   BIGINT PRIMARY KEY,
    event TEXT NOT NULL
);
