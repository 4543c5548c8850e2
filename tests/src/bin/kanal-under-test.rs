//! The `kanal` command line, built inside the test package so end-to-end
//! tests can run it as a real process (`CARGO_BIN_EXE_kanal-under-test`).

fn main() -> std::process::ExitCode {
    kanal_client::cli::main()
}
