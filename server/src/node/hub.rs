//! Live fan-out: committed events go from the writer to every session of the
//! recipient that is listening, without copying the event body per recipient.
//!
//! Each listening session has a bounded queue. A session that falls behind
//! far enough to fill it is flagged as lagged and the event is dropped for it;
//! the session then replays from the store, so a slow reader costs memory
//! bounded by its queue, never an unbounded backlog, and never loses an event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::core::engine::Published;
use crate::model::{Event, PartyId};

/// Events queued per listening session before it counts as lagged.
pub(crate) const SESSION_QUEUE: usize = 1024;

/// A committed event, shared by every recipient: each link renders it once
/// and every session of that link writes the same bytes.
#[derive(Debug)]
pub struct SharedEvent {
    /// What happened.
    pub event: Event,
    /// The event rendered for client sessions, made by the first that needs it.
    rendered: OnceLock<Bytes>,
}

impl SharedEvent {
    /// The event as `render` renders it, rendered at most once.
    pub fn rendered(&self, render: impl FnOnce(&Event) -> Bytes) -> &Bytes {
        self.rendered.get_or_init(|| render(&self.event))
    }
}

/// One committed event for one listener.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Seq in the listener's party log.
    pub seq: u64,
    /// The event, shared between recipients.
    pub event: Arc<SharedEvent>,
}

/// Where a session takes ephemeral datagrams (typing): best effort, never
/// blocking, like QUIC datagrams.
pub(crate) type DatagramSink = Box<dyn Fn(Bytes) + Send + Sync>;

/// Routes committed events and ephemeral datagrams to listening sessions.
#[derive(Default)]
pub struct Hub {
    listeners: Mutex<HashMap<PartyId, Vec<Listener>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

struct Listener {
    id: u64,
    tx: mpsc::Sender<LiveEvent>,
    lagged: Arc<AtomicBool>,
    /// The session's connection, so a datagram is not echoed to its sender.
    connection: u64,
    datagrams: DatagramSink,
}

/// A session's registration; unregisters when dropped.
#[derive(Debug)]
pub struct Subscription {
    /// Live events in seq order (with gaps only after `lagged` was set).
    pub events: mpsc::Receiver<LiveEvent>,
    /// Set when events were dropped because the queue was full.
    pub lagged: Arc<AtomicBool>,
    hub: Arc<Hub>,
    party: PartyId,
    id: u64,
}

impl Hub {
    /// Registers a session of `party` on `connection` (an id unique among
    /// the link's connections) that wants live events and datagrams.
    pub fn subscribe(
        self: &Arc<Self>,
        party: PartyId,
        connection: u64,
        datagrams: DatagramSink,
    ) -> Subscription {
        let (tx, events) = mpsc::channel(SESSION_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().entry(party).or_default().push(Listener {
            id,
            tx,
            lagged: lagged.clone(),
            connection,
            datagrams,
        });
        Subscription {
            events,
            lagged,
            hub: self.clone(),
            party,
            id,
        }
    }

    /// Hands committed events to their recipients' listening sessions.
    pub fn publish(&self, published: Vec<Published>) {
        if published.is_empty() {
            return;
        }
        let listeners = self.lock();
        for Published { event, recipients } in published {
            let event = Arc::new(SharedEvent {
                event,
                rendered: OnceLock::new(),
            });
            for (party, seq) in recipients {
                let Some(sessions) = listeners.get(&party) else {
                    continue;
                };
                for listener in sessions {
                    let live = LiveEvent {
                        seq,
                        event: event.clone(),
                    };
                    if listener.tx.try_send(live).is_err() {
                        listener.lagged.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Sends an ephemeral datagram to every listening session of `parties`,
    /// except those on the connection it came from.
    pub fn relay_datagram(&self, parties: &[PartyId], from: u64, datagram: Bytes) {
        let listeners = self.lock();
        for party in parties {
            for listener in listeners.get(party).into_iter().flatten() {
                if listener.connection != from {
                    (listener.datagrams)(datagram.clone());
                }
            }
        }
    }

    fn unsubscribe(&self, party: PartyId, id: u64) {
        let mut listeners = self.lock();
        if let Some(sessions) = listeners.get_mut(&party) {
            sessions.retain(|l| l.id != id);
            if sessions.is_empty() {
                listeners.remove(&party);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartyId, Vec<Listener>>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.party, self.id);
    }
}
