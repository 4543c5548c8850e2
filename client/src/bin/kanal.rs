//! `kanal`: Kanal's reference client for the command line.
//!
//! Register or log in once; the session (server, pin, account, resume token,
//! progress of `listen`) is saved in `<home>/session.json` and later commands
//! resume it. Run `kanal --help` for the commands.

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
