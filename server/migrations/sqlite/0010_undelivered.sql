-- Transactions toward a peer that will not be delivered: refused by the
-- peer for good (`refused` 1, a dead letter) or undelivered within the
-- horizon (`refused` 0). Each keeps what it carried (`payload`, the
-- encoded transaction as queued) until the operator delivers it again
-- (`replayed_as`: its new seq toward the peer). The sender, if one of this
-- server's parties, was told in its log: `party`, `event_seq`, and what the
-- event shows (`notice`, an encoded `kanal.v1.DeliveryFailed`), read with
-- the log.
CREATE TABLE undelivered (
    peer           TEXT    NOT NULL,
    seq            INTEGER NOT NULL,
    refused        INTEGER NOT NULL,
    reason         TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    enqueued_at_ms INTEGER NOT NULL,
    failed_at_ms   INTEGER NOT NULL,
    party          INTEGER,
    event_seq      INTEGER,
    key            INTEGER,
    notice         BLOB,
    replayed_as    INTEGER,
    PRIMARY KEY (peer, seq)
) WITHOUT ROWID;

CREATE UNIQUE INDEX undelivered_by_event ON undelivered (party, event_seq);
