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
    seq            BIGINT  NOT NULL,
    refused        BIGINT  NOT NULL,
    reason         TEXT    NOT NULL,
    payload        BYTEA   NOT NULL,
    enqueued_at_ms BIGINT  NOT NULL,
    failed_at_ms   BIGINT  NOT NULL,
    party          BIGINT,
    event_seq      BIGINT,
    key            BIGINT,
    notice         BYTEA,
    replayed_as    BIGINT,
    PRIMARY KEY (peer, seq)
);

CREATE UNIQUE INDEX undelivered_by_event ON undelivered (party, event_seq);
