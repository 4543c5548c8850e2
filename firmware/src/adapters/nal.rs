//! Drives a [`DeviceSession`] over an embedded-nal 0.9 UDP stack.
//!
//! The socket is connected to the server's address; received datagrams are
//! matched to the session by index, so a new local address (NAT
//! rebinding, a new network) changes nothing.

use core::net::SocketAddr;

use embedded_nal::UdpClientStack;
use kanal_proto::device::limits::MAX_DATAGRAM;
use rand_core::{CryptoRng, RngCore};

use crate::fmt::debug;
use crate::session::{DeviceSession, Event, TransmitError};
use crate::time::Instant;

/// A UDP socket to the server, on an embedded-nal stack.
pub struct UdpLink<S: UdpClientStack> {
    stack: S,
    socket: S::UdpSocket,
    buf: [u8; MAX_DATAGRAM],
}

/// Why the link failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError<E: core::fmt::Debug> {
    /// The network stack failed.
    #[error("network stack: {0:?}")]
    Stack(E),
    /// The session could not write a datagram.
    #[error("session: {0}")]
    Transmit(#[from] TransmitError),
}

impl<S: UdpClientStack> UdpLink<S> {
    /// Opens a socket on `stack` connected to the server.
    pub fn connect(mut stack: S, server: SocketAddr) -> Result<Self, S::Error> {
        let mut socket = stack.socket()?;
        stack.connect(&mut socket, server)?;
        Ok(Self {
            stack,
            socket,
            buf: [0; MAX_DATAGRAM],
        })
    }

    /// Sends every datagram the session has due; returns how many were
    /// sent. A datagram the stack cannot take now counts as lost (the
    /// session retransmits what matters).
    pub fn flush<R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &mut DeviceSession<R, N>,
        now: Instant,
    ) -> Result<usize, LinkError<S::Error>> {
        let mut sent = 0;
        while let Some(len) = session.poll_transmit(now, &mut self.buf)? {
            match self.stack.send(&mut self.socket, &self.buf[..len]) {
                Ok(()) => sent += 1,
                Err(nb::Error::WouldBlock) => {
                    debug!("stack busy; a datagram of {} bytes is dropped", len);
                    break;
                }
                Err(nb::Error::Other(err)) => return Err(LinkError::Stack(err)),
            }
        }
        Ok(sent)
    }

    /// Hands one waiting datagram, if any, to the session and returns what
    /// it meant. Datagrams the session drops (forged, replayed, stale)
    /// yield `None`.
    pub fn receive<'s, R: RngCore + CryptoRng, const N: usize>(
        &mut self,
        session: &'s mut DeviceSession<R, N>,
        now: Instant,
    ) -> Result<Option<Event<'s>>, LinkError<S::Error>> {
        let len = match self.stack.receive(&mut self.socket, &mut self.buf) {
            Ok((len, _from)) => len,
            Err(nb::Error::WouldBlock) => return Ok(None),
            Err(nb::Error::Other(err)) => return Err(LinkError::Stack(err)),
        };
        match session.handle_datagram(now, &self.buf[..len]) {
            Ok(event) => Ok(event),
            Err(_dropped) => {
                debug!("dropped a datagram of {} bytes", len);
                Ok(None)
            }
        }
    }

    /// Closes the socket and gives the stack back.
    pub fn close(mut self) -> Result<S, S::Error> {
        self.stack.close(self.socket)?;
        Ok(self.stack)
    }
}
