-- Outliers: events of other servers kept for what they authorize, with no place in the
-- stream or in history. They take positions below zero from this sequence, counting down.
-- (SQLite, one writer, takes the lowest position less one.)
CREATE SEQUENCE outlier_seq INCREMENT BY -1 MAXVALUE -1 START WITH -1;
