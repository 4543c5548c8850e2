-- The device registry (proto/DEVICES.md): each device's static public key,
-- its party, and the highest handshake initiation counter accepted from it.
CREATE TABLE devices (
    key             BYTEA   PRIMARY KEY CHECK (length(key) = 32),
    party           BIGINT  NOT NULL UNIQUE REFERENCES parties (id),
    serial          TEXT    NOT NULL UNIQUE,
    model           TEXT    NOT NULL,
    inbox           BIGINT  NOT NULL REFERENCES parties (id),
    owner           BIGINT  REFERENCES parties (id),
    revoked_at_ms   BIGINT,
    last_initiation BIGINT  NOT NULL DEFAULT 0,
    added_at_ms     BIGINT  NOT NULL
);
