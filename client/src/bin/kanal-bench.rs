//! `kanal-bench`: a load generator that drives a running `kanald` over real
//! QUIC with many concurrent clients and reports throughput, end-to-end
//! latency, memory per idle connection, login storms and resynchronisation.
//! Run `kanal-bench --help` for the scenarios.

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
