//! A stream of frames as the server reads it, computed on the client side,
//! so a target can say what the server must answer to the bytes it sent.

use bytes::BytesMut;
use kanal_proto::frame::{FrameDecoder, FrameError};
use prost::Message;

/// How a stream of frames ends when read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte belongs to a whole frame that decodes.
    Clean,
    /// The length prefix announces more than the limit.
    TooLarge,
    /// The length prefix is not a varint.
    BadPrefix,
    /// A frame's body is not the expected message.
    Undecodable,
    /// The bytes end inside a frame.
    Truncated,
}

/// The messages of type `M` at the front of `bytes` (frames of at most
/// `max` bytes), and how the stream ends after them.
pub fn split<M: Message + Default>(bytes: &[u8], max: usize) -> (Vec<M>, End) {
    let decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::from(bytes);
    let mut messages = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(body)) => match M::decode(body) {
                Ok(message) => messages.push(message),
                Err(_) => return (messages, End::Undecodable),
            },
            Ok(None) if buf.is_empty() => return (messages, End::Clean),
            Ok(None) => return (messages, End::Truncated),
            Err(FrameError::TooLarge { .. }) => return (messages, End::TooLarge),
            Err(FrameError::BadPrefix) => return (messages, End::BadPrefix),
            Err(e) => unreachable!("the sans-IO decoder cannot fail with {e}"),
        }
    }
}

/// The whole frames of type `M` the server wrote, ignoring a partial frame
/// cut off by a reset. Panics if a frame breaks the limit or the schema:
/// the server must never write one.
pub fn server_frames<M: Message + Default>(bytes: &[u8], max: usize) -> Vec<M> {
    let (messages, end) = split::<M>(bytes, max);
    assert!(
        matches!(end, End::Clean | End::Truncated),
        "the server wrote a broken frame ({end:?}) after {} good ones",
        messages.len()
    );
    messages
}
