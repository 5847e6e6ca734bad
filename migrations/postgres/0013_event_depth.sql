-- Each event's depth, for the topological order of a room's history (`/messages`,
-- `/context`): depth, then stream position. Events of other servers arrive in any order, so
-- the stream alone no longer orders a room's history.
ALTER TABLE events ADD COLUMN depth BIGINT NOT NULL DEFAULT 0;
UPDATE events SET depth = COALESCE((json::jsonb ->> 'depth')::bigint, 0);
CREATE INDEX events_room_depth ON events (room_id, depth, pos);
