//! Clients over QUIC (ALPN `kanal/1`): the endpoint, one session per
//! connection (handshake, requests, the event stream), the rendering of
//! Kanal's model into protobuf, and the TLS set-up.

mod budget;
mod canned;
mod contact;
mod desk;
pub(crate) mod endpoint;
mod events;
mod handshake;
pub(crate) mod render;
mod report;
pub(crate) mod requests;
pub(crate) mod session;
mod structured;
pub(crate) mod tls;
mod typing;
