//! What Kanal's fuzz targets share: an in-process server with a QUIC client
//! endpoint ([`server`]), the structured request input of the
//! `request_stream` target ([`requests`]), and what the wire promises about
//! a stream of frames ([`wire`]).

pub mod requests;
pub mod server;
pub mod wire;
