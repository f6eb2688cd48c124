//! The command line: `serve` and `demo` run the sidecar; the other commands
//! are gRPC clients of a running sidecar that print a table, or JSON with
//! `--json`.

mod apply;
mod args;
mod backlog_cmds;
mod client;
mod client_tls;
mod completions;
mod credentials;
mod customer;
mod demo;
mod history;
pub use demo::load_sample;
mod insight;
mod json;
mod model_cmds;
mod observe_file;
mod output;
mod pull;
#[cfg(test)]
mod rpc_map;
mod split;
mod status;
mod tokens;
mod tracker;
mod trend;
mod validation_cmds;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, Overrides};

/// plumbline: rank backlog items by the value they are expected to deliver,
/// and explain why.
///
/// Start with `plumbline demo` to see a sample product ranked and explained.
#[derive(Debug, Parser)]
#[command(name = "plumbline", version, about, long_about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "PLUMBLINE_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(flatten)]
    tls: client_tls::ClientTlsArgs,
    /// File holding the API token that client commands send (or set
    /// PLUMBLINE_TOKEN to the token); there is no flag taking the token
    /// itself, which `ps` would show.
    #[arg(long, global = true, value_name = "PATH", env = "PLUMBLINE_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar: open the store (a SQLite file, or PostgreSQL shared by many sidecars) and serve gRPC until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Start a sidecar on a temporary database with a sample product, print
    /// the ranked, explained backlog, and exit.
    Demo(DemoArgs),
    /// Items ranked by value density (value per unit of size), or by value.
    Rank(RankArgs),
    /// What entered, left or moved in the top N since DATE (the last
    /// refinement), and why: the score term that changed most, old -> new.
    /// DATE is RFC 3339 or YYYY-MM-DD (that day's start, 00:00 UTC).
    Since(history::SinceArgs),
    /// Ranking snapshots behind `since`: take one now, or list them.
    #[command(subcommand)]
    History(history::HistoryCommand),
    /// An item's score with every term that makes it up.
    Explain {
        /// Item key, SOURCE/EXTERNAL_ID (e.g. web/412).
        item_key: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List backlog items; `items get` shows some by key, `items upsert`
    /// creates or replaces one.
    Items(ItemsArgs),
    /// The goal tree with effective weights; --tree shows coverage: how much
    /// of each goal's weighted gap the backlog addresses, and what serves it.
    /// Subcommands get, rollup, add, update, remove.
    Goals(model_cmds::GoalsArgs),
    /// Key Value Measures with their current value, gap, staleness, source
    /// and pull freshness. Subcommands get, add, update, pull, remove.
    Metrics(model_cmds::MetricsArgs),
    /// Value hypotheses with their status and value. Subcommands get, add,
    /// update, remove.
    Hypotheses(model_cmds::HypothesesArgs),
    /// Customer segments: the roll-up by segment (gaps, opportunity scores,
    /// coverage, serving items, unserved segments). Subcommands rollup,
    /// list, get, add, remove.
    Segments(customer::SegmentsArgs),
    /// Desired outcomes with importance, satisfaction, gap and opportunity.
    /// Subcommands list, get, add, wave (record a survey wave), remove.
    Outcomes(customer::OutcomesArgs),
    /// Link an item to a hypothesis (or remove the link with --remove).
    Link(LinkArgs),
    /// Links between items and hypotheses, by item or hypothesis.
    Links(backlog_cmds::LinksArgs),
    /// Record an observation of a metric, or (--file) many from a CSV or
    /// JSON lines file.
    Observe(ObserveArgs),
    /// Record a release of items (what a deploy pipeline calls), e.g.
    /// `plumbline release web/412 web/415 --id deploy-812`.
    Release(validation_cmds::ReleaseArgs),
    /// Record an A/B result for a hypothesis, e.g.
    /// `plumbline experiment H-1 --lift 0.4 --ci 0.1 0.7`.
    Experiment(validation_cmds::ExperimentArgs),
    /// Judge releases against their metrics and print each verdict: step,
    /// delivered share, log-likelihood ratio, confidence before -> after.
    Validate(validation_cmds::ValidateArgs),
    /// What was learned about a hypothesis, release by release.
    Evidence(validation_cmds::EvidenceArgs),
    /// Manage tracker sources (add, list with sync status, get, update, remove).
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Pull a source's changed items from its tracker now, with progress.
    Sync(SyncArgs),
    /// A metric's observations with releases marked, in the terminal and
    /// (--out FILE) as an SVG chart.
    Trend(trend::TrendArgs),
    /// Split plans of an item: by hypothesis, by open checklist task, by
    /// child item; each slice with its value and size, the best first slice
    /// marked. --apply creates the slices of a plan as items.
    Split(split::SplitArgs),
    /// API tokens (create, list, revoke), through a server or, with --db,
    /// straight in its database file.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Customer evidence, who asked for what: add, list, forget CUSTOMER,
    /// import FILE (CSV or JSON lines, all or nothing).
    #[command(subcommand)]
    Insights(insight::InsightsCommand),
    /// Make the server match a value model file: print the plan (create,
    /// update field by field, delete with --prune), then apply it in one
    /// transaction.
    Apply(apply::ApplyArgs),
    /// Write the server's value model in the file format `apply` reads.
    Export(apply::ExportArgs),
    /// Write a commented starter value model file to edit and apply.
    Init(apply::InitArgs),
    /// Print a shell completion script (bash, zsh, fish).
    Completions(completions::CompletionsArgs),
    /// Print the man page (or write one per command with --dir).
    Man(completions::ManArgs),
}

#[derive(Debug, Subcommand)]
enum SourcesCommand {
    /// Add a tracker project as a source, or a push source (--kind push) for
    /// items an integration sends over the API.
    Add(SourceAddArgs),
    /// List sources with their sync status.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// One source with its sync status.
    Get {
        /// Source id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a source; only the flags given change, e.g.
    /// `plumbline sources update web --token-env PLUMBLINE_SECRET_GH2`.
    Update(backlog_cmds::SourceUpdateArgs),
    /// Remove a source (with --force, also its items and their links).
    Remove {
        /// Source id.
        id: String,
        /// Also delete the source's items and their links.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Github,
    Gitlab,
    Jira,
    Redmine,
    /// Items an integration sends with UpsertItems; never synced, no --url
    /// or --token-env.
    Push,
}

/// The kinds whose sources are pulled from a tracker, for clap's
/// `required_if_eq_any`: they need --url and --project.
const TRACKER_KINDS: [(&str, &str); 4] = [
    ("kind", "github"),
    ("kind", "gitlab"),
    ("kind", "jira"),
    ("kind", "redmine"),
];

#[derive(Debug, Args)]
struct SourceAddArgs {
    /// Short id, the first half of item keys (e.g. "web" in web/412).
    id: String,
    /// Tracker kind, or push for a source whose items an integration sends
    /// over the API (e.g. --kind push, with no --url and no --token-env).
    #[arg(long, value_enum)]
    kind: KindArg,
    /// API base URL: https://api.github.com, https://gitlab.com,
    /// https://YOURSITE.atlassian.net, https://redmine.example.com.
    /// Required for a tracker; none for --kind push.
    #[arg(long, default_value = "", required_if_eq_any = TRACKER_KINDS)]
    url: String,
    /// Project: OWNER/REPO (GitHub), group/project path or id (GitLab),
    /// project key (Jira), project identifier (Redmine). Required for a
    /// tracker; optional for --kind push, where it is only shown.
    #[arg(long, default_value = "", required_if_eq_any = TRACKER_KINDS)]
    project: String,
    /// NAME of the environment variable holding the token (never the token),
    /// one the server's outbound policy allows (PLUMBLINE_SECRET_* by
    /// default). For Jira Cloud it holds EMAIL:API_TOKEN.
    #[arg(long, default_value = "")]
    token_env: String,
    /// Field with the estimate: label:size: (GitHub), weight or time_estimate
    /// (GitLab), customfield_10016 (Jira), estimated_hours or cf_ID (Redmine).
    #[arg(long, default_value = "")]
    estimate_field: String,
    /// Label prefix that links to a hypothesis [default: hypothesis:].
    #[arg(long, default_value = "")]
    label_prefix: String,
    /// Body keyword that links to a hypothesis [default: Hypothesis].
    #[arg(long, default_value = "")]
    body_keyword: String,
    /// Do not create links from labels or body lines.
    #[arg(long)]
    no_link_rules: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
struct SyncArgs {
    /// Source id.
    source: String,
    /// Ignore the cursor and fetch everything again.
    #[arg(long)]
    full: bool,
    #[command(flatten)]
    conn: Conn,
}

/// How to reach a running sidecar, and how to print.
#[derive(Debug, Args, Clone)]
struct Conn {
    /// URL of the sidecar.
    #[arg(
        long,
        env = "PLUMBLINE_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML config file (keys: listen, db, default_size, and the tables
    /// of the README's configuration list).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// SQLite database file, created if missing [default: plumbline.sqlite];
    /// or a postgres:// DSN, for many sidecars on one database (better: the
    /// DSN in a variable named by PLUMBLINE_STORE__URL_ENV, which no
    /// process list shows).
    #[arg(long, value_name = "PATH|DSN")]
    db: Option<PathBuf>,
    /// Size used for unestimated items [default: 3].
    #[arg(long)]
    default_size: Option<f64>,
    /// Listen on a non-loopback address with neither `[auth]` nor `[tls]`
    /// (only behind a proxy or mesh that authenticates and encrypts).
    #[arg(long)]
    insecure: bool,
    /// Address of the web view (the refinement room), e.g.
    /// `--web-listen 127.0.0.1:8081` [default: 127.0.0.1:8080; `[web]
    /// enabled = false` turns it off].
    #[arg(long, value_name = "ADDR")]
    web_listen: Option<SocketAddr>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Keep the sidecar running after printing, for the other commands.
    #[arg(long)]
    keep_serving: bool,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// How many ranked items to print (the sample has 29 open items).
    #[arg(long, default_value_t = 30)]
    top: u32,
    /// How many of the top items to explain term by term.
    #[arg(long, default_value_t = 3)]
    explain: u32,
    /// Allow a non-loopback --listen: the demo has neither auth nor TLS.
    #[arg(long)]
    insecure: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RankBy {
    /// Value per unit of size (WSJF-like).
    Density,
    /// Value alone.
    Value,
}

#[derive(Debug, Args)]
struct RankArgs {
    /// How many items.
    #[arg(long, short = 'n', default_value_t = 20)]
    top: u32,
    /// Ranking key.
    #[arg(long, value_enum, default_value_t = RankBy::Density)]
    by: RankBy,
    /// Only items of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only items carrying this label.
    #[arg(long)]
    label: Option<String>,
    /// Include closed items.
    #[arg(long)]
    include_closed: bool,
    /// Keep running and print the ranking again, with what moved, each time
    /// it changes (Ctrl-C to stop).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StateArg {
    Open,
    Closed,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ItemsArgs {
    #[command(subcommand)]
    command: Option<backlog_cmds::ItemsCommand>,
    /// Only items of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only items in this state.
    #[arg(long, value_enum)]
    state: Option<StateArg>,
    /// Only items carrying this label.
    #[arg(long)]
    label: Option<String>,
    /// At most this many items (all when 0).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Also items their tracker no longer returns (deleted or moved), shown
    /// with when and why they were removed.
    #[arg(long)]
    include_removed: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
struct LinkArgs {
    /// Item key, SOURCE/EXTERNAL_ID.
    item_key: String,
    /// Hypothesis id.
    hypothesis_id: String,
    /// The item's share of delivering the hypothesis, in (0, 1].
    #[arg(long, short, default_value_t = 1.0)]
    contribution: f64,
    /// Why this item serves the hypothesis.
    #[arg(long, short, default_value = "")]
    rationale: String,
    /// Remove the link instead.
    #[arg(long)]
    remove: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
struct ObserveArgs {
    /// Metric id (e.g. conv).
    #[arg(required_unless_present = "file", conflicts_with = "file")]
    metric_id: Option<String>,
    /// The measured value, in the metric's unit (e.g. 2.6).
    #[arg(allow_negative_numbers = true, required_unless_present = "file")]
    value: Option<f64>,
    /// When it was measured, RFC 3339 (e.g. 2026-11-20T09:00:00Z) or a date
    /// (2026-11-20) [default: now]; not more than 5 minutes after the
    /// server's clock.
    #[arg(long, value_parser = args::time, conflicts_with = "file")]
    at: Option<prost_types::Timestamp>,
    /// Record many observations from a file: CSV with the header
    /// `metric,value,at` (`at` optional), or JSON lines
    /// `{"metric": "conv", "value": 2.3, "at": "2026-11-20"}`. Refused lines
    /// are listed with line, field and reason; the rest is recorded.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The file's format [default: from its extension: .csv, .jsonl].
    #[arg(long, value_enum, requires = "file")]
    format: Option<observe_file::FileFormat>,
    #[command(flatten)]
    conn: Conn,
}

fn init_logging(format: LogFormat, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PLUMBLINE_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    client_tls::set(cli.tls);
    credentials::set_token_file(cli.token_file);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(a) => {
            let cfg = Config::load(
                a.config.as_deref(),
                Overrides {
                    listen: a.listen,
                    db: a.db,
                    default_size: a.default_size,
                    insecure: a.insecure.then_some(true),
                },
            )?;
            let mut cfg = cfg;
            cfg.web.listen = a.web_listen.unwrap_or(cfg.web.listen);
            let stop = crate::server::shutdown_signal();
            let server = crate::server::start(&cfg).await?;
            server.run_until(stop).await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Demo(a) => demo::run(a).await,
        Command::Rank(a) => client::rank(a).await,
        Command::Since(a) => history::since(a).await,
        Command::History(c) => history::history(c).await,
        Command::Explain { item_key, conn } => client::explain(&conn, &item_key).await,
        Command::Items(mut a) => match a.command.take() {
            Some(c) => backlog_cmds::items(c).await,
            None => client::items(a).await,
        },
        Command::Goals(a) => model_cmds::goals(a).await,
        Command::Metrics(a) => model_cmds::metrics(a).await,
        Command::Segments(a) => customer::segments(a).await,
        Command::Outcomes(a) => customer::outcomes(a).await,
        Command::Hypotheses(a) => model_cmds::hypotheses(a).await,
        Command::Link(a) => client::link(a).await,
        Command::Links(a) => backlog_cmds::links(a).await,
        Command::Observe(a) => match &a.file {
            Some(f) => observe_file::run(f, a.format, &a.conn).await,
            None => client::observe(a).await,
        },
        Command::Release(a) => validation_cmds::release(a).await,
        Command::Experiment(a) => validation_cmds::experiment(a).await,
        Command::Validate(a) => validation_cmds::validate(a).await,
        Command::Evidence(a) => validation_cmds::evidence(a).await,
        Command::Completions(a) => completions::completions(a),
        Command::Man(a) => completions::man(a),
        Command::Sources(SourcesCommand::Add(a)) => tracker::add_source(a).await,
        Command::Sources(SourcesCommand::List { conn }) => tracker::list_sources(&conn).await,
        Command::Sources(SourcesCommand::Get { id, conn }) => {
            backlog_cmds::get_source(&conn, id).await
        }
        Command::Sources(SourcesCommand::Update(a)) => backlog_cmds::update_source(a).await,
        Command::Sources(SourcesCommand::Remove { id, force, conn }) => {
            tracker::remove_source(&conn, &id, force).await
        }
        Command::Sync(a) => tracker::sync(a).await,
        Command::Trend(a) => trend::trend(a).await,
        Command::Split(a) => split::split(a).await,
        Command::Tokens(c) => tokens::run(c).await,
        Command::Insights(c) => insight::run(c).await,
        Command::Apply(a) => apply::apply(a).await,
        Command::Export(a) => apply::export(a).await,
        Command::Init(a) => apply::init(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
