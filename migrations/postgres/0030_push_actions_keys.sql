-- Cheaper to write: the primary key is (position, user), so a notification is appended at
-- its end as events are, and the push senders read recent ranges of it. One index by user
-- serves the unread counts (a room's main timeline is one range of it from the user's
-- floor) and `/notifications`; every extra tree keyed by user costs a page write per
-- notification. Forgetting old notifications (hourly) scans the table rather than keeping
-- an index on `ts`.
ALTER TABLE push_actions DROP CONSTRAINT push_actions_pkey;
DROP INDEX push_actions_user_pos;
DROP INDEX push_actions_ts;
ALTER TABLE push_actions ADD PRIMARY KEY (pos, user_id);
CREATE INDEX push_actions_room ON push_actions (user_id, room_id, thread_id, pos, highlight);
