//! The receiving side from one peer: which of the peer's transactions to
//! apply, in sequence order and once each, and what to acknowledge.
//!
//! A transaction that arrives early (its predecessor was lost or is late)
//! waits here, within the window, until the gap fills; one already applied
//! is a duplicate and is only acknowledged again. The acknowledgement is
//! "everything up to N", and N moves only once the transactions up to it
//! are committed: a transaction the receiver took but did not commit is
//! never acknowledged, so the sender sends it again.

use std::collections::BTreeMap;

/// What became of an offered transaction.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offered<T> {
    /// Applied before (or being applied): acknowledge again, apply nothing.
    Duplicate,
    /// Early: kept until the transactions before it arrive.
    Held,
    /// Apply these now, in this order (the offered one and the early ones
    /// it unblocked), then call [`PeerInbox::committed`].
    Apply(Vec<(u64, T)>),
    /// Further ahead than the window allows: a misbehaving peer. Refuse it.
    OutOfWindow,
}

/// The receiving state from one peer.
#[derive(Debug, Clone)]
pub(crate) struct PeerInbox<T> {
    /// Committed up to here: what is acknowledged.
    committed: u64,
    /// Handed out for applying up to here (≥ `committed`).
    taken: u64,
    /// Early transactions, by sequence number.
    early: BTreeMap<u64, T>,
    /// How far ahead of `taken` a transaction may be.
    window: u64,
}

impl<T> PeerInbox<T> {
    /// The state after committing everything up to `committed`.
    pub(crate) fn new(committed: u64, window: u64) -> Self {
        Self {
            committed,
            taken: committed,
            early: BTreeMap::new(),
            window,
        }
    }

    /// The peer sent transaction `seq`.
    pub(crate) fn offer(&mut self, seq: u64, transaction: T) -> Offered<T> {
        if seq <= self.taken {
            return Offered::Duplicate;
        }
        if seq > self.taken + self.window {
            return Offered::OutOfWindow;
        }
        if seq > self.taken + 1 {
            self.early.entry(seq).or_insert(transaction);
            return Offered::Held;
        }
        let mut run = vec![(seq, transaction)];
        self.taken = seq;
        while let Some(next) = self.early.remove(&(self.taken + 1)) {
            self.taken += 1;
            run.push((self.taken, next));
        }
        Offered::Apply(run)
    }

    /// The transactions up to `up_to` are committed: they may be
    /// acknowledged.
    pub(crate) fn committed(&mut self, up_to: u64) {
        self.committed = self.committed.max(up_to.min(self.taken));
    }

    /// The commit of what was handed out failed: it is taken again when
    /// the peer sends it again.
    pub(crate) fn abandon(&mut self) {
        self.taken = self.committed;
    }

    /// What to acknowledge: everything up to this.
    pub(crate) fn ack(&self) -> u64 {
        self.committed
    }
}
