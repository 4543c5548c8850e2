-- When each outbox row was queued, ms since the Unix epoch: how long a peer
-- has kept the queue toward it waiting. Rows queued before this column
-- existed read 0.
ALTER TABLE outbox ADD COLUMN enqueued_at_ms BIGINT NOT NULL DEFAULT 0;

-- The peer servers the operator configured: where each is reached
-- (host:port) and the SHA-256 of its certificate, in lowercase hex, that
-- its connections must present. Removing a peer keeps its outbox and
-- cursors.
CREATE TABLE peers (
    domain      TEXT    PRIMARY KEY,
    address     TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    added_at_ms BIGINT  NOT NULL
);

-- Where federation stands with each peer, in both directions: `acked`, the
-- peer acknowledged every outbox row toward it up to this seq (those rows
-- are deleted, so the outbox's numbering goes on from here); `committed`,
-- this server applied and committed every transaction from that peer up to
-- this seq, in the same transaction as the changes they made, so each is
-- applied once, across restarts. Both only rise.
CREATE TABLE peer_cursors (
    peer      TEXT    PRIMARY KEY,
    acked     BIGINT  NOT NULL DEFAULT 0,
    committed BIGINT  NOT NULL DEFAULT 0
);
