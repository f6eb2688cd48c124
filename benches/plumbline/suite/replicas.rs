//! The PostgreSQL figures of issue 22: the store on PostgreSQL and several
//! sidecars on one database, each against a baseline measured in the same
//! run. Measured only when `PLB_SUITE_POSTGRES` names a PostgreSQL
//! superuser (`scripts/with-postgres.sh` starts one and sets it); each
//! figure gets a database of its own (`CREATE DATABASE`), dropped at the end.
//!
//! - `startup_postgres`: a child `plumbline serve` on the synthetic product
//!   in PostgreSQL until SERVING, against `startup_to_serving` (the same
//!   child on the SQLite file, same run);
//! - `rank_top50_replica_p50`: `RankItems` top 50 on replica B against the
//!   same on writer A, two in-process servers on one database;
//! - `replication_lag_p50` / `_p99`: an estimate written on A until B's
//!   `GetItemScore` shows it, against the write's own latency on A;
//! - `sync_ingest_postgres`: the sync of `sync_ingest` into PostgreSQL,
//!   against fetching and parsing the same pages;
//! - `failover`: three child servers, background sync every second, 2 s
//!   leases, a tracker answering each page after 300 ms; the lease holder
//!   is killed (SIGKILL) mid-sync, and the figure is the time until another
//!   replica's sync stores its next page, against the lease time.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;

use super::child;
use super::mock::GitHubMock;
use super::rpc::{connect, percentile, rank_request};
use super::{BenchError, Figure, Options, Result, Target, config, median, ms, synth};
use plumbline::config::StoreConfig;
use plumbline::proto as pb;
use plumbline::proto::backlog_service_client::BacklogServiceClient;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::store::{PostgresStore, Store};
use plumbline::sync::http::HttpClient;

/// The variable naming the PostgreSQL superuser DSN (key=value or URL).
pub const ENV: &str = "PLB_SUITE_POSTGRES";

/// The note of a run without PostgreSQL.
pub const SKIPPED: &str = "PostgreSQL figures skipped: run under scripts/with-postgres.sh";

/// The figures this module adds, in report order.
#[allow(
    dead_code,
    reason = "the integration test leaves them out without PostgreSQL"
)]
pub const NAMES: [&str; 6] = [
    "startup_postgres",
    "rank_top50_replica_p50",
    "replication_lag_p50",
    "replication_lag_p99",
    "sync_ingest_postgres",
    "failover",
];

/// How the figures are measured, for the report's notes.
pub const NOTE: &str = "PostgreSQL figures (issue 22), on the PostgreSQL of PLB_SUITE_POSTGRES \
     (loopback; scripts/with-postgres.sh runs it with fsync off): startup_postgres is a child \
     `plumbline serve` on the product written through PostgresStore, until SERVING, against \
     startup_to_serving (informational); rank_top50_replica_p50 is RankItems top 50 on replica B \
     against the same on writer A (two in-process servers on one database, calls alternating in \
     blocks; target ratio <= 1.2); replication_lag_p50/p99 time an UpsertItems of one item's \
     estimate on A until B's GetItemScore shows the new size (B polled back to back), over at \
     least 200 writes, against the write's own latency on A (targets < 50 ms and < 250 ms; the \
     ratio is informational); sync_ingest_postgres is sync_ingest's sync into PostgreSQL against \
     fetching and parsing the same pages (informational: sync_ingest holds the SQLite sync to \
     ratio <= 1.3 against the larger of that and the bulk write); failover runs three child \
     servers with 2 s leases and a sync every second from a tracker answering each page after \
     300 ms, SIGKILLs the replica whose pid prefixes the `sync:gh` lease holder mid-sync, and \
     times the kill until another replica holds the lease and has stored a further page, \
     against the lease time (target ratio <= 2.5: the lease, one loop interval and a page)";

/// Lease time of the failover figure's replicas.
const LEASE: Duration = Duration::from_secs(2);
/// How long each page of the failover figure's tracker takes.
const SLOW_PAGE: Duration = Duration::from_millis(300);
/// Issues of the failover figure's tracker (20 pages, 6 s of sync), at any
/// N: the figure is about leases, not volume.
const FAILOVER_ITEMS: u64 = 2_000;
/// Replicas of the failover figure.
const FAILOVER_REPLICAS: usize = 3;
/// Longest a replica may take to show a write before the run fails.
const LAG_TIMEOUT: Duration = Duration::from_secs(30);
/// Calls per block before switching between writer and replica.
const BLOCK: usize = 50;

/// The suite's PostgreSQL: its superuser DSN and the databases made on it.
struct Postgres {
    dsn: String,
    host: String,
    port: u16,
    user: String,
    password: String,
    made: Vec<String>,
}

fn pg_err(doing: &str) -> impl FnOnce(tokio_postgres::Error) -> BenchError + '_ {
    move |e| BenchError::Check(format!("PostgreSQL: cannot {doing}: {e}"))
}

impl Postgres {
    fn new(dsn: String) -> Result<Postgres> {
        let parsed = tokio_postgres::Config::from_str(&dsn)
            .map_err(|e| BenchError::Check(format!("{ENV} does not parse: {e}")))?;
        let host = match parsed.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".into(),
        };
        Ok(Postgres {
            host,
            port: parsed.get_ports().first().copied().unwrap_or(5432),
            user: parsed.get_user().unwrap_or("postgres").to_string(),
            password: String::from_utf8_lossy(parsed.get_password().unwrap_or_default())
                .into_owned(),
            dsn,
            made: Vec::new(),
        })
    }

    /// A new, empty database; its `postgres://` URL (as a `db` path, which
    /// selects the PostgreSQL store).
    async fn fresh(&mut self, tag: &str) -> Result<PathBuf> {
        let name = format!("plb_bench_{}_{}_{tag}", std::process::id(), self.made.len());
        let admin = client(&self.dsn).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(pg_err("create a database"))?;
        self.made.push(name.clone());
        Ok(PathBuf::from(format!(
            "postgres://{}:{}@{}:{}/{name}",
            self.user, self.password, self.host, self.port
        )))
    }

    /// Drops every database this run made; a failure is only a warning.
    async fn drop_all(&mut self) {
        let Ok(admin) = client(&self.dsn).await else {
            return;
        };
        for name in self.made.drain(..) {
            if let Err(e) = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
            {
                eprintln!("plumbline bench: cannot drop the database {name}: {e}");
            }
        }
    }
}

/// A connection to `dsn` (key=value or URL), its driver on the runtime.
async fn client(dsn: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .map_err(pg_err("connect"))?;
    tokio::spawn(conn);
    Ok(client)
}

fn url_str(db: &Path) -> &str {
    db.to_str().unwrap_or_default()
}

async fn open(db: &Path) -> Result<PostgresStore> {
    Ok(PostgresStore::open_dsn(url_str(db), &StoreConfig::default()).await?)
}

/// Every PostgreSQL figure and the notes, or only the note saying why not.
pub async fn figures(
    opts: &Options,
    sqlite_startup: Option<&Figure>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<Figure>, Vec<String>)> {
    let Ok(dsn) = std::env::var(ENV) else {
        return Ok((Vec::new(), vec![SKIPPED.into()]));
    };
    let mut pg = Postgres::new(dsn)?;
    let measured = measure(opts, &mut pg, sqlite_startup, say).await;
    pg.drop_all().await;
    let (figures, mut notes) = measured?;
    notes.push(NOTE.into());
    Ok((figures, notes))
}

async fn measure(
    opts: &Options,
    pg: &mut Postgres,
    sqlite_startup: Option<&Figure>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(Vec<Figure>, Vec<String>)> {
    let n = opts.items;
    let mut figures = Vec::new();
    let mut notes = Vec::new();

    say(&format!("PostgreSQL: writing the {n} items"));
    let db = pg.fresh("product").await?;
    let t = Instant::now();
    let keys = {
        let store = open(&db).await?;
        let keys = synth::write_product(&store, opts.seed, n).await?;
        store.close().await;
        keys
    };
    notes.push(format!(
        "PostgreSQL: the product written in {:.1} s through PostgresStore",
        t.elapsed().as_secs_f64()
    ));

    say("PostgreSQL: start-up of a child `plumbline serve`");
    figures.push(startup(opts, &db, sqlite_startup).await?);

    say("PostgreSQL: RankItems on a replica against the writer; replication lag");
    let a = plumbline::server::start(&config(&db)).await?;
    let b = plumbline::server::start(&config(&db)).await;
    let b = match b {
        Ok(b) => b,
        Err(e) => {
            a.shutdown().await?;
            return Err(e.into());
        }
    };
    let measured = async {
        let rank = replica_rank(opts, &a.url(), &b.url()).await?;
        let lag = lag(opts, &a.url(), &b.url(), &keys).await?;
        Ok::<_, BenchError>((rank, lag))
    }
    .await;
    let (down_a, down_b) = (a.shutdown().await, b.shutdown().await);
    let (rank, (lag50, lag99)) = measured?;
    down_a?;
    down_b?;
    figures.extend([rank, lag50, lag99]);

    say("PostgreSQL: sync ingest from the local GitHub mock");
    figures.push(sync_ingest(opts, pg).await?);

    say("PostgreSQL: failover of the background sync");
    let (failover, note) = failover(opts, pg).await?;
    figures.push(failover);
    notes.push(note);
    Ok((figures, notes))
}

/// `startup_postgres`: a child on the product in PostgreSQL until SERVING,
/// three times (once above 200,000 items), against `startup_to_serving`.
async fn startup(opts: &Options, db: &Path, sqlite: Option<&Figure>) -> Result<Figure> {
    let reps = if opts.items > 200_000 { 1 } else { 3 };
    let mut took = Vec::new();
    for _ in 0..reps {
        let (server, t) = child::start_with(&opts.exe, db, &[]).await?;
        drop(server);
        took.push(t);
    }
    let baseline = match sqlite {
        Some(f) => f.value,
        // Not measured in this run (it always is in `run`): measure it.
        None => {
            return Err(BenchError::Check(
                "startup_to_serving was not measured".into(),
            ));
        }
    };
    Ok(Figure::new(
        "startup_postgres",
        ms(median(took)),
        "ms",
        baseline,
        "startup_to_serving (the same child on the SQLite file)",
        Target::None,
        opts.items,
    ))
}

async fn rank_call(c: &mut ScoringServiceClient<Channel>) -> Result<Duration> {
    let t = Instant::now();
    let got = c.rank_items(rank_request()).await?.into_inner().items.len();
    let took = t.elapsed();
    if got == 0 {
        return Err(BenchError::Check("RankItems returned no items".into()));
    }
    Ok(took)
}

/// `rank_top50_replica_p50`: B's p50 against A's, calls alternating in
/// blocks so that a noisy neighbour slows both alike.
async fn replica_rank(opts: &Options, a: &str, b: &str) -> Result<Figure> {
    let mut on_a = ScoringServiceClient::new(connect(a).await?);
    let mut on_b = ScoringServiceClient::new(connect(b).await?);
    for _ in 0..(opts.samples / 10).max(20) {
        rank_call(&mut on_a).await?;
        rank_call(&mut on_b).await?;
    }
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    while tb.len() < opts.samples {
        for _ in 0..BLOCK {
            ta.push(rank_call(&mut on_a).await?);
        }
        for _ in 0..BLOCK {
            tb.push(rank_call(&mut on_b).await?);
        }
    }
    ta.sort();
    tb.sort();
    Ok(Figure::new(
        "rank_top50_replica_p50",
        ms(percentile(&tb, 0.5)),
        "ms",
        ms(percentile(&ta, 0.5)),
        "the same on the writer",
        Target::RatioAtMost(1.2),
        opts.items,
    ))
}

/// `replication_lag_p50` and `_p99`: each write sets one item's estimate
/// on A to a size it did not have; the lag is from the call's start until
/// B's `GetItemScore` answers that size.
async fn lag(opts: &Options, a: &str, b: &str, keys: &[String]) -> Result<(Figure, Figure)> {
    let writes = (opts.samples / 10).max(200);
    let mut writer = BacklogServiceClient::new(connect(a).await?);
    let mut reader = ScoringServiceClient::new(connect(b).await?);
    let (mut lags, mut own) = (Vec::new(), Vec::new());
    for i in 0..writes {
        let key = &keys[(i * 7919) % keys.len()];
        let (source_id, external_id) = key
            .split_once('/')
            .ok_or_else(|| BenchError::Check(format!("item key {key} has no source")))?;
        // Never a size the synthetic product gives (whole numbers), and a
        // different one each write.
        let size = 1.0 + (i as f64) / 1000.0 + 0.0005;
        let t = Instant::now();
        writer
            .upsert_items(pb::UpsertItemsRequest {
                items: vec![pb::Item {
                    source_id: source_id.into(),
                    external_id: external_id.into(),
                    estimate: Some(size),
                    ..Default::default()
                }],
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["estimate".into()],
                }),
            })
            .await?;
        own.push(t.elapsed());
        loop {
            let score = reader
                .get_item_score(pb::GetItemScoreRequest {
                    item_key: key.clone(),
                })
                .await?
                .into_inner()
                .score
                .ok_or_else(|| BenchError::Check("GetItemScore answered no score".into()))?;
            if score.size == size {
                lags.push(t.elapsed());
                break;
            }
            if t.elapsed() > LAG_TIMEOUT {
                return Err(BenchError::Check(format!(
                    "replica B did not show a write on A within {LAG_TIMEOUT:?}"
                )));
            }
        }
    }
    lags.sort();
    own.sort();
    Ok((
        Figure::new(
            "replication_lag_p50",
            ms(percentile(&lags, 0.5)),
            "ms",
            ms(percentile(&own, 0.5)),
            "the write's own latency on A, p50",
            Target::Below(50.0),
            1,
        ),
        Figure::new(
            "replication_lag_p99",
            ms(percentile(&lags, 0.99)),
            "ms",
            ms(percentile(&own, 0.99)),
            "the write's own latency on A, p99",
            Target::Below(250.0),
            1,
        ),
    ))
}

/// `sync_ingest_postgres`: `sync_ingest`'s sync into a fresh PostgreSQL
/// database, against fetching and parsing the same pages; one rep runs
/// both, so that a noisy neighbour slows both alike.
async fn sync_ingest(opts: &Options, pg: &mut Postgres) -> Result<Figure> {
    let n = opts.items;
    let mock = GitHubMock::start(opts.seed, n).await?;
    let source = synth::source("gh", &mock.uri());
    let conn = plumbline::sync::connector(source.kind)
        .ok_or_else(|| BenchError::Check("the synthetic source has no connector".into()))?;
    let headers = conn.headers(&source, None)?;
    let reps = if n > 20_000 { 1 } else { 3 };
    let (mut fetch, mut ingest) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let http = HttpClient::new(
            plumbline::config::SyncConfig::manual().http_options(),
            super::sync::loopback(),
        )?;
        let t = Instant::now();
        let pages = super::sync::fetch_and_parse(&http, conn.as_ref(), &source, &headers).await?;
        fetch.push(t.elapsed());
        drop((http, pages));
        let db = pg.fresh(&format!("sync{rep}")).await?;
        let store: Arc<dyn Store> = Arc::new(open(&db).await?);
        ingest.push(super::sync::sync_into(opts.seed, n, store, &source).await?);
    }
    let secs = |v: Vec<Duration>| median(v).as_secs_f64();
    Ok(Figure::new(
        "sync_ingest_postgres",
        secs(ingest),
        "s",
        secs(fetch),
        "fetching and parsing the same pages",
        Target::None,
        n,
    ))
}

async fn count(c: &tokio_postgres::Client, sql: &str) -> Result<i64> {
    c.query_one(sql, &[])
        .await
        .map_err(pg_err("count"))?
        .try_get(0)
        .map_err(pg_err("read a count"))
}

async fn holder(c: &tokio_postgres::Client) -> Result<Option<String>> {
    Ok(
        c.query_opt("SELECT holder FROM leases WHERE name = 'sync:gh'", &[])
            .await
            .map_err(pg_err("read the lease"))?
            .map(|r| r.get(0)),
    )
}

const STORED: &str = "SELECT count(*) FROM items WHERE source_id = 'gh'";

/// `failover`: see the module doc. Returns the figure and a note saying
/// at which item the sync was cut.
async fn failover(opts: &Options, pg: &mut Postgres) -> Result<(Figure, String)> {
    let total = FAILOVER_ITEMS as i64;
    let mock = GitHubMock::start_slow(opts.seed, FAILOVER_ITEMS, SLOW_PAGE).await?;
    let db = pg.fresh("failover").await?;
    {
        let store = open(&db).await?;
        synth::write_model(&store, opts.seed, &[synth::source("gh", &mock.uri())]).await?;
        store.close().await;
    }
    let lease = LEASE.as_secs().to_string();
    let env = [
        ("PLUMBLINE_STORE__LEASE_SECS", lease.as_str()),
        ("PLUMBLINE_SYNC__INTERVAL_SECS", "1"),
        ("PLUMBLINE_OUTBOUND__ALLOW_HOSTS", "[127.0.0.1]"),
    ];
    let mut replicas = Vec::new();
    for _ in 0..FAILOVER_REPLICAS {
        replicas.push(child::start_with(&opts.exe, &db, &env).await?.0);
    }
    let c = client(url_str(&db)).await?;

    // Two pages or more stored, not the last: kill the lease holder.
    let until = Instant::now() + Duration::from_secs(120);
    let (victim_pid, stored_before) = loop {
        let stored = count(&c, STORED).await?;
        if stored >= total {
            return Err(BenchError::Check(
                "failover: the sync ended before the kill".into(),
            ));
        }
        if stored >= 200
            && let Some(h) = holder(&c).await?
        {
            let pid: u32 = h
                .split('-')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| BenchError::Check(format!("failover: lease holder {h:?}")))?;
            break (pid, stored);
        }
        if Instant::now() > until {
            return Err(BenchError::Check(format!(
                "failover: the background sync stored {stored} items in 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let victim = replicas
        .iter()
        .position(|s| s.child.id() == victim_pid)
        .ok_or_else(|| {
            BenchError::Check("failover: the lease holder is none of the replicas".into())
        })?;
    let mut killed = replicas.remove(victim);
    killed.child.kill()?; // SIGKILL
    let killed_at = Instant::now();
    killed.child.wait()?;
    drop(killed);

    // Another holder, then a page stored after it took over (a commit the
    // dead replica had in flight is not a takeover).
    let mine = format!("{victim_pid}-");
    let until = Instant::now() + Duration::from_secs(120);
    let mut taken_with = None;
    let took = loop {
        if taken_with.is_none() && holder(&c).await?.is_some_and(|h| !h.starts_with(&mine)) {
            taken_with = Some(count(&c, STORED).await?);
        }
        if let Some(at) = taken_with
            && count(&c, STORED).await? > at
        {
            break killed_at.elapsed();
        }
        if Instant::now() > until {
            return Err(BenchError::Check(
                "failover: no replica resumed the sync within 120 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(replicas);
    drop(c);
    Ok((
        Figure::new(
            "failover",
            took.as_secs_f64(),
            "s",
            LEASE.as_secs_f64(),
            "the lease time",
            Target::RatioAtMost(2.5),
            opts.items,
        ),
        format!(
            "failover: {FAILOVER_REPLICAS} replicas, the lease holder killed with \
             {stored_before} of {total} items stored"
        ),
    ))
}
