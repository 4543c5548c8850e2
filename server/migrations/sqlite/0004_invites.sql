-- Invite codes for `registration = "invite"`: only the SHA-256 of a code is
-- kept. A code works while uses_left > 0 and it has not expired.
CREATE TABLE invites (
    id            INTEGER PRIMARY KEY,
    code_hash     BLOB    NOT NULL UNIQUE,
    uses_left     INTEGER NOT NULL CHECK (uses_left >= 0),
    expires_at_ms INTEGER,
    created_at_ms INTEGER NOT NULL,
    note          TEXT    NOT NULL DEFAULT ''
);
