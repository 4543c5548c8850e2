//! kanald: the Kanal server.
//!
//! Layout, dependencies pointing down: [`model`] is Kanal's vocabulary;
//! `core` the sans-IO engine and the audience rule; [`store`] the
//! persistence seam (SQLite, in memory); `node` the sequencer and writer
//! that drive the engine, the hub that fans events out, and what every link
//! shares (accounts, the directory); `links` the ways in (QUIC for clients,
//! a Unix socket for operators); `ops` the command line, configuration,
//! data directory and certificates, and `ops::server`, which puts the parts
//! together. `sim` runs nodes and
//! clients on virtual time for protocol tests.
//!
//! An embedder starts a [`Server`] on a data directory (see [`datadir`] and
//! [`config`]), or on a [`store::Store`] of its own, and changes the
//! directory through [`admin`] on the running [`Node`].

mod core;
mod links;
pub mod model;
mod node;
mod ops;
#[cfg(test)]
mod sim;
pub mod store;

pub use links::device::Counters as DeviceCounters;
pub use node::Node;
pub use node::directory as admin;
pub use node::limits::{Policy, Registration};
pub use ops::server::{LOCK_FILE, Offline, Server, StartError};
pub use ops::{cli, config, database, datadir};
