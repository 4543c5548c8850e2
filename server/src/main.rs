//! `kanald`: the Kanal server. See `kanald --help`.

/// mimalloc returns freed memory to the system promptly: without it, the
/// 19 MiB Argon2id buffers of a few logins stay resident for good, and
/// thousands of small per-connection allocations fragment glibc's arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kanal_server::cli::main()
}
