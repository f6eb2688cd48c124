//! `plumbline bench`: the performance figures of issue 6, each printed with
//! its ratio to a baseline measured in the same run, because the machines
//! this runs on are noisy and only ratios travel between them.
//!
//! One run generates a seeded synthetic product ([`synth`]) straight through
//! the store into a temporary SQLite file, then measures:
//!
//! 1. `RankItems` (top 50) over gRPC on loopback, p50 and p99, against
//!    `grpc.health.v1.Health/Check` on the same server (the gRPC floor);
//! 2. the same with 16 concurrent clients, as throughput;
//! 3. a pure in-memory rescore of every item, against one pass over the
//!    items and their links;
//! 4. start-up of a child `plumbline serve` on the database until health
//!    answers SERVING, against the same on an empty database;
//! 5. one `RecordObservations` on a metric 10 % of the items depend on
//!    followed by a fresh `RankItems`, against the same on a metric nothing
//!    depends on;
//! 6. a full sync of the N items from a local GitHub mock, against fetching
//!    and parsing the same pages;
//! 7. the peak RSS (VmHWM) of that child server, against the same on an
//!    empty database.
//!
//! Targets are stated for 100,000 items. Absolute targets (times, memory)
//! apply unchanged below that and grow linearly with N above it; ratio
//! targets hold at any N. A missed target is reported, never an error.

mod child;
mod mock;
mod rpc;
pub mod synth;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, SyncConfig, ValidationConfig};
use crate::engine::Engine;
use crate::store::{SqliteStore, StoreError};
use crate::sync::http::HttpClient;
use crate::sync::{Connector, SyncError, Syncer};

/// The size the targets are stated for.
pub const TARGET_ITEMS: u64 = 100_000;

/// Flags of `plumbline bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Backlog items in the synthetic product (the targets are stated for
    /// 100000).
    #[arg(long)]
    pub items: u64,
    /// Seed of the synthetic product; the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the figures as JSON instead of one line each.
    #[arg(long)]
    pub json: bool,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub items: u64,
    pub seed: u64,
    /// Timed calls per latency figure (and per client x 16 for throughput,
    /// divided by 4). 2000 by default; tests use fewer.
    pub samples: usize,
    /// The `plumbline` binary, started as a child for start-up and memory.
    pub exe: PathBuf,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Options {
    pub fn new(items: u64, seed: u64, exe: PathBuf) -> Self {
        Options {
            items,
            seed,
            samples: 2000,
            exe,
            progress: false,
        }
    }
}

/// Why the benchmark could not run (a missed target is not an error).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(Box<crate::server::ServerError>),
    #[error(transparent)]
    Engine(Box<crate::engine::Error>),
    #[error(transparent)]
    Sync(Box<SyncError>),
    #[error("gRPC connection: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("gRPC call failed: {0}")]
    Rpc(Box<tonic::Status>),
    #[error("{0}")]
    Check(String),
}

impl From<crate::server::ServerError> for BenchError {
    fn from(e: crate::server::ServerError) -> Self {
        BenchError::Server(Box::new(e))
    }
}
impl From<crate::engine::Error> for BenchError {
    fn from(e: crate::engine::Error) -> Self {
        BenchError::Engine(Box::new(e))
    }
}
impl From<SyncError> for BenchError {
    fn from(e: SyncError) -> Self {
        BenchError::Sync(Box::new(e))
    }
}
impl From<tonic::Status> for BenchError {
    fn from(e: tonic::Status) -> Self {
        BenchError::Rpc(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// Informational only.
    None,
    RatioAtMost(f64),
    RatioAtLeast(f64),
    /// The value, in the figure's unit, at 100k items.
    Below(f64),
    AtMost(f64),
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub baseline: f64,
    /// What the baseline is.
    pub baseline_name: &'static str,
    pub ratio: f64,
    /// The target at this N, in words (`ratio <= 1.5`, `< 20 ms`).
    pub target: String,
    /// `None` when the figure has no target.
    pub pass: Option<bool>,
}

impl Figure {
    fn new(
        name: &'static str,
        value: f64,
        unit: &'static str,
        baseline: f64,
        baseline_name: &'static str,
        target: Target,
        items: u64,
    ) -> Figure {
        let ratio = value / baseline;
        let scale = (items as f64 / TARGET_ITEMS as f64).max(1.0);
        let (target, pass) = match target {
            Target::None => ("none".to_string(), None),
            Target::RatioAtMost(r) => (format!("ratio <= {r}"), Some(ratio <= r)),
            Target::RatioAtLeast(r) => (format!("ratio >= {r}"), Some(ratio >= r)),
            Target::Below(v) => (
                format!("< {} {unit}", fmt_num(v * scale)),
                Some(value < v * scale),
            ),
            Target::AtMost(v) => (
                format!("<= {} {unit}", fmt_num(v * scale)),
                Some(value <= v * scale),
            ),
        };
        Figure {
            name,
            value,
            unit,
            baseline,
            baseline_name,
            ratio,
            target,
            pass,
        }
    }

    /// `name: value unit (ratio x baseline: ...) target ... PASS`.
    pub fn line(&self) -> String {
        let verdict = match self.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "-",
        };
        format!(
            "{}: {} {} ({:.2}x baseline {} {}, {}) target {} {}",
            self.name,
            fmt_num(self.value),
            self.unit,
            self.ratio,
            fmt_num(self.baseline),
            self.unit,
            self.baseline_name,
            self.target,
            verdict
        )
    }
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub items: u64,
    pub seed: u64,
    pub date: String,
    /// Seconds to generate and store the synthetic product.
    pub generate_secs: f64,
    /// Size of the product's SQLite file.
    pub db_bytes: u64,
    /// Seconds the whole run took.
    pub total_secs: f64,
    pub figures: Vec<Figure>,
    /// How some figures were measured.
    pub notes: Vec<String>,
}

impl Report {
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

/// The names of every figure a run reports, in order.
pub const FIGURES: [&str; 8] = [
    "rank_top50_p50",
    "rank_top50_p99",
    "rank_top50_throughput_16_clients",
    "rescore_all_in_memory",
    "startup_to_serving",
    "observe_then_rank_p50",
    "sync_ingest",
    "peak_rss",
];

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The test configuration of an in-process server on `db`.
fn config(db: &Path) -> Config {
    Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        db: db.to_path_buf(),
        default_size: 3.0,
        store: crate::config::StoreConfig::default(),
        sync: SyncConfig::manual(),
        validation: ValidationConfig::manual(),
    }
}

/// Runs every figure.
pub async fn run(opts: &Options) -> Result<Report> {
    let started = Instant::now();
    let say = |s: &str| {
        if opts.progress {
            eprintln!("[{:>7.1}s] {s}", started.elapsed().as_secs_f64());
        }
    };
    let n = opts.items;
    if n == 0 {
        return Err(BenchError::Check("--items must be at least 1".into()));
    }
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("product.sqlite");

    say(&format!("generating {n} items (seed {})", opts.seed));
    let t = Instant::now();
    let keys = {
        let store = SqliteStore::open(&db).await?;
        let keys = synth::write_product(&store, opts.seed, n).await?;
        store.close().await;
        keys
    };
    let generate_secs = t.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);

    let mut figures = Vec::new();
    let mut notes = Vec::new();

    say("in-memory rescore");
    figures.push(rescore_figure(&db, &keys, n).await?);

    say("start-up and peak RSS of a child `plumbline serve`");
    let (startup, rss) = child::startup_and_rss(opts, dir.path(), &db).await?;
    figures.push(startup);
    figures.push(rss);
    notes.push(
        "startup_to_serving and peak_rss: a child `plumbline serve` process, timed from spawn to \
         the first Health/Check answering SERVING; VmHWM from /proc/PID/status after 100 RankItems"
            .into(),
    );

    say("gRPC latency and throughput (in-process server)");
    let server = crate::server::start(&config(&db)).await?;
    let rpc = rpc::measure(opts, &server.url(), &keys).await;
    server.shutdown().await?;
    let (lat, tput, observe) = rpc?;
    figures.extend(lat);
    figures.push(tput);
    figures.push(observe);

    say("sync ingest from the local GitHub mock");
    figures.push(sync_figure(opts, dir.path()).await?);

    let order = |f: &Figure| FIGURES.iter().position(|n| *n == f.name);
    figures.sort_by_key(order);
    say("done");
    Ok(Report {
        items: n,
        seed: opts.seed,
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        generate_secs,
        db_bytes,
        total_secs: started.elapsed().as_secs_f64(),
        figures,
        notes,
    })
}

/// Figure 3: `ScoreIndex::rescore_all` on the loaded product, against one
/// pass over the items and their links.
async fn rescore_figure(db: &Path, keys: &[String], n: u64) -> Result<Figure> {
    let store = SqliteStore::open(db).await?;
    let mut ix = crate::engine::build_index(&store, 3.0).await?;
    store.close().await;
    let reps = if n > 200_000 { 3 } else { 7 };
    ix.rescore_all();
    let mut rescore = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        ix.rescore_all();
        rescore.push(t.elapsed());
    }
    let mut pass = Vec::new();
    let mut sink = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        for k in keys {
            if let Some(f) = ix.item(k) {
                sink += f.estimate.unwrap_or(0.0);
            }
            sink += ix.links_of_item(k).map(|l| l.contribution).sum::<f64>();
        }
        pass.push(t.elapsed());
    }
    std::hint::black_box(sink);
    Ok(Figure::new(
        "rescore_all_in_memory",
        ms(median(rescore)),
        "ms",
        ms(median(pass)),
        "one pass over the items and their links",
        Target::Below(20.0),
        n,
    ))
}

/// Figure 6: a full sync of the mock's N issues into a fresh database with
/// the value model, against fetching and parsing the same pages.
async fn sync_figure(opts: &Options, dir: &Path) -> Result<Figure> {
    let n = opts.items;
    let mock = mock::GitHubMock::start(opts.seed, n).await?;
    let source = synth::source("gh", &mock.uri());
    let conn = crate::sync::connector(source.kind);
    let headers = conn.headers(&source, None)?;
    let reps = if n > 20_000 { 1 } else { 3 };
    let (mut fetch, mut ingest) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let http = HttpClient::new(SyncConfig::manual().http_options())?;
        let t = Instant::now();
        let fetched = fetch_and_parse(&http, conn.as_ref(), &source, &headers).await?;
        fetch.push(t.elapsed());
        if fetched != n {
            return Err(BenchError::Check(format!(
                "the mock served {fetched} issues, not {n}"
            )));
        }

        let path = dir.join(format!("sync-{rep}.sqlite"));
        let store = SqliteStore::open(&path).await?;
        synth::write_model(&store, opts.seed, std::slice::from_ref(&source)).await?;
        let engine = Arc::new(Engine::open(Arc::new(store.clone()), 3.0).await?);
        let syncer = Syncer::new(
            engine.clone(),
            HttpClient::new(SyncConfig::manual().http_options())?,
        );
        let t = Instant::now();
        let summary = syncer.sync(&source.id, true, &|_| {}).await?;
        ingest.push(t.elapsed());
        let stored = engine.read().item_count() as u64;
        drop(syncer);
        drop(engine);
        store.close().await;
        let _ = std::fs::remove_file(&path);
        if u64::from(summary.upserted) != n || stored != n {
            return Err(BenchError::Check(format!(
                "the sync stored {stored} items ({} upserted), not {n}",
                summary.upserted
            )));
        }
    }
    Ok(Figure::new(
        "sync_ingest",
        median(ingest).as_secs_f64(),
        "s",
        median(fetch).as_secs_f64(),
        "fetching and parsing the same pages",
        Target::RatioAtMost(1.3),
        n,
    ))
}

/// Follows the mock's pages with the sync's own client and connector,
/// mapping every issue; returns how many items came back.
async fn fetch_and_parse(
    http: &HttpClient,
    conn: &dyn Connector,
    source: &crate::domain::Source,
    headers: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
) -> Result<u64> {
    let mut url = conn.first_url(source, None, chrono::Utc::now())?;
    let mut requests = 0;
    let mut count = 0u64;
    loop {
        let fetched = http
            .get(&source.id, &url, headers, None, &|_| {}, &mut requests)
            .await?;
        let page = conn.parse_page(source, &fetched)?;
        count += page.items.len() as u64;
        match page.next {
            Some(next) => url = next,
            None => return Ok(count),
        }
    }
}

/// `plumbline bench`: runs the suite and prints a line per figure (or JSON).
/// Fails only when the benchmark cannot run, never on a missed target.
pub async fn cli(args: BenchArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut opts = Options::new(args.items, args.seed, exe);
    opts.progress = true;
    let report = run(&opts).await?;
    if args.json {
        let s = serde_json::to_string_pretty(&report)
            .map_err(|e| BenchError::Check(format!("cannot encode the report: {e}")))?;
        println!("{s}");
    } else {
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
    }
    Ok(())
}
