//! Frames over async byte streams (tokio's `AsyncRead`/`AsyncWrite`, which
//! quinn's `RecvStream`/`SendStream` implement).

use bytes::{Bytes, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{self, FrameDecoder, FrameError};

/// Largest read issued at once, in bytes.
const READ_CHUNK: usize = 16 * 1024;

/// Reads frames from a byte stream, never buffering more than one frame
/// beyond the limit.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max` bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max),
        }
    }

    /// The next frame's body; `None` when the stream ended cleanly between frames.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(body));
            }
            let wanted = self.decoder.wanted(&self.buf)?.clamp(1, READ_CHUNK);
            self.buf.reserve(wanted);
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The next frame decoded as `M`; `None` when the stream ended cleanly.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        match self.next_frame().await? {
            Some(body) => Ok(Some(frame::decode_body(body)?)),
            None => Ok(None),
        }
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The underlying stream, dropping any buffered bytes.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes `msg` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, M: Message>(
    writer: &mut W,
    msg: &M,
) -> std::io::Result<()> {
    writer.write_all(&frame::encode_to_bytes(msg)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    #[tokio::test]
    async fn reads_what_was_written_then_clean_end() {
        let (mut a, b) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            for seq in 1..=100u64 {
                let msg = pb::Ack { seq };
                write_frame(&mut a, &msg).await.expect("write");
            }
        });
        let mut reader = FrameReader::new(b, 64);
        for seq in 1..=100u64 {
            let got: pb::Ack = reader.next().await.expect("ok").expect("frame");
            assert_eq!(got.seq, seq);
        }
        writer.await.expect("writer");
        assert!(reader.next::<pb::Ack>().await.expect("ok").is_none());
    }

    #[tokio::test]
    async fn end_inside_a_frame_is_truncated() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(&[5, 1, 2]).await.expect("write");
        drop(a);
        let mut reader = FrameReader::new(b, 64);
        assert!(matches!(
            reader.next_frame().await,
            Err(FrameError::Truncated)
        ));
    }
}
