//! kanald: the Kanal server.
//!
//! Layout: [`model`] is the vocabulary, [`store`] the persistence seam,
//! [`engine`] the sans-IO conversation engine, [`writer`] the group-commit
//! task that drives it, [`hub`] the live fan-out to connected sessions, and
//! [`endpoint`] / [`session`] the QUIC side.

pub mod model;
pub mod store;
