//! `kanal`: Kanal's reference client for the command line.
//!
//! Register or log in once; the session (server, pin, account, resume token,
//! progress of `listen`) is saved in `<home>/session.json` and later commands
//! resume it. Run `kanal --help` for the commands.

fn main() -> std::process::ExitCode {
    kanal_client::cli::main()
}
