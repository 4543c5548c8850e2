-- Fan-out without a row per agent: the events of an inbox's conversations
-- are stored once, in the inbox's log, and an agent's log refers to it.
--
-- An agent's log (seq 1, 2, 3, … without gaps, PROTOCOL.md §6.1) is the
-- union of its own `events` rows and its spans, ordered by seq. A span
-- `(party, seq, inbox, iseq)` says: the party's event `seq` is the inbox's
-- event `iseq`, `seq + 1` is `iseq + 1`, and so on, up to the party's next
-- row (an event or another span), or, for its last row, up to the inbox's
-- newest event. The engine keeps that true: while an agent follows an
-- inbox, every event of that inbox's log is one of the agent's events; the
-- first event the agent receives otherwise is a row of its own (or a span
-- of another inbox), which ends the span.

-- An inbox's log: the rows an `events` row would have, numbered `iseq`
-- 1, 2, 3, … per inbox. Only events some agent receives through the inbox
-- are written here.
CREATE TABLE inbox_events (
    inbox   INTEGER NOT NULL,
    iseq    INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    kind    INTEGER NOT NULL,
    ref_seq INTEGER NOT NULL,
    actor   INTEGER,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (inbox, iseq)
) WITHOUT ROWID;

CREATE TABLE event_spans (
    party INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    inbox INTEGER NOT NULL,
    iseq  INTEGER NOT NULL,
    PRIMARY KEY (party, seq)
) WITHOUT ROWID;
