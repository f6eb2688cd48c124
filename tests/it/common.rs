//! Shared helpers of the integration tests: start the real server on
//! 127.0.0.1:0 with a temporary SQLite file, connect the generated clients the
//! way a tracker plugin would, and build a small value model whose scores are
//! worked out by hand below.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use plumbline::config::Config;
use plumbline::proto as pb;
use plumbline::proto::backlog_service_client::BacklogServiceClient;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::proto::source_service_client::SourceServiceClient;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;
use plumbline::server::{self, RunningServer};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// The default size of the test configuration (the built-in default too).
pub const DEFAULT_SIZE: f64 = 3.0;

/// A running server with its own temporary database, and a channel to it.
pub struct TestServer {
    // Field order matters: the server shuts down before the folder goes.
    server: Option<RunningServer>,
    pub channel: Channel,
    pub config: Config,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with a fresh SQLite file.
    pub async fn start() -> TestServer {
        Self::start_with_config(|_| {}).await
    }

    /// Starts a server with these sync settings (e.g. background sync on).
    pub async fn start_with_sync(sync: plumbline::config::SyncConfig) -> TestServer {
        Self::start_with_config(|c| c.sync = sync).await
    }

    /// Starts a server with test settings (no background work, quick
    /// retries) changed by `change`.
    pub async fn start_with_config(change: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary folder");
        let mut config = Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: dir.path().join("plumbline.sqlite"),
            default_size: DEFAULT_SIZE,
            store: plumbline::config::StoreConfig::default(),
            sync: plumbline::config::SyncConfig::manual(),
            validation: plumbline::config::ValidationConfig::manual(),
            pulls: plumbline::config::PullsConfig::manual(),
            outbound: test_outbound(),
            web: plumbline::web::WebConfig::on_free_port(),
            ..Config::default()
        };
        let default_db = config.db.clone();
        change(&mut config);
        if config.db == default_db {
            config.db = test_db(dir.path(), "plumbline.sqlite");
        }
        Self::start_in(dir, config).await
    }

    async fn start_in(dir: tempfile::TempDir, config: Config) -> TestServer {
        let server = server::start(&config).await.expect("server starts");
        let channel = Channel::from_shared(server.url())
            .expect("valid url")
            .connect()
            .await
            .expect("client connects");
        TestServer {
            server: Some(server),
            channel,
            config,
            dir,
        }
    }

    /// Shuts the server down gracefully and starts a new one on the same
    /// database file (on a new port).
    pub async fn restart(mut self) -> TestServer {
        let server = self.server.take().expect("running");
        server.shutdown().await.expect("clean shutdown");
        let TestServer { config, dir, .. } = self;
        Self::start_in(dir, config).await
    }

    /// Shuts the server down gracefully.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("running")
    }

    /// The SQLite file of this server (tests that read it skip on
    /// PostgreSQL, see [`skip_on_postgres`]).
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("plumbline.sqlite")
    }

    /// How many item scores the index has computed since start.
    pub fn rescored(&self) -> u64 {
        self.server().engine().read().rescored_count()
    }

    pub fn sources(&self) -> SourceServiceClient<Channel> {
        SourceServiceClient::new(self.channel.clone())
    }

    pub fn backlog(&self) -> BacklogServiceClient<Channel> {
        BacklogServiceClient::new(self.channel.clone())
    }

    pub fn model(&self) -> ValueModelServiceClient<Channel> {
        ValueModelServiceClient::new(self.channel.clone())
    }

    pub fn scoring(&self) -> ScoringServiceClient<Channel> {
        ScoringServiceClient::new(self.channel.clone())
    }

    pub fn sync(&self) -> plumbline::proto::sync_service_client::SyncServiceClient<Channel> {
        plumbline::proto::sync_service_client::SyncServiceClient::new(self.channel.clone())
    }
}

// ----- the store the suite runs on -----

/// The variable that switches the whole suite to the PostgreSQL store: the
/// DSN of a superuser of a running PostgreSQL, which creates one fresh
/// database per server (`scripts/with-postgres.sh` starts one and sets it).
/// Not a `PLUMBLINE_*` name: the servers the tests spawn inherit it, and
/// would refuse it as an unknown setting.
pub const TEST_POSTGRES: &str = "PLB_SUITE_POSTGRES";

/// Whether the suite runs on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var_os(TEST_POSTGRES).is_some_and(|v| !v.is_empty())
}

/// Where a test's server keeps its data: the SQLite file `name` in `dir`,
/// or, on PostgreSQL, the URL of a database of its own, created now.
pub fn test_db(dir: &std::path::Path, name: &str) -> PathBuf {
    if on_postgres() {
        PathBuf::from(fresh_postgres_database())
    } else {
        dir.join(name)
    }
}

/// True (with a note) when the suite runs on PostgreSQL: for the tests of
/// what only a SQLite file has (its bytes, its -wal file, its deletion).
pub fn skip_on_postgres(why: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped on PostgreSQL: {why}");
    }
    on_postgres()
}

/// Opens the store at `db` ([`test_db`]) as the server would.
pub async fn open_store(db: &std::path::Path) -> std::sync::Arc<dyn plumbline::store::Store> {
    let config = Config {
        db: db.to_path_buf(),
        ..Config::default()
    };
    plumbline::store::open(&config).await.expect("store opens")
}

/// Every row of every table of the database at `db` ([`test_db`]), as
/// (table, the row's text values joined): what a dump of it would hold.
pub fn stored_rows(db: &std::path::Path) -> Vec<(String, String)> {
    if !plumbline::config::is_postgres_url(db) {
        let conn = rusqlite::Connection::open(db).expect("the database opens");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .expect("tables")
            .query_map([], |r| r.get(0))
            .expect("tables")
            .map(Result::unwrap)
            .collect();
        let mut rows = Vec::new();
        for t in names {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\""))
                .expect("rows");
            let n = stmt.column_count();
            let read = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| match r.get_ref(i).expect("a column") {
                            rusqlite::types::ValueRef::Text(b) => {
                                String::from_utf8_lossy(b).into_owned()
                            }
                            _ => String::new(),
                        })
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .expect("rows")
                .map(Result::unwrap);
            rows.extend(read.map(|r| (t.clone(), r)));
        }
        return rows;
    }
    let url = db.to_string_lossy().into_owned();
    on_own_runtime(async move {
        let client = pg_connect(&url).await;
        let tables: Vec<String> = client
            .query(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                &[],
            )
            .await
            .expect("tables")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut rows = Vec::new();
        for t in tables {
            for r in client
                .query(&format!("SELECT t::text FROM {t} t"), &[])
                .await
                .expect("rows")
            {
                rows.push((t.clone(), r.get::<_, String>(0)));
            }
        }
        rows
    })
}

/// Runs one statement with one text parameter (`$1`) on the database at
/// `db` beside the running server; answers the rows it changed.
pub fn execute_sql(db: &std::path::Path, sql: &str, param: &str) -> u64 {
    if !plumbline::config::is_postgres_url(db) {
        let conn = rusqlite::Connection::open(db).expect("the database opens");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        return conn.execute(sql, [param]).expect("the statement runs") as u64;
    }
    let (url, sql, param) = (
        db.to_string_lossy().into_owned(),
        sql.to_string(),
        param.to_string(),
    );
    on_own_runtime(async move {
        let client = pg_connect(&url).await;
        client
            .execute(&sql, &[&param])
            .await
            .expect("the statement runs")
    })
}

/// The first column of each row `sql` answers on the PostgreSQL database
/// at `db`, as text (NULL as "").
pub fn pg_query(db: &std::path::Path, sql: &str) -> Vec<String> {
    let (url, sql) = (db.to_string_lossy().into_owned(), sql.to_string());
    on_own_runtime(async move {
        let client = pg_connect(&url).await;
        client
            .simple_query(&sql)
            .await
            .expect("the query runs")
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or_default().to_string())
                }
                _ => None,
            })
            .collect()
    })
}

/// A connection to the test PostgreSQL at `dsn` (a URL or key=value),
/// its driver on this runtime.
async fn pg_connect(dsn: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .expect("the test PostgreSQL is reachable");
    tokio::spawn(conn);
    client
}

/// Runs `f` to its end on a runtime of its own, on a thread of its own, so
/// that sync and async tests can call it.
fn on_own_runtime<T: Send + 'static>(
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(f)
    })
    .join()
    .expect("the thread ends")
}

/// A new, empty database on the suite's PostgreSQL; its `postgres://` URL.
/// Made on a thread of its own so that it serves sync and async tests.
fn fresh_postgres_database() -> String {
    use std::str::FromStr;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dsn = std::env::var(TEST_POSTGRES).expect("PLB_SUITE_POSTGRES is set");
    let parsed = tokio_postgres::Config::from_str(&dsn).expect("PLB_SUITE_POSTGRES parses");
    let host = match parsed.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = parsed.get_ports().first().copied().unwrap_or(5432);
    let user = parsed.get_user().unwrap_or("postgres").to_string();
    let password = String::from_utf8_lossy(parsed.get_password().unwrap_or_default()).into_owned();
    let name = format!(
        "plb_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let create = format!("CREATE DATABASE {name}");
    on_own_runtime(async move {
        let client = pg_connect(&dsn).await;
        client
            .batch_execute(&create)
            .await
            .expect("CREATE DATABASE");
    });
    format!("postgres://{user}:{password}@{host}:{port}/{name}")
}

// ----- the binary -----

/// Runs the `plumbline` binary off the async runtime (the server under test
/// lives on it), without a PLUMBLINE_SERVER from the environment.
pub async fn run_cli(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"))
            .args(&args)
            .env_remove("PLUMBLINE_SERVER")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("join")
}

/// Runs the binary, which must succeed, and parses its stdout as JSON.
pub async fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = run_cli(args).await;
    assert!(
        out.status.success(),
        "plumbline {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "plumbline {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

// ----- sync -----

/// What one SyncSource call streamed: its progress events and how it ended.
#[derive(Debug)]
pub struct SyncRun {
    pub pages: Vec<pb::PageFetched>,
    pub waits: Vec<pb::RateLimitWait>,
    pub result: Result<pb::SyncDone, Status>,
}

impl SyncRun {
    /// The done event; panics with the status if the sync failed.
    pub fn done(&self) -> &pb::SyncDone {
        match &self.result {
            Ok(d) => d,
            Err(e) => panic!("sync failed: {e:?}"),
        }
    }

    /// The failure status; panics if the sync succeeded.
    pub fn error(&self) -> &Status {
        match &self.result {
            Ok(d) => panic!("sync succeeded: {d:?}"),
            Err(e) => e,
        }
    }
}

/// Runs SyncSource over gRPC and collects the stream.
pub async fn run_sync(s: &TestServer, source_id: &str, full: bool) -> SyncRun {
    use pb::sync_source_response::Event;
    let mut run = SyncRun {
        pages: Vec::new(),
        waits: Vec::new(),
        result: Err(Status::unknown("no done event")),
    };
    let mut stream = match s
        .sync()
        .sync_source(pb::SyncSourceRequest {
            source_id: source_id.into(),
            full,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(e) => {
            run.result = Err(e);
            return run;
        }
    };
    loop {
        match stream.message().await {
            Ok(Some(msg)) => match msg.event {
                Some(Event::PageFetched(p)) => run.pages.push(p),
                Some(Event::RateLimitWait(w)) => run.waits.push(w),
                Some(Event::Done(d)) => run.result = Ok(d),
                None => {}
            },
            Ok(None) => return run,
            Err(e) => {
                run.result = Err(e);
                return run;
            }
        }
    }
}

/// The sync status of a source.
pub async fn sync_status(s: &TestServer, source_id: &str) -> pb::SyncStatus {
    s.sync()
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: source_id.into(),
        })
        .await
        .expect("GetSyncStatus")
        .into_inner()
        .status
        .expect("status")
}

/// The outbound policy of the test servers: the trackers are wiremock on
/// 127.0.0.1, and the token variables those of [`TEST_TOKENS`] (`PLB_TEST_*`)
/// and the names the API tests give sources that never sync.
pub fn test_outbound() -> plumbline::config::OutboundConfig {
    plumbline::config::OutboundConfig {
        token_env_prefix: "PLB_TEST_".into(),
        token_envs: vec![
            "GITHUB_TOKEN".into(),
            "JIRA_TOKEN".into(),
            "OTHER_TOKEN".into(),
        ],
        allow_hosts: vec!["127.0.0.1".into()],
    }
}

/// Every token variable the tests name, with its value. They are all set at
/// once, before the first test that needs one goes on: setting a variable
/// while another thread reads the environment is a data race, and all the
/// topics share one test binary. The names stay clear of `PLUMBLINE_`, which
/// the server's config loader reads as settings.
const TEST_TOKENS: &[(&str, &str)] = &[
    ("PLB_TEST_CLI_WRITE_BACK_TOKEN", "ghp_clitoken"),
    ("PLB_TEST_WRITE_BACK_TOKEN", "me@example.com:jira-api-token"),
    ("PLB_TEST_GITHUB_TOKEN", "ghp_testtoken0123456789"),
    ("PLB_TEST_GITLAB_TOKEN", "glpat-testtoken0123456789"),
    ("PLB_TEST_JIRA_TOKEN", "me@example.com:jira-api-token"),
    (
        "PLB_TEST_REDMINE_TOKEN",
        "3f9c2b7a1e8d4c6b5a0f9e8d7c6b5a4f3e2d1c0b",
    ),
    // Metric sources (metric_pull.rs).
    ("PLB_TEST_POSTHOG_KEY", "phx_testkey0123456789abcdef"),
    ("PLB_TEST_STATS_TOKEN", "stats-token-0123456789"),
    // A key Redmine does not know (it answers such a key as anonymous).
    (
        "PLB_TEST_REDMINE_WRONG_KEY",
        "0badc0ffee0badc0ffee0badc0ffee0badc0ffee",
    ),
];

/// Makes sure `var` holds `value` before a sync reads it: the first call
/// sets every variable of [`TEST_TOKENS`] (later callers wait on the `Once`).
pub fn set_test_token(var: &'static str, value: &'static str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (name, token) in TEST_TOKENS {
            // SAFETY: no thread of this binary reads a token variable before
            // this Once has run; every reader calls this function first.
            unsafe { std::env::set_var(name, token) }
        }
    });
    assert_eq!(
        std::env::var(var).as_deref(),
        Ok(value),
        "{var} must be listed in TEST_TOKENS with this value"
    );
}

/// Every item of a source, walking all pages of ListItems.
pub async fn all_items(s: &TestServer, source_id: &str) -> Vec<pb::Item> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = s
            .backlog()
            .list_items(pb::ListItemsRequest {
                source_id: source_id.into(),
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("ListItems")
            .into_inner();
        out.extend(r.items);
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

/// A goal, a metric and hypotheses H-1 and H-2, so that link rules in
/// tracker data have something to link to.
pub async fn value_model_for_rules(s: &TestServer) {
    create_goal(s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(s, metric("conversion", 2.0, 4.0)).await;
    create_hypothesis(s, hypothesis("H-1", "G", "conversion", 0.5, 0.5)).await;
    create_hypothesis(s, hypothesis("H-2", "G", "conversion", 0.2, 0.5)).await;
}

// ----- errors -----

/// The field names of the `google.rpc.BadRequest` violations of a status.
pub fn bad_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Asserts INVALID_ARGUMENT whose field violations name exactly `fields`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(r: Result<T, Status>, fields: &[&str]) {
    let status = r.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "unexpected status {status:?}"
    );
    assert_eq!(bad_fields(&status), fields, "violations of {status:?}");
}

/// Asserts the call failed with `code`, and returns the status.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code) -> Status {
    let status = r.expect_err("expected an error status");
    assert_eq!(status.code(), code, "unexpected status {status:?}");
    status
}

// ----- messages -----

pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn days_ago(days: i64) -> prost_types::Timestamp {
    ts(Utc::now() - chrono::Duration::days(days))
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

pub fn github_source(id: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: pb::TrackerKind::Github as i32,
        base_url: "https://api.github.com".into(),
        project_key: format!("acme/{id}"),
        token_env: "GITHUB_TOKEN".into(),
        ..Default::default()
    }
}

pub fn jira_source(id: &str) -> pb::Source {
    pb::Source {
        id: id.into(),
        kind: pb::TrackerKind::Jira as i32,
        base_url: "https://acme.atlassian.net".into(),
        project_key: id.to_uppercase(),
        token_env: "JIRA_TOKEN".into(),
        estimate_field: "customfield_10016".into(),
        ..Default::default()
    }
}

/// An open item; set `estimate`, `labels`, `state`, `body` as needed.
pub fn item(source: &str, external_id: &str, title: &str) -> pb::Item {
    pb::Item {
        source_id: source.into(),
        external_id: external_id.into(),
        title: title.into(),
        url: format!("https://tracker.example/{source}/{external_id}"),
        ..Default::default()
    }
}

pub fn estimated(mut it: pb::Item, estimate: f64) -> pb::Item {
    it.estimate = Some(estimate);
    it
}

pub fn labelled(mut it: pb::Item, labels: &[&str]) -> pb::Item {
    it.labels = labels.iter().map(|l| l.to_string()).collect();
    it
}

pub fn closed(mut it: pb::Item) -> pb::Item {
    it.state = pb::ItemState::Closed as i32;
    it
}

pub fn goal(id: &str, level: pb::GoalLevel, parent: &str, weight: Option<f64>) -> pb::Goal {
    pb::Goal {
        id: id.into(),
        title: format!("Goal {id}"),
        level: level as i32,
        parent_id: parent.into(),
        weight,
        key_value_area: pb::KeyValueArea::UnrealizedValue as i32,
        ..Default::default()
    }
}

pub fn metric(id: &str, baseline: f64, target: f64) -> pb::Metric {
    pb::Metric {
        id: id.into(),
        name: format!("Metric {id}"),
        unit: "%".into(),
        baseline,
        target,
        ..Default::default()
    }
}

pub fn hypothesis(
    id: &str,
    goal_id: &str,
    metric_id: &str,
    expected_effect: f64,
    confidence: f64,
) -> pb::Hypothesis {
    pb::Hypothesis {
        id: id.into(),
        statement: format!("We believe {id} will move {metric_id} toward its target."),
        goal_id: goal_id.into(),
        metric_id: metric_id.into(),
        expected_effect,
        confidence: Some(confidence),
        ..Default::default()
    }
}

pub fn observation(
    metric_id: &str,
    value: f64,
    at: Option<prost_types::Timestamp>,
) -> pb::Observation {
    pb::Observation {
        metric_id: metric_id.into(),
        value,
        observe_time: at,
    }
}

// ----- RPC shorthands that must succeed -----

pub async fn create_source(s: &TestServer, src: pb::Source) -> pb::Source {
    s.sources()
        .create_source(pb::CreateSourceRequest { source: Some(src) })
        .await
        .expect("CreateSource")
        .into_inner()
        .source
        .expect("source")
}

pub async fn upsert(s: &TestServer, items: Vec<pb::Item>) -> pb::UpsertItemsResponse {
    s.backlog()
        .upsert_items(pb::UpsertItemsRequest {
            items,
            update_mask: None,
        })
        .await
        .expect("UpsertItems")
        .into_inner()
}

pub async fn create_goal(s: &TestServer, g: pb::Goal) -> pb::Goal {
    s.model()
        .create_goal(pb::CreateGoalRequest { goal: Some(g) })
        .await
        .expect("CreateGoal")
        .into_inner()
        .goal
        .expect("goal")
}

pub async fn create_metric(s: &TestServer, m: pb::Metric) -> pb::Metric {
    s.model()
        .create_metric(pb::CreateMetricRequest { metric: Some(m) })
        .await
        .expect("CreateMetric")
        .into_inner()
        .metric
        .expect("metric")
}

pub async fn create_hypothesis(s: &TestServer, h: pb::Hypothesis) -> pb::Hypothesis {
    s.model()
        .create_hypothesis(pb::CreateHypothesisRequest {
            hypothesis: Some(h),
        })
        .await
        .expect("CreateHypothesis")
        .into_inner()
        .hypothesis
        .expect("hypothesis")
}

pub async fn link(
    s: &TestServer,
    item_key: &str,
    hypothesis_id: &str,
    contribution: f64,
) -> pb::Link {
    s.backlog()
        .link_item(pb::LinkItemRequest {
            item_key: item_key.into(),
            hypothesis_id: hypothesis_id.into(),
            contribution,
            rationale: format!("{item_key} serves {hypothesis_id}"),
        })
        .await
        .expect("LinkItem")
        .into_inner()
        .link
        .expect("link")
}

pub async fn record(
    s: &TestServer,
    observations: Vec<pb::Observation>,
) -> pb::RecordObservationsResponse {
    s.model()
        .record_observations(pb::RecordObservationsRequest { observations })
        .await
        .expect("RecordObservations")
        .into_inner()
}

pub async fn get_item(s: &TestServer, key: &str) -> Result<pb::Item, Status> {
    s.backlog()
        .get_item(pb::GetItemRequest { key: key.into() })
        .await
        .map(|r| r.into_inner().item.expect("item"))
}

pub async fn item_score(s: &TestServer, key: &str) -> pb::ItemScore {
    s.scoring()
        .get_item_score(pb::GetItemScoreRequest {
            item_key: key.into(),
        })
        .await
        .expect("GetItemScore")
        .into_inner()
        .score
        .expect("score")
}

pub async fn rank(s: &TestServer, req: pb::RankItemsRequest) -> pb::RankItemsResponse {
    s.scoring()
        .rank_items(req)
        .await
        .expect("RankItems")
        .into_inner()
}

/// The item keys of a ranking page, in order.
pub fn keys(r: &pb::RankItemsResponse) -> Vec<String> {
    r.items
        .iter()
        .map(|i| i.score.as_ref().expect("score").item_key.clone())
        .collect()
}

/// The whole ranking in one page, with every term.
pub async fn full_ranking(s: &TestServer, include_closed: bool) -> pb::RankItemsResponse {
    rank(
        s,
        pb::RankItemsRequest {
            page_size: 1000,
            include_closed,
            view: pb::ScoreView::Full as i32,
            ..Default::default()
        },
    )
    .await
}

// ----- the fixture model -----
//
// Goals: S-growth (strategic, weight 3 -> 0.75), S-speed (strategic, weight 1
// -> 0.25), I-conv (intermediate under S-growth, only child -> 0.75),
// T-checkout (tactical under I-conv -> 0.75).
//
// Metrics: conv 2.1% -> 3.5% (no observation: gap 1); lead 10 -> 4 days
// (lower is better, no observation: gap 1); nps 30 -> 50 with a 1-day cadence
// and one observation of 40 ten days ago (gap 0.5, stale).
//
// Hypotheses (value = goal weight x gap x effect x confidence):
//   H-1 I-conv  / conv  effect 0.4 confidence 0.6 proposed  -> 0.18
//   H-2 S-speed / lead  effect 0.5 confidence 0.8 testing   -> 0.1
//   H-3 S-growth / nps  effect 0.2 confidence 0.3 validated -> 0.075 (confidence 1)
//
// Items (size; links with contribution; value; density):
//   web/1 est 2 [checkout, ux]  H-1 0.5             0.09   0.045
//   web/2 est 1 [infra]         H-2 0.5             0.05   0.05
//   web/3 est 1 [checkout]      H-1 0.25            0.045  0.045 (ties web/1 exactly)
//   web/4 unestimated           -                   0      0     UNALIGNED, UNESTIMATED
//   web/5 est 1 CLOSED          H-2 0.25            0.025  0.025
//   web/6 est 1                 -                   0      0     UNALIGNED
//   ops/1 est 4 [research]      H-3 1               0.075  0.01875 STALE_METRIC
//   ops/2 est 2 [checkout]      H-1 0.25, H-2 0.25  0.07   0.035
//   ops/3 est 1                 -                   0      0     UNALIGNED
// Contributions to H-1 and H-2 add up to exactly 1, so none is scaled down.

/// Open items by value density desc, ties by key asc.
pub const FIXTURE_DENSITY_ORDER: [&str; 8] = [
    "web/2", "web/1", "web/3", "ops/2", "ops/1", "ops/3", "web/4", "web/6",
];

/// Open items by value desc, ties by key asc.
pub const FIXTURE_VALUE_ORDER: [&str; 8] = [
    "web/1", "ops/1", "ops/2", "web/2", "web/3", "ops/3", "web/4", "web/6",
];

/// Number of items in the fixture, closed ones included.
pub const FIXTURE_ITEMS: usize = 9;

pub async fn build_fixture(s: &TestServer) {
    create_source(s, github_source("web")).await;
    create_source(s, jira_source("ops")).await;

    use pb::GoalLevel::{Intermediate, Strategic, Tactical};
    create_goal(s, goal("S-growth", Strategic, "", Some(3.0))).await;
    create_goal(s, goal("S-speed", Strategic, "", Some(1.0))).await;
    create_goal(s, goal("I-conv", Intermediate, "S-growth", None)).await;
    create_goal(s, goal("T-checkout", Tactical, "I-conv", None)).await;

    create_metric(s, metric("conv", 2.1, 3.5)).await;
    create_metric(
        s,
        pb::Metric {
            unit: "days".into(),
            ..metric("lead", 10.0, 4.0)
        },
    )
    .await;
    create_metric(
        s,
        pb::Metric {
            unit: "points".into(),
            cadence: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
            ..metric("nps", 30.0, 50.0)
        },
    )
    .await;
    record(s, vec![observation("nps", 40.0, Some(days_ago(10)))]).await;

    create_hypothesis(s, hypothesis("H-1", "I-conv", "conv", 0.4, 0.6)).await;
    create_hypothesis(
        s,
        pb::Hypothesis {
            status: pb::HypothesisStatus::Testing as i32,
            ..hypothesis("H-2", "S-speed", "lead", 0.5, 0.8)
        },
    )
    .await;
    create_hypothesis(
        s,
        pb::Hypothesis {
            // Validated with the confidence validation would have left it.
            status: pb::HypothesisStatus::Validated as i32,
            ..hypothesis("H-3", "S-growth", "nps", 0.2, 1.0)
        },
    )
    .await;

    let r = upsert(
        s,
        vec![
            labelled(
                estimated(item("web", "1", "One-click checkout"), 2.0),
                &["checkout", "ux"],
            ),
            labelled(estimated(item("web", "2", "Faster CI"), 1.0), &["infra"]),
            labelled(
                estimated(item("web", "3", "Checkout copy"), 1.0),
                &["checkout"],
            ),
            item("web", "4", "Refactor logging"),
            closed(estimated(item("web", "5", "Old build cache"), 1.0)),
            estimated(item("web", "6", "Rename repo"), 1.0),
            labelled(
                estimated(item("ops", "1", "Customer survey"), 4.0),
                &["research"],
            ),
            labelled(
                estimated(item("ops", "2", "Checkout dashboard"), 2.0),
                &["checkout"],
            ),
            estimated(item("ops", "3", "Rotate keys"), 1.0),
        ],
    )
    .await;
    assert_eq!(r.created_count as usize, FIXTURE_ITEMS);

    link(s, "web/1", "H-1", 0.5).await;
    link(s, "web/3", "H-1", 0.25).await;
    link(s, "ops/2", "H-1", 0.25).await;
    link(s, "web/2", "H-2", 0.5).await;
    link(s, "web/5", "H-2", 0.25).await;
    link(s, "ops/2", "H-2", 0.25).await;
    link(s, "ops/1", "H-3", 1.0).await;
}

/// Starts a server and builds the fixture in it.
pub async fn start_with_fixture() -> TestServer {
    let s = TestServer::start().await;
    build_fixture(&s).await;
    s
}

/// A child `plumbline serve` that is killed and reaped when dropped, so a
/// test that fails halfway (a panic at an `unwrap`) leaves no server running.
pub struct ServerChild(std::process::Child);

impl std::ops::Deref for ServerChild {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for ServerChild {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Already exited (and reaped) in a test that stopped it: both fail
        // harmlessly.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `plumbline serve` as a child process on `db` and returns it with
/// its URL.
/// On PostgreSQL, `db` is a database URL ([`test_db`]).
pub fn spawn_server(db: &std::path::Path) -> (ServerChild, String) {
    spawn_server_with(db, &[])
}

/// [`spawn_server`] with more `PLUMBLINE_*` settings in its environment.
pub fn spawn_server_with(db: &std::path::Path, env: &[(&str, &str)]) -> (ServerChild, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_plumbline"));
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    if plumbline::config::is_postgres_url(db) {
        // As an operator would: the DSN in a variable, not on the command
        // line where the process list shows it.
        command
            .env("PLUMBLINE_DATABASE_URL", db)
            .env("PLUMBLINE_STORE__URL_ENV", "PLUMBLINE_DATABASE_URL");
    } else {
        command.arg("--db").arg(db);
    }
    let mut child = command
        .args(["--log-format", "json"])
        .env("PLUMBLINE_SYNC__INTERVAL_SECS", "0")
        .env("PLUMBLINE_WEB__LISTEN", "127.0.0.1:0")
        .env("PLUMBLINE_LOG", "info")
        // The test policy (common::test_outbound): loopback trackers, PLB_TEST_* tokens.
        .env("PLUMBLINE_OUTBOUND__TOKEN_ENV_PREFIX", "PLB_TEST_")
        .env("PLUMBLINE_OUTBOUND__ALLOW_HOSTS", "[127.0.0.1]")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server log").expect("readable log");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "plumbline serving" {
            break v["fields"]["addr"].as_str().expect("addr").to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (ServerChild(child), format!("http://{addr}"))
}

/// A recorded tracker answer from `tests/fixtures/`, e.g.
/// `fixture("github/issues-page1.json")`.
pub fn fixture(path: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}
