-- Events of other servers kept but not part of their room's timeline: rejected ones (failed
-- authorization against their auth events or the state before them) and soft-failed ones
-- (failed only against the room's current state). Never served, never state, never a prev
-- event of a local event; kept so that the same event is not checked again.
CREATE TABLE held_events (
    event_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL,
    json     TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT NOT NULL,
    ts       BIGINT NOT NULL
);
CREATE INDEX held_events_room ON held_events (room_id);
