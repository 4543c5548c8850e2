//! Clients over QUIC (ALPN `kanal/1`): the endpoint, one session per
//! connection, request streams, and the TLS set-up.

pub mod endpoint;
pub mod requests;
pub mod session;
pub mod tls;
