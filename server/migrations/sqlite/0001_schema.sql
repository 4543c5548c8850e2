-- Kanal's SQLite schema.
--
-- Conventions: times are milliseconds since the Unix epoch; seqs start at 1
-- and are gapless; `kind` columns hold the stable numbers of
-- model::PartyKind / model::ReceiptKind. Indexes are kept to what the
-- queries need: every index is paid for on each insert of the hot path
-- (messages, events).

CREATE TABLE parties (
    id            INTEGER PRIMARY KEY,
    address       TEXT    NOT NULL UNIQUE,
    kind          INTEGER NOT NULL,
    display_name  TEXT    NOT NULL,
    password_hash TEXT,
    created_at_ms INTEGER NOT NULL
);

-- Agents answer for inboxes; `position` keeps the order they were added.
CREATE TABLE inbox_agents (
    inbox    INTEGER NOT NULL REFERENCES parties (id),
    agent    INTEGER NOT NULL REFERENCES parties (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (inbox, agent)
) WITHOUT ROWID;
CREATE INDEX inbox_agents_by_agent ON inbox_agents (agent);

-- One row: bumped with every change to parties or inbox_agents, so caches
-- of the directory know when to reload.
CREATE TABLE directory (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO directory (id, version) VALUES (1, 0);

-- A session is found by the SHA-256 of its resume token, never the token.
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    party         INTEGER NOT NULL REFERENCES parties (id),
    token_hash    BLOB    NOT NULL UNIQUE,
    client        TEXT    NOT NULL,
    acked_seq     INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
);

-- `key` is chosen by the engine (in order); `id` is the public id.
CREATE TABLE conversations (
    key              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    subject          TEXT    NOT NULL,
    created_by       INTEGER NOT NULL REFERENCES parties (id),
    created_at_ms    INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    last_activity_ms INTEGER NOT NULL
);

CREATE TABLE members (
    key      INTEGER NOT NULL REFERENCES conversations (key),
    party    INTEGER NOT NULL REFERENCES parties (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (key, party)
) WITHOUT ROWID;
CREATE INDEX members_by_party ON members (party);

-- `body` is an encoded kanal.v1.Body. Clustered by conversation, so a page
-- of history is a range scan.
CREATE TABLE messages (
    key           INTEGER NOT NULL REFERENCES conversations (key),
    seq           INTEGER NOT NULL,
    sender        INTEGER NOT NULL REFERENCES parties (id),
    client_msg_id TEXT    NOT NULL,
    sent_at_ms    INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    PRIMARY KEY (key, seq)
) WITHOUT ROWID;
-- Idempotent sends: one message per sender and client_msg_id.
CREATE UNIQUE INDEX messages_by_client_msg_id ON messages (key, sender, client_msg_id);

-- Each party's event log. Rows are references, never copies of bodies:
--   kind 1: message `ref_seq` of conversation `key`;
--   kind 2: the party was added to conversation `key`;
--   kind 3 / 4: `actor`'s delivered / read watermark moved to `ref_seq`.
CREATE TABLE events (
    party   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    kind    INTEGER NOT NULL,
    ref_seq INTEGER NOT NULL,
    actor   INTEGER,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (party, seq)
) WITHOUT ROWID;

-- Delivered / read watermarks; only ever raised.
CREATE TABLE watermarks (
    key   INTEGER NOT NULL,
    party INTEGER NOT NULL,
    kind  INTEGER NOT NULL,
    up_to INTEGER NOT NULL,
    PRIMARY KEY (key, party, kind)
) WITHOUT ROWID;
