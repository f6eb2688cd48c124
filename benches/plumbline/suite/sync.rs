//! Figure 6, `sync_ingest`: a full sync of N issues from the local GitHub
//! mock into a fresh database, against two baselines measured in the same
//! run, and held to its ratio against the larger one:
//!
//! - fetching and parsing the same pages with the sync's own client and
//!   connector (what the sync cannot do without);
//! - the store's bulk write of the same items and rule links, grouped into
//!   transactions as the sync groups them, into a fresh database with
//!   nothing else in the process at work: no fetch, no engine, no index.
//!
//! The sync overlaps fetching and parsing with writing, so it can be no
//! shorter than either; the target asks that the overlap be good (at most
//! 1.3x the slower step), not that SQLite write faster than it can alone.
//! The write goes through the public [`Store`] trait, the call the sync's
//! writer makes, so that the baseline follows the store whatever its driver.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;

use plumbline::config::SyncConfig;
use plumbline::domain::{Item, Link, LinkOrigin, Source, SyncRunState, SyncState, rule_links};
use plumbline::engine::Engine;
use plumbline::store::{SqliteStore, Store};
use plumbline::sync::http::HttpClient;
use plumbline::sync::{Connector, Syncer};

use super::mock::GitHubMock;
use super::{BenchError, Figure, Options, Result, Target, median, synth};

/// Pages stored per transaction in the bulk-write baseline: the most the
/// sync's writer groups (`PAGES_PER_COMMIT` in `src/sync/mod.rs`), which it
/// reaches when fetching runs ahead of writing, as it does here.
const PAGES_PER_COMMIT: usize = 16;

/// The rationale the engine gives rule links.
const RULE_RATIONALE: &str = "from the item's labels or body, by the source's link rules";

/// How the figure is measured, for the report's notes.
pub const NOTE: &str = "sync_ingest: held to its ratio against the larger of two baselines \
     measured in the same run: fetching and parsing the same pages, and the store's bulk write \
     of the same items and rule links (16 pages per transaction, into a fresh database, nothing \
     else at work in the process); the sync overlaps the two, so it cannot be shorter than either";

/// The sync figure with both baselines; each is the median of its reps,
/// and one rep runs fetch, bulk write and sync one after another so that a
/// noisy neighbour slows all three alike.
pub async fn figure(opts: &Options, dir: &Path) -> Result<Figure> {
    let n = opts.items;
    let mock = GitHubMock::start(opts.seed, n).await?;
    let source = synth::source("gh", &mock.uri());
    let conn = plumbline::sync::connector(source.kind)
        .ok_or_else(|| BenchError::Check("the synthetic source has no connector".into()))?;
    let headers = conn.headers(&source, None)?;
    let reps = if n > 20_000 { 1 } else { 3 };
    let (mut fetch, mut write, mut ingest) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let http = HttpClient::new(SyncConfig::manual().http_options(), loopback())?;
        let t = Instant::now();
        let pages = fetch_and_parse(&http, conn.as_ref(), &source, &headers).await?;
        fetch.push(t.elapsed());
        drop(http); // its idle connection to the mock, before the write alone
        let fetched: usize = pages.iter().map(Vec::len).sum();
        if fetched as u64 != n {
            return Err(BenchError::Check(format!(
                "the mock served {fetched} issues, not {n}"
            )));
        }

        let path = dir.join(format!("bulk-{rep}.sqlite"));
        write.push(bulk_write(opts.seed, &path, &source, pages).await?);
        let _ = std::fs::remove_file(&path);

        let path = dir.join(format!("sync-{rep}.sqlite"));
        ingest.push(sync(opts.seed, n, &path, &source).await?);
        let _ = std::fs::remove_file(&path);
    }
    let secs = |v: Vec<Duration>| median(v).as_secs_f64();
    Ok(Figure::against_largest(
        "sync_ingest",
        secs(ingest),
        "s",
        &[
            ("fetching and parsing the same pages", secs(fetch)),
            (
                "the store's bulk write of the same items alone",
                secs(write),
            ),
        ],
        Target::RatioAtMost(1.3),
        n,
    ))
}

/// Follows the mock's pages with the sync's own client and connector,
/// mapping every issue; returns the pages' items.
pub(super) async fn fetch_and_parse(
    http: &HttpClient,
    conn: &dyn Connector,
    source: &Source,
    headers: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
) -> Result<Vec<Vec<Item>>> {
    let mut url = conn.first_url(source, None, Utc::now())?;
    let mut requests = 0;
    let mut pages = Vec::new();
    loop {
        let fetched = http
            .get(
                conn,
                &source.id,
                &url,
                headers,
                None,
                &|_| {},
                &mut requests,
            )
            .await?;
        let page = conn.parse_page(source, &fetched)?;
        pages.push(page.items);
        match page.next {
            Some(next) => url = next,
            None => return Ok(pages),
        }
    }
}

/// The bulk-write baseline: `pages` and the rule links the engine would
/// give them, written through [`Store::upsert_items`] with the sync state,
/// `PAGES_PER_COMMIT` pages per call, into a fresh database holding the
/// value model. Only the writes are timed; the transactions are prepared
/// before.
async fn bulk_write(
    seed: u64,
    path: &Path,
    source: &Source,
    pages: Vec<Vec<Item>>,
) -> Result<Duration> {
    let store = SqliteStore::open(path).await?;
    synth::write_model(&store, seed, std::slice::from_ref(source)).await?;
    let hypotheses: std::collections::HashSet<String> = synth::model(seed)
        .hypotheses
        .into_iter()
        .map(|h| h.id)
        .collect();
    let now = Utc::now();
    let mut state = SyncState::never(&source.id);
    state.state = SyncRunState::Running;
    state.last_start_time = Some(now);
    let mut groups = Vec::new();
    let mut pages = pages.into_iter().peekable();
    while pages.peek().is_some() {
        let items: Vec<Item> = pages.by_ref().take(PAGES_PER_COMMIT).flatten().collect();
        let mut links = Vec::new();
        for it in &items {
            let key = it.key();
            for (h, contribution) in rule_links(&source.link_rules, &it.labels, &it.body) {
                // The engine skips rules naming an unknown hypothesis.
                if !hypotheses.contains(&h) {
                    continue;
                }
                links.push(Link {
                    item_key: key.clone(),
                    hypothesis_id: h,
                    contribution,
                    origin: LinkOrigin::Rule,
                    rationale: RULE_RATIONALE.into(),
                    create_time: now,
                    update_time: now,
                });
            }
        }
        state.cursor.advance(
            items
                .iter()
                .map(|it| (it.external_id.as_str(), it.update_time)),
        );
        groups.push((items, links, state.clone()));
    }
    let t = Instant::now();
    for (items, links, state) in groups {
        store.upsert_items(items, &[], &links, Some(&state)).await?;
    }
    let took = t.elapsed();
    store.close().await;
    Ok(took)
}

/// A full sync of the mock's `n` issues into a fresh database with the
/// value model, through the engine as the server runs it; checks that every
/// item arrived.
async fn sync(seed: u64, n: u64, path: &Path, source: &Source) -> Result<Duration> {
    sync_into(seed, n, Arc::new(SqliteStore::open(path).await?), source).await
}

/// [`sync`] into `store` (fresh), which it closes.
pub(super) async fn sync_into(
    seed: u64,
    n: u64,
    store: Arc<dyn Store>,
    source: &Source,
) -> Result<Duration> {
    synth::write_model(store.as_ref(), seed, std::slice::from_ref(source)).await?;
    let engine = Arc::new(Engine::open(store.clone(), 3.0).await?);
    let syncer = Syncer::new(
        engine.clone(),
        HttpClient::new(SyncConfig::manual().http_options(), loopback())?,
    );
    let t = Instant::now();
    let summary = syncer.sync(&source.id, true, &|_| {}).await?;
    let took = t.elapsed();
    let stored = engine.read().item_count() as u64;
    drop(syncer);
    drop(engine);
    store.close().await;
    if u64::from(summary.upserted) != n || stored != n {
        return Err(BenchError::Check(format!(
            "the sync stored {stored} items ({} upserted), not {n}",
            summary.upserted
        )));
    }
    Ok(took)
}

/// The outbound policy of the benchmark: its tracker mock listens on
/// 127.0.0.1, which the default policy refuses.
pub fn loopback() -> Arc<plumbline::outbound::OutboundPolicy> {
    let config = plumbline::config::OutboundConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    Arc::new(plumbline::outbound::OutboundPolicy::new(&config).expect("127.0.0.1 is an address"))
}
