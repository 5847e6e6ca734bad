-- Message search: an FTS5 index of the text of messages (`body`), room names and topics,
-- one row per event, its rowid the event's stream position. Kept by triggers: an event is
-- indexed when stored and forgotten when redacted. Outliers are never indexed.
CREATE VIRTUAL TABLE event_search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2');

CREATE TRIGGER event_search_add AFTER INSERT ON events
WHEN new.type IN ('m.room.message', 'm.room.name', 'm.room.topic')
     AND new.pos > -4611686018427387904 AND new.redacted_by IS NULL
BEGIN
    INSERT INTO event_search (rowid, body) VALUES (
        new.pos,
        COALESCE(json_extract(new.json, '$.content.body'), json_extract(new.json, '$.content.name'),
                 json_extract(new.json, '$.content.topic'), '')
    );
END;

CREATE TRIGGER event_search_redact AFTER UPDATE OF redacted_by ON events
WHEN new.redacted_by IS NOT NULL
BEGIN
    DELETE FROM event_search WHERE rowid = new.pos;
END;

INSERT INTO event_search (rowid, body)
SELECT pos, COALESCE(json_extract(json, '$.content.body'), json_extract(json, '$.content.name'),
                     json_extract(json, '$.content.topic'), '')
FROM events
WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
  AND pos > -4611686018427387904 AND redacted_by IS NULL;
