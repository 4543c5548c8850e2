//! The bounded outbox: device frames sent but not yet answered, each with
//! its retransmission schedule (exponential backoff, capped).
//!
//! A frame is encoded once, when it is queued; every retransmission sends
//! the same bytes, so the same device message id, and the server acts on it
//! once.

use heapless::Vec;
use kanal_proto::device::DeviceFrame;
use kanal_proto::device::limits::MAX_FRAME;

use crate::time::Instant;

/// One unanswered frame.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Its device message id.
    pub(crate) id: u32,
    /// Whether it is a poll (at most one poll waits at a time).
    pub(crate) is_poll: bool,
    /// When to (re)send it.
    pub(crate) due: Instant,
    /// The wait after the next send, in milliseconds.
    pub(crate) backoff_ms: u32,
    /// How often it was sent.
    pub(crate) sends: u16,
    len: u16,
    bytes: [u8; MAX_FRAME],
}

impl Pending {
    /// The encoded frame.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Unanswered frames, oldest first, at most `N`.
#[derive(Debug, Clone)]
pub(crate) struct Outbox<const N: usize> {
    entries: Vec<Pending, N>,
}

impl<const N: usize> Outbox<N> {
    pub(crate) const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Queues an encoded frame, due at once. Fails when full.
    pub(crate) fn push(
        &mut self,
        id: u32,
        is_poll: bool,
        frame: &[u8],
        now: Instant,
        initial_backoff_ms: u32,
    ) -> Result<(), ()> {
        let mut bytes = [0u8; MAX_FRAME];
        let len = frame.len().min(MAX_FRAME);
        bytes[..len].copy_from_slice(&frame[..len]);
        self.entries
            .push(Pending {
                id,
                is_poll,
                due: now,
                backoff_ms: initial_backoff_ms,
                sends: 0,
                len: len as u16,
                bytes,
            })
            .map_err(|_| ())
    }

    /// Removes the frame with this id; returns whether it was there.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self.entries.iter().position(|entry| entry.id == id) {
            Some(at) => {
                self.entries.remove(at);
                true
            }
            None => false,
        }
    }

    /// The waiting poll's id, if one waits.
    pub(crate) fn poll_id(&self) -> Option<u32> {
        self.entries
            .iter()
            .find(|entry| entry.is_poll)
            .map(|entry| entry.id)
    }

    /// Gives the frame `old` the id `new` (re-encoding it) and makes it due
    /// at `now`; returns whether it was there.
    pub(crate) fn renumber(&mut self, old: u32, new: u32, now: Instant) -> bool {
        let Some(entry) = self.get_mut(old) else {
            return false;
        };
        let stored = entry.bytes;
        let Ok(mut frame) = DeviceFrame::decode(&stored[..usize::from(entry.len)]) else {
            return false;
        };
        frame.set_id(new);
        let mut bytes = [0u8; MAX_FRAME];
        let Ok(encoded) = frame.encode(&mut bytes) else {
            return false;
        };
        entry.len = encoded.len() as u16;
        entry.bytes = bytes;
        entry.id = new;
        entry.due = now;
        true
    }

    /// The oldest frame due at `now`.
    pub(crate) fn next_due(&mut self, now: Instant) -> Option<&mut Pending> {
        self.entries.iter_mut().find(|entry| entry.due <= now)
    }

    /// The oldest frame, due or not.
    pub(crate) fn oldest(&mut self) -> Option<&mut Pending> {
        self.entries.first_mut()
    }

    /// The frame with this id.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Pending> {
        self.entries.iter_mut().find(|entry| entry.id == id)
    }

    /// The earliest due time.
    pub(crate) fn earliest_due(&self) -> Option<Instant> {
        self.entries.iter().map(|entry| entry.due).min()
    }

    /// Makes every frame due at `now` (a new session carries them at once).
    pub(crate) fn make_all_due(&mut self, now: Instant) {
        for entry in &mut self.entries {
            entry.due = entry.due.min(now);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.is_full()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.entries.iter()
    }
}

impl Pending {
    /// Records a send at `now` and schedules the next one: the backoff
    /// doubles up to `max_ms`.
    pub(crate) fn sent(&mut self, now: Instant, max_ms: u32) {
        self.sends = self.sends.saturating_add(1);
        self.due = now.after_ms(u64::from(self.backoff_ms));
        self.backoff_ms = self.backoff_ms.saturating_mul(2).min(max_ms);
    }
}
