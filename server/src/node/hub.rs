//! Live fan-out: committed events go from the writer to every session of the
//! recipient that is listening, without copying the event body per recipient.
//!
//! Each listening session has a bounded queue. A session that falls behind
//! far enough to fill it is flagged as lagged and the event is dropped for it;
//! the session then replays from the store, so a slow reader costs memory
//! bounded by its queue, never an unbounded backlog, and never loses an event.
//!
//! With several nodes, events committed by another node arrive as news
//! only ("party P's log advanced to N", [`Hub::advance`]): the session
//! reads them from the store, as after a lag. What this node commits is
//! told to the others through the hub's [`Announcer`].

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
    /// Seq in the listener's party log ([`CHECK`] with no event: see there).
    pub seq: u64,
    /// The event, shared between recipients; `None` when another node
    /// committed it: the listener reads it from the store.
    pub event: Option<Arc<SharedEvent>>,
}

/// The seq of a [`LiveEvent`] that says "the log may have grown, seq
/// unknown": the listener compares its position with the store's.
pub(crate) const CHECK: u64 = u64::MAX;

/// Tells other nodes where the logs this node appended to end now.
pub(crate) trait Announcer: Send + Sync {
    /// `heads`: (party, its log's new head), once per party.
    fn logs_advanced(&self, heads: &[(PartyId, u64)]);

    /// An ephemeral datagram for the sessions of `parties` on other nodes.
    fn datagram(&self, parties: &[PartyId], datagram: &Bytes);
}

/// Told where logs end after every commit, here or on another node, so a
/// reader can tell "nothing new" without reading the store (the device
/// gateway's mailboxes).
pub(crate) trait LogObserver: Send + Sync {
    /// `heads`: (party, its log's new head).
    fn advanced(&self, heads: &[(PartyId, u64)]);

    /// News may have been lost (the bus between nodes was down): nothing
    /// observed so far can be relied on.
    fn unreliable(&self);
}

/// Where a session takes ephemeral datagrams (typing): best effort, never
/// blocking, like QUIC datagrams.
pub(crate) type DatagramSink = Box<dyn Fn(Bytes) + Send + Sync>;

/// Routes committed events and ephemeral datagrams to listening sessions.
#[derive(Default)]
pub struct Hub {
    listeners: Mutex<HashMap<PartyId, Vec<Listener>>>,
    next_id: AtomicU64,
    announcer: OnceLock<Arc<dyn Announcer>>,
    observer: OnceLock<Arc<dyn LogObserver>>,
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

    /// Sessions listening here now.
    pub(crate) fn sessions(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Has what this node commits told to other nodes, from now on.
    pub(crate) fn set_announcer(&self, announcer: Arc<dyn Announcer>) {
        if self.announcer.set(announcer).is_err() {
            tracing::warn!("the hub has an announcer already; the new one is ignored");
        }
    }

    /// Tells `observer` where logs end after every commit, from now on.
    pub(crate) fn set_observer(&self, observer: Arc<dyn LogObserver>) {
        if self.observer.set(observer).is_err() {
            tracing::warn!("the hub has a log observer already; the new one is ignored");
        }
    }

    /// Hands committed events to their recipients' listening sessions, and
    /// tells other nodes where the recipients' logs end now.
    pub fn publish(&self, published: Vec<Published>) {
        if published.is_empty() {
            return;
        }
        let announcer = self.announcer.get();
        let observer = self.observer.get();
        let want_heads = announcer.is_some() || observer.is_some();
        let mut heads: HashMap<PartyId, u64> = HashMap::new();
        let listeners = self.lock();
        for Published { event, recipients } in published {
            let event = Arc::new(SharedEvent {
                event,
                rendered: OnceLock::new(),
            });
            for (party, seq) in recipients {
                if want_heads {
                    let head = heads.entry(party).or_insert(seq);
                    *head = (*head).max(seq);
                }
                let Some(sessions) = listeners.get(&party) else {
                    continue;
                };
                for listener in sessions {
                    listener.offer(LiveEvent {
                        seq,
                        event: Some(event.clone()),
                    });
                }
            }
        }
        drop(listeners);
        if want_heads {
            let heads: Vec<(PartyId, u64)> = heads.into_iter().collect();
            if let Some(observer) = observer {
                observer.advanced(&heads);
            }
            if let Some(announcer) = announcer {
                announcer.logs_advanced(&heads);
            }
        }
    }

    /// News from another node: `party`'s log now ends at `head`. Its
    /// sessions here read what they have not sent from the store.
    pub(crate) fn advance(&self, party: PartyId, head: u64) {
        if let Some(observer) = self.observer.get() {
            observer.advanced(&[(party, head)]);
        }
        let listeners = self.lock();
        for listener in listeners.get(&party).into_iter().flatten() {
            listener.offer(LiveEvent {
                seq: head,
                event: None,
            });
        }
    }

    /// News may have been lost (the bus between nodes was down): every
    /// session here compares its position with the store.
    pub(crate) fn check_all(&self) {
        if let Some(observer) = self.observer.get() {
            observer.unreliable();
        }
        let listeners = self.lock();
        for listener in listeners.values().flatten() {
            listener.offer(LiveEvent {
                seq: CHECK,
                event: None,
            });
        }
    }

    /// Sends an ephemeral datagram to every listening session of `parties`,
    /// except those on the connection it came from, here and on other nodes.
    pub fn relay_datagram(&self, parties: &[PartyId], from: u64, datagram: Bytes) {
        if let Some(announcer) = self.announcer.get() {
            announcer.datagram(parties, &datagram);
        }
        self.relay_local_datagram(parties, from, datagram);
    }

    /// [`Hub::relay_datagram`] to this node's sessions only (a datagram
    /// from another node).
    pub(crate) fn relay_local_datagram(&self, parties: &[PartyId], from: u64, datagram: Bytes) {
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

impl Listener {
    /// Queues `live`, or marks the session lagged if its queue is full.
    fn offer(&self, live: LiveEvent) {
        if self.tx.try_send(live).is_err() {
            self.lagged.store(true, Ordering::Release);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.party, self.id);
    }
}
