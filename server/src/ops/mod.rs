//! Operating a server: the `kanald` command line, configuration, the data
//! directory.

pub mod cli;
pub mod config;
pub mod datadir;
