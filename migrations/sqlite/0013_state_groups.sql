-- The state of a room after each of its events, stored so that a change costs storage in
-- proportion to the change. A state group is the state after one event (`group_id` is that
-- event's id); groups form a chain per room, numbered from 0. Group 0 (the create event's, or
-- for a room older than this table the state after its last event) is stored whole; group i
-- stores only what differs from group `i & (i - 1)` of its chain (skip deltas: at most
-- log2(i) + 1 groups to read any state, at most lowbit(i) entries in group i).
CREATE TABLE state_groups (
    group_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    idx      BIGINT NOT NULL,
    base_id  TEXT
);
CREATE TABLE state_group_entries (
    group_id  TEXT NOT NULL,
    type      TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (group_id, type, state_key)
);
-- The state after each event (NULL for events older than this table, but a room's last).
ALTER TABLE events ADD COLUMN state_group TEXT;

INSERT INTO state_groups (group_id, room_id, idx, base_id)
    SELECT last_event_id, room_id, 0, NULL FROM rooms;
INSERT INTO state_group_entries (group_id, type, state_key, event_id)
    SELECT r.last_event_id, c.type, c.state_key, c.event_id
    FROM current_state c JOIN rooms r ON r.room_id = c.room_id;
UPDATE events SET state_group = event_id WHERE event_id IN (SELECT last_event_id FROM rooms);
