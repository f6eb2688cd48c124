//! The `plumbline` binary: parse the command line and hand over to the CLI.

/// mimalloc serves the binary's allocations. A ranking page, a sync page or
/// an index rebuild allocates and frees many small strings at once, which
/// mimalloc's per-thread free lists handle in a fraction of the system
/// allocator's instructions (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    plumbline::cli::main()
}
