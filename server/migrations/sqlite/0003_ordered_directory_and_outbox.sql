-- Every change to parties and inbox agents now goes through the writer, in
-- order with every message: no cache polls a version any more.
DROP TABLE directory;

-- The durable queue toward each peer server, written in the same
-- transaction as the change it carries. `seq` is contiguous per peer, so the
-- peer acknowledges cumulatively.
CREATE TABLE outbox (
    peer    TEXT    NOT NULL,
    seq     INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    PRIMARY KEY (peer, seq)
) WITHOUT ROWID;
