-- Kanal's PostgreSQL schema: the schema that migrations/sqlite/0001..0005
-- leave, in one step.
--
-- Conventions: times are milliseconds since the Unix epoch; seqs start at 1
-- and are gapless; `kind` columns hold the stable numbers of
-- model::PartyKind / model::ReceiptKind. Every integer is BIGINT (Kanal
-- reads them as i64). Indexes are kept to what the queries need: every
-- index is paid for on each insert of the hot path (messages, events).

CREATE TABLE parties (
    id            BIGINT PRIMARY KEY,
    address       TEXT   NOT NULL UNIQUE,
    kind          BIGINT NOT NULL,
    display_name  TEXT   NOT NULL,
    password_hash TEXT,
    created_at_ms BIGINT NOT NULL
);

-- Agents answer for inboxes; `position` keeps the order they were added.
CREATE TABLE inbox_agents (
    inbox    BIGINT NOT NULL REFERENCES parties (id),
    agent    BIGINT NOT NULL REFERENCES parties (id),
    position BIGINT NOT NULL,
    PRIMARY KEY (inbox, agent)
);
CREATE INDEX inbox_agents_by_agent ON inbox_agents (agent);

-- A session is found by the SHA-256 of its resume token, never the token.
CREATE TABLE sessions (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    party         BIGINT NOT NULL REFERENCES parties (id),
    token_hash    BYTEA  NOT NULL UNIQUE,
    client        TEXT   NOT NULL,
    acked_seq     BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);

-- `key` is chosen by the engine (in order); `id` is the public id. A
-- conversation's last seq and activity come from its newest message
-- (`conversations_now`).
CREATE TABLE conversations (
    key           BIGINT PRIMARY KEY,
    id            TEXT   NOT NULL UNIQUE,
    subject       TEXT   NOT NULL,
    created_by    BIGINT NOT NULL REFERENCES parties (id),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE members (
    key      BIGINT NOT NULL REFERENCES conversations (key),
    party    BIGINT NOT NULL REFERENCES parties (id),
    position BIGINT NOT NULL,
    PRIMARY KEY (key, party)
);
CREATE INDEX members_by_party ON members (party);

-- `body` is an encoded kanal.v1.Body. The primary key (key, seq) makes a
-- page of history, and a conversation's newest message, an index scan.
CREATE TABLE messages (
    key           BIGINT NOT NULL REFERENCES conversations (key),
    seq           BIGINT NOT NULL,
    sender        BIGINT NOT NULL REFERENCES parties (id),
    client_msg_id TEXT   NOT NULL,
    sent_at_ms    BIGINT NOT NULL,
    body          BYTEA  NOT NULL,
    PRIMARY KEY (key, seq),
    -- Idempotent sends: one message per sender and client_msg_id. Kanal
    -- recognises a duplicate send by this name.
    CONSTRAINT messages_by_client_msg_id UNIQUE (key, sender, client_msg_id)
);

-- Conversations with their last seq and last activity (the newest
-- message's time, or the creation time while there is none).
CREATE VIEW conversations_now AS
SELECT c.key, c.id, c.subject, c.created_by, c.created_at_ms,
       COALESCE((SELECT MAX(m.seq) FROM messages m WHERE m.key = c.key), 0)
           AS last_seq,
       COALESCE((SELECT m.sent_at_ms FROM messages m WHERE m.key = c.key
                 ORDER BY m.seq DESC LIMIT 1), c.created_at_ms)
           AS last_activity_ms
FROM conversations c;

-- Each party's own event log. Rows are references, never copies of bodies:
--   kind 1: message `ref_seq` of conversation `key`;
--   kind 2: the party was added to conversation `key`;
--   kind 3 / 4: `actor`'s delivered / read watermark moved to `ref_seq`.
CREATE TABLE events (
    party   BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    key     BIGINT NOT NULL,
    kind    BIGINT NOT NULL,
    ref_seq BIGINT NOT NULL,
    actor   BIGINT,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (party, seq)
);

-- An inbox's log: the rows an `events` row would have, numbered `iseq`
-- 1, 2, 3, … per inbox; only events some agent receives through the inbox.
CREATE TABLE inbox_events (
    inbox   BIGINT NOT NULL,
    iseq    BIGINT NOT NULL,
    key     BIGINT NOT NULL,
    kind    BIGINT NOT NULL,
    ref_seq BIGINT NOT NULL,
    actor   BIGINT,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (inbox, iseq)
);

-- A party's log is the union of its own `events` rows and its spans,
-- ordered by seq. A span says: the party's event `seq` is the inbox's
-- event `iseq`, `seq + 1` is `iseq + 1`, and so on, up to the party's next
-- row (an event or another span), or, for its last row, up to the inbox's
-- newest event.
CREATE TABLE event_spans (
    party BIGINT NOT NULL,
    seq   BIGINT NOT NULL,
    inbox BIGINT NOT NULL,
    iseq  BIGINT NOT NULL,
    PRIMARY KEY (party, seq)
);

-- Delivered / read watermarks; only ever raised.
CREATE TABLE watermarks (
    key   BIGINT NOT NULL,
    party BIGINT NOT NULL,
    kind  BIGINT NOT NULL,
    up_to BIGINT NOT NULL,
    PRIMARY KEY (key, party, kind)
);

-- The durable queue toward each peer server, written in the same
-- transaction as the change it carries. `seq` is contiguous per peer, so the
-- peer acknowledges cumulatively.
CREATE TABLE outbox (
    peer    TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    payload BYTEA  NOT NULL,
    PRIMARY KEY (peer, seq)
);

-- Invite codes for `registration = "invite"`: only the SHA-256 of a code is
-- kept. A code works while uses_left > 0 and it has not expired.
CREATE TABLE invites (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_hash     BYTEA  NOT NULL UNIQUE,
    uses_left     BIGINT NOT NULL CHECK (uses_left >= 0),
    expires_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    note          TEXT   NOT NULL DEFAULT ''
);
