//! Durable storage behind one trait, so that a PostgreSQL backend can be added
//! beside the embedded SQLite one without touching the API or the score.
//!
//! Each method is one transaction: an RPC's writes land together or not at
//! all. Referential checks that need the model (does the parent goal exist?)
//! are made by the caller against the index before writing; the schema's
//! constraints are the last line of defence.

mod sqlite;

use async_trait::async_trait;

pub use sqlite::SqliteStore;

use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Item, ItemState, Link, Metric, Observation,
    ObservationSummary, Release, Source, SyncState, Time,
};
use crate::index::{IndexBuilder, Snapshot};

/// A storage failure. The message is for operators; it never holds secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A failure on the bulk write connection (see `SqliteStore`).
    #[error("database write failed: {0}")]
    Write(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Filters of `list_items`.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    pub source_id: Option<String>,
    pub state: Option<ItemState>,
    pub label: Option<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Everything the in-memory index needs, to rebuild it at start-up.
    async fn load(&self) -> Result<Snapshot>;

    /// The same as [`load`](Self::load), handed to `index` as it is read so
    /// that reading and indexing can overlap. By default, read then hand.
    async fn load_into(&self, index: &mut IndexBuilder) -> Result<()> {
        let snap = self.load().await?;
        index.model(snap.sources, snap.goals, snap.metrics, snap.hypotheses);
        index.items(snap.items);
        index.links(snap.links);
        Ok(())
    }

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
    ) -> Result<()>;
    /// The items of `keys`, in the same order; `None` where a key is unknown.
    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>>;
    /// The items of a source whose body contains `text`, in key order.
    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>>;
    /// Items in key order after `after`, at most `limit`.
    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
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

    async fn put_hypothesis(&self, hypothesis: &Hypothesis) -> Result<()>;
    /// Deletes a hypothesis and the links to it.
    async fn delete_hypothesis(&self, id: &str) -> Result<()>;

    async fn put_link(&self, link: &Link) -> Result<()>;

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
}
