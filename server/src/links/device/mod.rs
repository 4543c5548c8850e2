//! The device gateway: devices over UDP in the device profile
//! (`proto/DEVICES.md`), on a port of its own. For each datagram it does
//! what §13 asks, in that order: drop what cannot be valid before any
//! cryptography; check mac1 (and, under load, mac2, else answer a cookie);
//! run Noise IK (`snow`) and drop unknown or revoked keys silently; accept
//! an initiation only above the device's last counter; find transport
//! sessions by index and follow the device to its latest address. What a
//! frame asks is done by [`act`], through the node like any client.

mod act;
mod choices;
mod initiations;
mod macs;
mod mailheads;
mod sessions;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kanal_proto::device::limits::MAX_DATAGRAM;
use kanal_proto::device::wire::{self, Datagram};
use kanal_proto::device::{ErrorCode, ErrorFrame, NOISE_PATTERN, ServerFrame};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::model::Device;
use crate::node::Node;
use crate::node::limits::Buckets;
use act::{Actor, Memory};
use initiations::Initiations;
use macs::Macs;
use mailheads::MailHeads;
use sessions::Sessions;

/// Frames being acted on at once; a datagram that finds none free is
/// dropped (the device retransmits) and the gateway asks for cookies.
const MAX_IN_FLIGHT: usize = 512;

/// Handshakes one source address may start per second, sustained (a burst
/// of [`HANDSHAKE_BURST`]): checked after mac1, before any Diffie-Hellman.
const HANDSHAKES_PER_SOURCE_PER_SECOND: f64 = 20.0;
const HANDSHAKE_BURST: f64 = 40.0;

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The gateway's static X25519 secret.
    pub secret: [u8; 32],
    /// Its public half, which every device is built with.
    pub public: [u8; 32],
    /// Requests one device may make per minute, sustained; 0: unlimited.
    pub requests_per_minute: u32,
    /// Requests one device may make at once above that rate.
    pub request_burst: u32,
    /// How long an agent's message waits in a device's mailbox.
    pub mail_expiry: Duration,
    /// Initiations per second above which the gateway asks every sender
    /// for a cookie first.
    pub cookie_threshold: u32,
}

/// What the gateway refused or did, counted since it started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Too long, of an unknown type, too short, another version.
    pub malformed: AtomicU64,
    /// An initiation with a wrong mac1.
    pub bad_mac: AtomicU64,
    /// Cookie replies sent (under load).
    pub cookies_sent: AtomicU64,
    /// Initiations over a source's rate, or with the gateway busy.
    pub throttled: AtomicU64,
    /// Handshakes that failed, or from an unknown or revoked key.
    pub refused_handshakes: AtomicU64,
    /// Initiations whose counter was not fresh.
    pub stale: AtomicU64,
    /// Transport datagrams of no session, replayed, or forged.
    pub refused_transport: AtomicU64,
    /// Sessions established.
    pub sessions: AtomicU64,
    /// Frames acted on.
    pub frames: AtomicU64,
}

/// A running gateway.
#[derive(Debug)]
pub(crate) struct Gateway {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// What it counted.
    pub counters: Arc<Counters>,
    task: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    initiations: JoinHandle<()>,
}

impl Gateway {
    /// Serves devices on `socket` for `node`.
    pub(crate) fn serve(
        socket: UdpSocket,
        node: Arc<Node>,
        settings: Settings,
    ) -> std::io::Result<Self> {
        let local_addr = socket.local_addr()?;
        let counters = Arc::new(Counters::default());
        let per_minute = f64::from(settings.requests_per_minute.max(1));
        let (initiations, committer) = Initiations::start(node.store.clone());
        let mail = Arc::new(MailHeads::default());
        node.hub.set_observer(mail.clone());
        let shared = Arc::new(Shared {
            initiations,
            macs: Macs::new(&settings.public),
            mail,
            node,
            socket: Arc::new(socket),
            sessions: Sessions::default(),
            memories: Mutex::default(),
            requests: (settings.requests_per_minute > 0).then(|| {
                Buckets::new(
                    f64::from(settings.request_burst.max(1)),
                    Duration::from_secs_f64(60.0 / per_minute),
                )
            }),
            sources: Buckets::new(
                HANDSHAKE_BURST,
                Duration::from_secs_f64(1.0 / HANDSHAKES_PER_SOURCE_PER_SECOND),
            ),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            load: Mutex::new((Instant::now(), 0)),
            counters: counters.clone(),
            settings,
        });
        let task = tokio::spawn(receive(shared.clone()));
        let upkeep = tokio::spawn(upkeep(shared));
        Ok(Self {
            local_addr,
            counters,
            task,
            upkeep,
            initiations: committer,
        })
    }

    /// Stops serving.
    pub(crate) fn stop(&self) {
        self.task.abort();
        self.upkeep.abort();
        self.initiations.abort();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the receive loop and the tasks acting on frames share.
struct Shared {
    node: Arc<Node>,
    /// Where handshakes advance their device's counter, group-committed.
    initiations: Initiations,
    socket: Arc<UdpSocket>,
    macs: Macs,
    sessions: Sessions,
    /// Per device, what its next frame must be checked against; a device's
    /// frames are acted on one at a time.
    memories: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<Memory>>>>,
    /// Where the devices' logs end (an empty mailbox costs no read).
    mail: Arc<MailHeads>,
    requests: Option<Buckets<[u8; 32]>>,
    sources: Buckets<IpAddr>,
    in_flight: Arc<Semaphore>,
    /// Initiations in the current second: (its start, count).
    load: Mutex<(Instant, u32)>,
    counters: Arc<Counters>,
    settings: Settings,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads datagrams until the socket fails.
async fn receive(shared: Arc<Shared>) {
    // One byte more than the largest datagram, to see a longer one.
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        let (len, from) = match shared.socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error of an earlier send (the device is gone).
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the device gateway's socket failed");
                return;
            }
        };
        match wire::parse(&buf[..len]) {
            Ok(Datagram::Initiation(init)) => shared.initiation(from, &init),
            Ok(Datagram::Transport(transport)) => shared.transport(from, &transport),
            Ok(Datagram::Response(_) | Datagram::CookieReply(_)) | Err(_) => {
                count(&shared.counters.malformed);
            }
        }
    }
}

/// Forgets idle sessions, and reads the registry again for changes other
/// nodes made.
async fn upkeep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(crate::node::devices::REFRESH);
    tick.tick().await;
    loop {
        tick.tick().await;
        let live = shared.sessions.sweep();
        match shared.node.devices.reload(shared.node.store.as_ref()).await {
            Ok(registered) => tracing::debug!(live, registered, "device gateway upkeep"),
            Err(e) => tracing::warn!(error = %e, "reading the device registry failed"),
        }
    }
}

impl Shared {
    /// Steps 2 to 5 of §13 for a handshake initiation; the Diffie-Hellman
    /// runs here, acting on the frame in a task of its own.
    fn initiation(self: &Arc<Self>, from: SocketAddr, init: &wire::Initiation<'_>) {
        if !self.macs.mac1_ok(init.mac1_input, init.mac1) {
            count(&self.counters.bad_mac);
            return;
        }
        if self.sources.try_take(&from.ip()).is_err() {
            count(&self.counters.throttled);
            return;
        }
        if self.under_load() {
            let proven = init
                .mac2
                .is_some_and(|(mac2, input)| self.macs.mac2_ok(from, input, mac2));
            if !proven {
                count(&self.counters.cookies_sent);
                let reply = self.macs.cookie_reply(from, init.sender, init.mac1);
                let _ = self.socket.try_send_to(&reply, from);
                return;
            }
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            count(&self.counters.throttled);
            return;
        };
        let prologue = wire::prologue(init.header);
        let mut handshake =
            match snow::Builder::new(NOISE_PATTERN.parse().expect("a valid pattern"))
                .local_private_key(&self.settings.secret)
                .and_then(|b| b.prologue(&prologue))
                .and_then(snow::Builder::build_responder)
            {
                Ok(handshake) => handshake,
                Err(e) => {
                    tracing::error!(error = %e, "cannot build a Noise responder");
                    return;
                }
            };
        let mut payload = [0u8; MAX_DATAGRAM];
        let Ok(len) = handshake.read_message(init.noise, &mut payload) else {
            count(&self.counters.refused_handshakes);
            return;
        };
        let Some(key) = handshake
            .get_remote_static()
            .and_then(|key| <[u8; 32]>::try_from(key).ok())
        else {
            count(&self.counters.refused_handshakes);
            return;
        };
        let Some(device) = self
            .node
            .devices
            .get(&key)
            .filter(|d| d.revoked_at_ms.is_none())
        else {
            count(&self.counters.refused_handshakes);
            return;
        };
        let frame = payload[..len].to_vec();
        let (sender, counter) = (init.sender, init.counter);
        let shared = self.clone();
        tokio::spawn(async move {
            shared
                .complete(from, sender, counter, handshake, device, frame)
                .await;
            drop(permit);
        });
    }

    /// Steps 4 and 5: the counter, the frame, message 2 and the session.
    async fn complete(
        &self,
        from: SocketAddr,
        sender: u32,
        counter: u32,
        mut handshake: snow::HandshakeState,
        device: Arc<Device>,
        frame: Vec<u8>,
    ) {
        let memory = self.memory(&device.key);
        let mut memory = memory.lock().await;
        let fresh = match self.initiations.advance(device.key, counter).await {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!(error = %e, "recording a device's initiation failed");
                return;
            }
        };
        let answers = if fresh {
            count(&self.counters.frames);
            self.act(&device, &mut memory, &frame).await
        } else {
            count(&self.counters.stale);
            let last = match self.node.store.device_by_key(device.key).await {
                Ok(Some(stored)) => stored.last_initiation,
                _ => device.last_initiation,
            };
            vec![act::encode(&ServerFrame::Error(ErrorFrame {
                id: None,
                code: ErrorCode::StaleInitiation.value(),
                detail: last,
            }))]
        };
        drop(memory);
        let index = self.sessions.pick_index();
        let mut response = vec![0u8; MAX_DATAGRAM];
        wire::write_response_header(&mut response, index, sender).expect("room for the header");
        let first = answers.first().map_or(&[][..], Vec::as_slice);
        let Ok(len) = handshake.write_message(first, &mut response[wire::RESPONSE_HEADER..]) else {
            tracing::warn!("writing handshake message 2 failed");
            return;
        };
        response.truncate(wire::RESPONSE_HEADER + len);
        let _ = self.socket.send_to(&response, from).await;
        if !fresh {
            // A replayed initiation: nothing is kept.
            return;
        }
        let Ok(transport) = handshake.into_stateless_transport_mode() else {
            return;
        };
        self.sessions
            .insert(index, device.key, transport, sender, from);
        count(&self.counters.sessions);
        self.answer(index, answers.get(1..).unwrap_or_default())
            .await;
    }

    /// Step 6 for a transport datagram: decrypt here, act in a task.
    fn transport(self: &Arc<Self>, from: SocketAddr, datagram: &wire::Transport<'_>) {
        let mut frame = [0u8; MAX_DATAGRAM];
        let opened = match self.sessions.open(from, datagram, &mut frame) {
            Ok(opened) => opened,
            Err(_) => {
                count(&self.counters.refused_transport);
                return;
            }
        };
        let index = datagram.receiver;
        let Some(device) = self
            .node
            .devices
            .get(&opened.device)
            .filter(|d| d.revoked_at_ms.is_none())
        else {
            // Revoked since the handshake.
            self.sessions.forget(index);
            count(&self.counters.refused_transport);
            return;
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            count(&self.counters.throttled);
            return;
        };
        let frame = frame[..opened.len].to_vec();
        let shared = self.clone();
        tokio::spawn(async move {
            let memory = shared.memory(&device.key);
            let answers = {
                let mut memory = memory.lock().await;
                count(&shared.counters.frames);
                shared.act(&device, &mut memory, &frame).await
            };
            shared.answer(index, &answers).await;
            drop(permit);
        });
    }

    async fn act(&self, device: &Device, memory: &mut Memory, frame: &[u8]) -> Vec<Vec<u8>> {
        let actor = Actor {
            node: &self.node,
            mail_expiry: self.settings.mail_expiry,
            mail: &self.mail,
        };
        let allow = || match &self.requests {
            Some(buckets) => buckets
                .try_take(&device.key)
                .map_err(|wait| u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX)),
            None => Ok(()),
        };
        actor.act(device, memory, frame, allow).await
    }

    /// Sends `frames` to the device of session `index`, where it is now.
    async fn answer(&self, index: u32, frames: &[Vec<u8>]) {
        if frames.is_empty() {
            return;
        }
        if let Some((peer, datagrams)) = self.sessions.seal(index, frames) {
            for datagram in datagrams {
                let _ = self.socket.send_to(&datagram, peer).await;
            }
        }
    }

    fn memory(&self, key: &[u8; 32]) -> Arc<tokio::sync::Mutex<Memory>> {
        self.memories
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(*key)
            .or_default()
            .clone()
    }

    /// Whether initiations this second passed the cookie threshold, or the
    /// gateway is busy.
    fn under_load(&self) -> bool {
        let mut load = self.load.lock().unwrap_or_else(PoisonError::into_inner);
        if load.0.elapsed() >= Duration::from_secs(1) {
            *load = (Instant::now(), 0);
        }
        load.1 = load.1.saturating_add(1);
        load.1 > self.settings.cookie_threshold
            || self.in_flight.available_permits() < MAX_IN_FLIGHT / 2
    }
}
