//! Operating a server: the `kanald` command line, configuration, the data
//! directory.

pub(crate) mod certificate;
pub mod cli;
pub(crate) mod cluster;
pub mod config;
pub mod database;
pub mod datadir;
pub(crate) mod server;
