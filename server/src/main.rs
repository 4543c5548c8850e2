//! `kanald`: the Kanal server. See `kanald --help`.

fn main() -> std::process::ExitCode {
    kanal_server::cli::main()
}
