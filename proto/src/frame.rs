//! The frame codec: an unsigned LEB128 varint length, then that many bytes of
//! one protobuf message.
//!
//! The decoder is sans-IO: feed it a buffer, take whole frames out. It checks
//! the announced length against its limit as soon as the prefix is complete,
//! before it waits for (or reserves room for) the body, so an oversized
//! announcement costs the receiver nothing.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Longest valid length prefix in bytes (a varint of a u64).
const MAX_PREFIX: usize = 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadPrefix,
    /// The frame's bytes are not the expected protobuf message.
    #[error("undecodable frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// A frame began but did not end in time.
    #[error("a frame began but did not end within {secs} s")]
    Stalled {
        /// The time allowed, in seconds.
        secs: u64,
    },
    /// Reading from the transport failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte buffer into frames no larger than a limit.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    max: usize,
}

impl FrameDecoder {
    /// A decoder that refuses frames larger than `max` bytes.
    pub const fn new(max: usize) -> Self {
        Self { max }
    }

    /// The limit in force.
    pub const fn max(&self) -> usize {
        self.max
    }

    /// Takes one whole frame's body off the front of `buf`, or returns `None`
    /// when more bytes are needed. Errors are final for the stream.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some((len, prefix)) = self.peek_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < prefix + len {
            return Ok(None);
        }
        buf.advance(prefix);
        Ok(Some(buf.split_to(len).freeze()))
    }

    /// How many more bytes `decode` needs before it can return a frame:
    /// at least 1, at most the remaining body of the announced frame.
    pub fn wanted(&self, buf: &[u8]) -> Result<usize, FrameError> {
        match self.peek_len(buf)? {
            None => Ok(1),
            Some((len, prefix)) => Ok((prefix + len).saturating_sub(buf.len()).max(1)),
        }
    }

    /// Reads the length prefix without consuming it: `(body length, prefix length)`.
    fn peek_len(&self, buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
        let mut value: u64 = 0;
        for (i, byte) in buf.iter().take(MAX_PREFIX).enumerate() {
            let bits = u64::from(byte & 0x7f);
            if i == MAX_PREFIX - 1 && *byte > 1 {
                return Err(FrameError::BadPrefix);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                if value > self.max as u64 {
                    return Err(FrameError::TooLarge {
                        len: value,
                        max: self.max,
                    });
                }
                return Ok(Some((value as usize, i + 1)));
            }
            // Reject as soon as the partial value already exceeds the limit,
            // so a slow sender cannot hold us on a huge announcement.
            if value > self.max as u64 {
                return Err(FrameError::TooLarge {
                    len: value,
                    max: self.max,
                });
            }
        }
        if buf.len() >= MAX_PREFIX {
            return Err(FrameError::BadPrefix);
        }
        Ok(None)
    }
}

/// Appends `msg` as one frame to `buf`.
pub fn encode<M: Message>(msg: &M, buf: &mut impl BufMut) {
    let len = msg.encoded_len();
    prost::encoding::encode_varint(len as u64, buf);
    // encode() only fails when the buffer lacks room; BytesMut/Vec grow.
    msg.encode_raw(buf);
}

/// `msg` as one frame in a new buffer.
pub fn encode_to_bytes<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(len + prost::length_delimiter_len(len));
    encode(msg, &mut buf);
    buf.freeze()
}

/// Decodes a frame body as `M`.
pub fn decode_body<M: Message + Default>(body: Bytes) -> Result<M, FrameError> {
    Ok(M::decode(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    fn ack(seq: u64) -> pb::ClientControl {
        pb::ClientControl {
            kind: Some(pb::client_control::Kind::Ack(pb::Ack { seq })),
        }
    }

    #[test]
    fn round_trips_frames_split_anywhere() {
        let mut wire = BytesMut::new();
        for seq in [1, 300, u64::MAX] {
            encode(&ack(seq), &mut wire);
        }
        let wire = wire.freeze();
        let decoder = FrameDecoder::new(64);
        for split in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            let mut seen = Vec::new();
            while let Some(body) = decoder.decode(&mut buf).expect("valid") {
                seen.push(decode_body::<pb::ClientControl>(body).expect("decodes"));
            }
            buf.extend_from_slice(&wire[split..]);
            while let Some(body) = decoder.decode(&mut buf).expect("valid") {
                seen.push(decode_body::<pb::ClientControl>(body).expect("decodes"));
            }
            assert_eq!(seen, vec![ack(1), ack(300), ack(u64::MAX)]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn refuses_oversized_length_before_the_body_arrives() {
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        prost::encoding::encode_varint(1025, &mut buf);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        ));
        // A huge prefix is refused from its first bytes, before it completes.
        let mut partial = BytesMut::from(&[0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decoder.decode(&mut partial),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_overlong_prefix() {
        let decoder = FrameDecoder::new(usize::MAX);
        let mut buf = BytesMut::from(&[0x80; 11][..]);
        assert!(matches!(
            decoder.decode(&mut buf),
            Err(FrameError::BadPrefix)
        ));
    }

    /// PROTOCOL.md §3.1: the first problem in byte order decides.
    #[test]
    fn a_prefix_both_malformed_and_too_large_is_reported_by_its_first_problem() {
        let decoder = FrameDecoder::new(crate::limits::MAX_FRAME);
        let mut ones = BytesMut::from(&[0xff; 10][..]);
        assert!(matches!(
            decoder.decode(&mut ones),
            Err(FrameError::TooLarge { .. })
        ));
        let mut zeros =
            BytesMut::from(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02][..]);
        assert!(matches!(
            decoder.decode(&mut zeros),
            Err(FrameError::BadPrefix)
        ));
    }

    #[test]
    fn wanted_counts_the_missing_body() {
        let decoder = FrameDecoder::new(64);
        let frame = encode_to_bytes(&ack(7));
        assert_eq!(decoder.wanted(&[]).expect("ok"), 1);
        assert_eq!(decoder.wanted(&frame[..1]).expect("ok"), frame.len() - 1);
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        let decoder = FrameDecoder::new(64);
        let mut buf = BytesMut::from(&[3, 0xff, 0xff, 0xff][..]);
        let body = decoder.decode(&mut buf).expect("prefix ok").expect("whole");
        assert!(matches!(
            decode_body::<pb::ClientControl>(body),
            Err(FrameError::Decode(_))
        ));
    }
}
