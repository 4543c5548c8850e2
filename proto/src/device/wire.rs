//! The datagram wrapper (WireGuard-style): every UDP payload starts with a
//! message type byte; integers are little-endian and fixed-width.
//!
//! ```text
//! Initiation (1), device → server      Response (2), server → device
//!   0  type = 1              1            0  type = 2                1
//!   1  profile version       1            1  sender index (server)   4
//!   2  sender index (device) 4            5  receiver index (device) 4
//!   6  initiation counter    4            9  Noise message 2        48 + frame
//!  10  Noise message 1      96 + frame
//!   …  mac1                 16          Transport (4), both ways
//!   …  mac2 (type 5 only)   16            0  type = 4                1
//!                                         1  receiver index          4
//! Cookie reply (3), server → device       5  counter                 8
//!   0  type = 3              1           13  ciphertext          frame + 16
//!   1  receiver index        4
//!   5  nonce                 8
//!  13  sealed cookie        32
//! ```
//!
//! A session is found by the receiver index, never by the source address,
//! so a device whose address changes (NAT rebinding, a new network) keeps
//! its session. The first 10 bytes of an initiation are mixed into the
//! Noise prologue after [`PROLOGUE_LABEL`], so they cannot be altered.

use super::limits::MAX_DATAGRAM;

/// Bytes before the Noise message in an initiation.
pub const INITIATION_HEADER: usize = 10;
/// Noise IK message 1 without its payload: ephemeral key (32), encrypted
/// static key (32 + 16), payload tag (16).
pub const NOISE_INITIATION_OVERHEAD: usize = 96;
/// Bytes before the Noise message in a response.
pub const RESPONSE_HEADER: usize = 9;
/// Noise IK message 2 without its payload: ephemeral key (32), payload tag
/// (16).
pub const NOISE_RESPONSE_OVERHEAD: usize = 48;
/// Bytes before the ciphertext in a transport datagram.
pub const TRANSPORT_HEADER: usize = 13;
/// The AEAD tag after every ciphertext.
pub const TAG: usize = 16;
/// Length of mac1 and mac2.
pub const MAC: usize = 16;
/// Length of a cookie (before sealing).
pub const COOKIE: usize = 16;
/// Length of a whole cookie reply.
pub const COOKIE_REPLY: usize = 1 + 4 + 8 + COOKIE + TAG;
/// Wrapper and encryption bytes a transport datagram adds to its frame.
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER + TAG;
/// Wrapper and handshake bytes an initiation adds to its frame (no mac2).
pub const INITIATION_OVERHEAD: usize = INITIATION_HEADER + NOISE_INITIATION_OVERHEAD + MAC;
/// Wrapper and handshake bytes a response adds to its frame.
pub const RESPONSE_OVERHEAD: usize = RESPONSE_HEADER + NOISE_RESPONSE_OVERHEAD;

/// Label before the initiation header in the Noise prologue.
pub const PROLOGUE_LABEL: &[u8] = b"kanal-device";
/// Length of the Noise prologue.
pub const PROLOGUE: usize = PROLOGUE_LABEL.len() + INITIATION_HEADER;
/// Label hashed with the server's static public key into the mac1 key.
pub const MAC1_LABEL: &[u8; 8] = b"mac1----";
/// Label hashed with the server's static public key into the cookie key.
pub const COOKIE_LABEL: &[u8; 8] = b"cookie--";

// The budgets: at most 32 bytes per message, and the largest frame still
// fits an initiation (with mac2) in one datagram.
const _: () = assert!(TRANSPORT_OVERHEAD <= 32);
const _: () = assert!(INITIATION_OVERHEAD + MAC + super::limits::MAX_FRAME <= MAX_DATAGRAM);

/// The first byte of every datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Handshake message 1 with the device's first frame.
    Initiation = 1,
    /// Handshake message 2 with the server's first answer.
    Response = 2,
    /// The server is under load: repeat the initiation with a mac2.
    CookieReply = 3,
    /// A frame in an established session.
    Transport = 4,
    /// An initiation that also carries mac2 (made with a cookie).
    InitiationWithCookie = 5,
}

/// A datagram split into its wrapper fields; nothing is decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// Handshake message 1 (type 1 or 5).
    Initiation(Initiation<'a>),
    /// Handshake message 2.
    Response(Response<'a>),
    /// A cookie for the next initiation.
    CookieReply(CookieReply<'a>),
    /// A frame in a session.
    Transport(Transport<'a>),
}

/// Handshake message 1 and its wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initiation<'a> {
    /// Profile version the device speaks.
    pub version: u8,
    /// The index the device chose; the server's datagrams name it.
    pub sender: u32,
    /// The device's initiation counter, increasing per handshake.
    pub counter: u32,
    /// The first [`INITIATION_HEADER`] bytes (they go into the prologue).
    pub header: &'a [u8; INITIATION_HEADER],
    /// Noise message 1.
    pub noise: &'a [u8],
    /// mac1, over every byte before it.
    pub mac1: &'a [u8; MAC],
    /// The bytes mac1 covers.
    pub mac1_input: &'a [u8],
    /// mac2 (type 5) and the bytes it covers (everything before it).
    pub mac2: Option<(&'a [u8; MAC], &'a [u8])>,
}

/// Handshake message 2 and its wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response<'a> {
    /// The index the server chose; the device's transport datagrams name it.
    pub sender: u32,
    /// The device's index from the initiation.
    pub receiver: u32,
    /// Noise message 2.
    pub noise: &'a [u8],
}

/// A sealed cookie answering an initiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply<'a> {
    /// The device's index from the initiation.
    pub receiver: u32,
    /// The AEAD nonce.
    pub nonce: u64,
    /// The cookie and its tag.
    pub sealed: &'a [u8; COOKIE + TAG],
}

/// A transport datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport<'a> {
    /// The receiving side's session index.
    pub receiver: u32,
    /// The sender's counter, used as the AEAD nonce.
    pub counter: u64,
    /// The encrypted frame and its tag.
    pub ciphertext: &'a [u8],
}

/// Why a datagram's wrapper is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The datagram exceeds [`MAX_DATAGRAM`].
    #[error("datagram of {len} bytes exceeds {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The datagram is shorter than its type needs.
    #[error("datagram of {len} bytes is too short for its type")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// The first byte is not a known message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// The initiation names a profile version this side does not speak.
    #[error("unsupported profile version {0}")]
    UnsupportedVersion(u8),
    /// The output buffer is too small.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Splits a datagram into its wrapper fields, refusing it early (before any
/// cryptography) if it cannot be valid.
pub fn parse(datagram: &[u8]) -> Result<Datagram<'_>, WireError> {
    let len = datagram.len();
    if len > MAX_DATAGRAM {
        return Err(WireError::TooLarge {
            len,
            max: MAX_DATAGRAM,
        });
    }
    let Some(&kind) = datagram.first() else {
        return Err(WireError::TooShort { len });
    };
    match kind {
        1 | 5 => {
            let with_cookie = kind == 5;
            let macs = if with_cookie { 2 * MAC } else { MAC };
            if len < INITIATION_HEADER + NOISE_INITIATION_OVERHEAD + macs {
                return Err(WireError::TooShort { len });
            }
            let version = datagram[1];
            if version != super::DEVICE_PROFILE_VERSION {
                return Err(WireError::UnsupportedVersion(version));
            }
            let mac1_at = len - macs;
            let mac2 = if with_cookie {
                let mac2_at = len - MAC;
                Some((array(&datagram[mac2_at..])?, &datagram[..mac2_at]))
            } else {
                None
            };
            Ok(Datagram::Initiation(Initiation {
                version,
                sender: u32_at(datagram, 2)?,
                counter: u32_at(datagram, 6)?,
                header: array(datagram)?,
                noise: &datagram[INITIATION_HEADER..mac1_at],
                mac1: array(&datagram[mac1_at..])?,
                mac1_input: &datagram[..mac1_at],
                mac2,
            }))
        }
        2 => {
            if len < RESPONSE_HEADER + NOISE_RESPONSE_OVERHEAD {
                return Err(WireError::TooShort { len });
            }
            Ok(Datagram::Response(Response {
                sender: u32_at(datagram, 1)?,
                receiver: u32_at(datagram, 5)?,
                noise: &datagram[RESPONSE_HEADER..],
            }))
        }
        3 => {
            if len != COOKIE_REPLY {
                return Err(WireError::TooShort { len });
            }
            Ok(Datagram::CookieReply(CookieReply {
                receiver: u32_at(datagram, 1)?,
                nonce: u64_at(datagram, 5)?,
                sealed: array(&datagram[13..])?,
            }))
        }
        4 => {
            if len < TRANSPORT_OVERHEAD {
                return Err(WireError::TooShort { len });
            }
            Ok(Datagram::Transport(Transport {
                receiver: u32_at(datagram, 1)?,
                counter: u64_at(datagram, 5)?,
                ciphertext: &datagram[TRANSPORT_HEADER..],
            }))
        }
        other => Err(WireError::UnknownType(other)),
    }
}

/// Writes an initiation's header into `out[..INITIATION_HEADER]`.
pub fn write_initiation_header(
    out: &mut [u8],
    with_cookie: bool,
    sender: u32,
    counter: u32,
) -> Result<&[u8; INITIATION_HEADER], WireError> {
    let header = out
        .get_mut(..INITIATION_HEADER)
        .ok_or(WireError::BufferTooSmall)?;
    header[0] = if with_cookie {
        MessageType::InitiationWithCookie
    } else {
        MessageType::Initiation
    } as u8;
    header[1] = super::DEVICE_PROFILE_VERSION;
    header[2..6].copy_from_slice(&sender.to_le_bytes());
    header[6..10].copy_from_slice(&counter.to_le_bytes());
    array(header)
}

/// Writes a response's header into `out[..RESPONSE_HEADER]`.
pub fn write_response_header(out: &mut [u8], sender: u32, receiver: u32) -> Result<(), WireError> {
    let header = out
        .get_mut(..RESPONSE_HEADER)
        .ok_or(WireError::BufferTooSmall)?;
    header[0] = MessageType::Response as u8;
    header[1..5].copy_from_slice(&sender.to_le_bytes());
    header[5..9].copy_from_slice(&receiver.to_le_bytes());
    Ok(())
}

/// Writes a transport datagram's header into `out[..TRANSPORT_HEADER]`.
pub fn write_transport_header(
    out: &mut [u8],
    receiver: u32,
    counter: u64,
) -> Result<(), WireError> {
    let header = out
        .get_mut(..TRANSPORT_HEADER)
        .ok_or(WireError::BufferTooSmall)?;
    header[0] = MessageType::Transport as u8;
    header[1..5].copy_from_slice(&receiver.to_le_bytes());
    header[5..13].copy_from_slice(&counter.to_le_bytes());
    Ok(())
}

/// Writes a whole cookie reply into `out[..COOKIE_REPLY]`.
pub fn write_cookie_reply(
    out: &mut [u8],
    receiver: u32,
    nonce: u64,
    sealed: &[u8; COOKIE + TAG],
) -> Result<usize, WireError> {
    let reply = out
        .get_mut(..COOKIE_REPLY)
        .ok_or(WireError::BufferTooSmall)?;
    reply[0] = MessageType::CookieReply as u8;
    reply[1..5].copy_from_slice(&receiver.to_le_bytes());
    reply[5..13].copy_from_slice(&nonce.to_le_bytes());
    reply[13..].copy_from_slice(sealed);
    Ok(COOKIE_REPLY)
}

/// The Noise prologue of a handshake: [`PROLOGUE_LABEL`], then the
/// initiation's header.
pub fn prologue(header: &[u8; INITIATION_HEADER]) -> [u8; PROLOGUE] {
    let mut prologue = [0u8; PROLOGUE];
    prologue[..PROLOGUE_LABEL.len()].copy_from_slice(PROLOGUE_LABEL);
    prologue[PROLOGUE_LABEL.len()..].copy_from_slice(header);
    prologue
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, WireError> {
    Ok(u32::from_le_bytes(*array(
        bytes.get(at..).unwrap_or_default(),
    )?))
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, WireError> {
    Ok(u64::from_le_bytes(*array(
        bytes.get(at..).unwrap_or_default(),
    )?))
}

/// The first `N` bytes of a slice, as an array.
fn array<const N: usize>(bytes: &[u8]) -> Result<&[u8; N], WireError> {
    bytes
        .first_chunk()
        .ok_or(WireError::TooShort { len: bytes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overheads_meet_the_budget() {
        assert_eq!(TRANSPORT_OVERHEAD, 29);
        assert_eq!(INITIATION_OVERHEAD, 122);
        assert_eq!(RESPONSE_OVERHEAD, 57);
    }

    #[test]
    fn headers_are_pinned_byte_for_byte() {
        let mut out = [0u8; 16];
        let header = write_initiation_header(&mut out, false, 0x0403_0201, 7).expect("fits");
        assert_eq!(header, &[1, 1, 1, 2, 3, 4, 7, 0, 0, 0]);
        let prologue = prologue(header);
        assert_eq!(&prologue[..12], b"kanal-device");
        assert_eq!(&prologue[12..], &[1, 1, 1, 2, 3, 4, 7, 0, 0, 0]);

        write_response_header(&mut out, 0xaabb_ccdd, 5).expect("fits");
        assert_eq!(&out[..9], &[2, 0xdd, 0xcc, 0xbb, 0xaa, 5, 0, 0, 0]);

        write_transport_header(&mut out, 9, 0x0102).expect("fits");
        assert_eq!(&out[..13], &[4, 9, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn parse_splits_each_type() {
        let mut datagram = [0xeeu8; INITIATION_OVERHEAD + MAC + 3];
        write_initiation_header(&mut datagram, true, 5, 6).expect("fits");
        let Ok(Datagram::Initiation(init)) = parse(&datagram) else {
            panic!("an initiation");
        };
        assert_eq!((init.sender, init.counter), (5, 6));
        assert_eq!(init.noise.len(), NOISE_INITIATION_OVERHEAD + 3);
        assert_eq!(init.mac1_input.len(), datagram.len() - 2 * MAC);
        let (_, mac2_input) = init.mac2.expect("type 5 has mac2");
        assert_eq!(mac2_input.len(), datagram.len() - MAC);

        let mut transport = [0u8; TRANSPORT_OVERHEAD + 2];
        write_transport_header(&mut transport, 3, 99).expect("fits");
        let Ok(Datagram::Transport(t)) = parse(&transport) else {
            panic!("a transport datagram");
        };
        assert_eq!(
            (t.receiver, t.counter, t.ciphertext.len()),
            (3, 99, TAG + 2)
        );

        let mut reply = [0u8; COOKIE_REPLY];
        write_cookie_reply(&mut reply, 8, 1, &[7; COOKIE + TAG]).expect("fits");
        let Ok(Datagram::CookieReply(c)) = parse(&reply) else {
            panic!("a cookie reply");
        };
        assert_eq!((c.receiver, c.nonce, c.sealed), (8, 1, &[7; COOKIE + TAG]));
    }

    #[test]
    fn parse_refuses_short_long_unknown_and_foreign_versions() {
        assert_eq!(parse(&[]), Err(WireError::TooShort { len: 0 }));
        assert_eq!(parse(&[4; 28]), Err(WireError::TooShort { len: 28 }));
        assert_eq!(parse(&[9; 40]), Err(WireError::UnknownType(9)));
        assert_eq!(
            parse(&[4; MAX_DATAGRAM + 1]),
            Err(WireError::TooLarge {
                len: MAX_DATAGRAM + 1,
                max: MAX_DATAGRAM
            })
        );
        let mut init = [0u8; INITIATION_OVERHEAD];
        write_initiation_header(&mut init, false, 1, 1).expect("fits");
        init[1] = 2;
        assert_eq!(parse(&init), Err(WireError::UnsupportedVersion(2)));
    }
}
