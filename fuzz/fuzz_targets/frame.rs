//! The frame codec on arbitrary bytes: `FrameDecoder` on the whole buffer,
//! the same bytes fed in pieces, and `FrameReader` over an in-memory reader
//! that returns them in pieces, must all see the same frames and the same
//! end; every frame respects the limit, and one with a shortest-form prefix
//! re-encodes to the bytes it came from.
#![no_main]

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use kanal_proto::frame::{FrameDecoder, FrameError};
use kanal_proto::io::FrameReader;
use kanal_proto::{limits, pb};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tokio::io::{AsyncRead, ReadBuf};

/// How a decoding ended after its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Clean,
    TooLarge(u64),
    BadPrefix,
    Truncated,
}

fuzz_target!(|data: &[u8]| {
    // Input: the limit (2 bytes, 0xffff meaning the protocol's), the sizes
    // of the pieces (1 byte), then the stream.
    let [a, b, piece, stream @ ..] = data else {
        return;
    };
    let max = match u16::from_le_bytes([*a, *b]) {
        u16::MAX => limits::MAX_FRAME,
        n => usize::from(n),
    };
    let piece = usize::from(*piece).max(1);
    let decoder = FrameDecoder::new(max);

    let (frames, end) = whole(&decoder, stream);
    let mut at = 0;
    for body in &frames {
        assert!(
            body.len() <= max,
            "a frame of {} bytes passed {max}",
            body.len()
        );
        let prefix = prost::length_delimiter_len(body.len());
        let consumed = &stream[at..];
        // The body is the bytes after the prefix, whatever the prefix's form.
        let taken = consumed
            .iter()
            .position(|b| b & 0x80 == 0)
            .expect("a decoded frame has a whole prefix")
            + 1;
        assert_eq!(&consumed[taken..taken + body.len()], &body[..]);
        if taken == prefix {
            let mut again = BytesMut::new();
            prost::encoding::encode_varint(body.len() as u64, &mut again);
            again.put_slice(body);
            assert_eq!(&again[..], &consumed[..prefix + body.len()]);
        }
        at += taken + body.len();
        round_trip::<pb::ClientControl>(body);
        round_trip::<pb::Request>(body);
    }
    if end == End::Clean {
        assert_eq!(at, stream.len());
    }

    assert_eq!(pieces(&decoder, stream, piece), (frames.clone(), end));
    assert_eq!(reader(stream, max, piece), (frames, end));
});

/// Decodes the whole buffer at once.
fn whole(decoder: &FrameDecoder, stream: &[u8]) -> (Vec<Bytes>, End) {
    let mut buf = BytesMut::from(stream);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(body)) => frames.push(body),
            Ok(None) if buf.is_empty() => return (frames, End::Clean),
            Ok(None) => {
                let wanted = decoder.wanted(&buf).expect("wanted agrees with decode");
                assert!(wanted >= 1);
                return (frames, End::Truncated);
            }
            Err(e) => return (frames, error_end(e)),
        }
    }
}

/// Feeds the buffer `piece` bytes at a time, taking frames out as they complete.
fn pieces(decoder: &FrameDecoder, stream: &[u8], piece: usize) -> (Vec<Bytes>, End) {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(body)) => frames.push(body),
                Ok(None) => break,
                Err(e) => return (frames, error_end(e)),
            }
        }
    }
    let end = if buf.is_empty() {
        End::Clean
    } else {
        End::Truncated
    };
    (frames, end)
}

/// Reads the buffer with `FrameReader` from a reader that returns at most
/// `piece` bytes per read.
fn reader(stream: &[u8], max: usize, piece: usize) -> (Vec<Bytes>, End) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    });
    runtime.block_on(async {
        let mut reader = FrameReader::new(Pieces { stream, piece }, max);
        let mut frames = Vec::new();
        loop {
            match reader.next_frame().await {
                Ok(Some(body)) => frames.push(body),
                Ok(None) => return (frames, End::Clean),
                Err(FrameError::Truncated) => return (frames, End::Truncated),
                Err(e) => return (frames, error_end(e)),
            }
        }
    })
}

fn error_end(e: FrameError) -> End {
    match e {
        FrameError::TooLarge { len, .. } => End::TooLarge(len),
        FrameError::BadPrefix => End::BadPrefix,
        other => panic!("unexpected frame error {other}"),
    }
}

/// A message that decodes re-encodes to bytes that decode to it again.
fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(message) = M::decode(body) {
        let bytes = message.encode_to_vec();
        assert_eq!(bytes.len(), message.encoded_len());
        assert_eq!(M::decode(&bytes[..]).expect("re-encoded decodes"), message);
    }
}

/// An in-memory reader that returns at most `piece` bytes per read.
struct Pieces<'a> {
    stream: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.stream.len().min(self.piece).min(buf.remaining());
        let (now, rest) = self.stream.split_at(n);
        buf.put_slice(now);
        self.stream = rest;
        Poll::Ready(Ok(()))
    }
}
