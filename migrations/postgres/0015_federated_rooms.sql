-- Topological order only where it differs from the stream's. In a room only this server
-- writes to, depth grows with the stream position, so the stream orders its history; an
-- index on (room_id, depth, pos) over every event only cost every append of every room
-- (measured: ~5 % of the embedded send rate, ~15 % of send->/sync delivery latency). A room
-- becomes federated with its first event of another server; from then on its events (those
-- before included) are flagged, and only those are indexed by depth.
DROP INDEX events_room_depth;
ALTER TABLE rooms ADD COLUMN federated BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE events ADD COLUMN federated BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX events_room_depth ON events (room_id, depth, pos) WHERE federated;
