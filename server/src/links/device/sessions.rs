//! The gateway's live device sessions, found by the server's index, never
//! by address (`DEVICES.md` §3): a device whose address changes keeps its
//! session, and answers go where its last authenticated datagram came from.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use kanal_proto::device::ReplayWindow;
use kanal_proto::device::wire::{self, TAG};
use rand::RngCore as _;

/// Sessions kept per device: the newest and the one before it (which may
/// still carry late datagrams, §4). An older one is forgotten when a new one
/// is made, so however often a device handshakes it holds at most this many.
pub(crate) const PER_DEVICE: usize = 2;

/// A session idle this long is forgotten (the device's next datagram
/// starts a new handshake).
pub(crate) const IDLE: Duration = Duration::from_secs(45 * 60);

/// One established session.
struct Session {
    /// The device's static key.
    device: [u8; 32],
    transport: snow::StatelessTransportState,
    /// The device's index: every datagram to it names it.
    remote: u32,
    /// The next counter to send under.
    sent: u64,
    replay: ReplayWindow,
    /// Where the last authenticated datagram came from.
    peer: SocketAddr,
    last_seen: Instant,
}

/// What an authenticated transport datagram carried.
pub(crate) struct Opened {
    /// The device it came from.
    pub device: [u8; 32],
    /// Its frame's length in the caller's buffer.
    pub len: usize,
}

/// Why a transport datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// No session has this index.
    UnknownIndex,
    /// The counter was seen, or is too old.
    Replayed,
    /// It did not decrypt: tampered, or not of this session.
    Forged,
}

/// The live sessions, by the server's index.
#[derive(Default)]
pub(crate) struct Sessions {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_index: HashMap<u32, Session>,
    /// Each device's live sessions, oldest first.
    by_device: HashMap<[u8; 32], VecDeque<u32>>,
}

impl Table {
    fn remove(&mut self, index: u32) {
        let Some(session) = self.by_index.remove(&index) else {
            return;
        };
        if let Some(indices) = self.by_device.get_mut(&session.device) {
            indices.retain(|i| *i != index);
            if indices.is_empty() {
                self.by_device.remove(&session.device);
            }
        }
    }
}

impl Sessions {
    /// A server index for a new session: random, so indices say nothing
    /// of how many sessions there are, and unused among the live ones.
    pub(crate) fn pick_index(&self) -> u32 {
        let table = self.lock();
        loop {
            let index = rand::rng().next_u32();
            if !table.by_index.contains_key(&index) {
                return index;
            }
        }
    }

    /// Keeps a session just established with `device` under the server's
    /// `index` (from [`Self::pick_index`]); the device's index is `remote`,
    /// its address `peer`. The device's oldest session goes if it has
    /// [`PER_DEVICE`] already.
    pub(crate) fn insert(
        &self,
        index: u32,
        device: [u8; 32],
        transport: snow::StatelessTransportState,
        remote: u32,
        peer: SocketAddr,
    ) {
        let mut table = self.lock();
        table.remove(index);
        let indices = table.by_device.entry(device).or_default();
        indices.push_back(index);
        let oldest = (indices.len() > PER_DEVICE)
            .then(|| indices.pop_front())
            .flatten();
        if let Some(oldest) = oldest {
            table.remove(oldest);
        }
        table.by_index.insert(
            index,
            Session {
                device,
                transport,
                remote,
                sent: 0,
                replay: ReplayWindow::new(),
                peer,
                last_seen: Instant::now(),
            },
        );
    }

    /// Checks, decrypts into `out` and marks a transport datagram from
    /// `from`; the session then answers at `from`.
    pub(crate) fn open(
        &self,
        from: SocketAddr,
        datagram: &wire::Transport<'_>,
        out: &mut [u8],
    ) -> Result<Opened, Dropped> {
        let mut table = self.lock();
        let session = table
            .by_index
            .get_mut(&datagram.receiver)
            .ok_or(Dropped::UnknownIndex)?;
        session
            .replay
            .check(datagram.counter)
            .map_err(|_| Dropped::Replayed)?;
        let len = session
            .transport
            .read_message(datagram.counter, datagram.ciphertext, out)
            .map_err(|_| Dropped::Forged)?;
        session
            .replay
            .mark(datagram.counter)
            .map_err(|_| Dropped::Replayed)?;
        session.peer = from;
        session.last_seen = Instant::now();
        Ok(Opened {
            device: session.device,
            len,
        })
    }

    /// Seals `frames` as transport datagrams of session `index`, with where
    /// to send them; nothing if the session is gone.
    pub(crate) fn seal(
        &self,
        index: u32,
        frames: &[Vec<u8>],
    ) -> Option<(SocketAddr, Vec<Vec<u8>>)> {
        let mut table = self.lock();
        let session = table.by_index.get_mut(&index)?;
        let mut datagrams = Vec::with_capacity(frames.len());
        for frame in frames {
            let counter = session.sent;
            session.sent += 1;
            let mut out = vec![0u8; wire::TRANSPORT_HEADER + frame.len() + TAG];
            wire::write_transport_header(&mut out, session.remote, counter).ok()?;
            session
                .transport
                .write_message(counter, frame, &mut out[wire::TRANSPORT_HEADER..])
                .ok()?;
            datagrams.push(out);
        }
        Some((session.peer, datagrams))
    }

    /// Forgets session `index` (its device was revoked).
    pub(crate) fn forget(&self, index: u32) {
        self.lock().remove(index);
    }

    /// Forgets sessions idle for [`IDLE`]; returns how many remain.
    pub(crate) fn sweep(&self) -> usize {
        let mut table = self.lock();
        let idle: Vec<u32> = table
            .by_index
            .iter()
            .filter(|(_, session)| session.last_seen.elapsed() >= IDLE)
            .map(|(index, _)| *index)
            .collect();
        for index in idle {
            table.remove(index);
        }
        table.by_index.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
