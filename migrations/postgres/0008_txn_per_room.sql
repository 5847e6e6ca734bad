-- A transaction id names one request of one device on one endpoint path, and the room is part
-- of that path: the same id sent to two rooms is two messages, not one.
DROP INDEX events_txn;
CREATE UNIQUE INDEX events_txn ON events (txn_user, txn_device, room_id, txn_id) WHERE txn_id IS NOT NULL;
