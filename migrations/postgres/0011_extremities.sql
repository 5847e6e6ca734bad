-- The forward extremities of each room: its events that no other event names as a prev event
-- yet. While only this server writes to a room there is one, its last event; events from other
-- servers can fork a room, and a local event then names them all. `rooms.last_event_id` stays
-- the room's latest event in stream order.
CREATE TABLE room_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);
INSERT INTO room_extremities (room_id, event_id) SELECT room_id, last_event_id FROM rooms;
