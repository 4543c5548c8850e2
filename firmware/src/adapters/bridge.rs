//! The host's end of a device's serial line: SLIP frames from the line
//! become UDP datagrams to the gateway, and the gateway's datagrams go back
//! down the line as frames ([`super::slip`]). A development board on a USB
//! serial port, or the QEMU example's emulated UART, reaches a real
//! `kanald` through it; `kanal-serial-bridge` is this module as a command.
//!
//! The bridge is transparent: it neither reads nor changes the datagrams
//! (they are end-to-end encrypted between the device and the gateway), and
//! it holds one UDP socket per line, so the gateway sees each line as one
//! device address. It runs until the line closes.

extern crate std;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kanal_proto::device::limits::MAX_DATAGRAM;

use super::slip::{self, SlipDecoder};

/// How often the gateway-to-line direction looks whether the line closed.
const CLOSED_CHECK: Duration = Duration::from_millis(100);

/// What a bridge carried, when its line closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeReport {
    /// Frames from the line sent to the gateway.
    pub up: u64,
    /// Datagrams from the gateway written to the line.
    pub down: u64,
    /// Frames from the line dropped as broken or too long.
    pub dropped: u32,
}

/// Bridges one line to the gateway at `gateway` until the line closes
/// (`line_in` reaches its end): `line_in` and `line_out` are the two
/// directions of the same line (for a TCP stream, the stream and its
/// `try_clone`).
pub fn run(
    line_in: impl Read + Send,
    mut line_out: impl Write + Send,
    gateway: SocketAddr,
) -> io::Result<BridgeReport> {
    let local: SocketAddr = if gateway.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(gateway)?;
    socket.set_read_timeout(Some(CLOSED_CHECK))?;
    let closed = AtomicBool::new(false);
    let down = AtomicU64::new(0);

    std::thread::scope(|scope| {
        let to_line = scope.spawn(|| -> io::Result<()> {
            let mut datagram = [0u8; MAX_DATAGRAM];
            let mut frame = [0u8; slip::max_encoded_len(MAX_DATAGRAM)];
            while !closed.load(Ordering::Relaxed) {
                let len = match socket.recv(&mut datagram) {
                    Ok(len) => len,
                    Err(e) if retry(&e) => continue,
                    Err(e) => return Err(e),
                };
                let framed = slip::encode(&datagram[..len], &mut frame)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                line_out.write_all(&frame[..framed])?;
                line_out.flush()?;
                down.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        let from_line = to_gateway(line_in, &socket);
        closed.store(true, Ordering::Relaxed);
        let to_line = to_line
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the gateway-to-line direction panicked")));
        let (up, dropped) = from_line?;
        match to_line {
            // The line closed while a datagram was on its way down.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) => {}
            other => other?,
        }
        Ok(BridgeReport {
            up,
            down: down.load(Ordering::Relaxed),
            dropped,
        })
    })
}

/// Reads the line to its end, sending each frame to the gateway; returns
/// the frames sent and dropped.
fn to_gateway(mut line_in: impl Read, socket: &UdpSocket) -> io::Result<(u64, u32)> {
    let mut decoder = SlipDecoder::<MAX_DATAGRAM>::new();
    let mut bytes = [0u8; 512];
    let mut up = 0;
    loop {
        let read = match line_in.read(&mut bytes) {
            // A line that is reset (an emulator exiting with bytes unread)
            // has closed as surely as one that ends.
            Ok(0) => return Ok((up, decoder.dropped())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Ok((up, decoder.dropped()));
            }
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &byte in &bytes[..read] {
            if let Some(frame) = decoder.push(byte) {
                match socket.send(frame) {
                    Ok(_) => up += 1,
                    // The gateway restarting answers with ICMP: the
                    // device's session retransmits what matters.
                    Err(e) if retry(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionRefused
    )
}
