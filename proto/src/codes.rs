//! QUIC application error codes Kanal uses to close connections and to reset
//! or stop streams. Application-level refusals (wrong password, unknown
//! conversation) travel as `pb::Error` frames instead; see `ErrorCode` in the
//! schema.

/// Why a connection was closed (QUIC `CONNECTION_CLOSE` application code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly close by either side.
    Normal = 0x0,
    /// A control-stream frame could not be decoded, or arrived out of order.
    ProtocolViolation = 0x1,
    /// A control-stream frame's length prefix exceeded the limit.
    FrameTooLarge = 0x2,
    /// The Hello was refused (the `Error` frame before the close says why).
    HelloRefused = 0x3,
    /// No Hello arrived within the time limit.
    HelloTimeout = 0x4,
    /// The server is shutting down; reconnect later.
    ServerShutdown = 0x5,
    /// The server failed (for example its store, while writing the event
    /// stream); reconnect later.
    Internal = 0x6,
}

/// Why a single stream was reset or stopped (QUIC `RESET_STREAM` /
/// `STOP_SENDING` application code). The connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum StreamCode {
    /// The stream's frame could not be decoded.
    MalformedFrame = 0x10,
    /// The stream's frame length prefix exceeded the limit.
    FrameTooLarge = 0x11,
    /// The stream ended before a whole frame arrived.
    Truncated = 0x12,
    /// A frame began but did not end within
    /// [`crate::limits::FRAME_STALL_SECS`], or a response the client did
    /// not read could not be written within that time.
    Stalled = 0x13,
}

macro_rules! code_conversions {
    ($ty:ident { $($variant:ident),* $(,)? }) => {
        impl $ty {
            /// The code as sent on the wire.
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// The variant for a code received from the wire.
            pub const fn from_value(value: u64) -> Option<Self> {
                $(if value == $ty::$variant as u64 {
                    return Some($ty::$variant);
                })*
                None
            }
        }
    };
}

code_conversions!(CloseCode {
    Normal,
    ProtocolViolation,
    FrameTooLarge,
    HelloRefused,
    HelloTimeout,
    ServerShutdown,
    Internal,
});

code_conversions!(StreamCode {
    MalformedFrame,
    FrameTooLarge,
    Truncated,
    Stalled,
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [
            CloseCode::Normal,
            CloseCode::Internal,
            CloseCode::HelloRefused,
        ] {
            assert_eq!(CloseCode::from_value(code.value().into()), Some(code));
        }
        for code in [StreamCode::MalformedFrame, StreamCode::Truncated] {
            assert_eq!(StreamCode::from_value(code.value().into()), Some(code));
        }
        assert_eq!(CloseCode::from_value(0x99), None);
    }
}
