//! `cargo bench --bench plumbline -- --items N`: the performance figures of
//! issue 6, each printed with its ratio to a baseline measured in the same
//! run (see BENCHMARKS.md). A bench target of its own, not a subcommand, so
//! that the shipped `plumbline` binary carries neither the harness nor the
//! HTTP server of its GitHub mock.
//!
//! The child `plumbline serve` it starts for start-up and memory is the
//! binary cargo built beside it, in the same profile.

/// The same allocator as the shipped binary (`src/main.rs`), so that the
/// in-process figures (rankings, rescore, sync) measure what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod suite;

use std::process::ExitCode;

use clap::Parser;

use suite::{Options, Report};

/// Flags after `cargo bench --bench plumbline --`.
#[derive(Debug, Parser)]
#[command(
    name = "plumbline-bench",
    about = "The performance figures, each with its ratio to a baseline measured in the same run."
)]
struct Args {
    /// Backlog items in the synthetic product (the targets are stated for
    /// 100000).
    #[arg(long)]
    items: Option<u64>,
    /// Seed of the synthetic product; the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the figures as JSON instead of one line each.
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; `cargo test --benches` runs the target
    /// without it, and then there is nothing to do unless --items is given.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(items) = args.items else {
        if args.bench {
            eprintln!(
                "plumbline bench: say how many items, e.g. \
                 `cargo bench --bench plumbline -- --items 100000`"
            );
            return ExitCode::FAILURE;
        }
        // Run as a test (`cargo test --benches`): a full run is not a test.
        println!("plumbline bench: nothing to run without --items");
        return ExitCode::SUCCESS;
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("plumbline bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut opts = Options::new(items, args.seed, env!("CARGO_BIN_EXE_plumbline").into());
    opts.progress = true;
    // A missed target is printed, never an error: only a run that could
    // not measure fails.
    match runtime.block_on(suite::run(&opts)) {
        Ok(report) => print(&report, args.json),
        Err(e) => {
            eprintln!("plumbline bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings of the in-process server and sync on stderr, as the binary
/// logs them (`PLUMBLINE_LOG` overrides the level).
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PLUMBLINE_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// One line per figure (or the report as JSON) on stdout.
fn print(report: &Report, json: bool) -> ExitCode {
    if json {
        return match serde_json::to_string_pretty(report) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("plumbline bench: cannot encode the report as JSON: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "plumbline bench: {} items, seed {}, {} (generated in {:.1} s, database {:.1} MB, run {:.1} s)",
        report.items,
        report.seed,
        report.date,
        report.generate_secs,
        report.db_bytes as f64 / 1e6,
        report.total_secs
    );
    for f in &report.figures {
        println!("{}", f.line());
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    ExitCode::SUCCESS
}
