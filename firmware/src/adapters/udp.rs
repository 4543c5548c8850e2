//! Drives a [`DeviceSession`] over a `std::net::UdpSocket`, for products
//! that run an operating system (a router, a gateway box on Linux) and for
//! running the firmware's session on a development host.
//!
//! The socket is connected to the server's address, so only its datagrams
//! reach the session; received datagrams are matched to the session by
//! index, so a new local address changes nothing. [`StdClock`] gives the
//! session its milliseconds from the monotonic clock.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kanal_firmware::adapters::udp::{StdClock, StdUdpLink};
//! use kanal_firmware::{DeviceConfig, DeviceSession, Event};
//! # let (secret, server_key) = ([1u8; 32], [2u8; 32]);
//! # struct Rng; impl rand_core::RngCore for Rng { fn next_u32(&mut self) -> u32 { 4 }
//! # fn next_u64(&mut self) -> u64 { 4 } fn fill_bytes(&mut self, d: &mut [u8]) { d.fill(4) }
//! # fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> { d.fill(4); Ok(()) } }
//! # impl rand_core::CryptoRng for Rng {}
//! let clock = StdClock::new();
//! let mut link = StdUdpLink::connect("127.0.0.1:7448".parse()?)?;
//! let mut session: DeviceSession<_, 4> =
//!     DeviceSession::new(DeviceConfig::new(secret, server_key), Rng);
//! let id = session.open(clock.now(), "filter", "Filter clogged", &[])?;
//! loop {
//!     match link.step(&mut session, &clock, std::time::Duration::from_secs(1))? {
//!         Some(Event::Opened { id: opened, conversation }) if opened == id => {
//!             println!("conversation {conversation}");
//!             break;
//!         }
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

extern crate std;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use kanal_proto::device::limits::MAX_DATAGRAM;
use rand_core::{CryptoRng, RngCore};

use crate::fmt::debug;
use crate::session::{DeviceSession, Event, TransmitError};
use crate::time::Instant;

/// The session's clock on a host: milliseconds since it was made, from the
/// monotonic clock (never from the wall clock, which can jump).
#[derive(Debug, Clone, Copy)]
pub struct StdClock(std::time::Instant);

impl StdClock {
    /// A clock starting at 0 now.
    pub fn new() -> Self {
        Self(std::time::Instant::now())
    }

    /// The time now, for the session.
    pub fn now(&self) -> Instant {
        Instant(u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// How long from now until `at` (zero if it passed).
    pub fn until(&self, at: Instant) -> Duration {
        Duration::from_millis(at.0.saturating_sub(self.now().0))
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

/// A UDP socket to the server.
#[derive(Debug)]
pub struct StdUdpLink {
    socket: UdpSocket,
    buf: [u8; MAX_DATAGRAM],
}

/// Why the link failed.
#[derive(Debug, thiserror::Error)]
pub enum StdLinkError {
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The session could not write a datagram.
    #[error("session: {0}")]
    Transmit(#[from] TransmitError),
}

impl StdUdpLink {
    /// Opens a socket on an ephemeral port of the matching address family,
    /// connected to the server.
    pub fn connect(server: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = if server.is_ipv4() {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        Self::with_socket(UdpSocket::bind(local)?, server)
    }

    /// Uses `socket` (bound where the product wants it), connected to the
    /// server.
    pub fn with_socket(socket: UdpSocket, server: SocketAddr) -> io::Result<Self> {
        socket.connect(server)?;
        Ok(Self {
            socket,
            buf: [0; MAX_DATAGRAM],
        })
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends every datagram the session has due; returns how many were
    /// sent. A datagram the network refuses (no route yet, the server's
    /// port closed) counts as lost: the session retransmits what matters.
    pub fn flush<R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &mut DeviceSession<R, N>,
        now: Instant,
    ) -> Result<usize, StdLinkError> {
        let mut sent = 0;
        while let Some(len) = session.poll_transmit(now, &mut self.buf)? {
            match self.socket.send(&self.buf[..len]) {
                Ok(_) => sent += 1,
                Err(e) if transient(&e) => {
                    debug!("a datagram of {} bytes is lost", len);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(sent)
    }

    /// One turn of a device's loop: sends what is due, then waits for a
    /// datagram until the session's next deadline (at most `limit`), and
    /// returns what it meant. `None`: the deadline came first, or the
    /// datagram was dropped (forged, replayed, stale); call again.
    pub fn step<'s, R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &'s mut DeviceSession<R, N>,
        clock: &StdClock,
        limit: Duration,
    ) -> Result<Option<Event<'s>>, StdLinkError> {
        self.flush(session, clock.now())?;
        let wait = session
            .poll_timeout()
            .map_or(limit, |at| clock.until(at).min(limit));
        // A zero timeout means "block forever" to the socket: wait a
        // millisecond instead, the clock's resolution.
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        let len = match self.socket.recv(&mut self.buf) {
            Ok(len) => len,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) || transient(&e) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        match session.handle_datagram(clock.now(), &self.buf[..len]) {
            Ok(event) => Ok(event),
            Err(_dropped) => {
                debug!("dropped a datagram of {} bytes", len);
                Ok(None)
            }
        }
    }
}

/// Errors after which the next datagram may well go through: an ICMP
/// answer to an earlier one (the server restarting), a network not up yet.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkDown
            | io::ErrorKind::Interrupted
    )
}
