//! What can go wrong between the client and its server.

use std::time::Duration;

use kanal_proto::codes::{CloseCode, StreamCode};
use kanal_proto::frame::FrameError;
use kanal_proto::pb;

use crate::fingerprint::FingerprintError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the Hello or the request; `code` says why.
    #[error("refused ({}): {message}", code.as_str_name())]
    Refused {
        /// The server's reason.
        code: pb::ErrorCode,
        /// Human-readable detail from the server.
        message: String,
        /// With `RATE_LIMITED`: how long until the same attempt can succeed.
        retry_after: Option<Duration>,
    },
    /// The configuration cannot work (bad server address, bad pin, …).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A pin could not be parsed.
    #[error("invalid pin: {0}")]
    Pin(#[from] FingerprintError),
    /// The server's host name did not resolve to any address.
    #[error("cannot resolve `{server}`: {detail}")]
    Resolve {
        /// The server as configured.
        server: String,
        /// What the resolver said.
        detail: String,
    },
    /// The TLS configuration could not be built.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS handshake failed: most often the server's certificate does
    /// not match the pin, or (without a pin) no public CA vouches for it.
    #[error("TLS handshake failed: {detail}{hint}")]
    Handshake {
        /// What TLS reported.
        detail: String,
        /// What to check, for people.
        hint: &'static str,
    },
    /// The QUIC connection could not be started.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection was lost or closed by the server.
    #[error("connection lost: {detail}")]
    ConnectionLost {
        /// The Kanal close code, when the server closed with one.
        code: Option<CloseCode>,
        /// What happened, from QUIC.
        detail: String,
    },
    /// The server reset a request stream (usually: it could not decode our frame).
    #[error("stream reset by the server (code {raw:#x})")]
    StreamReset {
        /// The Kanal stream code, when the server used one.
        code: Option<StreamCode>,
        /// The code as received.
        raw: u64,
    },
    /// The server sent something the protocol does not allow.
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    /// A frame from the server could not be read.
    #[error("bad frame from the server: {0}")]
    Frame(#[from] FrameError),
    /// Local I/O failed (binding the UDP socket, …).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A typing datagram could not be sent.
    #[error("cannot send datagram: {0}")]
    Datagram(#[from] quinn::SendDatagramError),
    /// No answer within the time limit.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// The connection is down and did not come back within the time limit.
    #[error("not connected (reconnecting for {waited:?}; last error: {last_error})")]
    NotConnected {
        /// How long the operation waited for the connection.
        waited: Duration,
        /// Why the last reconnection attempt failed.
        last_error: String,
    },
    /// `subscribe` was already called on this client.
    #[error("already subscribed: a client has one event stream")]
    AlreadySubscribed,
    /// The client was closed with [`crate::Client::close`].
    #[error("the client is closed")]
    Closed,
}

impl ClientError {
    /// The server's error code, when the server refused something.
    pub fn code(&self) -> Option<pb::ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A refusal built from the server's `Error` message.
    pub(crate) fn refused(error: pb::Error) -> Self {
        Self::Refused {
            code: pb::ErrorCode::try_from(error.code).unwrap_or(pb::ErrorCode::Unspecified),
            message: error.message,
            retry_after: (error.retry_after_ms > 0)
                .then(|| Duration::from_millis(error.retry_after_ms)),
        }
    }

    /// True when the operation failed because the connection went away, so
    /// that it may succeed on the next connection.
    pub(crate) fn is_connection_lost(&self) -> bool {
        matches!(self, Self::ConnectionLost { .. })
    }

    /// True when reconnecting cannot help: the server refused the session.
    /// `Internal` means the server failed and may recover, so it is retried.
    pub(crate) fn ends_session(&self) -> bool {
        matches!(self, Self::Refused { code, .. } if *code != pb::ErrorCode::Internal)
            || matches!(self, Self::Closed)
    }

    /// A copy for waiters that observe the same failure (the error itself
    /// holds non-cloneable sources).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Refused {
                code,
                message,
                retry_after,
            } => Self::Refused {
                code: *code,
                message: message.clone(),
                retry_after: *retry_after,
            },
            Self::ConnectionLost { code, detail } => Self::ConnectionLost {
                code: *code,
                detail: detail.clone(),
            },
            Self::Closed => Self::Closed,
            other => Self::ConnectionLost {
                code: None,
                detail: other.to_string(),
            },
        }
    }
}

impl From<quinn::ConnectionError> for ClientError {
    fn from(error: quinn::ConnectionError) -> Self {
        let code = match &error {
            quinn::ConnectionError::ApplicationClosed(close) => {
                CloseCode::from_value(close.error_code.into_inner())
            }
            _ => None,
        };
        if matches!(error, quinn::ConnectionError::LocallyClosed) {
            return Self::Closed;
        }
        Self::ConnectionLost {
            code,
            detail: error.to_string(),
        }
    }
}

impl From<quinn::WriteError> for ClientError {
    fn from(error: quinn::WriteError) -> Self {
        match error {
            quinn::WriteError::ConnectionLost(lost) => lost.into(),
            quinn::WriteError::Stopped(code) => Self::StreamReset {
                code: StreamCode::from_value(code.into_inner()),
                raw: code.into_inner(),
            },
            other => Self::Protocol(format!("write failed: {other}")),
        }
    }
}

impl From<quinn::ClosedStream> for ClientError {
    fn from(error: quinn::ClosedStream) -> Self {
        Self::Protocol(format!("stream closed early: {error}"))
    }
}

impl From<quinn::ReadError> for ClientError {
    fn from(error: quinn::ReadError) -> Self {
        match error {
            quinn::ReadError::ConnectionLost(lost) => lost.into(),
            quinn::ReadError::Reset(code) => Self::StreamReset {
                code: StreamCode::from_value(code.into_inner()),
                raw: code.into_inner(),
            },
            other => Self::Protocol(format!("read failed: {other}")),
        }
    }
}

impl From<quinn::ReadToEndError> for ClientError {
    fn from(error: quinn::ReadToEndError) -> Self {
        match error {
            quinn::ReadToEndError::Read(read) => read.into(),
            quinn::ReadToEndError::TooLong => {
                Self::Protocol("response exceeds the frame limit".into())
            }
        }
    }
}

/// Classifies a failure of the QUIC handshake: TLS failures (QUIC crypto
/// error codes 0x100-0x1ff, raised by us or by the server) become
/// [`ClientError::Handshake`].
pub(crate) fn from_handshake_error(error: quinn::ConnectionError, pinned: bool) -> ClientError {
    let crypto = |code: u64| (0x100..=0x1ff).contains(&code);
    let detail = match &error {
        quinn::ConnectionError::TransportError(e) if crypto(e.code.into()) => e.reason.clone(),
        quinn::ConnectionError::ConnectionClosed(close) if crypto(close.error_code.into()) => {
            format!("the server said: {close}")
        }
        _ => return error.into(),
    };
    let hint = if pinned {
        " (does the server's certificate fingerprint match the pin?)"
    } else {
        " (for a self-signed kanald certificate, pin its fingerprint)"
    };
    ClientError::Handshake { detail, hint }
}

/// Turns a frame error from a quinn stream back into the quinn error it
/// wraps, so that a lost connection is recognised as such.
pub(crate) fn from_frame_error(error: FrameError) -> ClientError {
    if let FrameError::Io(io) = &error
        && let Some(read) = io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
    {
        return read.clone().into();
    }
    ClientError::Frame(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_keeps_its_code_and_unknown_codes_are_unspecified() {
        let known = ClientError::refused(pb::Error {
            code: pb::ErrorCode::NotFound as i32,
            message: "no such conversation".into(),
            ..Default::default()
        });
        assert_eq!(known.code(), Some(pb::ErrorCode::NotFound));
        assert!(known.to_string().contains("ERROR_CODE_NOT_FOUND"));
        let unknown = ClientError::refused(pb::Error {
            code: 9999,
            message: String::new(),
            ..Default::default()
        });
        assert_eq!(unknown.code(), Some(pb::ErrorCode::Unspecified));
        assert_eq!(ClientError::Closed.code(), None);
        let limited = ClientError::refused(pb::Error {
            code: pb::ErrorCode::RateLimited as i32,
            message: "sending too fast".into(),
            retry_after_ms: 250,
        });
        assert!(matches!(
            limited,
            ClientError::Refused { retry_after: Some(wait), .. } if wait == Duration::from_millis(250)
        ));
    }

    #[test]
    fn lost_read_is_recognised_through_the_frame_reader() {
        let read = quinn::ReadError::ConnectionLost(quinn::ConnectionError::TimedOut);
        let frame = FrameError::Io(read.into());
        assert!(from_frame_error(frame).is_connection_lost());
    }
}
