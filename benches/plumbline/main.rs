//! `cargo bench --bench plumbline -- --items N`: the performance figures of
//! issue 6, each printed with its ratio to a baseline measured in the same
//! run (see BENCHMARKS.md). `-- --learning [--seeds K]`: the learning
//! simulation of issue 17 instead, each figure against the same loop without
//! learning. A bench target of its own, not a subcommand, so
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
    /// Run the learning simulation (issue 17) instead of the performance
    /// figures: seeds `--seed` .. `--seed + --seeds - 1`, 2 and 6 rounds each.
    #[arg(long)]
    learning: bool,
    /// Simulated products of `--learning`.
    #[arg(long, default_value_t = 30)]
    seeds: u64,
    /// Which metrics of `--learning`'s products are noisy: `mixed` (about
    /// half, the products), `quiet` or `noisy` (all), to see how
    /// much of what learning could gain the noise takes.
    #[arg(long, value_enum, default_value_t = suite::learning::NoiseMix::Mixed)]
    noise: suite::learning::NoiseMix,
    /// Passed by `cargo bench`; `cargo test --benches` runs the target
    /// without it, and then there is nothing to do unless --items is given.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.learning {
        init_logging();
        return run_learning(&args);
    }
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

/// `--learning`: the simulation's figures, one line each with each seed's
/// line before them, or JSON.
fn run_learning(args: &Args) -> ExitCode {
    if args.seeds == 0 {
        eprintln!("plumbline bench: --seeds must be at least 1");
        return ExitCode::FAILURE;
    }
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
    let seeds: Vec<u64> = (args.seed..args.seed.saturating_add(args.seeds)).collect();
    let report = match runtime.block_on(suite::learning::run(&seeds, args.noise, !args.json)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("plumbline bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        return match serde_json::to_string_pretty(&report) {
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
        "plumbline bench --learning: {} seeds ({}..={}), rounds {:?}, {} (run {:.1} s)",
        seeds.len(),
        args.seed,
        seeds.last().copied().unwrap_or(args.seed),
        suite::learning::ROUNDS,
        report.date,
        report.total_secs
    );
    for s in &report.per_seed {
        println!("{}", s.line());
    }
    for f in &report.figures {
        println!("{}", f.line());
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    ExitCode::SUCCESS
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
