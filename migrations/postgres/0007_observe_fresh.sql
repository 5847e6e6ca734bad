-- `stream_observe` reads the open transactions afresh even when it is called inside a
-- transaction: PostgreSQL otherwise keeps the activity list it read first for the rest of
-- that transaction, and a frozen list would let a reader pass a position still being written.
CREATE OR REPLACE FUNCTION stream_observe(app TEXT) RETURNS TABLE (head BIGINT, running TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    h BIGINT;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO h FROM stream_seq;
    PERFORM pg_stat_clear_snapshot();
    RETURN QUERY
        SELECT h, COALESCE(string_agg(a.backend_xid::text, ','), '')
        FROM pg_stat_activity a
        WHERE a.datname = current_database() AND a.application_name = app
          AND a.backend_xid IS NOT NULL;
END
$$;
