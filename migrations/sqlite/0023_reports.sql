-- Reports users make of events, rooms and users (`/rooms/{roomId}/report/{eventId}`,
-- `/rooms/{roomId}/report`, `/users/{userId}/report`), for the server's admins to read
-- (`sandcat reports`). A report names an event (with its room), a room, or a user.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    user_id TEXT,
    reason TEXT NOT NULL,
    received_ts BIGINT NOT NULL
);
