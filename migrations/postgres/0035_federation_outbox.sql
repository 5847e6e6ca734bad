-- EDUs that must reach another server (to-device messages, device-list and signing-key
-- changes), each at a stream position of its own, kept until the destination accepts the
-- transaction that carries it.
CREATE TABLE federation_outbox (
    pos         BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    edu         TEXT NOT NULL
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, pos);
