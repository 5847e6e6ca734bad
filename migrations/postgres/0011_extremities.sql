-- The forward extremities of each room: its events that no other event names as a prev event
-- yet, with their depth. While only this server writes to a room there is one, its last event;
-- events from other servers can fork a room, and a local event then names them all. They
-- replace the single head the rooms table kept (`last_event_id`, `depth`).
CREATE TABLE room_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    depth    BIGINT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
INSERT INTO room_extremities (room_id, event_id, depth)
    SELECT room_id, last_event_id, depth FROM rooms;
ALTER TABLE rooms DROP COLUMN last_event_id;
ALTER TABLE rooms DROP COLUMN depth;
