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
    /// How long a frame may take from its first byte to its last.
    stall: Option<std::time::Duration>,
    /// When the frame under way must be complete.
    deadline: Option<tokio::time::Instant>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads frames of at most `max` bytes from `inner`.
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(max),
            stall: None,
            deadline: None,
        }
    }

    /// Fails a frame with [`FrameError::Stalled`] when it has not ended
    /// `stall` after its first byte arrived (a peer that starts a frame and
    /// stops would otherwise hold its buffer for as long as it likes).
    pub fn stall_after(mut self, stall: std::time::Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    /// Starts the frame under way's clock again: for a reader that stopped
    /// reading for reasons of its own (a full pipeline), so the peer is not
    /// blamed for the pause.
    pub fn restart_stall_clock(&mut self) {
        self.deadline = None;
    }

    /// The next frame's body; `None` when the stream ended cleanly between frames.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(body) = self.decoder.decode(&mut self.buf)? {
                self.deadline = None;
                return Ok(Some(body));
            }
            let wanted = self.decoder.wanted(&self.buf)?.clamp(1, READ_CHUNK);
            self.buf.reserve(wanted);
            // The clock starts at a frame's first byte; it is kept in the
            // reader, so a cancelled read does not restart it.
            if self.buf.is_empty() {
                self.deadline = None;
            } else if let (Some(stall), None) = (self.stall, self.deadline) {
                self.deadline = Some(tokio::time::Instant::now() + stall);
            }
            let read = self.inner.read_buf(&mut self.buf);
            let read = match self.deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                    Ok(read) => read,
                    Err(_) => {
                        let secs = self.stall.map_or(0, |s| s.as_secs());
                        return Err(FrameError::Stalled { secs });
                    }
                },
                None => read.await,
            };
            if read? == 0 {
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

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_stops_halfway_stalls_and_a_quiet_stream_does_not() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut reader = FrameReader::new(b, 64).stall_after(std::time::Duration::from_secs(10));
        // Nothing sent: waiting is no stall (paused time would run out first).
        let quiet =
            tokio::time::timeout(std::time::Duration::from_secs(60), reader.next_frame()).await;
        assert!(quiet.is_err(), "a quiet stream is not stalled");
        // Two of five promised bytes, then nothing.
        a.write_all(&[5, 1, 2]).await.expect("write");
        let started = tokio::time::Instant::now();
        let stalled = reader.next_frame().await;
        assert!(
            matches!(stalled, Err(FrameError::Stalled { secs: 10 })),
            "{stalled:?}"
        );
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(10));
    }
}
