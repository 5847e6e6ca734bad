-- Stream positions without a cluster-wide lock. Positions come from a sequence, which hands
-- them out without waiting for anyone's commit, so writers of different rooms on any number
-- of instances commit concurrently and out of position order. Readers then publish a
-- position only once every transaction that could still commit a position at or below it
-- has ended: `stream_observe` reads the sequence's head and then which of Sandcat's
-- transactions are open; the head is safe once all of those have ended. A writer takes a
-- transaction id before its first position (`stream_take`), so a transaction holding a
-- position is always among them.
CREATE SEQUENCE stream_seq;
SELECT setval('stream_seq', GREATEST(pos, 1), pos > 0) FROM stream_pos;
DROP TABLE stream_pos;

CREATE FUNCTION stream_take(n BIGINT) RETURNS SETOF BIGINT LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_current_xact_id();
    RETURN QUERY SELECT nextval('stream_seq') FROM generate_series(1, n);
END
$$;

-- The head, then the transactions of Sandcat's connections (`application_name = app`) in this
-- database that hold a transaction id. A snapshot would not do: it lists only transactions
-- below the latest one completed, and a newer open one is exactly what must be waited for.
-- Each statement of a volatile function reads the state anew, so the list is taken after
-- the head was read.
CREATE FUNCTION stream_observe(app TEXT) RETURNS TABLE (head BIGINT, running TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h BIGINT;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO h FROM stream_seq;
    RETURN QUERY
        SELECT h, COALESCE(string_agg(a.backend_xid::text, ','), '')
        FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.application_name = app
          AND a.backend_xid IS NOT NULL;
END
$$;
