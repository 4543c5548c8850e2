//! Several nodes writing one database: a batch commits only if what its
//! engine relied on still holds (`Write::LogClaim`, `Write::InboxClaim`).
//!
//! Each log a batch claims is locked for the rest of the transaction with
//! an advisory lock on its id, taken in ascending order so that two
//! batches never wait for each other in a circle. Under the lock the
//! log's end is read from its rows (a commit of another node that held
//! the lock before is visible: each statement of a READ COMMITTED
//! transaction sees what was committed before it began) and compared
//! with the claim. A party log and an inbox log of the same id share a
//! lock: inboxes have no logs of their own as parties, so this costs
//! nothing.

use sqlx::PgConnection;

use crate::model::InboxClaim;
use crate::store::{StoreError, StoreResult};

/// Locks every claimed log and checks each claim; [`StoreError::Conflict`]
/// if one no longer holds. Returns the rebasable logs another node
/// appended to meanwhile, with how far the batch's rows must move up.
pub(super) async fn check(
    conn: &mut PgConnection,
    logs: &[(i64, i64, bool)],
    inboxes: &[InboxClaim],
) -> StoreResult<Vec<(i64, u64)>> {
    if logs.is_empty() && inboxes.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<i64> = logs
        .iter()
        .map(|(party, ..)| *party)
        .chain(inboxes.iter().map(|claim| claim.inbox))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // The aggregate consumes the sorted rows in order, so the locks are
    // taken in that order.
    sqlx::query(
        "SELECT COUNT(pg_advisory_xact_lock(id))
         FROM (SELECT id FROM UNNEST($1::bigint[]) AS id ORDER BY id) ids",
    )
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let rebased = check_logs(conn, logs).await?;
    check_inboxes(conn, inboxes).await?;
    Ok(rebased)
}

/// Each party log's last row (event or span) is where the claim says; or,
/// for a rebasable claim, further on, at an event (the log follows no
/// inbox): the batch's rows then move after it.
async fn check_logs(
    conn: &mut PgConnection,
    logs: &[(i64, i64, bool)],
) -> StoreResult<Vec<(i64, u64)>> {
    if logs.is_empty() {
        return Ok(Vec::new());
    }
    let parties: Vec<i64> = logs.iter().map(|(party, ..)| *party).collect();
    let was: Vec<i64> = logs.iter().map(|(_, was, _)| *was).collect();
    // Only the logs that moved: (party, its last event, its last span).
    let moved: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT c.party, l.event, l.span
         FROM UNNEST($1::bigint[], $2::bigint[]) AS c (party, was)
         CROSS JOIN LATERAL (
             SELECT (SELECT COALESCE(MAX(seq), 0) FROM events e WHERE e.party = c.party) AS event,
                    (SELECT COALESCE(MAX(seq), 0) FROM event_spans s WHERE s.party = c.party)
                        AS span) l
         WHERE GREATEST(l.event, l.span) <> c.was",
    )
    .bind(&parties)
    .bind(&was)
    .fetch_all(&mut *conn)
    .await?;
    let mut rebased = Vec::new();
    for (party, event, span) in moved {
        let Some(&(_, was, rebasable)) = logs.iter().find(|(p, ..)| *p == party) else {
            continue;
        };
        // A log whose last row is a span follows an inbox: its seqs grow
        // with the inbox's log, so the batch's cannot simply move.
        if !rebasable || span > event || event < was {
            return Err(StoreError::Conflict);
        }
        let by = u64::try_from(event - was).map_err(|_| StoreError::Conflict)?;
        rebased.push((party, by));
    }
    Ok(rebased)
}

/// Each inbox log's head and follower version are what the claim relied on.
async fn check_inboxes(conn: &mut PgConnection, claims: &[InboxClaim]) -> StoreResult<()> {
    // -1 stands for "not relied on".
    let relied = |value: Option<u64>| value.map_or(Ok(-1), i64::try_from);
    let mut inboxes = Vec::new();
    let mut heads = Vec::new();
    let mut versions = Vec::new();
    for claim in claims {
        if claim.head_was.is_none() && claim.version_was.is_none() {
            continue;
        }
        // An unsatisfiable claim (the engine relied on two heads) is past
        // any bigint: it conflicts.
        let (Ok(head), Ok(version)) = (relied(claim.head_was), relied(claim.version_was)) else {
            return Err(StoreError::Conflict);
        };
        inboxes.push(claim.inbox);
        heads.push(head);
        versions.push(version);
    }
    if inboxes.is_empty() {
        return Ok(());
    }
    let moved: i64 = sqlx::query_scalar(
        "SELECT COUNT(*)
         FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[]) AS c (inbox, head, version)
         WHERE (c.head >= 0 AND c.head <> (SELECT COALESCE(MAX(iseq), 0) FROM inbox_events i
                                           WHERE i.inbox = c.inbox))
            OR (c.version >= 0 AND c.version <> (SELECT COALESCE(MAX(version), 0)
                                                 FROM inbox_versions v
                                                 WHERE v.inbox = c.inbox))",
    )
    .bind(&inboxes)
    .bind(&heads)
    .bind(&versions)
    .fetch_one(&mut *conn)
    .await?;
    if moved > 0 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// Raises the follower version of every inbox whose followers the batch
/// changed (under the lock [`check`] took).
pub(super) async fn bump(conn: &mut PgConnection, claims: &[InboxClaim]) -> sqlx::Result<()> {
    let inboxes: Vec<i64> = claims
        .iter()
        .filter(|claim| claim.bump)
        .map(|claim| claim.inbox)
        .collect();
    if inboxes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO inbox_versions (inbox, version)
         SELECT inbox, 1 FROM UNNEST($1::bigint[]) AS inbox
         ON CONFLICT (inbox) DO UPDATE SET version = inbox_versions.version + 1",
    )
    .bind(&inboxes)
    .execute(conn)
    .await?;
    Ok(())
}
