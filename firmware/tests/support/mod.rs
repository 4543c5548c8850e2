//! Test support: a deterministic RNG (tests only: a device needs a real
//! one), fixed keys, and a virtual-time link between a device session and
//! the snow responder, with loss and address changes under the test's
//! control.

#![allow(dead_code, unreachable_pub)]

pub mod responder;

use std::collections::VecDeque;
use std::net::SocketAddr;

use clatter::bytearray::ByteArray;
use clatter::crypto::dh::X25519;
use clatter::traits::Dh;
use kanal_firmware::profile::limits::MAX_DATAGRAM;
use kanal_firmware::{DeviceConfig, DeviceSession, Event, Instant};
use rand_core::{CryptoRng, RngCore};

pub use responder::Responder;

/// Outbox capacity used by the tests.
pub const OUTBOX: usize = 4;

pub type Session = DeviceSession<TestRng, OUTBOX>;

/// A deterministic RNG (splitmix64). For tests only.
#[derive(Clone)]
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Deterministic on purpose, for reproducible tests.
impl CryptoRng for TestRng {}

pub const DEVICE_SECRET: [u8; 32] = [0x11; 32];
pub const SERVER_SECRET: [u8; 32] = [0x22; 32];

pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    X25519::pubkey(&<X25519 as Dh>::PrivateKey::from_slice(secret))
}

pub fn config() -> DeviceConfig {
    DeviceConfig::new(DEVICE_SECRET, public_of(&SERVER_SECRET))
}

pub fn device(seed: u64) -> Session {
    DeviceSession::new(config(), TestRng::new(seed))
}

/// A responder that knows the test device.
pub fn server() -> Responder {
    let mut server = Responder::new(SERVER_SECRET, public_of(&SERVER_SECRET));
    server.register(public_of(&DEVICE_SECRET));
    server
}

/// An event the test can keep (the session's events borrow their text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Renumbered {
        old: u32,
        new: u32,
    },
    Opened {
        id: u32,
        conversation: u64,
    },
    Accepted {
        ids: Vec<u32>,
    },
    Message {
        id: u64,
        conversation: u64,
        text: String,
        replies: Vec<String>,
    },
    Refused {
        id: u32,
        code: u16,
    },
}

impl From<Event<'_>> for Seen {
    fn from(event: Event<'_>) -> Self {
        match event {
            Event::Opened { id, conversation } => Seen::Opened { id, conversation },
            Event::Accepted { ids } => Seen::Accepted { ids: ids.to_vec() },
            Event::Message(m) => Seen::Message {
                id: m.id,
                conversation: m.conversation,
                text: m.text.to_owned(),
                replies: m.replies.iter().map(|r| (*r).to_owned()).collect(),
            },
            Event::Refused { id, code, .. } => Seen::Refused { id, code },
            Event::Renumbered { old, new } => Seen::Renumbered { old, new },
        }
    }
}

/// Decides whether the n-th datagram in a direction is lost.
pub type LossFn = Box<dyn FnMut(u64) -> bool>;

/// A device and the responder joined by an in-memory network with virtual
/// time, like quinn-proto's test `Pair`.
pub struct Pair {
    pub device: Session,
    pub server: Responder,
    pub now: Instant,
    /// The device's address as the server sees it (change it to simulate a
    /// NAT rebinding).
    pub device_addr: SocketAddr,
    pub to_server: VecDeque<Vec<u8>>,
    pub to_device: VecDeque<(SocketAddr, Vec<u8>)>,
    pub events: Vec<Seen>,
    /// Every datagram, in order: (from the device?, length).
    pub wire_log: Vec<(bool, usize)>,
    pub lose_up: Option<LossFn>,
    pub lose_down: Option<LossFn>,
    up_count: u64,
    down_count: u64,
}

impl Pair {
    pub fn new(device: Session, server: Responder) -> Self {
        Self {
            device,
            server,
            now: Instant(0),
            device_addr: "192.0.2.10:40000".parse().expect("address"),
            to_server: VecDeque::new(),
            to_device: VecDeque::new(),
            events: Vec::new(),
            wire_log: Vec::new(),
            lose_up: None,
            lose_down: None,
            up_count: 0,
            down_count: 0,
        }
    }

    /// Everything the device sends now goes on the wire (subject to loss).
    pub fn flush_device(&mut self) {
        let mut buf = [0u8; MAX_DATAGRAM];
        while let Some(len) = self
            .device
            .poll_transmit(self.now, &mut buf)
            .expect("transmit")
        {
            self.wire_log.push((true, len));
            self.up_count += 1;
            let lost = self
                .lose_up
                .as_mut()
                .is_some_and(|lose| lose(self.up_count));
            if !lost {
                self.to_server.push_back(buf[..len].to_vec());
            }
        }
    }

    /// The server handles every datagram on its way.
    pub fn deliver_to_server(&mut self) -> bool {
        let mut moved = false;
        while let Some(datagram) = self.to_server.pop_front() {
            moved = true;
            for (to, answer) in self.server.handle(self.device_addr, &datagram) {
                self.wire_log.push((false, answer.len()));
                self.down_count += 1;
                let lost = self
                    .lose_down
                    .as_mut()
                    .is_some_and(|lose| lose(self.down_count));
                if !lost {
                    self.to_device.push_back((to, answer));
                }
            }
        }
        moved
    }

    /// The device handles every datagram on its way (only those addressed
    /// to its current address arrive).
    pub fn deliver_to_device(&mut self) -> bool {
        let mut moved = false;
        while let Some((to, datagram)) = self.to_device.pop_front() {
            moved = true;
            if to != self.device_addr {
                continue;
            }
            if let Ok(Some(event)) = self.device.handle_datagram(self.now, &datagram) {
                self.events.push(event.into());
            }
        }
        moved
    }

    /// Runs until nothing is in flight and nothing is due before
    /// `horizon_ms` from now; advances virtual time to deadlines. Panics
    /// after `max_steps` (a livelock).
    pub fn drive_for(&mut self, horizon_ms: u64) {
        let end = self.now.after_ms(horizon_ms);
        for _ in 0..10_000 {
            self.flush_device();
            let up = self.deliver_to_server();
            let down = self.deliver_to_device();
            if up || down {
                continue;
            }
            match self.device.poll_timeout() {
                Some(deadline) if deadline <= end => {
                    self.now = self.now.max(deadline);
                }
                _ => return,
            }
        }
        panic!("the link did not settle: a livelock");
    }

    /// The server indices of the live sessions.
    pub fn server_indices(&self) -> Vec<u32> {
        self.server.session_indices()
    }

    /// Runs until settled, with a ten-minute horizon.
    pub fn drive(&mut self) {
        self.drive_for(600_000);
    }
}

/// A pair whose device opened a conversation ("filter", E42); returns the
/// pair and the conversation.
pub fn opened_pair() -> (Pair, u64) {
    let mut pair = Pair::new(device(1), server());
    let diagnostics = [kanal_firmware::Diagnostic {
        key: "err",
        value: "E42",
    }];
    let id = pair
        .device
        .open(pair.now, "filter", "Filter clogged", &diagnostics)
        .expect("queued");
    pair.drive();
    let conversation = pair
        .events
        .iter()
        .find_map(|event| match event {
            Seen::Opened {
                id: opened,
                conversation,
            } if *opened == id => Some(*conversation),
            _ => None,
        })
        .expect("the open was answered");
    pair.events.clear();
    pair.wire_log.clear();
    (pair, conversation)
}
