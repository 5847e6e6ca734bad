-- Events filled into a room's history later (backfilled) take positions below zero, counting
-- down from -1: in history, never in the stream. Outliers move below -2^62, out of their way
-- (they keep their sequence, offset by -2^62); a history reader's floor is -2^62 at the
-- lowest, so it never meets one.
UPDATE events SET pos = pos - 4611686018427387904 WHERE pos < 0;
CREATE SEQUENCE backfill_seq INCREMENT BY -1 MAXVALUE -1 START WITH -1;
