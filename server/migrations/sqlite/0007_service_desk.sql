-- The service desk: a ticket per conversation on an inbox's desk, the
-- agents' seats, each inbox's settings, and each conversation's desk log
-- (notes and system events only the inbox's agents read).
--
-- `status`, `owner_kind` and `priority` hold the stable numbers of
-- model::Status / model::Owner / model::Priority (status 4 is resolved);
-- `state` and `settings` are the engine's JSON, opaque to the store.

CREATE TABLE tickets (
    key           INTEGER PRIMARY KEY REFERENCES conversations (key),
    inbox         INTEGER NOT NULL,
    status        INTEGER NOT NULL,
    status_at_ms  INTEGER,
    owner_kind    INTEGER NOT NULL,
    owner         INTEGER,
    priority      INTEGER NOT NULL,
    last_dseq     INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    state         TEXT    NOT NULL
);
-- A desk's unresolved tickets.
CREATE INDEX tickets_unresolved ON tickets (inbox, key) WHERE status != 4;
-- Listings: an inbox's tickets most recently changed first; an owner's.
CREATE INDEX tickets_by_inbox ON tickets (inbox, updated_at_ms DESC, key DESC);
CREATE INDEX tickets_by_owner ON tickets (owner) WHERE owner IS NOT NULL;

CREATE TABLE seats (
    inbox            INTEGER NOT NULL,
    agent            INTEGER NOT NULL,
    availability     INTEGER NOT NULL,
    capacity         INTEGER,
    last_assigned_ms INTEGER NOT NULL,
    PRIMARY KEY (inbox, agent)
) WITHOUT ROWID;

CREATE TABLE desk_settings (
    inbox    INTEGER PRIMARY KEY,
    settings TEXT    NOT NULL
);

-- `payload` is an encoded kanal.v1.DeskEvent, as agents receive it; an
-- event of kind 5 refers to an entry by (key, dseq).
CREATE TABLE desk_entries (
    key            INTEGER NOT NULL,
    dseq           INTEGER NOT NULL,
    inbox          INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL,
    actor          INTEGER,
    client_note_id TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    PRIMARY KEY (key, dseq)
) WITHOUT ROWID;
-- Idempotent notes: one per author and client_note_id in a conversation.
-- Kanal recognises a duplicate note by this name.
CREATE UNIQUE INDEX desk_entries_by_client_note_id
    ON desk_entries (key, actor, client_note_id) WHERE client_note_id != '';
-- Reports: an inbox's entries over time.
CREATE INDEX desk_entries_by_inbox ON desk_entries (inbox, at_ms);
