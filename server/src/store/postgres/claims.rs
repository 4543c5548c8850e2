//! Several nodes writing one database: a batch commits only if what its
//! engine relied on still holds (`Write::LogClaim`, `Write::InboxClaim`).
//!
//! Each log a batch claims is locked for the rest of the transaction with
//! an advisory lock on its id, taken in ascending order so that two
//! batches never wait for each other in a circle. Under the lock the
//! log's end is read from its rows (a commit of another node that held
//! the lock before is visible: each statement of a READ COMMITTED
//! transaction sees what was committed before it began) and compared
//! with the claim. Locking and checking is one call of the database
//! function `kanal_claims`: one round trip per batch. A party log and an inbox log of the same id share a
//! lock: inboxes have no logs of their own as parties, so this costs
//! nothing.

use sqlx::PgConnection;

use crate::model::InboxClaim;
use crate::store::{StoreError, StoreResult};

/// Locks every claimed log and checks each claim, in one round trip
/// (`kanal_claims`, migration 0005); [`StoreError::Conflict`] if one no
/// longer holds. Returns the rebasable logs another node appended to
/// meanwhile, with how far the batch's rows must move up: those whose last
/// row is still an event (a log whose last row is a span follows an inbox,
/// and its seqs grow with the inbox's log).
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
    let parties: Vec<i64> = logs.iter().map(|(party, ..)| *party).collect();
    let was: Vec<i64> = logs.iter().map(|(_, was, _)| *was).collect();
    // -1 stands for "not relied on"; an unsatisfiable claim (the engine
    // relied on two heads) is past any bigint: it conflicts.
    let relied = |value: Option<u64>| value.map_or(Ok(-1), i64::try_from);
    let (mut inbox_ids, mut heads, mut versions) = (Vec::new(), Vec::new(), Vec::new());
    for claim in inboxes {
        if claim.head_was.is_none() && claim.version_was.is_none() {
            continue;
        }
        let (Ok(head), Ok(version)) = (relied(claim.head_was), relied(claim.version_was)) else {
            return Err(StoreError::Conflict);
        };
        inbox_ids.push(claim.inbox);
        heads.push(head);
        versions.push(version);
    }
    let failed: Vec<(i32, i64, i64, i64)> =
        sqlx::query_as("SELECT kind, id, event, span FROM kanal_claims($1, $2, $3, $4, $5, $6)")
            .bind(&ids)
            .bind(&parties)
            .bind(&was)
            .bind(&inbox_ids)
            .bind(&heads)
            .bind(&versions)
            .fetch_all(&mut *conn)
            .await?;
    let mut rebased = Vec::new();
    for (kind, party, event, span) in failed {
        let Some(&(_, was, rebasable)) = logs
            .iter()
            .find(|(p, ..)| *p == party)
            .filter(|_| kind == 1)
        else {
            return Err(StoreError::Conflict);
        };
        if !rebasable || span > event || event < was {
            return Err(StoreError::Conflict);
        }
        let by = u64::try_from(event - was).map_err(|_| StoreError::Conflict)?;
        rebased.push((party, by));
    }
    Ok(rebased)
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
