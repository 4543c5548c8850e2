//! The sending side toward one peer: which of the outbox's transactions to
//! send now, what an acknowledgement, a failure or a sign of life changes,
//! when to try again, and which transactions have waited past the horizon.
//!
//! The outbox's rows are stored (in the commit of the events they carry);
//! this is the state around them, rebuilt from the stored rows on startup
//! ([`Outbox::resume`]) so that delivery resumes at once, without waiting
//! for new traffic. Everything after the peer's last acknowledgement is
//! sent again after a failure, and the receiver drops what it applied
//! before: delivery is at least once on the wire and exactly once in
//! effect.

use std::collections::VecDeque;

/// How delivery to a peer retries and gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// The first retry after a failure, before jitter (which only shortens
    /// it: the first retry comes within this).
    pub(crate) first_retry_ms: i64,
    /// The longest wait between two tries.
    pub(crate) max_backoff_ms: i64,
    /// How long sent transactions may go unacknowledged before the try
    /// counts as failed.
    pub(crate) ack_timeout_ms: i64,
    /// How long a transaction may stay undelivered before its sender is
    /// told it failed (as Postfix's `maximal_queue_lifetime`).
    pub(crate) horizon_ms: i64,
    /// Most transactions sent and not yet acknowledged.
    pub(crate) window: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            first_retry_ms: 1_000,
            max_backoff_ms: 5 * 60_000,
            ack_timeout_ms: 10_000,
            horizon_ms: 5 * 24 * 3_600_000,
            window: 256,
        }
    }
}

/// A transaction to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transmit {
    /// Its sequence number toward the peer.
    pub(crate) seq: u64,
    /// It waited past the horizon and its sender was told: only its
    /// sequence number travels, so the peer's sequence has no hole.
    pub(crate) tombstone: bool,
}

/// What the senders of transactions must be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Told {
    /// Undelivered at the horizon.
    Expired(u64),
    /// The peer refused it for good; it is in the dead letters.
    Refused {
        /// The transaction.
        seq: u64,
        /// The peer's reason.
        reason: String,
    },
}

/// An acknowledgement the outbox cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckBeyond {
    /// What the peer acknowledged.
    pub(crate) acked: u64,
    /// The highest sequence number sent.
    pub(crate) sent: u64,
}

/// Where delivery to the peer stands, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// Transactions not yet acknowledged.
    pub(crate) queued: usize,
    /// Everything up to this seq is acknowledged (the store may learn it
    /// a moment later).
    pub(crate) acked: u64,
    /// How long the oldest of them has waited, ms (0: none waits).
    pub(crate) oldest_age_ms: i64,
    /// Why the last try failed, since the last success.
    pub(crate) last_error: Option<String>,
    /// When the next try is due, if delivery waits out a backoff.
    pub(crate) next_retry_ms: Option<i64>,
    /// Transactions the peer refused for good.
    pub(crate) dead_letters: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    enqueued_at_ms: i64,
    expired: bool,
    refused: bool,
}

/// The sending state toward one peer.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    policy: Policy,
    /// Every transaction up to here is acknowledged.
    acked: u64,
    /// `acked + 1 ..= acked + len`, in order.
    queue: VecDeque<Entry>,
    /// The next one to send.
    next_send: u64,
    /// The highest ever sent (a late acknowledgement of a try that failed
    /// may come after the outbox went back to send again).
    sent_max: u64,
    /// Waiting out a backoff until then.
    retry_at: Option<i64>,
    /// Failed tries since the last success.
    failures: u32,
    /// Since when sent transactions wait for an acknowledgement.
    unacked_since: Option<i64>,
    last_error: Option<String>,
    dead_letters: Vec<u64>,
}

impl Outbox {
    /// An outbox whose peer acknowledged everything up to `acked`.
    pub(crate) fn new(policy: Policy, acked: u64) -> Self {
        Self {
            policy,
            acked,
            queue: VecDeque::new(),
            next_send: acked + 1,
            sent_max: acked,
            retry_at: None,
            failures: 0,
            unacked_since: None,
            last_error: None,
            dead_letters: Vec::new(),
        }
    }

    /// The outbox after a restart: `acked` and the stored transactions
    /// after it, as `(seq, enqueued_at_ms)` in order. Nothing waits: the
    /// first [`Outbox::poll_send`] sends them.
    pub(crate) fn resume(
        policy: Policy,
        acked: u64,
        stored: impl IntoIterator<Item = (u64, i64)>,
    ) -> Self {
        let mut outbox = Self::new(policy, acked);
        for (seq, at) in stored {
            if seq == outbox.last() + 1 {
                outbox.queue.push_back(Entry::new(seq, at));
            }
        }
        outbox
    }

    /// Queues the next transaction, made at `now`; returns its sequence
    /// number.
    #[cfg(test)]
    pub(crate) fn push(&mut self, now: i64) -> u64 {
        let seq = self.last() + 1;
        self.queue.push_back(Entry::new(seq, now));
        seq
    }

    /// Queues a stored transaction, if it is the next after the last one
    /// queued (rows read from the store again are skipped).
    pub(crate) fn queue_stored(&mut self, seq: u64, enqueued_at_ms: i64) -> bool {
        if seq != self.last() + 1 {
            return seq <= self.last();
        }
        self.queue.push_back(Entry::new(seq, enqueued_at_ms));
        true
    }

    /// The highest sequence number queued (or acknowledged).
    pub(crate) fn last(&self) -> u64 {
        self.acked + self.queue.len() as u64
    }

    /// Everything acknowledged so far.
    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    /// The next transaction to send now, if any: none while a backoff
    /// runs, or while the window of unacknowledged ones is full.
    pub(crate) fn poll_send(&mut self, now: i64) -> Option<Transmit> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        self.retry_at = None;
        if self.next_send > self.last() || self.next_send > self.acked + self.policy.window {
            return None;
        }
        let entry = self.queue[(self.next_send - self.acked - 1) as usize];
        self.next_send += 1;
        self.sent_max = self.sent_max.max(entry.seq);
        self.unacked_since.get_or_insert(now);
        Some(Transmit {
            seq: entry.seq,
            tombstone: entry.expired || entry.refused,
        })
    }

    /// The peer acknowledged everything up to `up_to` at `now`: a success,
    /// and a sign of life.
    pub(crate) fn ack(&mut self, up_to: u64, now: i64) -> Result<(), AckBeyond> {
        if up_to > self.sent_max {
            return Err(AckBeyond {
                acked: up_to,
                sent: self.sent_max,
            });
        }
        if up_to <= self.acked {
            self.sign_of_life();
            return Ok(());
        }
        while self.queue.front().is_some_and(|e| e.seq <= up_to) {
            self.queue.pop_front();
        }
        self.acked = up_to;
        self.next_send = self.next_send.max(up_to + 1);
        self.failures = 0;
        self.retry_at = None;
        self.last_error = None;
        self.unacked_since = (self.next_send > self.acked + 1).then_some(now);
        Ok(())
    }

    /// The peer began a session saying it committed everything up to
    /// `committed` (its `Ready`): that acknowledges even transactions this
    /// run never sent, whose acknowledgement was lost with an earlier run
    /// of this server (it stored the rows, the peer applied them, and it
    /// was killed before it stored the acknowledgement). Capped at the last
    /// transaction queued; returns what [`Outbox::ack`] may now take.
    pub(crate) fn ready(&mut self, committed: u64) -> u64 {
        let up_to = committed.min(self.last());
        self.sent_max = self.sent_max.max(up_to);
        up_to
    }

    /// A try failed at `now` (the connection could not be made or broke,
    /// or acknowledgements stopped): everything unacknowledged is sent
    /// again after a backoff. `random` jitters the wait.
    pub(crate) fn failed(&mut self, now: i64, error: &str, random: u64) {
        self.next_send = self.acked + 1;
        self.unacked_since = None;
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + self.backoff(random));
        self.last_error = Some(error.to_owned());
    }

    /// The peer showed it is there (it connected, or sent a transaction or
    /// an acknowledgement): a backoff ends at once.
    pub(crate) fn sign_of_life(&mut self) {
        if self.retry_at.take().is_some() {
            self.failures = 0;
        }
    }

    /// The peer refused transaction `seq` for good (and acknowledges it):
    /// it goes to the dead letters, and its sender is told once.
    pub(crate) fn refused(&mut self, seq: u64, reason: &str) -> Option<Told> {
        let index = seq.checked_sub(self.acked + 1)? as usize;
        let entry = self.queue.get_mut(index)?;
        if entry.refused {
            return None;
        }
        entry.refused = true;
        self.dead_letters.push(seq);
        Some(Told::Refused {
            seq,
            reason: reason.to_owned(),
        })
    }

    /// Transaction `seq` was given up before (refused, or expired) and its
    /// sender told, in an earlier run: it is not told again, and travels
    /// as a tombstone.
    pub(crate) fn given_up(&mut self, seq: u64, refused: bool) {
        let Some(index) = seq.checked_sub(self.acked + 1) else {
            return;
        };
        if let Some(entry) = self.queue.get_mut(index as usize) {
            if refused {
                entry.refused = true;
                self.dead_letters.push(seq);
            } else {
                entry.expired = true;
            }
        }
    }

    /// Whether every transaction waiting here was given up (travels as a
    /// tombstone): nothing its sender still waits for.
    pub(crate) fn only_given_up(&self) -> bool {
        self.queue.iter().all(|e| e.expired || e.refused)
    }

    /// When transaction `seq` was queued, if it waits here.
    pub(crate) fn enqueued_at(&self, seq: u64) -> Option<i64> {
        let index = seq.checked_sub(self.acked + 1)?;
        self.queue.get(index as usize).map(|e| e.enqueued_at_ms)
    }

    /// The transactions the peer refused for good.
    #[cfg(test)]
    pub(crate) fn dead_letters(&self) -> &[u64] {
        &self.dead_letters
    }

    /// The next instant [`Outbox::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&self) -> Option<i64> {
        let ack = self
            .unacked_since
            .map(|since| since + self.policy.ack_timeout_ms);
        let horizon = self
            .queue
            .iter()
            .find(|e| !e.expired && !e.refused)
            .map(|e| e.enqueued_at_ms + self.policy.horizon_ms);
        [self.retry_at, ack, horizon].into_iter().flatten().min()
    }

    /// What is due at `now`: a backoff's end, a try without
    /// acknowledgements (failed), transactions past the horizon (their
    /// senders told, once each).
    pub(crate) fn handle_timeout(&mut self, now: i64, random: u64) -> Vec<Told> {
        if self
            .unacked_since
            .is_some_and(|since| since + self.policy.ack_timeout_ms <= now)
        {
            self.failed(now, "no acknowledgement in time", random);
        }
        let horizon = self.policy.horizon_ms;
        let mut told = Vec::new();
        for entry in &mut self.queue {
            if !entry.expired && !entry.refused && entry.enqueued_at_ms + horizon <= now {
                entry.expired = true;
                told.push(Told::Expired(entry.seq));
            }
        }
        told
    }

    /// Where delivery stands at `now`.
    pub(crate) fn status(&self, now: i64) -> Status {
        Status {
            queued: self.queue.len(),
            acked: self.acked,
            oldest_age_ms: self
                .queue
                .front()
                .map_or(0, |e| (now - e.enqueued_at_ms).max(0)),
            last_error: self.last_error.clone(),
            next_retry_ms: self.retry_at,
            dead_letters: self.dead_letters.len(),
        }
    }

    /// The wait after the current run of failures: the first retry within
    /// a second, doubling, capped; jittered down by up to half, so that
    /// servers that lost a peer together do not retry together.
    fn backoff(&self, random: u64) -> i64 {
        let doublings = self.failures.saturating_sub(1).min(30);
        let full = self
            .policy
            .first_retry_ms
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff_ms);
        let jitter = (random % 1_000) as i64;
        full - full / 2 * jitter / 1_000
    }
}

impl Entry {
    fn new(seq: u64, enqueued_at_ms: i64) -> Self {
        Self {
            seq,
            enqueued_at_ms,
            expired: false,
            refused: false,
        }
    }
}
