//! Operating a server: the `kanald` command line, configuration, the data
//! directory, and operator actions.

pub mod admin;
pub mod cli;
pub mod config;
pub mod datadir;
