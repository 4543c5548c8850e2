-- When this server last committed a transaction from each peer, ms since
-- the Unix epoch (0: never, or before this column existed): a server that
-- restarts greets the peers that delivered to it within the horizon, which
-- may be waiting out a backoff toward it (FEDERATION.md §5.2).
ALTER TABLE peer_cursors ADD COLUMN committed_at_ms BIGINT NOT NULL DEFAULT 0;
