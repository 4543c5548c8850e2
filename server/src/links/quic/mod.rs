//! Clients over QUIC (ALPN `kanal/1`): the endpoint, one session per
//! connection (handshake, requests, the event stream), the rendering of
//! Kanal's model into protobuf, and the TLS set-up.

pub mod endpoint;
mod events;
mod handshake;
pub mod render;
pub mod requests;
pub mod session;
pub mod tls;
