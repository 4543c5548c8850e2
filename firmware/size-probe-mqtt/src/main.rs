//! A size probe for the comparison: an MQTT 3.1.1 client over TLS 1.3
//! (embedded-tls) doing what the Kanal size probe does (report a fault
//! with two diagnostics, receive the answer, acknowledge it), with the
//! radio and the RNG peripheral replaced by volatile memory accesses so the
//! optimiser keeps everything a real product would.
//!
//! The MQTT encoder is written here (CONNECT, SUBSCRIBE, PUBLISH at QoS 1,
//! PUBACK, and the fixed header of what the broker sends): it is the
//! smallest an MQTT client can be, so the figure is TLS plus almost
//! nothing.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;
use core::panic::PanicInfo;
use core::ptr;

use embedded_io::{ErrorType, Read, Write};
use embedded_tls::blocking::{Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext};
use embedded_tls::{CryptoRngCore, TlsError};
use rand_core::{CryptoRng, RngCore};

/// Stand-ins for peripheral registers.
const RNG_DATA: *const u32 = 0x5006_0808 as *const u32;
const RADIO: *mut u8 = 0x4000_0000 as *mut u8;
const KEYS: *const u8 = 0x0800_f000 as *const u8;

/// A TLS record of the handshake or of application data must fit: with
/// the broker's certificate chain the read side needs room for the
/// Certificate message; 2 KB read and 1 KB write, as embedded-tls's
/// examples for small devices use with a 512-byte maximum fragment.
const READ_BUF: usize = 2048;
const WRITE_BUF: usize = 1024;
/// The application's MQTT packet buffer (like the Kanal probe's 512-byte
/// datagram buffer).
const PACKET: usize = 512;

struct HardwareRng;

impl RngCore for HardwareRng {
    fn next_u32(&mut self) -> u32 {
        unsafe { ptr::read_volatile(RNG_DATA) }
    }
    fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(4) {
            let word = self.next_u32().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for HardwareRng {}

/// The TCP stream to the broker, as the radio's stand-in.
struct Radio;

impl ErrorType for Radio {
    type Error = core::convert::Infallible;
}

impl Read for Radio {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let len = usize::from(unsafe { ptr::read_volatile(RADIO) }).min(buf.len());
        for byte in &mut buf[..len] {
            *byte = unsafe { ptr::read_volatile(RADIO) };
        }
        Ok(len)
    }
}

impl Write for Radio {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &byte in buf {
            unsafe { ptr::write_volatile(RADIO, byte) };
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The device's crypto for TLS: its RNG and, with `cert`, the verifier of
/// the broker's certificate chain.
struct Provider {
    rng: HardwareRng,
    #[cfg(feature = "cert")]
    verifier: embedded_tls::pki::CertVerifier<
        'static,
        Aes128GcmSha256,
        embedded_tls::blocking::NoClock,
        1024,
    >,
}

impl CryptoProvider for Provider {
    type CipherSuite = Aes128GcmSha256;
    type Signature = &'static [u8];

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    #[cfg(feature = "cert")]
    fn verifier(
        &mut self,
    ) -> Result<&mut impl embedded_tls::blocking::TlsVerifier<Self::CipherSuite>, TlsError> {
        Ok(&mut self.verifier)
    }
}

type Connection = TlsConnection<'static, Radio, Aes128GcmSha256>;

static mut CONNECTION: MaybeUninit<Connection> = MaybeUninit::uninit();
static mut READ: [u8; READ_BUF] = [0; READ_BUF];
static mut WRITE: [u8; WRITE_BUF] = [0; WRITE_BUF];
static mut PACKET_BUF: [u8; PACKET] = [0; PACKET];

/// Bytes from the key area of flash (the PSK, its identity, the CA).
fn flash(offset: usize, len: usize) -> &'static [u8] {
    let len = len.min(usize::from(unsafe { ptr::read_volatile(KEYS.add(offset)) }) + 1);
    unsafe { core::slice::from_raw_parts(KEYS.add(offset + 1), len) }
}

// --- MQTT 3.1.1 encoder ---------------------------------------------------

/// A writer over the packet buffer; `None` when a packet does not fit.
struct Packet<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Packet<'a> {
    /// Starts a packet of `kind` (the fixed header's first byte) with a
    /// body of `body` bytes.
    fn new(buf: &'a mut [u8], kind: u8, body: usize) -> Option<Self> {
        let mut packet = Self { buf, len: 0 };
        packet.byte(kind)?;
        let mut rest = body;
        loop {
            let mut byte = (rest % 128) as u8;
            rest /= 128;
            if rest > 0 {
                byte |= 0x80;
            }
            packet.byte(byte)?;
            if rest == 0 {
                break;
            }
        }
        Some(packet)
    }
    fn byte(&mut self, byte: u8) -> Option<()> {
        *self.buf.get_mut(self.len)? = byte;
        self.len += 1;
        Some(())
    }
    fn bytes(&mut self, bytes: &[u8]) -> Option<()> {
        self.buf
            .get_mut(self.len..self.len + bytes.len())?
            .copy_from_slice(bytes);
        self.len += bytes.len();
        Some(())
    }
    fn u16(&mut self, value: u16) -> Option<()> {
        self.bytes(&value.to_be_bytes())
    }
    /// A length-prefixed string.
    fn string(&mut self, value: &[u8]) -> Option<()> {
        self.u16(u16::try_from(value.len()).ok()?)?;
        self.bytes(value)
    }
    fn done(self) -> usize {
        self.len
    }
}

/// CONNECT: clean session, a keep-alive, the client id and a password
/// (the broker's per-device credential).
fn connect(buf: &mut [u8], client_id: &[u8], username: &[u8], password: &[u8]) -> Option<usize> {
    let body = 10 + 2 + client_id.len() + 2 + username.len() + 2 + password.len();
    let mut p = Packet::new(buf, 0x10, body)?;
    p.string(b"MQTT")?;
    p.byte(4)?; // protocol level 3.1.1
    p.byte(0b1100_0010)?; // username, password, clean session
    p.u16(600)?; // keep-alive, seconds
    p.string(client_id)?;
    p.string(username)?;
    p.string(password)?;
    Some(p.done())
}

/// SUBSCRIBE to one topic filter at QoS 1.
fn subscribe(buf: &mut [u8], packet_id: u16, filter: &[u8]) -> Option<usize> {
    let mut p = Packet::new(buf, 0x82, 2 + 2 + filter.len() + 1)?;
    p.u16(packet_id)?;
    p.string(filter)?;
    p.byte(1)?;
    Some(p.done())
}

/// PUBLISH at QoS 1.
fn publish(buf: &mut [u8], packet_id: u16, topic: &[u8], payload: &[&[u8]]) -> Option<usize> {
    let payload_len: usize = payload.iter().map(|part| part.len()).sum();
    let mut p = Packet::new(buf, 0x32, 2 + topic.len() + 2 + payload_len)?;
    p.string(topic)?;
    p.u16(packet_id)?;
    for part in payload {
        p.bytes(part)?;
    }
    Some(p.done())
}

/// PUBACK of a received QoS 1 PUBLISH.
fn puback(buf: &mut [u8], packet_id: u16) -> Option<usize> {
    let mut p = Packet::new(buf, 0x40, 2)?;
    p.u16(packet_id)?;
    Some(p.done())
}

/// What the broker sent: (packet type, flags, body).
fn parse(packet: &[u8]) -> Option<(u8, u8, &[u8])> {
    let (&first, mut rest) = packet.split_first()?;
    let mut len = 0usize;
    for shift in 0..4 {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        len |= usize::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Some((first >> 4, first & 0x0f, rest.get(..len)?));
        }
    }
    None
}

// --- the device -------------------------------------------------------------

fn send(tls: &mut Connection, packet: Option<usize>) -> Result<(), TlsError> {
    let buf = unsafe { &*(&raw const PACKET_BUF) };
    if let Some(len) = packet {
        tls.write(&buf[..len])?;
        tls.flush()?;
    }
    Ok(())
}

#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    let tls = boot();
    let mut next_id = 2u16;
    loop {
        if step(tls, next_id).is_err() {
            // A broken TLS connection must be opened anew.
            let _ = open(tls);
        }
        next_id = next_id.wrapping_add(1).max(1);
    }
}

/// Opens the TLS connection and the MQTT session, subscribes to the
/// device's topic and publishes the report.
#[inline(never)]
fn boot() -> &'static mut Connection {
    let read = unsafe { &mut *(&raw mut READ) };
    let write = unsafe { &mut *(&raw mut WRITE) };
    let tls = unsafe { (*(&raw mut CONNECTION)).write(TlsConnection::new(Radio, read, write)) };
    let _ = open(tls);
    tls
}

#[inline(never)]
fn open(tls: &mut Connection) -> Result<(), TlsError> {
    let identity = [flash(0, 32)];
    let config = TlsConfig::new()
        .with_server_name("mqtt.kanal.example")
        .with_max_fragment_length(embedded_tls::blocking::MaxFragmentLength::Bits9);
    #[cfg(not(feature = "cert"))]
    let config = config.with_psk(flash(64, 32), &identity);
    #[cfg(feature = "cert")]
    let _ = identity;
    let provider = Provider {
        rng: HardwareRng,
        #[cfg(feature = "cert")]
        verifier: embedded_tls::pki::CertVerifier::new(
            embedded_tls::blocking::Certificate::X509(flash(128, 600)),
        ),
    };
    tls.open(TlsContext::new(&config, provider))?;
    let buf = unsafe { &mut *(&raw mut PACKET_BUF) };
    let serial = b"KX-2291-0042";
    send(tls, connect(buf, serial, serial, flash(96, 32)))?;
    send(tls, subscribe(buf, 1, b"kanal/KX-2291-0042/in"))?;
    let payload: [&[u8]; 3] = [
        b"{\"text\":\"Filter clogged, error E42\",\"diagnostics\":{\"err\":\"",
        b"E42",
        b"\",\"fw\":\"1.4.2\"}}",
    ];
    send(tls, publish(buf, 1, b"kanal/KX-2291-0042/filter", &payload))
}

/// One turn of the main loop: take one packet from the broker; a QoS 1
/// message is shown and acknowledged, an acknowledgement of ours is
/// noted, and the answer to the report gets a reply.
#[inline(never)]
fn step(tls: &mut Connection, next_id: u16) -> Result<(), TlsError> {
    let buf = unsafe { &mut *(&raw mut PACKET_BUF) };
    let len = tls.read(buf)?;
    let mut answer = None;
    match parse(&buf[..len]) {
        Some((3, flags, body)) => {
            // PUBLISH from the broker: topic, packet id at QoS 1, text.
            let topic_len = usize::from(u16::from_be_bytes([
                *body.first().unwrap_or(&0),
                *body.get(1).unwrap_or(&0),
            ]));
            let qos = (flags >> 1) & 3;
            let at = 2 + topic_len;
            let id_len = if qos > 0 { 2 } else { 0 };
            if let Some(text) = body.get(at + id_len..) {
                for &byte in text {
                    unsafe { ptr::write_volatile(RADIO.add(1), byte) };
                }
                if qos > 0 {
                    answer = Some(u16::from_be_bytes([body[at], body[at + 1]]));
                }
            }
        }
        Some((4, _, body)) if body.len() == 2 => {
            // PUBACK of our report.
            unsafe { ptr::write_volatile(RADIO.add(2), body[1]) };
        }
        _ => {}
    }
    if let Some(packet_id) = answer {
        send(tls, puback(buf, packet_id))?;
        let reply: [&[u8]; 1] = [b"{\"text\":\"ok\"}"];
        send(tls, publish(buf, next_id, b"kanal/KX-2291-0042/filter", &reply))?;
    }
    Ok(())
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}
