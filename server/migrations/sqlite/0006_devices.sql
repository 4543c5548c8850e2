-- The device registry (proto/DEVICES.md): each device's static public key,
-- its party, and the highest handshake initiation counter accepted from it.
CREATE TABLE devices (
    key             BLOB    PRIMARY KEY CHECK (length(key) = 32),
    party           INTEGER NOT NULL UNIQUE REFERENCES parties (id),
    serial          TEXT    NOT NULL UNIQUE,
    model           TEXT    NOT NULL,
    inbox           INTEGER NOT NULL REFERENCES parties (id),
    owner           INTEGER REFERENCES parties (id),
    revoked_at_ms   INTEGER,
    last_initiation INTEGER NOT NULL DEFAULT 0,
    added_at_ms     INTEGER NOT NULL
) WITHOUT ROWID;
