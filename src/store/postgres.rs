//! The PostgreSQL backend: one database shared by any number of sidecars.
//! The same tables, values and semantics as the SQLite backend (see
//! [`codec`](super::codec)): every call is one transaction, the same bad
//! input gives the same error, and a restart reads back what was written
//! bit for bit. Connections come from a pool ([`conn`]); the schema is
//! migrated at open under an advisory lock ([`migrate`]).

// The calls are written one module at a time; until then some helpers
// have no caller.
#![allow(dead_code)]

mod conn;
mod customers;
mod history;
mod insights;
mod migrate;
mod replica;
mod tokens;
mod validation;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use super::{
    ItemFilter, Load, ModelWrite, Result, SnapshotRetention, Store, StoreError, WriteHealth,
};
use crate::config::Config;
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Insight, Item, ItemSplit, Link, Metric, Observation,
    ObservationSummary, PullStatus, Release, Removal, Source, SyncState, Time,
};
use conn::{Attempt, Connections, Fail, Settings, Shared, Tx};

/// PostgreSQL-backed [`Store`]; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    db: Shared,
    /// Wakes followers when another sidecar commits.
    listener: std::sync::Arc<replica::Listener>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("replica", &self.db.replica())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `dsn` names and brings its schema up to
    /// date. Errors never hold the DSN.
    pub async fn open_dsn(dsn: &str, config: &crate::config::StoreConfig) -> Result<Self> {
        let settings = Settings {
            max_connections: config.max_connections,
            wait: std::time::Duration::from_millis(config.busy_timeout_ms.max(1)),
        };
        let db = Connections::new(dsn, &settings).map_err(|message| StoreError::Unavailable {
            doing: "open the PostgreSQL database".into(),
            source: message.into(),
        })?;
        let migrated: Attempt<()> = async {
            let mut client = db.client().await?;
            migrate::run(&mut client).await
        }
        .await;
        migrated.map_err(|e| e.during("open the PostgreSQL database"))?;
        let db = std::sync::Arc::new(db);
        Ok(PostgresStore {
            listener: std::sync::Arc::new(replica::Listener::start(db.clone())),
            db,
        })
    }
}

#[allow(unused_imports)] // used by the calls as they are written
pub(super) use super::codec::{enum_str, json, nanos, opt_time, time};

/// A string for a TEXT column: PostgreSQL's TEXT cannot hold the NUL
/// character (SQLite's can), so each is written as U+FFFD, the replacement
/// character, rather than failing the write. Every string that can come
/// from a tracker or a caller goes through here, and so does every key
/// looked up by such a string, so that what was written is found again.
pub(super) fn pg_text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn parse_enum<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_enum(s).map_err(Fail::Corrupt)
}

fn parse_json<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_json(s).map_err(Fail::Corrupt)
}

/// Until each call is written: refused, never silently empty.
fn not_yet<T>(what: &str) -> Result<T> {
    Err(StoreError::Backend {
        doing: what.into(),
        source: "not implemented on PostgreSQL yet".into(),
    })
}

/// Stores or replaces a hypothesis (its create time is kept).
pub(super) async fn put_hypothesis(tx: &Tx<'_>, h: &Hypothesis) -> Attempt<()> {
    let _ = (tx, h);
    Err(Fail::Corrupt(
        "put_hypothesis: not implemented on PostgreSQL yet".into(),
    ))
}

#[async_trait]
impl Store for PostgresStore {
    async fn open(config: &Config) -> Result<Self> {
        let dsn = config
            .postgres_dsn()
            .map_err(|e| StoreError::Unavailable {
                doing: "open the PostgreSQL database".into(),
                source: e.to_string().into(),
            })?
            .ok_or_else(|| StoreError::Unavailable {
                doing: "open the PostgreSQL database".into(),
                source: "the configuration names no PostgreSQL database".into(),
            })?;
        PostgresStore::open_dsn(&dsn, &config.store).await
    }

    async fn close(&self) {
        self.listener.stop();
        self.db.close();
    }

    fn write_health(&self) -> tokio::sync::watch::Receiver<WriteHealth> {
        self.db.health()
    }

    async fn check_health(&self) {
        self.db.check().await;
    }

    // ---- items, links, the value model (load, write) ----

    async fn load(&self) -> Result<Load> {
        not_yet("read the model at start-up")
    }

    async fn put_source(&self, s: &Source) -> Result<()> {
        let _ = s;
        not_yet("store a source")
    }

    async fn delete_source(&self, id: &str) -> Result<u64> {
        let _ = id;
        not_yet("delete a source")
    }

    async fn upsert_and_remove_items(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        sync_state: Option<&SyncState>,
        restore: &[String],
        remove: &[(String, Removal)],
    ) -> Result<()> {
        let _ = (items, remove_links, put_links, sync_state, restore, remove);
        not_yet("upsert items")
    }

    async fn apply_split(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        split: &ItemSplit,
    ) -> Result<()> {
        let _ = (items, remove_links, put_links, split);
        not_yet("apply a split")
    }

    async fn list_item_splits(&self) -> Result<Vec<ItemSplit>> {
        not_yet("list item splits")
    }

    async fn links_of_items(&self, keys: &[String]) -> Result<Vec<Link>> {
        let _ = keys;
        not_yet("read links")
    }

    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>> {
        let _ = keys;
        not_yet("read items")
    }

    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>> {
        let _ = (source_id, text);
        not_yet("search item bodies")
    }

    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>> {
        let _ = (filter, after, limit, max_bytes);
        not_yet("list items")
    }

    async fn put_goal(&self, g: &Goal) -> Result<()> {
        let _ = g;
        not_yet("store a goal")
    }

    async fn delete_goal(&self, id: &str) -> Result<()> {
        let _ = id;
        not_yet("delete a goal")
    }

    async fn put_metric(&self, m: &Metric) -> Result<()> {
        let _ = m;
        not_yet("store a metric")
    }

    async fn delete_metric(&self, id: &str) -> Result<()> {
        let _ = id;
        not_yet("delete a metric")
    }

    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        let _ = observations;
        not_yet("record observations")
    }

    async fn record_pull(
        &self,
        observations: &[Observation],
        status: &PullStatus,
    ) -> Result<Option<ObservationSummary>> {
        let _ = (observations, status);
        not_yet("record a pull")
    }

    async fn list_metric_pulls(&self) -> Result<Vec<PullStatus>> {
        not_yet("list metric pulls")
    }

    async fn apply_model(&self, w: &ModelWrite) -> Result<Vec<(String, ObservationSummary)>> {
        let _ = w;
        not_yet("apply a value model")
    }

    async fn put_hypothesis(&self, h: &Hypothesis) -> Result<()> {
        let _ = h;
        not_yet("store a hypothesis")
    }

    async fn delete_hypothesis(&self, id: &str) -> Result<()> {
        let _ = id;
        not_yet("delete a hypothesis")
    }

    async fn put_link(&self, l: &Link) -> Result<()> {
        let _ = l;
        not_yet("store a link")
    }

    async fn delete_link(&self, item_key: &str, hypothesis_id: &str) -> Result<()> {
        let _ = (item_key, hypothesis_id);
        not_yet("delete a link")
    }

    async fn get_sync_state(&self, source_id: &str) -> Result<Option<SyncState>> {
        let _ = source_id;
        not_yet("read a sync state")
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        let _ = state;
        not_yet("store a sync state")
    }

    // ---- insights (insights.rs) ----

    async fn record_insights(&self, insights: &[Insight], now: Time) -> Result<()> {
        self.db
            .write_logged(
                "record insights",
                &super::Changed::model(),
                (insights, now),
                |tx, (i, now)| Box::pin(insights::put(tx, i, now)),
            )
            .await
    }

    async fn get_insights(&self, keys: &[(String, String)]) -> Result<Vec<Insight>> {
        self.db
            .read("read insights", keys, |tx, k| {
                Box::pin(insights::get(tx, k))
            })
            .await
    }

    async fn list_all_insights(&self) -> Result<Vec<Insight>> {
        self.db
            .read("list insights", (), |tx, ()| Box::pin(insights::all(tx)))
            .await
    }

    async fn forget_customer(&self, customer: &str) -> Result<u64> {
        self.db
            .write_logged(
                "forget a customer",
                &super::Changed::model(),
                customer,
                |tx, c| Box::pin(insights::forget(tx, c)),
            )
            .await
    }

    // ---- releases, experiments, evidence (validation.rs) ----

    async fn put_release(&self, r: &Release) -> Result<()> {
        self.db
            .write("store a release", r, |tx, r| {
                Box::pin(validation::put_release(tx, r))
            })
            .await
    }

    async fn list_releases(&self) -> Result<Vec<Release>> {
        self.db
            .read("list releases", (), |tx, ()| {
                Box::pin(validation::list_releases(tx))
            })
            .await
    }

    async fn closed_items(&self) -> Result<Vec<(String, Time)>> {
        self.db
            .read("list closed items", (), |tx, ()| {
                Box::pin(validation::closed_items(tx))
            })
            .await
    }

    async fn put_experiment(&self, e: &Experiment) -> Result<()> {
        self.db
            .write("store an experiment", e, |tx, e| {
                Box::pin(validation::put_experiment(tx, e))
            })
            .await
    }

    async fn list_experiments(&self) -> Result<Vec<Experiment>> {
        self.db
            .read("list experiments", (), |tx, ()| {
                Box::pin(validation::list_experiments(tx))
            })
            .await
    }

    async fn list_observations(&self, metric_id: &str) -> Result<Vec<(Time, f64)>> {
        self.db
            .read("list observations", metric_id, |tx, m| {
                Box::pin(validation::list_observations(tx, m))
            })
            .await
    }

    async fn record_evidence(
        &self,
        evidence: &[Evidence],
        hypotheses: &[Hypothesis],
    ) -> Result<()> {
        // Evidence is read from the store when asked for; the hypotheses it
        // moved are the model's, which the other sidecars read back.
        let changed = if hypotheses.is_empty() {
            super::Changed::default()
        } else {
            super::Changed::model()
        };
        self.db
            .write_logged(
                "record evidence",
                &changed,
                (evidence, hypotheses),
                |tx, (e, h)| Box::pin(validation::record_evidence(tx, e, h)),
            )
            .await
    }

    async fn list_evidence(&self, hypothesis_id: Option<&str>) -> Result<Vec<Evidence>> {
        self.db
            .read("list evidence", hypothesis_id, |tx, h| {
                Box::pin(validation::list_evidence(tx, *h))
            })
            .await
    }

    // ---- ranking snapshots (history.rs) ----

    async fn put_ranking_snapshot(
        &self,
        snapshot: &RankingSnapshot,
        keep: &SnapshotRetention,
    ) -> Result<SnapshotSummary> {
        self.db
            .write(
                "store a ranking snapshot",
                (snapshot, keep),
                |tx, (s, k)| Box::pin(history::put(tx, s, k)),
            )
            .await
    }

    async fn prune_ranking_snapshots(&self, keep: &SnapshotRetention) -> Result<usize> {
        self.db
            .write("prune ranking snapshots", keep, |tx, k| {
                Box::pin(history::prune(tx, k))
            })
            .await
    }

    async fn list_ranking_snapshots(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotSummary>> {
        self.db
            .read(
                "list ranking snapshots",
                (before_id, limit),
                |tx, (b, l)| Box::pin(history::list(tx, *b, *l)),
            )
            .await
    }

    async fn ranking_snapshot_at(&self, at: Option<Time>) -> Result<Option<RankingSnapshot>> {
        self.db
            .read("read a ranking snapshot", at, |tx, at| {
                Box::pin(history::at(tx, *at))
            })
            .await
    }

    async fn earliest_ranking_snapshot(&self) -> Result<Option<SnapshotSummary>> {
        self.db
            .read("read the earliest ranking snapshot", (), |tx, ()| {
                Box::pin(history::earliest(tx))
            })
            .await
    }

    // ---- many sidecars (replica.rs) ----

    async fn item_removals(&self, keys: &[String]) -> Result<Vec<(String, Removal)>> {
        self.db
            .read("read item removals", keys, |tx, keys| {
                Box::pin(async move {
                    let stmt = tx
                        .prepare_cached(
                            "SELECT item_key, remove_time, reason, detail FROM item_removals \
                             WHERE item_key = ANY($1)",
                        )
                        .await?;
                    let rows = tx.query(&stmt, &[keys]).await?;
                    rows.iter()
                        .map(|r| {
                            Ok((
                                r.get(0),
                                Removal {
                                    remove_time: time(r.get(1)),
                                    reason: parse_enum(r.get(2))?,
                                    detail: r.get(3),
                                },
                            ))
                        })
                        .collect()
                })
            })
            .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn replica_id(&self) -> &str {
        self.db.replica()
    }

    async fn changes_after(&self, seq: i64, limit: usize) -> Result<Vec<super::ChangeRecord>> {
        replica::changes_after(&self.db, seq, limit).await
    }

    async fn last_change(&self) -> Result<i64> {
        replica::last_change(&self.db).await
    }

    async fn prune_changes(&self, keep_for: std::time::Duration, keep_last: i64) -> Result<u64> {
        replica::prune_changes(&self.db, keep_for, keep_last).await
    }

    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.listener.signal.subscribe())
    }

    async fn write_turn(&self) -> Result<super::WriteTurn> {
        replica::write_turn(&self.db).await
    }

    async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool> {
        replica::lease(&self.db, name, ttl).await
    }

    async fn release_lease(&self, name: &str) -> Result<()> {
        replica::release_lease(&self.db, name).await
    }
}
