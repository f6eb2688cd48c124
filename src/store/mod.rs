//! Durable storage behind one trait, so that a PostgreSQL backend can be added
//! beside the embedded SQLite one without touching the API or the score.
//!
//! Each method is one transaction: an RPC's writes land together or not at
//! all. Referential checks that need the model (does the parent goal exist?)
//! are made by the caller against the index before writing; the schema's
//! constraints are the last line of defence.
//!
//! The store knows nothing of the in-memory index: start-up reads a [`Load`]
//! (the value model, then items and links in batches as they are read) and
//! the engine builds the index from it. Errors say what they mean (busy,
//! conflict, corrupt...) and keep the driver's error as their source, without
//! naming a driver type, so callers never depend on the backend.

pub(crate) mod codec;
mod customers;
mod postgres;
mod sqlite;
mod tokens;

use async_trait::async_trait;

pub use customers::{CustomerLoad, CustomerStore};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use tokens::TokenStore;

use crate::config::{Config, StoreBackend};
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Insight, Item, ItemSplit, ItemState, Link, Metric,
    Observation, ObservationSummary, PullStatus, Release, Removal, Source, SyncState, Time,
};

/// The driver's own error, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure, by what it means to the caller. `doing` names the
/// operation ("upsert items"); the driver's error is the source. The message
/// is for operators; it never holds secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer holds the database (another process on the same
    /// file); retrying later can succeed.
    #[error("the database is busy ({doing}); another process may be using the file")]
    Busy {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The write breaks a constraint of the schema (a missing referenced
    /// row, a duplicate key): the caller's checks let through something the
    /// model forbids.
    #[error("the write conflicts with stored data ({doing})")]
    Conflict {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The database cannot be reached: the file cannot be opened or
    /// written (permissions, I/O error).
    #[error("the database is unavailable ({doing})")]
    Unavailable {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// What is stored cannot be read back as the model: a damaged file, or
    /// a value no version of plumbline writes.
    #[error("stored data is corrupt ({doing})")]
    Corrupt {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The schema could not be brought up to date.
    #[error("the database schema cannot be migrated ({doing})")]
    Migrate {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The disk is full, or the database reached its size limit
    /// (`[store] max_size_mib`); freeing space lets writes succeed again.
    #[error(
        "the database is full ({doing}); free disk space, delete data, or raise [store] max_size_mib"
    )]
    Full {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The database file or its folder cannot be written (permissions, a
    /// read-only mount); an operator must make them writable.
    #[error(
        "the database is read-only ({doing}); make the file, its -wal and -shm files and their folder writable by plumbline"
    )]
    ReadOnly {
        doing: String,
        #[source]
        source: BoxError,
    },
    /// The database file was deleted or replaced while the store had it
    /// open: a write would land in a file nobody will read again, so none
    /// is acknowledged until a restart opens the file at the path.
    #[error(
        "the database file {path} was deleted or replaced while plumbline had it open ({doing}); \
         writes are refused until plumbline is restarted"
    )]
    Gone { doing: String, path: String },
    /// The store was closed (the server is shutting down).
    #[error("the store is closed")]
    Closed,
    /// Any other failure of the backend.
    #[error("database failure ({doing})")]
    Backend {
        doing: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// The failure's kind in one word (`busy`, `conflict`, ...), the same
    /// for every backend: for tests and tools that compare backends.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Busy { .. } => "busy",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Migrate { .. } => "migrate",
            StoreError::Full { .. } => "full",
            StoreError::ReadOnly { .. } => "read-only",
            StoreError::Gone { .. } => "gone",
            StoreError::Closed => "closed",
            StoreError::Backend { .. } => "backend",
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether writes can succeed now: what health reports (NOT_SERVING unless
/// [`Writable`](WriteHealth::Writable)). Set by every write's outcome and by
/// [`Store::check_health`]; reads are answered from memory either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteHealth {
    /// The last write (or check) succeeded.
    Writable,
    /// Another process holds the database past the busy timeout.
    Busy,
    /// The disk or the size limit is full.
    Full,
    /// The database cannot be written.
    ReadOnly,
    /// Writes fail with I/O errors, or the file cannot be opened.
    Failing,
    /// The file was deleted or replaced; only a restart recovers.
    Gone,
}

impl WriteHealth {
    /// What a failed write says of the store; `None` when the failure is
    /// the write's own (a conflict, a closed store) and says nothing of
    /// whether other writes can succeed.
    pub fn after(err: &StoreError) -> Option<WriteHealth> {
        match err {
            StoreError::Busy { .. } => Some(WriteHealth::Busy),
            StoreError::Full { .. } => Some(WriteHealth::Full),
            StoreError::ReadOnly { .. } => Some(WriteHealth::ReadOnly),
            StoreError::Unavailable { .. } => Some(WriteHealth::Failing),
            StoreError::Gone { .. } => Some(WriteHealth::Gone),
            StoreError::Conflict { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Migrate { .. }
            | StoreError::Closed
            | StoreError::Backend { .. } => None,
        }
    }

    pub fn is_writable(self) -> bool {
        self == WriteHealth::Writable
    }
}

/// Filters of `list_items`.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub source_id: Option<String>,
    pub state: Option<ItemState>,
    pub label: Option<String>,
    /// Also list items their tracker no longer returns (left out by default).
    pub include_removed: bool,
}

/// A stored item as start-up reads it: what the score and the ranking
/// filters use, without the body (which stays in the store).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub key: String,
    pub source_id: String,
    pub title: String,
    pub state: ItemState,
    pub labels: Vec<String>,
    pub estimate: Option<f64>,
    /// Key of the parent item; empty when it has none.
    pub parent_key: String,
    /// The tracker's demand signal, as stored.
    pub votes: Option<u64>,
}

/// The value model without items and links: sources, goals, metrics with
/// their observation summaries, hypotheses.
#[derive(Debug, Default)]
pub struct Model {
    pub sources: Vec<Source>,
    pub goals: Vec<Goal>,
    pub metrics: Vec<(Metric, ObservationSummary)>,
    pub hypotheses: Vec<Hypothesis>,
    /// Items their tracker no longer returns, by key. Neither they nor their
    /// links come in the item and link batches: the index holds active
    /// items only.
    pub removed: Vec<(String, Removal)>,
}

/// A batch of the two big tables, as read at start-up.
#[derive(Debug)]
pub enum Batch {
    Items(Vec<ItemRow>),
    Links(Vec<Link>),
}

/// Everything start-up needs, read as it is consumed: the model at once,
/// then items and links in batches, in any order (a later row of the same
/// key wins). Reading the next batches overlaps with indexing this one, and
/// 100k items are never held twice.
#[derive(Debug)]
pub struct Load {
    pub model: Model,
    /// About how many items will come, to reserve room; may be off.
    pub item_count_hint: usize,
    batches: tokio::sync::mpsc::Receiver<Result<Batch>>,
}

impl Load {
    /// A load whose batches arrive on `batches`; the backend's readers
    /// send an error and stop on failure, and close the channel when done.
    pub fn new(
        model: Model,
        item_count_hint: usize,
        batches: tokio::sync::mpsc::Receiver<Result<Batch>>,
    ) -> Self {
        Load {
            model,
            item_count_hint,
            batches,
        }
    }

    /// The next batch; `None` once everything was read.
    pub async fn next_batch(&mut self) -> Option<Result<Batch>> {
        self.batches.recv().await
    }

    /// Reads every batch into one list of items and one of links, in the
    /// order they came; for tests and tools, not start-up.
    pub async fn collect_all(mut self) -> Result<(Model, Vec<ItemRow>, Vec<Link>)> {
        let (mut items, mut links) = (Vec::new(), Vec::new());
        while let Some(batch) = self.next_batch().await {
            match batch? {
                Batch::Items(v) => items.extend(v),
                Batch::Links(v) => links.extend(v),
            }
        }
        Ok((self.model, items, links))
    }
}

/// Everything one `ApplyValueModel` writes, in one transaction: puts in
/// reference order (sources, goals with parents first, metrics, their
/// observations, hypotheses, items, links), then deletes with dependents
/// first (hypotheses with their links, metrics with their observations,
/// goals children first, sources with their items).
#[derive(Debug, Clone, Default)]
pub struct ModelWrite {
    pub sources: Vec<Source>,
    pub goals: Vec<Goal>,
    pub metrics: Vec<Metric>,
    pub observations: Vec<Observation>,
    pub hypotheses: Vec<Hypothesis>,
    pub items: Vec<Item>,
    pub links: Vec<Link>,
    /// Rule links the items' new labels or bodies no longer ask for.
    pub remove_links: Vec<(String, String)>,
    pub delete_hypotheses: Vec<String>,
    pub delete_metrics: Vec<String>,
    pub delete_goals: Vec<String>,
    pub delete_sources: Vec<String>,
    /// Customers: segments and outcomes put (after metrics, which hold the
    /// outcomes' metrics), waves with their observations; outcomes deleted
    /// with their waves and metrics before the metrics, segments after.
    pub segments: Vec<crate::domain::Segment>,
    pub outcomes: Vec<crate::domain::DesiredOutcome>,
    pub waves: Vec<crate::domain::SurveyWave>,
    pub delete_outcomes: Vec<String>,
    pub delete_segments: Vec<String>,
    /// Inserted or replaced by (source, external id).
    pub insights: Vec<Insight>,
}

/// Opens the backend that `config.store.backend` names.
pub async fn open(config: &Config) -> Result<std::sync::Arc<dyn Store>> {
    match config.backend() {
        StoreBackend::Sqlite => Ok(std::sync::Arc::new(
            <SqliteStore as Store>::open(config).await?,
        )),
        StoreBackend::Postgres => Ok(std::sync::Arc::new(
            <PostgresStore as Store>::open(config).await?,
        )),
    }
}

#[async_trait]
pub trait Store: TokenStore + CustomerStore + Send + Sync + 'static {
    /// Opens (creating if needed) the database that `config` names and
    /// brings its schema up to date.
    async fn open(config: &Config) -> Result<Self>
    where
        Self: Sized;

    /// Finishes pending work and releases the database; later calls fail
    /// with [`StoreError::Unavailable`].
    async fn close(&self);

    /// Whether writes can succeed, as it changes (see [`WriteHealth`]).
    fn write_health(&self) -> tokio::sync::watch::Receiver<WriteHealth>;

    /// Checks that the database is still the one opened and, while writes
    /// are failing, whether one can succeed again (an empty write); updates
    /// [`write_health`](Store::write_health). Called periodically.
    async fn check_health(&self);

    /// Everything the in-memory index needs, to rebuild it at start-up.
    async fn load(&self) -> Result<Load>;

    async fn put_source(&self, source: &Source) -> Result<()>;
    /// Deletes a source with its items and their links; returns how many
    /// items went with it.
    async fn delete_source(&self, id: &str) -> Result<u64>;

    /// Inserts or replaces items by key, and in the same transaction removes
    /// and then puts the links their link rules changed and, for a sync page,
    /// saves the source's sync state (its cursor moves with the page).
    /// Items come by value: a sync hands over every item it fetched.
    async fn upsert_items(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        sync_state: Option<&SyncState>,
    ) -> Result<()> {
        self.upsert_and_remove_items(items, remove_links, put_links, sync_state, &[], &[])
            .await
    }
    /// [`upsert_items`](Store::upsert_items), and in the same transaction:
    /// `restore` names removed items that are active again (they are among
    /// `items`); `remove` marks items removed (their rows and links stay).
    async fn upsert_and_remove_items(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        sync_state: Option<&SyncState>,
        restore: &[String],
        remove: &[(String, Removal)],
    ) -> Result<()>;
    /// Applies a split: stores its slices and the link changes as
    /// [`upsert_items`](Store::upsert_items) does, and remembers `split`
    /// (replacing an earlier record of the same item), in one transaction.
    async fn apply_split(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        split: &ItemSplit,
    ) -> Result<()>;
    /// Every split remembered, by item key (read once, at start-up).
    async fn list_item_splits(&self) -> Result<Vec<ItemSplit>>;
    /// The stored links of the items of `keys` (to bring a restored item's
    /// links back into the index).
    async fn links_of_items(&self, keys: &[String]) -> Result<Vec<Link>>;
    /// The items of `keys`, in the same order; `None` where a key is unknown.
    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>>;
    /// The items of a source whose body contains `text`, in key order.
    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>>;
    /// Items in key order after `after`, at most `limit`, and no more once
    /// their [`Item::text_len`] adds up to `max_bytes` (the item that
    /// reaches it is the last), so a page of large bodies is never read
    /// whole.
    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>>;

    async fn put_goal(&self, goal: &Goal) -> Result<()>;
    async fn delete_goal(&self, id: &str) -> Result<()>;

    async fn put_metric(&self, metric: &Metric) -> Result<()>;
    /// Deletes a metric with its observations.
    async fn delete_metric(&self, id: &str) -> Result<()>;
    /// Stores observations (same metric and time replaces the value) and
    /// returns the new summary of each metric touched, in metric-id order.
    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<(String, ObservationSummary)>>;

    /// Stores the points of one pull of a metric's source (same metric and
    /// time replaces the value) and its pull status, in one transaction;
    /// returns the metric's new summary when points were stored.
    async fn record_pull(
        &self,
        observations: &[Observation],
        status: &PullStatus,
    ) -> Result<Option<ObservationSummary>>;
    /// Every metric's last pull status, by metric id.
    async fn list_metric_pulls(&self) -> Result<Vec<PullStatus>>;

    /// Writes a whole value model change in one transaction, all or
    /// nothing; returns the new summary of each metric whose observations
    /// it touched, in metric-id order.
    async fn apply_model(&self, write: &ModelWrite) -> Result<Vec<(String, ObservationSummary)>>;

    async fn put_hypothesis(&self, hypothesis: &Hypothesis) -> Result<()>;
    /// Deletes a hypothesis and the links to it.
    async fn delete_hypothesis(&self, id: &str) -> Result<()>;

    async fn put_link(&self, link: &Link) -> Result<()>;

    /// Inserts or replaces insights by (source, external id), in one
    /// transaction.
    async fn record_insights(&self, insights: &[Insight], now: Time) -> Result<()>;
    /// The stored insights of these keys (those that exist).
    async fn get_insights(&self, keys: &[(String, String)]) -> Result<Vec<Insight>>;
    /// Every insight (start-up: the engine keeps what demand needs).
    async fn list_all_insights(&self) -> Result<Vec<Insight>>;
    /// Deletes every insight of a customer; answers how many.
    async fn forget_customer(&self, customer: &str) -> Result<u64>;
    async fn put_release(&self, release: &Release) -> Result<()>;
    /// Releases named through the API, by time.
    async fn list_releases(&self) -> Result<Vec<Release>>;
    /// Closed items with a close time, as (key, close time), by key.
    async fn closed_items(&self) -> Result<Vec<(String, Time)>>;
    async fn put_experiment(&self, experiment: &Experiment) -> Result<()>;
    /// Every experiment result, by time.
    async fn list_experiments(&self) -> Result<Vec<Experiment>>;
    /// A metric's observations, oldest first.
    async fn list_observations(&self, metric_id: &str) -> Result<Vec<(Time, f64)>>;
    /// Stores evidence (replacing the same hypothesis and subject) and the
    /// hypotheses it updated, in one transaction.
    async fn record_evidence(&self, evidence: &[Evidence], hypotheses: &[Hypothesis])
    -> Result<()>;
    /// Evidence, of one hypothesis or all, newest first.
    async fn list_evidence(&self, hypothesis_id: Option<&str>) -> Result<Vec<Evidence>>;

    /// The sync state of a source, if it was ever saved.
    async fn get_sync_state(&self, source_id: &str) -> Result<Option<SyncState>>;
    async fn put_sync_state(&self, state: &SyncState) -> Result<()>;
    async fn delete_link(&self, item_key: &str, hypothesis_id: &str) -> Result<()>;

    /// Adds a ranking snapshot and prunes older ones by `keep`, in one
    /// transaction; answers it with its id.
    async fn put_ranking_snapshot(
        &self,
        snapshot: &RankingSnapshot,
        keep: &SnapshotRetention,
    ) -> Result<SnapshotSummary>;
    /// Applies `keep` without adding a snapshot (time moves old ones past
    /// the daily bound); answers how many were deleted.
    async fn prune_ranking_snapshots(&self, keep: &SnapshotRetention) -> Result<usize>;
    /// Snapshots newest first, older than `before_id` when given.
    async fn list_ranking_snapshots(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotSummary>>;
    /// The last snapshot taken at or before `at` (the newest when `None`).
    async fn ranking_snapshot_at(&self, at: Option<Time>) -> Result<Option<RankingSnapshot>>;
    /// The oldest snapshot kept.
    async fn earliest_ranking_snapshot(&self) -> Result<Option<SnapshotSummary>>;

    // ----- many sidecars on one database -----

    /// Whether other sidecars may write the same database (PostgreSQL):
    /// then the engine follows the change log, takes a write turn before
    /// each write and runs background work under leases.
    fn is_shared(&self) -> bool {
        false
    }

    /// This sidecar's id in the change log and on leases.
    fn replica_id(&self) -> &str {
        "local"
    }

    /// The change log after `seq`, in commit order, at most `limit`.
    async fn changes_after(&self, seq: i64, limit: usize) -> Result<Vec<ChangeRecord>> {
        let _ = (seq, limit);
        Ok(Vec::new())
    }

    /// The last position of the change log (0 when empty).
    async fn last_change(&self) -> Result<i64> {
        Ok(0)
    }

    /// Deletes change log entries older than `keep_for`, keeping at least
    /// the last `keep_last`; answers how many went. A sidecar further
    /// behind than what is kept reads everything back.
    async fn prune_changes(&self, keep_for: std::time::Duration, keep_last: i64) -> Result<u64> {
        let _ = (keep_for, keep_last);
        Ok(0)
    }

    /// A receiver that wakes when another sidecar commits a change
    /// (LISTEN/NOTIFY), where the database can say so; followers poll too.
    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// The removal records of the items of `keys` that are removed.
    async fn item_removals(&self, keys: &[String]) -> Result<Vec<(String, Removal)>>;

    /// Waits for this sidecar's turn to write (see [`WriteTurn`]).
    async fn write_turn(&self) -> Result<WriteTurn> {
        Ok(WriteTurn::none())
    }

    /// Takes or renews the lease `name` for `ttl` when it is free, expired
    /// or already this sidecar's; answers whether this sidecar holds it.
    async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool> {
        let _ = (name, ttl);
        Ok(true)
    }

    /// Gives up the lease `name` if this sidecar holds it.
    async fn release_lease(&self, name: &str) -> Result<()> {
        let _ = name;
        Ok(())
    }
}

/// What one committed write changed, as the change log tells the other
/// sidecars on a shared database (see [`Store::changes_after`]): the items
/// whose rows, links or removal changed (each re-read by key), and whether
/// anything else the index holds changed (the model: sources, goals,
/// metrics and their observations, hypotheses, splits, pulls, customers,
/// insights), which the follower reads back whole.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Changed {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model: bool,
}

impl Changed {
    /// A change of the model (read back whole by followers).
    pub fn model() -> Changed {
        Changed {
            items: Vec::new(),
            model: true,
        }
    }

    /// A change of these items only.
    pub fn items<'a>(keys: impl IntoIterator<Item = &'a String>) -> Changed {
        let mut items: Vec<String> = keys.into_iter().cloned().collect();
        items.sort();
        items.dedup();
        Changed {
            items,
            model: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.model
    }
}

/// One entry of the change log: a committed write, in commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecord {
    /// Position in commit order: 1, 2, 3... without gaps.
    pub seq: i64,
    /// The sidecar that wrote it ([`Store::replica_id`]).
    pub replica: String,
    pub changed: Changed,
}

/// Held while this sidecar writes, so that the sidecars of one database
/// write one at a time (as SQLite's one writer does): each write is
/// decided on an index that has caught up with every other's. Released
/// when dropped.
pub struct WriteTurn(Option<Box<dyn std::any::Any + Send + Sync>>);

impl WriteTurn {
    /// No lock to hold: the only writer (SQLite).
    pub fn none() -> WriteTurn {
        WriteTurn(None)
    }

    /// A turn held by `guard` until it is dropped.
    pub fn held(guard: Box<dyn std::any::Any + Send + Sync>) -> WriteTurn {
        WriteTurn(Some(guard))
    }
}

impl std::fmt::Debug for WriteTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "WriteTurn(held)"
        } else {
            "WriteTurn(none)"
        })
    }
}

/// Which ranking snapshots are kept when one is added.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRetention {
    /// At most this many (the newest).
    pub max_snapshots: usize,
    /// Before this time, at most one a UTC day (its last).
    pub daily_before: Time,
}
