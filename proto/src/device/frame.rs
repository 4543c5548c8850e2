//! Device frames: what a device and its server say to each other once the
//! datagram wrapper has been removed and decrypted.
//!
//! One datagram carries exactly one frame. Frames are postcard-encoded
//! (fields in declaration order; integers wider than a byte as varints;
//! strings as a varint length then UTF-8; `Option` as a 0/1 byte; enums as
//! a varint variant index then the variant's fields). Text fields borrow
//! from the decrypted datagram, so decoding allocates nothing.
//!
//! Device message ids (`u32`, from 1, increasing) make every request
//! idempotent: a retransmission carries the same id, and the server answers
//! a repeated id with the answer it gave the first time without acting again.

use heapless::Vec;
use serde::{Deserialize, Serialize};

use super::limits::{
    MAX_ACK_IDS, MAX_DIAGNOSTIC_KEY, MAX_DIAGNOSTIC_VALUE, MAX_DIAGNOSTICS, MAX_FRAME,
    MAX_QUICK_REPLIES, MAX_QUICK_REPLY, MAX_TEXT, MAX_TOPIC,
};

/// A frame from a device to its server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocator to box with; a frame lives briefly on the stack"
)]
pub enum DeviceFrame<'a> {
    /// Open a conversation (variant 0).
    #[serde(borrow)]
    Open(Open<'a>),
    /// Add a message to an open conversation (variant 1).
    #[serde(borrow)]
    Append(Append<'a>),
    /// Ask for the mailbox's waiting messages (variant 2).
    Poll(Poll),
    /// Confirm received mailbox messages (variant 3).
    Ack(DeviceAck),
}

/// Opens a conversation in the device's inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open<'a> {
    /// Device message id; answered by [`Opened`] with the same id.
    pub id: u32,
    /// What the conversation is about (its subject), at most
    /// [`MAX_TOPIC`] bytes.
    pub topic: &'a str,
    /// The first message, at most [`MAX_TEXT`] bytes.
    pub text: &'a str,
    /// Key/value diagnostics shown to agents beside the conversation.
    #[serde(borrow)]
    pub diagnostics: Vec<Diagnostic<'a>, MAX_DIAGNOSTICS>,
}

/// One diagnostic reading attached to an [`Open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic<'a> {
    /// Name of the reading, at most [`MAX_DIAGNOSTIC_KEY`] bytes.
    pub key: &'a str,
    /// Its value as text, at most [`MAX_DIAGNOSTIC_VALUE`] bytes.
    pub value: &'a str,
}

/// Adds a message to a conversation this device opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append<'a> {
    /// Device message id; answered by a [`ServerAck`] naming it.
    pub id: u32,
    /// The conversation, as [`Opened::conversation`] named it.
    pub conversation: u64,
    /// The message, at most [`MAX_TEXT`] bytes.
    pub text: &'a str,
    /// The quick reply this message picks, if it answers one.
    pub choice: Option<Choice>,
}

/// A quick reply picked by the device's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The server message id of the [`Message`] that offered the replies.
    pub message: u64,
    /// Index into that message's `replies`.
    pub index: u8,
}

/// Asks the server for mailbox messages after a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// Device message id; answered by [`Message`]s, then a [`ServerAck`]
    /// naming it.
    pub id: u32,
    /// The highest server message id the device has received in order
    /// (0 before the first). Also acknowledges every message up to it.
    pub cursor: u64,
}

/// Confirms mailbox messages, so the server removes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAck {
    /// Every server message with an id up to this one was received.
    pub upto: u64,
}

/// A frame from the server to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(
    clippy::large_enum_variant,
    reason = "no allocator to box with; a frame lives briefly on the stack"
)]
pub enum ServerFrame<'a> {
    /// An [`Open`] was accepted (variant 0).
    Opened(Opened),
    /// A mailbox message (variant 1).
    #[serde(borrow)]
    Message(Message<'a>),
    /// Device messages were accepted (variant 2).
    Ack(ServerAck),
    /// A device message, or the handshake, was refused (variant 3).
    Error(ErrorFrame),
}

/// Answers an [`Open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// The [`Open`]'s device message id.
    pub id: u32,
    /// The conversation's reference, for [`Append`].
    pub conversation: u64,
}

/// A message waiting in the device's mailbox (an agent's reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message<'a> {
    /// Server message id: per device, increasing, not necessarily contiguous.
    pub id: u64,
    /// The id of the message sent before this one in the same answer, or the
    /// poll's cursor for the first. A device takes a message only when `prev`
    /// equals its cursor, so a lost datagram never causes a skipped message.
    pub prev: u64,
    /// The conversation it belongs to.
    pub conversation: u64,
    /// The text, at most [`MAX_TEXT`] bytes (the server cuts longer text).
    pub text: &'a str,
    /// Labelled choices the device may offer its user, at most
    /// [`MAX_QUICK_REPLY`] bytes each.
    #[serde(borrow)]
    pub replies: Vec<&'a str, MAX_QUICK_REPLIES>,
}

/// Accepts device messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAck {
    /// The device message ids accepted (an [`Append`] stored, a [`Poll`]
    /// answered in full).
    pub ids: Vec<u32, MAX_ACK_IDS>,
    /// Mailbox messages still waiting after this answer; a device polls
    /// again while it is above zero.
    pub pending: u32,
}

/// Refuses a device message or a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    /// The device message refused, if the error concerns one.
    pub id: Option<u32>,
    /// Why, an [`ErrorCode`] value. Unknown codes are kept as numbers.
    pub code: u16,
    /// Code-specific detail, documented on each [`ErrorCode`].
    pub detail: u32,
}

/// Error codes of [`ErrorFrame::code`].
///
/// Permanent codes end the device message (retransmitting it cannot
/// help); transient ones ask for a retransmission later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be decoded. Permanent.
    BadFrame = 1,
    /// A field exceeds its limit. Permanent. `detail`: the limit in bytes or
    /// items.
    TooLarge = 2,
    /// The conversation is not one this device opened, or no longer exists.
    /// Permanent.
    UnknownConversation = 3,
    /// The conversation is closed; open a new one. Permanent.
    ConversationClosed = 4,
    /// Too many messages from this device. Transient. `detail`: seconds to
    /// wait before retransmitting.
    RateLimited = 5,
    /// The handshake's initiation counter was not above the last one
    /// accepted; nothing was done. Transient. `detail`: the last accepted
    /// counter (start the next handshake above it).
    StaleInitiation = 6,
    /// The server failed. Transient. `detail`: seconds to wait.
    Internal = 7,
    /// The id was already used for a different frame (a device that lost
    /// or twice restored its saved state); nothing was done. The device
    /// sends the frame again under a new id. `detail`: the highest device
    /// message id the server has seen from this device.
    IdReused = 8,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub const fn value(self) -> u16 {
        self as u16
    }

    /// The variant for a code received from the wire.
    pub const fn from_value(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::BadFrame,
            2 => Self::TooLarge,
            3 => Self::UnknownConversation,
            4 => Self::ConversationClosed,
            5 => Self::RateLimited,
            6 => Self::StaleInitiation,
            7 => Self::Internal,
            8 => Self::IdReused,
            _ => return None,
        })
    }

    /// Whether retransmitting the refused message later can succeed.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::StaleInitiation | Self::Internal
        )
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes are not a frame of this profile version.
    #[error("undecodable device frame")]
    Malformed,
    /// Bytes remained after the frame.
    #[error("{extra} bytes after the frame")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A field exceeds its limit.
    #[error("{field} is {len} long, the limit is {max}")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// Its length, in bytes or items.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded frame exceeds [`MAX_FRAME`] or the buffer given.
    #[error("the encoded frame exceeds {max} bytes")]
    FrameTooLarge {
        /// The limit in force.
        max: usize,
    },
}

impl FrameError {
    /// The [`ErrorCode`] a server answers this decoding failure with.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Malformed | Self::TrailingBytes { .. } => ErrorCode::BadFrame,
            Self::FieldTooLarge { .. } | Self::FrameTooLarge { .. } => ErrorCode::TooLarge,
        }
    }
}

impl<'a> DeviceFrame<'a> {
    /// Decodes one frame that fills `bytes` exactly and checks its limits.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let frame: Self = decode_exact(bytes)?;
        frame.check_limits()?;
        Ok(frame)
    }

    /// Checks the limits, then encodes the frame into `buf`; returns the
    /// encoded bytes.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], FrameError> {
        self.check_limits()?;
        encode_bounded(self, buf)
    }

    /// The device message id the server answers, if this frame has one
    /// (a [`DeviceAck`] is not answered).
    pub const fn id(&self) -> Option<u32> {
        match self {
            Self::Open(open) => Some(open.id),
            Self::Append(append) => Some(append.id),
            Self::Poll(poll) => Some(poll.id),
            Self::Ack(_) => None,
        }
    }

    /// Gives the frame another device message id (a [`DeviceAck`] has none).
    pub fn set_id(&mut self, id: u32) {
        match self {
            Self::Open(open) => open.id = id,
            Self::Append(append) => append.id = id,
            Self::Poll(poll) => poll.id = id,
            Self::Ack(_) => {}
        }
    }

    /// Checks every field against its limit.
    pub fn check_limits(&self) -> Result<(), FrameError> {
        match self {
            Self::Open(open) => {
                check_len("topic", open.topic.len(), MAX_TOPIC)?;
                check_len("text", open.text.len(), MAX_TEXT)?;
                for diagnostic in &open.diagnostics {
                    check_len("diagnostic key", diagnostic.key.len(), MAX_DIAGNOSTIC_KEY)?;
                    check_len(
                        "diagnostic value",
                        diagnostic.value.len(),
                        MAX_DIAGNOSTIC_VALUE,
                    )?;
                }
                Ok(())
            }
            Self::Append(append) => check_len("text", append.text.len(), MAX_TEXT),
            Self::Poll(_) | Self::Ack(_) => Ok(()),
        }
    }
}

impl<'a> ServerFrame<'a> {
    /// Decodes one frame that fills `bytes` exactly and checks its limits.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FrameError> {
        let frame: Self = decode_exact(bytes)?;
        frame.check_limits()?;
        Ok(frame)
    }

    /// Checks the limits, then encodes the frame into `buf`; returns the
    /// encoded bytes.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], FrameError> {
        self.check_limits()?;
        encode_bounded(self, buf)
    }

    /// Checks every field against its limit.
    pub fn check_limits(&self) -> Result<(), FrameError> {
        match self {
            Self::Message(message) => {
                check_len("text", message.text.len(), MAX_TEXT)?;
                for reply in &message.replies {
                    check_len("quick reply", reply.len(), MAX_QUICK_REPLY)?;
                }
                Ok(())
            }
            Self::Opened(_) | Self::Ack(_) | Self::Error(_) => Ok(()),
        }
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), FrameError> {
    if len > max {
        return Err(FrameError::FieldTooLarge { field, len, max });
    }
    Ok(())
}

fn decode_exact<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, FrameError> {
    if bytes.len() > MAX_FRAME {
        return Err(FrameError::FrameTooLarge { max: MAX_FRAME });
    }
    let (frame, rest) = postcard::take_from_bytes(bytes).map_err(|_| FrameError::Malformed)?;
    if !rest.is_empty() {
        return Err(FrameError::TrailingBytes { extra: rest.len() });
    }
    Ok(frame)
}

fn encode_bounded<'b, T: Serialize>(
    frame: &T,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], FrameError> {
    let max = buf.len().min(MAX_FRAME);
    let bounded = &mut buf[..max];
    postcard::to_slice(frame, bounded).map_err(|_| FrameError::FrameTooLarge { max })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(frame: &DeviceFrame<'_>) -> ([u8; MAX_FRAME], usize) {
        let mut buf = [0u8; MAX_FRAME];
        let len = frame.encode(&mut buf).expect("encodes").len();
        (buf, len)
    }

    fn filter_open() -> DeviceFrame<'static> {
        let mut diagnostics = Vec::new();
        for (key, value) in [("err", "E42"), ("fw", "1.4.2")] {
            diagnostics
                .push(Diagnostic { key, value })
                .expect("room for two");
        }
        DeviceFrame::Open(Open {
            id: 1,
            topic: "filter",
            text: "Filter clogged",
            diagnostics,
        })
    }

    #[test]
    fn an_open_is_pinned_byte_for_byte() {
        let (buf, len) = encoded(&filter_open());
        let expected: &[u8] = &[
            0x00, // variant Open
            0x01, // id 1
            6, b'f', b'i', b'l', b't', b'e', b'r', // topic
            14, b'F', b'i', b'l', b't', b'e', b'r', b' ', b'c', b'l', b'o', b'g', b'g', b'e',
            b'd', // text
            2,    // two diagnostics
            3, b'e', b'r', b'r', 3, b'E', b'4', b'2', // err = E42
            2, b'f', b'w', 5, b'1', b'.', b'4', b'.', b'2', // fw = 1.4.2
        ];
        assert_eq!(&buf[..len], expected);
        assert_eq!(DeviceFrame::decode(expected), Ok(filter_open()));
    }

    #[test]
    fn append_poll_and_ack_are_pinned_byte_for_byte() {
        let append = DeviceFrame::Append(Append {
            id: 300,
            conversation: 7,
            text: "ok",
            choice: Some(Choice {
                message: 9,
                index: 1,
            }),
        });
        let (buf, len) = encoded(&append);
        // id 300 is the varint ac 02.
        assert_eq!(&buf[..len], &[0x01, 0xac, 0x02, 7, 2, b'o', b'k', 1, 9, 1]);
        assert_eq!(DeviceFrame::decode(&buf[..len]), Ok(append));

        let poll = DeviceFrame::Poll(Poll { id: 2, cursor: 0 });
        let (buf, len) = encoded(&poll);
        assert_eq!(&buf[..len], &[0x02, 2, 0]);

        let ack = DeviceFrame::Ack(DeviceAck { upto: 1 << 32 });
        let (buf, len) = encoded(&ack);
        assert_eq!(&buf[..len], &[0x03, 0x80, 0x80, 0x80, 0x80, 0x10]);
    }

    #[test]
    fn server_frames_are_pinned_byte_for_byte() {
        let mut replies = Vec::new();
        replies.push("Yes").expect("room");
        replies.push("No").expect("room");
        let frames = [
            (
                ServerFrame::Opened(Opened {
                    id: 1,
                    conversation: 4242,
                }),
                &[0x00, 1, 0x92, 0x21][..],
            ),
            (
                ServerFrame::Message(Message {
                    id: 5,
                    prev: 0,
                    conversation: 4242,
                    text: "Replace it?",
                    replies,
                }),
                &[
                    0x01, 5, 0, 0x92, 0x21, 11, b'R', b'e', b'p', b'l', b'a', b'c', b'e', b' ',
                    b'i', b't', b'?', 2, 3, b'Y', b'e', b's', 2, b'N', b'o',
                ][..],
            ),
            (
                ServerFrame::Ack(ServerAck {
                    ids: Vec::from_slice(&[2, 3]).expect("room"),
                    pending: 0,
                }),
                &[0x02, 2, 2, 3, 0][..],
            ),
            (
                ServerFrame::Error(ErrorFrame {
                    id: Some(3),
                    code: ErrorCode::RateLimited.value(),
                    detail: 30,
                }),
                &[0x03, 1, 3, 5, 30][..],
            ),
        ];
        for (frame, expected) in frames {
            let mut buf = [0u8; MAX_FRAME];
            let len = frame.encode(&mut buf).expect("encodes").len();
            assert_eq!(&buf[..len], expected, "{frame:?}");
            assert_eq!(ServerFrame::decode(expected), Ok(frame));
        }
    }

    /// DEVICES.md shows these bytes to strangers: they must be the real ones.
    #[test]
    #[cfg(feature = "std")]
    fn the_documented_examples_are_the_encoded_bytes() {
        let doc = include_str!("../../DEVICES.md")
            .split_whitespace()
            .collect::<std::vec::Vec<_>>()
            .join(" ");
        let hex = |bytes: &[u8]| {
            bytes
                .iter()
                .map(|b| std::format!("{b:02x}"))
                .collect::<std::vec::Vec<_>>()
                .join(" ")
        };
        let mut buf = [0u8; MAX_FRAME];
        let open = filter_open().encode(&mut buf).expect("fits").to_vec();
        assert!(doc.contains(&hex(&open)), "Open: {}", hex(&open));
        let mut replies = Vec::new();
        replies.push("Yes").expect("room");
        replies.push("No").expect("room");
        let message = ServerFrame::Message(Message {
            id: 5,
            prev: 0,
            conversation: 4242,
            text: "Replace it?",
            replies,
        });
        let message = message.encode(&mut buf).expect("fits").to_vec();
        assert!(doc.contains(&hex(&message)), "Message: {}", hex(&message));
    }

    #[test]
    fn oversized_fields_are_refused_both_ways() {
        let long = core::str::from_utf8(&[b'x'; MAX_TEXT + 1]).expect("ascii");
        let frame = DeviceFrame::Append(Append {
            id: 1,
            conversation: 1,
            text: long,
            choice: None,
        });
        let mut buf = [0u8; 2 * MAX_FRAME];
        assert_eq!(
            frame.encode(&mut buf),
            Err(FrameError::FieldTooLarge {
                field: "text",
                len: MAX_TEXT + 1,
                max: MAX_TEXT
            })
        );
        // Encoded by hand, bypassing the sender's check: the receiver refuses too.
        let len = postcard::to_slice(&frame, &mut buf).expect("fits").len();
        let err = DeviceFrame::decode(&buf[..len]).expect_err("over the limit");
        assert_eq!(err.code(), ErrorCode::TooLarge);
    }

    #[test]
    fn a_frame_over_the_total_limit_is_refused_even_within_field_limits() {
        let text = core::str::from_utf8(&[b'x'; MAX_TEXT]).expect("ascii");
        let value = core::str::from_utf8(&[b'v'; MAX_DIAGNOSTIC_VALUE]).expect("ascii");
        let mut diagnostics = Vec::new();
        for _ in 0..MAX_DIAGNOSTICS {
            diagnostics
                .push(Diagnostic { key: "k", value })
                .expect("room");
        }
        let frame = DeviceFrame::Open(Open {
            id: 1,
            topic: "t",
            text,
            diagnostics,
        });
        let mut buf = [0u8; 2 * MAX_FRAME];
        assert_eq!(
            frame.encode(&mut buf),
            Err(FrameError::FrameTooLarge { max: MAX_FRAME })
        );
    }

    #[test]
    fn garbage_trailing_bytes_and_too_many_items_are_refused() {
        assert_eq!(DeviceFrame::decode(&[0x09]), Err(FrameError::Malformed));
        assert_eq!(DeviceFrame::decode(&[]), Err(FrameError::Malformed));
        assert_eq!(
            DeviceFrame::decode(&[0x02, 2, 0, 0xff]),
            Err(FrameError::TrailingBytes { extra: 1 })
        );
        // Nine acked ids do not fit the ack's capacity of eight.
        let nine = [0x02, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0];
        assert_eq!(ServerFrame::decode(&nine), Err(FrameError::Malformed));
        // Invalid UTF-8 in a text field.
        assert_eq!(
            DeviceFrame::decode(&[0x01, 1, 1, 1, 0xff, 0]),
            Err(FrameError::Malformed)
        );
    }

    #[test]
    fn error_codes_round_trip_and_unknown_ones_stay_numbers() {
        for code in 1..=8 {
            let known = ErrorCode::from_value(code).expect("defined");
            assert_eq!(known.value(), code);
        }
        assert_eq!(ErrorCode::from_value(99), None);
        assert!(ErrorCode::RateLimited.is_transient());
        assert!(!ErrorCode::UnknownConversation.is_transient());
    }
}
