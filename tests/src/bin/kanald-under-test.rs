//! The `kanald` command line, built inside the test package so end-to-end
//! tests can start it as a real process (`CARGO_BIN_EXE_kanald-under-test`).

fn main() -> std::process::ExitCode {
    kanal_server::cli::main()
}
