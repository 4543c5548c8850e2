//! kanald: the Kanal server.
//!
//! Layout: [`model`] is the vocabulary, [`store`] the persistence seam,
//! [`engine`] the sans-IO conversation engine, [`writer`] the group-commit
//! task that drives it, [`hub`] the live fan-out to connected sessions, and
//! [`endpoint`] / [`session`] the QUIC side.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod endpoint;
pub mod engine;
pub mod hub;
pub mod model;
pub mod requests;
pub mod session;
pub mod store;
pub mod tls;
pub mod writer;

pub use endpoint::Server;
