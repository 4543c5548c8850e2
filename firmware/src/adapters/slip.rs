//! Datagrams over a serial line, framed with SLIP (RFC 1055), for products
//! whose network is on the other side of a UART: a cellular or Wi-Fi
//! co-processor in transparent mode, a development board on a USB serial
//! port, or the QEMU example (`firmware/examples/qemu`), whose UART the
//! host's `kanal-serial-bridge` forwards to the gateway's UDP port.
//!
//! Each datagram is sent as `END`, the datagram with `END` and `ESC`
//! escaped, `END`. The leading `END` ends any line noise the receiver saw
//! before it, so a frame is never glued to garbage. The decoder keeps no
//! state across frames but its buffer: a frame longer than its capacity,
//! or with a broken escape, is dropped whole (counted in
//! [`SlipDecoder::dropped`]) and decoding resumes at the next `END`; empty
//! frames (two `END`s in a row) are not frames.
//!
//! No allocation; the decoder's capacity is a const generic (the profile's
//! [`MAX_DATAGRAM`](kanal_proto::device::limits::MAX_DATAGRAM) for device
//! datagrams). The framing is small enough that no crate was worth its
//! dependency: the SLIP crates on crates.io either need `std` or cannot
//! resynchronise after line noise.

/// Frame delimiter.
pub const END: u8 = 0xC0;
/// Escape: the next byte is [`ESC_END`] or [`ESC_ESC`].
pub const ESC: u8 = 0xDB;
/// `ESC ESC_END` stands for an `END` byte of the datagram.
pub const ESC_END: u8 = 0xDC;
/// `ESC ESC_ESC` stands for an `ESC` byte of the datagram.
pub const ESC_ESC: u8 = 0xDD;

/// The longest encoding of a datagram of `len` bytes: every byte escaped,
/// and both delimiters.
pub const fn max_encoded_len(len: usize) -> usize {
    2 * len + 2
}

/// The output buffer is too small for the encoded datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a SLIP frame of up to {needed} bytes does not fit {len}")]
pub struct BufferTooSmall {
    /// The buffer's length.
    pub len: usize,
    /// [`max_encoded_len`] of the datagram.
    pub needed: usize,
}

/// Encodes `datagram` as one frame into `out`; returns the frame's length.
/// `out` must hold [`max_encoded_len`]`(datagram.len())` bytes.
pub fn encode(datagram: &[u8], out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let needed = max_encoded_len(datagram.len());
    if out.len() < needed {
        return Err(BufferTooSmall {
            len: out.len(),
            needed,
        });
    }
    let mut at = 0;
    write_frame(datagram, |byte| {
        out[at] = byte;
        at += 1;
    });
    Ok(at)
}

/// Writes `datagram` as one frame, a byte at a time, to `put` (a UART's
/// transmit register): no frame buffer at all.
pub fn write_frame(datagram: &[u8], mut put: impl FnMut(u8)) {
    put(END);
    for &byte in datagram {
        match byte {
            END => {
                put(ESC);
                put(ESC_END);
            }
            ESC => {
                put(ESC);
                put(ESC_ESC);
            }
            other => put(other),
        }
    }
    put(END);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Within a frame (or between frames, with nothing buffered).
    Data,
    /// After an `ESC`.
    Escape,
    /// Dropping a broken frame until the next `END`.
    Discard,
    /// A frame was returned; the next byte starts afresh.
    Complete,
}

/// Decodes a byte stream into frames of at most `N` bytes.
#[derive(Debug, Clone)]
pub struct SlipDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    state: State,
    dropped: u32,
}

impl<const N: usize> Default for SlipDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SlipDecoder<N> {
    /// A decoder that has seen nothing.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            state: State::Data,
            dropped: 0,
        }
    }

    /// Takes the next byte from the line; returns a frame when `byte`
    /// completed one. The frame is valid until the next call.
    pub fn push(&mut self, byte: u8) -> Option<&[u8]> {
        if self.state == State::Complete {
            self.len = 0;
            self.state = State::Data;
        }
        match (self.state, byte) {
            (State::Discard, END) => {
                self.len = 0;
                self.state = State::Data;
            }
            (State::Discard, _) => {}
            (_, END) if self.state == State::Escape => self.drop_frame(true),
            (State::Data, END) if self.len == 0 => {}
            (State::Data, END) => {
                self.state = State::Complete;
                return Some(&self.buf[..self.len]);
            }
            (State::Data, ESC) => self.state = State::Escape,
            (State::Escape, ESC_END) => self.store(END),
            (State::Escape, ESC_ESC) => self.store(ESC),
            (State::Escape, _) => self.drop_frame(false),
            (_, other) => self.store(other),
        }
        None
    }

    /// Frames dropped so far: too long for `N` bytes, or broken by a bad
    /// escape.
    pub fn dropped(&self) -> u32 {
        self.dropped
    }

    fn store(&mut self, byte: u8) {
        self.state = State::Data;
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = byte;
                self.len += 1;
            }
            None => self.drop_frame(false),
        }
    }

    /// Drops the frame being decoded; `at_end`: the `END` that closes it was
    /// just read.
    fn drop_frame(&mut self, at_end: bool) {
        self.dropped = self.dropped.saturating_add(1);
        self.len = 0;
        self.state = if at_end { State::Data } else { State::Discard };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all<const N: usize>(
        decoder: &mut SlipDecoder<N>,
        line: &[u8],
    ) -> ([[u8; 8]; 4], [usize; 4], usize) {
        let mut frames = [[0u8; 8]; 4];
        let mut lens = [0usize; 4];
        let mut count = 0;
        for &byte in line {
            if let Some(frame) = decoder.push(byte) {
                frames[count][..frame.len()].copy_from_slice(frame);
                lens[count] = frame.len();
                count += 1;
            }
        }
        (frames, lens, count)
    }

    #[test]
    fn a_datagram_with_both_special_bytes_survives_the_round_trip() {
        let datagram = [1, END, 2, ESC, 3];
        let mut line = [0u8; max_encoded_len(5)];
        let len = encode(&datagram, &mut line).expect("fits");
        assert_eq!(
            &line[..len],
            &[END, 1, ESC, ESC_END, 2, ESC, ESC_ESC, 3, END]
        );
        let mut decoder = SlipDecoder::<8>::new();
        let (frames, lens, count) = decode_all(&mut decoder, &line[..len]);
        assert_eq!(count, 1);
        assert_eq!(&frames[0][..lens[0]], &datagram);
    }

    #[test]
    fn noise_before_a_frame_and_broken_frames_are_dropped_and_decoding_resumes() {
        // Noise that ends at the next frame's leading END counts as a frame
        // of its own (a device cannot tell noise from data: the session's
        // authentication refuses it); a bad escape and an oversized frame
        // are dropped; empty frames are ignored.
        let line = [
            7, 7, END, 1, 2, END, END, ESC, 9, 4, END, 1, 2, 3, 4, 5, 6, 7, 8, 9, END, END, 5, END,
        ];
        let mut decoder = SlipDecoder::<8>::new();
        let (frames, lens, count) = decode_all(&mut decoder, &line);
        assert_eq!(count, 3);
        assert_eq!(&frames[0][..lens[0]], &[7, 7]);
        assert_eq!(&frames[1][..lens[1]], &[1, 2]);
        assert_eq!(&frames[2][..lens[2]], &[5]);
        assert_eq!(decoder.dropped(), 2);
    }

    #[test]
    fn an_escape_cut_by_end_drops_that_frame_only() {
        let line = [END, 1, ESC, END, 2, END];
        let mut decoder = SlipDecoder::<8>::new();
        let (frames, lens, count) = decode_all(&mut decoder, &line);
        assert_eq!(count, 1);
        assert_eq!(&frames[0][..lens[0]], &[2]);
        assert_eq!(decoder.dropped(), 1);
    }

    #[test]
    fn a_small_buffer_is_refused() {
        let mut out = [0u8; 5];
        assert_eq!(
            encode(&[1, 2], &mut out),
            Err(BufferTooSmall { len: 5, needed: 6 })
        );
    }
}
