//! Federation's delivery logic, sans-IO (DESIGN.md "Federation"): what a
//! server does with its durable outbox toward one peer, and with the
//! transactions one peer sends it. Inputs are transactions, acks, signs of
//! life and the time; outputs are what to send, what to tell senders, and
//! the next deadline. No sockets, no clock: the `kanal-fed/1` link drives
//! it, and the simulator's lossy links test it.
//!
//! The contract both sides keep:
//! - each peer's transactions carry a contiguous sequence from 1, written
//!   to the outbox in the same commit as the event they carry;
//! - the receiver applies them once each, in sequence order, and
//!   acknowledges "everything up to N" only after its own commit;
//! - the sender retries what is not acknowledged, with exponential backoff
//!   and jitter (the first retry within a second, capped at minutes), and
//!   any sign of life from the peer ends the backoff at once;
//! - a transaction undelivered at the horizon (5 days by default) tells
//!   its sender once and travels on as a tombstone, so the peer's sequence
//!   has no hole; one refused for good goes to the dead letters, and its
//!   sender is told at once.

pub(crate) mod give_up;
pub(crate) mod inbox;
pub(crate) mod outbox;
pub(crate) mod receive;
pub(crate) mod wire;

#[cfg(test)]
mod tests;
