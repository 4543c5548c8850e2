//! The driver around the core: the single writer that orders every change
//! and commits it in groups, the hub that fans committed events out to live
//! sessions, and the account checks every link shares.

pub mod auth;
pub mod hub;
pub mod writer;
