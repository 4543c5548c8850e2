//! The bounded outbox: device frames sent but not yet answered, each with
//! its retransmission schedule (exponential backoff, capped).
//!
//! A frame is encoded once, when it is queued; every retransmission sends
//! the same bytes, so the same device message id, and the server acts on it
//! once.

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
    /// Queue order: lower is older (0: the slot is free).
    order: u32,
    len: u16,
    bytes: [u8; MAX_FRAME],
}

impl Pending {
    const FREE: Self = Self {
        id: 0,
        is_poll: false,
        due: Instant(0),
        backoff_ms: 0,
        sends: 0,
        order: 0,
        len: 0,
        bytes: [0; MAX_FRAME],
    };

    /// The encoded frame.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn is_free(&self) -> bool {
        self.order == 0
    }
}

/// Unanswered frames, at most `N`, in fixed slots: a frame is encoded in
/// place and never moved (firmware stacks are small).
#[derive(Debug, Clone)]
pub(crate) struct Outbox<const N: usize> {
    slots: [Pending; N],
    next_order: u32,
}

impl<const N: usize> Outbox<N> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [Pending::FREE; N],
            next_order: 1,
        }
    }

    /// Frees every slot.
    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.order = 0;
        }
        self.next_order = 1;
    }

    /// Queues a frame that `encode` writes into its slot (returning its
    /// length), due at `now`. Returns `Ok(None)` when the outbox is full.
    pub(crate) fn push_with<E>(
        &mut self,
        id: u32,
        is_poll: bool,
        now: Instant,
        initial_backoff_ms: u32,
        encode: impl FnOnce(&mut [u8; MAX_FRAME]) -> Result<usize, E>,
    ) -> Result<Option<()>, E> {
        let Some(slot) = self.slots.iter_mut().find(|slot| slot.is_free()) else {
            return Ok(None);
        };
        let len = encode(&mut slot.bytes)?.min(MAX_FRAME);
        slot.id = id;
        slot.is_poll = is_poll;
        slot.due = now;
        slot.backoff_ms = initial_backoff_ms;
        slot.sends = 0;
        slot.len = len as u16;
        slot.order = self.next_order;
        self.next_order = self.next_order.wrapping_add(1).max(1);
        Ok(Some(()))
    }

    /// Queues an already encoded frame; returns whether there was room.
    pub(crate) fn push(
        &mut self,
        id: u32,
        is_poll: bool,
        frame: &[u8],
        now: Instant,
        initial_backoff_ms: u32,
    ) -> bool {
        let len = frame.len().min(MAX_FRAME);
        let pushed = self.push_with(id, is_poll, now, initial_backoff_ms, |slot| {
            slot[..len].copy_from_slice(&frame[..len]);
            Ok::<_, ()>(len)
        });
        matches!(pushed, Ok(Some(())))
    }

    /// Removes the frame with this id; returns whether it was there.
    pub(crate) fn remove(&mut self, id: u32) -> bool {
        match self.get_mut(id) {
            Some(slot) => {
                slot.order = 0;
                true
            }
            None => false,
        }
    }

    /// The waiting poll's id, if one waits.
    pub(crate) fn poll_id(&self) -> Option<u32> {
        self.iter()
            .find(|entry| entry.is_poll)
            .map(|entry| entry.id)
    }

    /// Gives the frame `old` the id `new` and makes it due at `now`;
    /// returns whether it was there.
    ///
    /// Every device frame with an id has it as its first field, right after
    /// the variant index: the varint is replaced in place, so the firmware
    /// needs no device-frame decoder.
    pub(crate) fn renumber(&mut self, old: u32, new: u32, now: Instant) -> bool {
        let Some(entry) = self.get_mut(old) else {
            return false;
        };
        let len = usize::from(entry.len);
        let old_len = entry.bytes[1..len]
            .iter()
            .take_while(|byte| *byte & 0x80 != 0)
            .count()
            + 1;
        let mut id = [0u8; 5];
        let id_len = write_varint(new, &mut id);
        let new_len = len - old_len + id_len;
        if new_len > MAX_FRAME {
            return false;
        }
        entry.bytes.copy_within(1 + old_len..len, 1 + id_len);
        entry.bytes[1..1 + id_len].copy_from_slice(&id[..id_len]);
        entry.len = new_len as u16;
        entry.id = new;
        entry.due = now;
        true
    }

    /// The oldest frame due at `now`.
    pub(crate) fn next_due(&mut self, now: Instant) -> Option<&mut Pending> {
        self.slots
            .iter_mut()
            .filter(|slot| !slot.is_free() && slot.due <= now)
            .min_by_key(|slot| slot.order)
    }

    /// The oldest frame, due or not.
    pub(crate) fn oldest(&mut self) -> Option<&mut Pending> {
        self.slots
            .iter_mut()
            .filter(|slot| !slot.is_free())
            .min_by_key(|slot| slot.order)
    }

    /// The frame with this id.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Pending> {
        self.slots
            .iter_mut()
            .find(|slot| !slot.is_free() && slot.id == id)
    }

    /// The earliest due time.
    pub(crate) fn earliest_due(&self) -> Option<Instant> {
        self.live().map(|entry| entry.due).min()
    }

    /// Makes every frame due at `now` (a new session carries them at once).
    pub(crate) fn make_all_due(&mut self, now: Instant) {
        for slot in &mut self.slots {
            slot.due = slot.due.min(now);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.live().count()
    }

    /// The frames, in no particular order.
    fn live(&self) -> impl Iterator<Item = &Pending> {
        self.slots.iter().filter(|slot| !slot.is_free())
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == N
    }

    /// The frames, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Pending> {
        let mut ordered: [Option<&Pending>; N] = [None; N];
        for slot in self.slots.iter().filter(|slot| !slot.is_free()) {
            let at = self
                .slots
                .iter()
                .filter(|other| !other.is_free() && other.order < slot.order)
                .count();
            // `at` < N: fewer than N other slots can be older.
            if let Some(place) = ordered.get_mut(at) {
                *place = Some(slot);
            }
        }
        ordered.into_iter().flatten()
    }
}

/// Writes `value` as a postcard varint; returns its length.
fn write_varint(mut value: u32, out: &mut [u8; 5]) -> usize {
    let mut len = 0;
    for byte in out.iter_mut() {
        len += 1;
        if value < 0x80 {
            *byte = value as u8;
            break;
        }
        *byte = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
    }
    len
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

#[cfg(test)]
mod tests {
    use kanal_proto::device::{Append, DeviceFrame, Poll};

    use super::*;

    #[test]
    fn renumbering_rewrites_the_id_and_keeps_the_rest() {
        let mut outbox = Outbox::<2>::new();
        let mut buf = [0u8; MAX_FRAME];
        let append = DeviceFrame::Append(Append {
            id: 3,
            conversation: 100,
            text: "hello",
            choice: None,
        });
        let encoded = append.encode(&mut buf).expect("fits");
        assert!(outbox.push(3, false, encoded, Instant(0), 1_000));
        let poll = DeviceFrame::Poll(Poll { id: 4, cursor: 9 });
        let encoded = poll.encode(&mut buf).expect("fits");
        assert!(outbox.push(4, true, encoded, Instant(0), 1_000));
        assert!(!outbox.push(5, false, encoded, Instant(0), 1_000), "full");

        assert!(outbox.renumber(3, 70_000, Instant(5)));
        assert!(outbox.renumber(4, 1, Instant(5)));
        let mut frames = outbox
            .iter()
            .map(|entry| DeviceFrame::decode(entry.frame()));
        let Some(Ok(DeviceFrame::Append(renumbered))) = frames.next() else {
            panic!("an append");
        };
        assert_eq!((renumbered.id, renumbered.text), (70_000, "hello"));
        assert_eq!(
            frames.next(),
            Some(Ok(DeviceFrame::Poll(Poll { id: 1, cursor: 9 })))
        );
        drop(frames);
        assert!(!outbox.renumber(3, 5, Instant(5)), "3 is gone");
        assert!(outbox.remove(70_000));
        assert_eq!(
            outbox
                .iter()
                .map(|entry| entry.id)
                .collect::<heapless::Vec<_, 2>>(),
            [1]
        );
    }
}
