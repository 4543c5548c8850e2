-- Which node orders which conversations: conversations fall into 64 slots
-- by their home (the first inbox among their members, else who started
-- them); a node holds a slot while it renews its lease. Other nodes hand
-- commands of a slot's conversations to its holder. A lease is routing,
-- not safety: a batch commits only if what it relied on still holds
-- (claims), whoever orders it.
CREATE TABLE slots (
    slot          BIGINT PRIMARY KEY,
    owner         BIGINT,
    expires_at_ms BIGINT NOT NULL DEFAULT 0
);
INSERT INTO slots (slot) SELECT generate_series(0, 63);
