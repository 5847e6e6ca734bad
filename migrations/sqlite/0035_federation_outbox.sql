-- EDUs for other servers, each at a stream position of its own, kept until the destination
-- accepts the transaction that carries it. Ephemeral ones (typing, receipts, presence) carry
-- when they stop being worth sending (ms since the epoch).
CREATE TABLE federation_outbox (
    pos         INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    edu         TEXT NOT NULL,
    expires_ts  BIGINT
);
CREATE INDEX federation_outbox_destination ON federation_outbox (destination, pos);
