-- What each node of several on this database says of itself, every few
-- seconds while it runs (`kanald cluster status` reads it). `id` is random
-- and new at each start; rows not refreshed for a day are removed.
CREATE TABLE nodes (
    id             BIGINT  PRIMARY KEY,
    host           TEXT    NOT NULL,
    listen         TEXT    NOT NULL,
    started_at_ms  BIGINT  NOT NULL,
    seen_at_ms     BIGINT  NOT NULL,
    nats_connected BOOLEAN NOT NULL,
    sessions       BIGINT  NOT NULL,
    batches        BIGINT  NOT NULL,
    conflicts      BIGINT  NOT NULL
);
