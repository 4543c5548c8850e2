//! What a device keeps across deep sleep: a fixed-size snapshot.
//!
//! Saved: the next device message id, the next initiation counter, the
//! mailbox cursor, the unread count and the unanswered requests (their
//! encoded frames, so a retransmission after waking carries the same id).
//!
//! Not saved, on purpose: session keys, indices and transport counters.
//! A restored session starts with a new handshake. Restoring a counter
//! "with a safety margin" is not safe when the same snapshot is restored
//! twice (a crash after waking and before the next save), which would
//! encrypt two different datagrams under one nonce; a fresh handshake can
//! never do that, keeps no session key at rest, and costs no extra round
//! trip because the first request rides in handshake message 1. If a
//! snapshot is restored twice, the reused initiation counter is answered
//! with `StaleInitiation` (the device continues above it), and a device
//! message id reused for a different request with `IdReused` (the device
//! renumbers the request).
//!
//! The cost: one handshake per wake (five X25519 operations on the device:
//! the ephemeral key, es, ss, ee, se; 93 bytes more than a transport
//! datagram on the way up, 28 more on the way down).

use kanal_proto::device::limits::MAX_FRAME;

use crate::outbox::Outbox;
use crate::time::Instant;

/// The saved state's format version, its first byte.
pub const SNAPSHOT_FORMAT: u8 = 1;

/// Bytes before the requests in saved state.
const HEADER: usize = 20;
/// Bytes of one saved request.
const RECORD: usize = 4 + 1 + 2 + MAX_FRAME;

/// Length of the saved state of a session with an outbox of `capacity`.
///
/// Layout (little-endian): format version (1), next device message id
/// (4), next initiation counter (4), mailbox cursor (8), unread count (2),
/// request count (1), then `capacity` records of request id (4), flags (1,
/// bit 0: a poll), frame length (2) and the frame padded to `MAX_FRAME`
/// bytes, oldest first.
pub const fn saved_len(capacity: usize) -> usize {
    HEADER + capacity * RECORD
}

/// Why saved state could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The buffer is smaller than the saved state.
    #[error("buffer of {len} bytes, {needed} needed")]
    BufferTooSmall {
        /// Its length.
        len: usize,
        /// The length needed.
        needed: usize,
    },
    /// The bytes are not saved state of this format and capacity.
    #[error("not saved state of this format and capacity")]
    Invalid,
}

/// The counters saved beside the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) next_id: u32,
    pub(crate) next_initiation: u32,
    pub(crate) cursor: u64,
    pub(crate) unread: u16,
}

/// Writes the counters and the outbox into `out`; returns the length.
pub(crate) fn save<const N: usize>(
    counters: &Counters,
    outbox: &Outbox<N>,
    out: &mut [u8],
) -> Result<usize, SnapshotError> {
    let needed = saved_len(N);
    let len = out.len();
    let Some(out) = out.get_mut(..needed) else {
        return Err(SnapshotError::BufferTooSmall { len, needed });
    };
    out.fill(0);
    out[0] = SNAPSHOT_FORMAT;
    out[1..5].copy_from_slice(&counters.next_id.to_le_bytes());
    out[5..9].copy_from_slice(&counters.next_initiation.to_le_bytes());
    out[9..17].copy_from_slice(&counters.cursor.to_le_bytes());
    out[17..19].copy_from_slice(&counters.unread.to_le_bytes());
    let mut count = 0u8;
    for (request, record) in outbox.iter().zip(out[HEADER..].chunks_exact_mut(RECORD)) {
        let frame = request.frame();
        record[0..4].copy_from_slice(&request.id.to_le_bytes());
        record[4] = u8::from(request.is_poll);
        record[5..7].copy_from_slice(&(frame.len() as u16).to_le_bytes());
        record[7..7 + frame.len()].copy_from_slice(frame);
        count += 1;
    }
    out[19] = count;
    Ok(needed)
}

/// Reads saved state into `outbox` (requests due at `now`); returns the
/// counters.
pub(crate) fn restore<const N: usize>(
    bytes: &[u8],
    outbox: &mut Outbox<N>,
    now: Instant,
    backoff_ms: u32,
) -> Result<Counters, SnapshotError> {
    if bytes.len() != saved_len(N) || bytes[0] != SNAPSHOT_FORMAT {
        return Err(SnapshotError::Invalid);
    }
    let count = usize::from(bytes[19]);
    if count > N {
        return Err(SnapshotError::Invalid);
    }
    for record in bytes[HEADER..].chunks_exact(RECORD).take(count) {
        let len = usize::from(u16::from_le_bytes([record[5], record[6]]));
        if len > MAX_FRAME || record[4] > 1 {
            return Err(SnapshotError::Invalid);
        }
        let id = u32_at(record, 0);
        if !outbox.push(id, record[4] == 1, &record[7..7 + len], now, backoff_ms) {
            return Err(SnapshotError::Invalid);
        }
    }
    Ok(Counters {
        next_id: u32_at(bytes, 1),
        next_initiation: u32_at(bytes, 5),
        cursor: u64::from_le_bytes(array(&bytes[9..17])),
        unread: u16::from_le_bytes([bytes[17], bytes[18]]),
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(&bytes[at..at + 4]))
}

/// Copies a slice already cut to `K` bytes into an array.
fn array<const K: usize>(bytes: &[u8]) -> [u8; K] {
    let mut out = [0u8; K];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox<3> {
        let mut outbox = Outbox::new();
        assert!(outbox.push(5, false, &[1, 2, 3], Instant(0), 1_000));
        assert!(outbox.push(6, true, &[2, 6, 99], Instant(0), 1_000));
        outbox
    }

    #[test]
    fn saved_state_round_trips_through_its_fixed_layout() {
        let counters = Counters {
            next_id: 7,
            next_initiation: 12,
            cursor: 99,
            unread: 2,
        };
        let mut buf = [0u8; saved_len(3)];
        assert_eq!(save(&counters, &outbox(), &mut buf), Ok(saved_len(3)));
        assert_eq!(
            &buf[..20],
            &[1, 7, 0, 0, 0, 12, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2]
        );
        let mut restored = Outbox::<3>::new();
        assert_eq!(
            restore(&buf, &mut restored, Instant(9), 1_000),
            Ok(counters)
        );
        let frames: heapless::Vec<(u32, bool, &[u8]), 3> = restored
            .iter()
            .map(|p| (p.id, p.is_poll, p.frame()))
            .collect();
        assert_eq!(
            frames,
            [(5, false, &[1, 2, 3][..]), (6, true, &[2, 6, 99][..])]
        );
    }

    #[test]
    fn foreign_or_damaged_saved_state_is_refused() {
        let counters = Counters {
            next_id: 1,
            next_initiation: 1,
            cursor: 0,
            unread: 0,
        };
        let mut buf = [0u8; saved_len(3)];
        save(&counters, &Outbox::<3>::new(), &mut buf).expect("fits");
        let mut two = Outbox::<2>::new();
        assert_eq!(
            restore(&buf, &mut two, Instant(0), 1),
            Err(SnapshotError::Invalid),
            "saved with another capacity"
        );
        let mut three = Outbox::<3>::new();
        buf[19] = 4;
        assert_eq!(
            restore(&buf, &mut three, Instant(0), 1),
            Err(SnapshotError::Invalid)
        );
        buf[19] = 0;
        buf[0] = 9;
        assert_eq!(
            restore(&buf, &mut three, Instant(0), 1),
            Err(SnapshotError::Invalid)
        );
        assert_eq!(
            save(&counters, &three, &mut [0u8; 4]),
            Err(SnapshotError::BufferTooSmall {
                len: 4,
                needed: saved_len(3)
            })
        );
    }
}
