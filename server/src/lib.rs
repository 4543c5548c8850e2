//! kanald: the Kanal server.
//!
//! Layout, dependencies pointing down: [`model`] is Kanal's vocabulary;
//! `core` the sans-IO conversation engine; [`store`] the persistence seam;
//! `node` the writer that drives the engine and the hub that fans events
//! out; `links` the ways in (QUIC clients today); `ops` the command line,
//! configuration and operator actions.

pub mod core;
pub mod links;
pub mod model;
pub mod node;
pub mod ops;
pub mod server;
#[cfg(test)]
pub mod sim;
pub mod store;

pub use node::directory as admin;
pub use ops::{cli, config, datadir};
pub use server::Server;
