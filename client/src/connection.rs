//! One QUIC connection with an open Kanal session: dialing the server, the
//! Hello/Welcome exchange, control-stream writes, request round trips and
//! datagrams. Reconnecting is the session's business (see `reconnect.rs`); a
//! [`Link`] is simply dead once its connection is.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use kanal_proto::codes::CloseCode;
use kanal_proto::frame::{self, FrameDecoder};
use kanal_proto::io::FrameReader;
use kanal_proto::{limits, pb};
use prost::Message as _;
use tokio::sync::Mutex;

use crate::config::{ClientConfig, Credentials};
use crate::error::{ClientError, from_frame_error, from_handshake_error};
use crate::tls;

/// How often the client pings an idle connection; NAT bindings and the
/// server's 60 s idle timeout both need traffic more often than that.
const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// The idle timeout the client proposes, in milliseconds (the server's is 60 s).
const IDLE_TIMEOUT_MS: u32 = 60_000;

/// Room for incoming datagrams (typing signals) not yet read, in bytes.
const DATAGRAM_BUFFER: usize = 64 * 1024;

/// A client endpoint for reaching `addr`: bound to an ephemeral port on
/// 127.0.0.1 for an IPv4 loopback server, `0.0.0.0` for other IPv4 servers,
/// and `[::]` for IPv6.
pub fn endpoint_for(addr: SocketAddr) -> Result<quinn::Endpoint, ClientError> {
    let bind = match addr {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    Ok(quinn::Endpoint::client(bind)?)
}

/// Everything needed to open connections to one server, again and again.
#[derive(Debug)]
pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    /// Whether `endpoint` came from the configuration (shared with others).
    shared_endpoint: bool,
    quic: quinn::ClientConfig,
    config: ClientConfig,
    tls_name: String,
    /// Connection attempts so far: each tries the next of the name's
    /// addresses, so a client whose server (one node of several behind one
    /// name) is gone reaches another.
    attempts: AtomicUsize,
}

impl Dialer {
    /// Resolves the server once (to choose the socket's address family) and
    /// prepares TLS and transport settings.
    pub(crate) async fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let tls_name = config.tls_name()?;
        let crypto = tls::client_crypto(config.pin)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(crypto))
            .map_err(|e| ClientError::Config(format!("TLS config unusable for QUIC: {e}")))?;
        let mut transport = quinn::TransportConfig::default();
        transport
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()))
            .datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
        let mut quic = quinn::ClientConfig::new(Arc::new(crypto));
        quic.transport_config(Arc::new(transport));
        let (endpoint, shared_endpoint) = match &config.endpoint {
            Some(endpoint) => (endpoint.clone(), true),
            None => (endpoint_for(resolve(&config, None, 0).await?)?, false),
        };
        Ok(Self {
            endpoint,
            shared_endpoint,
            quic,
            config,
            tls_name,
            attempts: AtomicUsize::new(0),
        })
    }

    /// The QUIC endpoint all connections of this client share.
    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Whether the endpoint is shared with other clients (so closing this
    /// client must not wait for the endpoint to become idle).
    pub(crate) fn shares_endpoint(&self) -> bool {
        self.shared_endpoint
    }

    /// Connects, says Hello with `credentials`, and waits for the Welcome.
    /// `generation` numbers the connections of one client.
    pub(crate) async fn open(
        &self,
        credentials: &Credentials,
        generation: u64,
        availability: Option<pb::Availability>,
    ) -> Result<(Link, pb::Welcome), ClientError> {
        let family = self.endpoint.local_addr()?;
        let attempt = self.attempts.fetch_add(1, Ordering::Relaxed);
        let addr = resolve(&self.config, Some(family), attempt).await?;
        let conn = self
            .endpoint
            .connect_with(self.quic.clone(), addr, &self.tls_name)?
            .await
            .map_err(|e| from_handshake_error(e, self.config.pin.is_some()))?;
        match self
            .hello(&conn, credentials, generation, availability)
            .await
        {
            Ok(opened) => Ok(opened),
            Err(error) => {
                conn.close(CloseCode::Normal.value().into(), b"hello failed");
                Err(error)
            }
        }
    }

    async fn hello(
        &self,
        conn: &quinn::Connection,
        credentials: &Credentials,
        generation: u64,
        availability: Option<pb::Availability>,
    ) -> Result<(Link, pb::Welcome), ClientError> {
        let (mut send, recv) = conn.open_bi().await?;
        let hello = pb::ClientControl {
            kind: Some(pb::client_control::Kind::Hello(pb::Hello {
                version: kanal_proto::PROTOCOL_VERSION,
                client: self.config.client_name.clone(),
                auth: Some(credentials.to_auth()),
                availability: availability.unwrap_or(pb::Availability::Unspecified) as i32,
            })),
        };
        send.write_all(&frame::encode_to_bytes(&hello)).await?;
        let mut reader = FrameReader::new(recv, limits::MAX_FRAME);
        let answer = reader
            .next::<pb::ServerControl>()
            .await
            .map_err(from_frame_error);
        let welcome = match answer {
            Ok(Some(pb::ServerControl {
                kind: Some(pb::server_control::Kind::Welcome(welcome)),
            })) => welcome,
            Ok(Some(pb::ServerControl {
                kind: Some(pb::server_control::Kind::Error(error)),
            })) => return Err(ClientError::refused(error)),
            Ok(Some(pb::ServerControl { kind: None })) => {
                return Err(ClientError::Protocol(
                    "empty ServerControl instead of Welcome".into(),
                ));
            }
            Ok(None) => return Err(refused_without_reason(conn, "control stream ended")),
            Err(ClientError::ConnectionLost {
                code: Some(CloseCode::HelloRefused),
                detail,
            }) => return Err(refused_without_reason(conn, &detail)),
            Err(error) => return Err(error),
        };
        if welcome.version != kanal_proto::PROTOCOL_VERSION {
            return Err(ClientError::Protocol(format!(
                "server answered with protocol version {} (we speak {})",
                welcome.version,
                kanal_proto::PROTOCOL_VERSION
            )));
        }
        // The server may still write on the control stream; keep reading it
        // so that it is never stopped under the server's feet.
        tokio::spawn(drain_control(reader));
        let link = Link {
            conn: conn.clone(),
            control: Mutex::new(send),
            generation,
        };
        Ok((link, welcome))
    }
}

/// An open session on one QUIC connection.
#[derive(Debug)]
pub(crate) struct Link {
    /// The QUIC connection.
    pub(crate) conn: quinn::Connection,
    /// Our side of the control stream; frames must not interleave.
    control: Mutex<quinn::SendStream>,
    /// Which connection of the client this is (1 for the first).
    pub(crate) generation: u64,
}

impl Link {
    /// Writes one frame on the control stream.
    pub(crate) async fn send_control(
        &self,
        kind: pb::client_control::Kind,
    ) -> Result<(), ClientError> {
        let frame = frame::encode_to_bytes(&pb::ClientControl { kind: Some(kind) });
        let mut control = self.control.lock().await;
        control.write_all(&frame).await?;
        Ok(())
    }

    /// Sends one request on its own stream and reads the response.
    pub(crate) async fn round_trip(
        &self,
        request: &pb::Request,
    ) -> Result<pb::Response, ClientError> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        send.write_all(&frame::encode_to_bytes(request)).await?;
        send.finish()?;
        // One frame, then the end of the stream: its prefix is at most 10 bytes.
        let bytes = recv.read_to_end(limits::MAX_RESPONSE_FRAME + 10).await?;
        let mut buf = BytesMut::from(&bytes[..]);
        let body = FrameDecoder::new(limits::MAX_RESPONSE_FRAME)
            .decode(&mut buf)?
            .ok_or_else(|| {
                ClientError::Protocol("response stream ended without a whole frame".into())
            })?;
        if !buf.is_empty() {
            return Err(ClientError::Protocol(
                "bytes after the response frame".into(),
            ));
        }
        let response: pb::Response = frame::decode_body(body)?;
        if response.id != request.id {
            return Err(ClientError::Protocol(format!(
                "response id {} on the stream of request {}",
                response.id, request.id
            )));
        }
        Ok(response)
    }

    /// Sends one datagram (best effort: it may be lost).
    pub(crate) fn send_datagram(&self, datagram: &pb::Datagram) -> Result<(), ClientError> {
        self.conn
            .send_datagram(datagram.encode_to_vec().into())
            .map_err(|error| match error {
                quinn::SendDatagramError::ConnectionLost(lost) => lost.into(),
                other => other.into(),
            })
    }

    /// Ends the control stream and waits (bounded) until the server has
    /// received everything written on it, so a last Ack is not lost when the
    /// connection closes right after.
    pub(crate) async fn flush_control(&self, limit: Duration) {
        let mut control = self.control.lock().await;
        if control.finish().is_ok() {
            let _ = tokio::time::timeout(limit, control.stopped()).await;
        }
    }

    /// Closes the connection with `code`.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) {
        self.conn.close(code.value().into(), reason.as_bytes());
    }
}

/// The server closed the Hello without a readable `Error` frame.
fn refused_without_reason(conn: &quinn::Connection, detail: &str) -> ClientError {
    match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close))
            if CloseCode::from_value(close.error_code.into_inner())
                == Some(CloseCode::HelloRefused) =>
        {
            ClientError::Refused {
                code: pb::ErrorCode::Unspecified,
                message: format!(
                    "hello refused without an error frame: {}",
                    String::from_utf8_lossy(&close.reason)
                ),
                retry_after: None,
            }
        }
        Some(lost) => lost.into(),
        None => ClientError::Protocol(format!("no Welcome: {detail}")),
    }
}

/// Reads whatever else the server writes on the control stream.
async fn drain_control(mut reader: FrameReader<quinn::RecvStream>) {
    loop {
        match reader.next::<pb::ServerControl>().await {
            Ok(Some(frame)) => tracing::debug!(?frame, "unexpected control frame after Welcome"),
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "control stream ended");
                return;
            }
        }
    }
}

/// The server's address for connection attempt `attempt`: its addresses in
/// turn, those of the family of `like` when given and there are some.
async fn resolve(
    config: &ClientConfig,
    like: Option<SocketAddr>,
    attempt: usize,
) -> Result<SocketAddr, ClientError> {
    let (host, port) = config.host_port()?;
    let failed = |detail: String| ClientError::Resolve {
        server: config.server.clone(),
        detail,
    };
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| failed(e.to_string()))?
        .collect();
    pick(&addrs, like, attempt).ok_or_else(|| failed("no addresses".into()))
}

/// Address number `attempt` (in turn) among `addrs`, among those of the
/// family of `like` if there are some.
fn pick(addrs: &[SocketAddr], like: Option<SocketAddr>, attempt: usize) -> Option<SocketAddr> {
    let same_family: Vec<SocketAddr> = match like {
        Some(like) => addrs
            .iter()
            .filter(|addr| addr.is_ipv4() == like.is_ipv4())
            .copied()
            .collect(),
        None => Vec::new(),
    };
    let choices = if same_family.is_empty() {
        addrs
    } else {
        &same_family
    };
    choices.get(attempt % choices.len().max(1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_go_round_the_addresses_of_the_family() {
        let v4 = |last: u8| SocketAddr::from(([192, 0, 2, last], 7447));
        let v6: SocketAddr = "[2001:db8::1]:7447".parse().expect("v6");
        let addrs = [v6, v4(1), v4(2), v4(3)];
        let like = Some(v4(9));
        let picked: Vec<_> = (0..4).filter_map(|n| pick(&addrs, like, n)).collect();
        assert_eq!(picked, [v4(1), v4(2), v4(3), v4(1)]);
        assert_eq!(pick(&addrs, None, 0), Some(v6));
        assert_eq!(pick(&[v6], like, 5), Some(v6), "another family if no other");
        assert_eq!(pick(&[], like, 0), None);
    }
}
