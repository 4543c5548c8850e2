-- The messages this server's parties submitted to conversations other
-- servers host (FEDERATION.md §4.2): a host replicating a message of one of
-- this server's parties must show it was submitted here, so no host can
-- speak for another server's parties.
CREATE TABLE submissions (
    key           INTEGER NOT NULL,
    sender        INTEGER NOT NULL,
    client_msg_id TEXT    NOT NULL,
    PRIMARY KEY (key, sender, client_msg_id)
) WITHOUT ROWID;
