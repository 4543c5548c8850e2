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
//! with `StaleInitiation`, and the device continues above it.

use heapless::Vec;
use kanal_proto::device::limits::MAX_FRAME;

/// The snapshot's format version, its first byte.
pub const SNAPSHOT_FORMAT: u8 = 1;

/// Bytes before the requests in an encoded snapshot.
const HEADER: usize = 20;
/// Bytes of one encoded request record.
const RECORD: usize = 4 + 1 + 2 + MAX_FRAME;

/// A device session's durable state, for up to `N` unanswered requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot<const N: usize> {
    pub(crate) next_id: u32,
    pub(crate) next_initiation: u32,
    pub(crate) cursor: u64,
    pub(crate) unread: u16,
    requests: Vec<SavedRequest, N>,
}

/// One unanswered request in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedRequest {
    pub(crate) id: u32,
    pub(crate) is_poll: bool,
    len: u16,
    bytes: [u8; MAX_FRAME],
}

impl SavedRequest {
    pub(crate) fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Why a snapshot could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The buffer is smaller than [`Snapshot::ENCODED_LEN`].
    #[error("snapshot buffer of {len} bytes, {needed} needed")]
    BufferTooSmall {
        /// Its length.
        len: usize,
        /// The length needed.
        needed: usize,
    },
    /// The bytes are not a snapshot of this format and capacity.
    #[error("not a snapshot of this format and capacity")]
    Invalid,
}

impl<const N: usize> Snapshot<N> {
    /// Length of an encoded snapshot, in bytes.
    ///
    /// Layout (little-endian): format version (1), next device message id
    /// (4), next initiation counter (4), mailbox cursor (8), unread count
    /// (2), request count (1), then `N` records of request id (4), flags
    /// (1, bit 0: a poll), frame length (2) and the frame padded to
    /// `MAX_FRAME` bytes.
    pub const ENCODED_LEN: usize = HEADER + N * RECORD;

    pub(crate) fn new(next_id: u32, next_initiation: u32, cursor: u64, unread: u16) -> Self {
        Self {
            next_id,
            next_initiation,
            cursor,
            unread,
            requests: Vec::new(),
        }
    }

    /// Adds a request; the session never holds more than `N`.
    pub(crate) fn push(&mut self, id: u32, is_poll: bool, frame: &[u8]) {
        let len = frame.len().min(MAX_FRAME);
        let mut bytes = [0u8; MAX_FRAME];
        bytes[..len].copy_from_slice(&frame[..len]);
        let _ = self.requests.push(SavedRequest {
            id,
            is_poll,
            len: len as u16,
            bytes,
        });
    }

    pub(crate) fn requests(&self) -> impl Iterator<Item = &SavedRequest> {
        self.requests.iter()
    }

    /// Unanswered requests held.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether no request is held.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Writes the snapshot into `out[..Self::ENCODED_LEN]`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, SnapshotError> {
        let Some(out) = out.get_mut(..Self::ENCODED_LEN) else {
            return Err(SnapshotError::BufferTooSmall {
                len: out.len(),
                needed: Self::ENCODED_LEN,
            });
        };
        out.fill(0);
        out[0] = SNAPSHOT_FORMAT;
        out[1..5].copy_from_slice(&self.next_id.to_le_bytes());
        out[5..9].copy_from_slice(&self.next_initiation.to_le_bytes());
        out[9..17].copy_from_slice(&self.cursor.to_le_bytes());
        out[17..19].copy_from_slice(&self.unread.to_le_bytes());
        out[19] = self.requests.len() as u8;
        for (request, record) in self.requests.iter().zip(out[HEADER..].chunks_mut(RECORD)) {
            record[0..4].copy_from_slice(&request.id.to_le_bytes());
            record[4] = u8::from(request.is_poll);
            record[5..7].copy_from_slice(&request.len.to_le_bytes());
            record[7..].copy_from_slice(&request.bytes);
        }
        Ok(Self::ENCODED_LEN)
    }

    /// Reads a snapshot written by [`Self::encode`] with the same `N`.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        if bytes.len() != Self::ENCODED_LEN || bytes[0] != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Invalid);
        }
        let count = usize::from(bytes[19]);
        if count > N {
            return Err(SnapshotError::Invalid);
        }
        let mut snapshot = Self::new(
            u32_at(bytes, 1),
            u32_at(bytes, 5),
            u64::from_le_bytes(array(&bytes[9..17])),
            u16::from_le_bytes(array(&bytes[17..19])),
        );
        for record in bytes[HEADER..].chunks(RECORD).take(count) {
            let len = usize::from(u16::from_le_bytes(array(&record[5..7])));
            if len > MAX_FRAME || record[4] > 1 {
                return Err(SnapshotError::Invalid);
            }
            snapshot.push(u32_at(record, 0), record[4] == 1, &record[7..7 + len]);
        }
        Ok(snapshot)
    }
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

    #[test]
    fn a_snapshot_round_trips_through_its_fixed_layout() {
        let mut snapshot = Snapshot::<3>::new(7, 12, 99, 2);
        snapshot.push(5, false, &[1, 2, 3]);
        snapshot.push(6, true, &[2, 6, 99]);
        let mut buf = [0u8; Snapshot::<3>::ENCODED_LEN];
        assert_eq!(snapshot.encode(&mut buf), Ok(Snapshot::<3>::ENCODED_LEN));
        assert_eq!(
            &buf[..20],
            &[1, 7, 0, 0, 0, 12, 0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2]
        );
        assert_eq!(Snapshot::<3>::decode(&buf), Ok(snapshot));
    }

    #[test]
    fn a_foreign_or_damaged_snapshot_is_refused() {
        let snapshot = Snapshot::<2>::new(1, 1, 0, 0);
        let mut buf = [0u8; Snapshot::<2>::ENCODED_LEN];
        snapshot.encode(&mut buf).expect("fits");
        assert_eq!(Snapshot::<3>::decode(&buf), Err(SnapshotError::Invalid));
        buf[19] = 3;
        assert_eq!(Snapshot::<2>::decode(&buf), Err(SnapshotError::Invalid));
        buf[19] = 0;
        buf[0] = 9;
        assert_eq!(Snapshot::<2>::decode(&buf), Err(SnapshotError::Invalid));
    }
}
