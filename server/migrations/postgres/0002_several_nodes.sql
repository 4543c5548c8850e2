-- Several kanald nodes on one database.
--
-- Each node caches where logs end and numbers new rows itself; a batch
-- commits only if what it relied on still holds (store/postgres/claims.rs).
-- Party logs and inbox logs are checked against their rows, under an
-- advisory lock per log; what rows cannot say is kept here.

-- Who follows an inbox's log changes when an agent is added or another row
-- closes an agent's span of it: `version` rises each time, so a node that
-- appends to the inbox with an older picture of its followers does not
-- commit. An inbox without a row has version 0.
CREATE TABLE inbox_versions (
    inbox   BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- Blocks of ids: block n holds conversation keys and party ids from
-- n * 1048576 to (n + 1) * 1048576 - 1, so nodes number new rows without
-- asking one another. It starts after every id in use.
CREATE SEQUENCE id_blocks MINVALUE 1;
SELECT setval('id_blocks',
              GREATEST((SELECT COALESCE(MAX(key), 0) FROM conversations),
                       (SELECT COALESCE(MAX(id), 0) FROM parties)) / 1048576 + 1,
              false);
