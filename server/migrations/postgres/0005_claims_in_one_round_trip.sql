-- A batch's claims (store/postgres/claims.rs) in one round trip: lock every
-- claimed log, in ascending order, then report the claims that no longer
-- hold. Each statement of a PL/pgSQL function sees what was committed
-- before it began, so the reads after the locks see the commits of
-- whoever held a lock before.
--
-- ids: every claimed log's id, sorted, without repeats;
-- parties, was: party logs and the seq of the last row each claim relied on;
-- inboxes, heads, versions: inbox logs and the head and follower version
--   each relied on (-1: not relied on).
-- Returns kind 1 (a party log whose last row moved: its last event's and
-- last span's seqs) and kind 2 (an inbox claim that no longer holds).
CREATE FUNCTION kanal_claims(
    ids BIGINT[],
    parties BIGINT[], was BIGINT[],
    inboxes BIGINT[], heads BIGINT[], versions BIGINT[]
) RETURNS TABLE (kind INT, id BIGINT, event BIGINT, span BIGINT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    log BIGINT;
BEGIN
    FOREACH log IN ARRAY ids LOOP
        PERFORM pg_advisory_xact_lock(log);
    END LOOP;
    RETURN QUERY
        SELECT 1, c.party, l.event, l.span
        FROM UNNEST(parties, was) AS c (party, was)
        CROSS JOIN LATERAL (
            SELECT (SELECT COALESCE(MAX(e.seq), 0) FROM events e WHERE e.party = c.party)
                       AS event,
                   (SELECT COALESCE(MAX(s.seq), 0) FROM event_spans s WHERE s.party = c.party)
                       AS span) l
        WHERE GREATEST(l.event, l.span) <> c.was
        UNION ALL
        SELECT 2, c.inbox, 0::BIGINT, 0::BIGINT
        FROM UNNEST(inboxes, heads, versions) AS c (inbox, head, version)
        WHERE (c.head >= 0 AND c.head <> (SELECT COALESCE(MAX(i.iseq), 0) FROM inbox_events i
                                          WHERE i.inbox = c.inbox))
           OR (c.version >= 0 AND c.version <> (SELECT COALESCE(MAX(v.version), 0)
                                                FROM inbox_versions v
                                                WHERE v.inbox = c.inbox));
END
$$;
