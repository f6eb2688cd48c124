//! The use cases behind the API: check a change against the model, write it
//! through the store in one transaction, then apply it to the in-memory index
//! so the affected scores are fresh before the call returns.
//!
//! Writes are serialized by one async mutex: the model is small, the store is
//! one SQLite file, and a total order of writes keeps the index and the store
//! telling the same story. Reads take the index's read lock and never wait on
//! SQL (except item bodies, which live only in the store).
//!
//! Item upserts (a sync page, `UpsertItems`) leave their rescoring to the
//! next read, which does it first: a sync of many pages linking to the same
//! over-subscribed hypotheses then rescores each reached item once, not
//! once per page, and no read ever sees a stale score.

mod apply;
mod customer;
mod follow;
mod history;
mod insight;
mod listing;
mod query;
mod rollup;
mod split;
mod validation;

pub use apply::{
    Action, ApplyOptions, Desired, DesiredHypothesis, DesiredItem, DesiredLink, DesiredMetric,
    FieldChange, ModelExport, Plan, PlannedChange,
};
pub use customer::{
    CustomerExport, Customers, DesiredCustomerOutcome, OutcomeView, SegmentRollupView,
    SegmentTreeView,
};
pub use follow::FollowHealth;
pub use history::{MAX_TOP_N, SinceView};
pub use insight::{InsightFilter, RecordCounts, insight_key};
pub use listing::{GoalView, HypothesisView, LinkFilter, link_order_key};
pub use query::{
    Narrow, RankCursor, RankOrder, RankPage, RankRequest, RankedView, ScoreView, TermView,
};
pub use rollup::{GoalRollupView, GoalTreeView};

/// What the engine answers about a metric: its definition, observation
/// summary and current gap.
pub use crate::index::MetricEntry as MetricView;
/// Filters of an item listing.
pub use crate::store::ItemFilter;
/// A storage failure, by meaning (see [`Error::Store`]).
pub use crate::store::StoreError;
pub use validation::TouchedRelease;

pub use split::{AppliedSplit, DraftSlice, SplitDraft, SplitStart};

use std::collections::{BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use chrono::Utc;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::domain::{
    Goal, Hypothesis, Item, ItemSplit, Link, LinkOrigin, Metric, Observation, PullStatus, Removal,
    RemovalReason, Source, SyncState, Time,
};
use crate::index::{IndexBuilder, ItemFacts, MetricEntry, ScoreIndex};
use crate::outbound::OutboundPolicy;
use crate::store::{Batch, ItemRow, Store};

/// One invalid field of a request, named by its path (`goal.weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Why a use case refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.description)).collect::<Vec<_>>().join("; "))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Most characters of caller input an error message quotes.
pub const QUOTE_LIMIT: usize = 64;

/// Caller input as a message quotes it: escaped, in quotes, and cut after
/// [`QUOTE_LIMIT`] characters with "…". Every message that echoes input
/// goes through here, so that no input can make an error (a gRPC header)
/// larger than clients accept.
pub fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LIMIT) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Counts of an item upsert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
}

/// Distinct customers from which an item linked to no hypothesis is
/// flagged "asked for, not aligned", unless `[insights]` says otherwise.
pub const DEFAULT_ASKED_FOR_CUSTOMERS: u32 = 3;

/// The store and the index, kept in step.
pub struct Engine {
    store: Arc<dyn Store>,
    index: RwLock<ScoreIndex>,
    writes: tokio::sync::Mutex<()>,
    /// The last change log position the index reflects (shared stores).
    applied: std::sync::atomic::AtomicI64,
    /// Size of items without an estimate; kept to rebuild the index.
    default_size: f64,
    /// Bumped on every change to the index, so watchers can re-rank.
    changes: tokio::sync::watch::Sender<u64>,
    /// What a source may name and reach; checked on every source written.
    outbound: Arc<OutboundPolicy>,
    /// The splits applied, by item key, as the store remembers them: read
    /// at start, written after the store under the writes lock, and read by
    /// the link rules ([`Engine::rule_link_changes`]), which never link a
    /// split item again to a hypothesis its slices carry.
    splits: RwLock<HashMap<String, ItemSplit>>,
    /// Each metric's last pull status, as the store keeps it: read at
    /// start, written after the store under the writes lock.
    pulls: RwLock<HashMap<String, PullStatus>>,
    /// What demand needs of every insight (texts stay in the store): read
    /// at start, written after the store under the writes lock.
    insights: RwLock<insight::InsightBook>,
    /// Distinct customers from which an item linked to no hypothesis is
    /// flagged "asked for, not aligned" (`[insights] asked_for_customers`).
    asked_for_customers: u32,
    /// Segments, desired outcomes and survey waves, as the store keeps
    /// them: read at start, written after the store under the writes lock.
    customers: RwLock<Customers>,
}

/// The index's write guard, which aborts the process if a panic unwinds
/// through it. A panic in the middle of an index write can leave the index
/// half-updated (some reached items rescored and others not, a link in its
/// item's entry but not in its hypothesis' contribution map), and no lock
/// keeps later calls from reading that: a poisoned std lock only tells
/// them, and parking_lot's lock does not poison. The store is written
/// before the index and holds every change, so the honest way back is a
/// restart, which rebuilds the index from it; aborting gets there without
/// a time in which calls read a wrong index or are refused while it waits
/// for one.
struct IndexWrite<'a>(RwLockWriteGuard<'a, ScoreIndex>);

impl Deref for IndexWrite<'_> {
    type Target = ScoreIndex;

    fn deref(&self) -> &ScoreIndex {
        &self.0
    }
}

impl DerefMut for IndexWrite<'_> {
    fn deref_mut(&mut self) -> &mut ScoreIndex {
        &mut self.0
    }
}

impl Drop for IndexWrite<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                "a panic while writing the in-memory index may have left it half-updated; \
                 aborting, so that a restart rebuilds the index from the store"
            );
            std::process::abort();
        }
    }
}

/// Replaces each NUL of the item's texts with U+FFFD.
fn without_nul(it: &mut Item) {
    fn clean(s: &mut String) {
        if s.contains('\0') {
            *s = s.replace('\0', "\u{FFFD}");
        }
    }
    clean(&mut it.title);
    clean(&mut it.body);
    clean(&mut it.url);
    it.labels.iter_mut().for_each(clean);
}

fn facts_of(item: &Item) -> ItemFacts {
    ItemFacts {
        source_id: item.source_id.clone(),
        title: item.title.clone(),
        state: item.state,
        labels: item.labels.clone(),
        estimate: item.estimate,
        parent_key: item.parent_key.clone(),
        votes: item.votes,
    }
}

fn facts_of_row(row: ItemRow) -> (String, ItemFacts) {
    (
        row.key,
        ItemFacts {
            source_id: row.source_id,
            title: row.title,
            state: row.state,
            labels: row.labels,
            estimate: row.estimate,
            parent_key: row.parent_key,
            votes: row.votes,
        },
    )
}

/// Builds the index from what the store loads, indexing each batch while
/// the store reads the next ones.
pub async fn build_index(
    store: &dyn Store,
    default_size: f64,
) -> std::result::Result<ScoreIndex, StoreError> {
    let mut load = store.load().await?;
    let mut builder = IndexBuilder::new(default_size);
    let model = std::mem::take(&mut load.model);
    builder.model(model.sources, model.goals, model.metrics, model.hypotheses);
    builder.removed(model.removed);
    builder.reserve(load.item_count_hint);
    while let Some(batch) = load.next_batch().await {
        match batch? {
            Batch::Items(rows) => builder.items(rows.into_iter().map(facts_of_row)),
            Batch::Links(links) => builder.links(links),
        }
    }
    Ok(builder.finish())
}

/// Refuses a source the outbound policy does not allow: a token variable
/// outside it, a user or password in `base_url`, an address host it
/// refuses. (A host name is checked on the addresses it resolves to, at
/// each connection: see [`crate::outbound`].)
fn check_outbound(policy: &OutboundPolicy, s: &Source) -> Result<()> {
    let mut violations = Vec::new();
    if !s.kind.is_tracker() {
        // A push source reaches nothing and names no secret.
        for (field, value) in [
            ("source.base_url", &s.base_url),
            ("source.token_env", &s.token_env),
        ] {
            if !value.is_empty() {
                violations.push(FieldViolation::new(
                    field,
                    "must be empty for a PUSH source",
                ));
            }
        }
        return if violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(violations))
        };
    }
    if let Err(e) = policy.check_token_env(&s.token_env) {
        violations.push(FieldViolation::new("source.token_env", e.to_string()));
    }
    let url_problem = match reqwest::Url::parse(&s.base_url) {
        Ok(url) => policy.check_url(&url).err().map(|e| e.to_string()),
        Err(e) => Some(format!("is not a valid URL: {e}")),
    };
    if let Some(p) = url_problem {
        violations.push(FieldViolation::new("source.base_url", p));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(violations))
    }
}

/// Everything the engine keeps in memory, as read from the store.
struct State {
    index: ScoreIndex,
    splits: HashMap<String, ItemSplit>,
    pulls: HashMap<String, PullStatus>,
    insights: insight::InsightBook,
    customers: Customers,
}

impl State {
    async fn load(store: &dyn Store, default_size: f64) -> Result<State> {
        let index = build_index(store, default_size).await?;
        let splits = store
            .list_item_splits()
            .await?
            .into_iter()
            .map(|s| (s.item_key.clone(), s))
            .collect();
        let pulls = store
            .list_metric_pulls()
            .await?
            .into_iter()
            .map(|p| (p.metric_id.clone(), p))
            .collect();
        let insights = insight::InsightBook::new(&store.list_all_insights().await?);
        let customers = Customers::from_load(store.load_customers().await?);
        Ok(State {
            index,
            splits,
            pulls,
            insights,
            customers,
        })
    }
}

impl Engine {
    /// Loads the model from the store and builds the index.
    pub async fn open(store: Arc<dyn Store>, default_size: f64) -> Result<Self> {
        // Read before the state, so that whatever commits while it is read
        // is applied again by the follower (applying is idempotent).
        let applied = if store.is_shared() {
            store.last_change().await?
        } else {
            0
        };
        let state = State::load(store.as_ref(), default_size).await?;
        Ok(Engine {
            store,
            index: RwLock::new(state.index),
            writes: tokio::sync::Mutex::new(()),
            applied: std::sync::atomic::AtomicI64::new(applied),
            default_size,
            changes: tokio::sync::watch::Sender::new(0),
            outbound: Arc::new(OutboundPolicy::default()),
            splits: RwLock::new(state.splits),
            pulls: RwLock::new(state.pulls),
            insights: RwLock::new(state.insights),
            asked_for_customers: DEFAULT_ASKED_FOR_CUSTOMERS,
            customers: RwLock::new(state.customers),
        })
    }

    /// The same engine flagging items asked for by at least `n` distinct
    /// customers but linked to no hypothesis (at least 1).
    pub fn with_asked_for_customers(mut self, n: u32) -> Self {
        self.asked_for_customers = n.max(1);
        self
    }

    /// The same engine with the server's outbound policy (the default
    /// policy otherwise: public hosts, `PLUMBLINE_SECRET_*` tokens).
    pub fn with_outbound(mut self, policy: Arc<OutboundPolicy>) -> Self {
        self.outbound = policy;
        self
    }

    /// The store the engine writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The outbound policy sources are checked against.
    pub fn outbound(&self) -> &Arc<OutboundPolicy> {
        &self.outbound
    }

    /// A read view of the model and scores, with any rescoring that item
    /// upserts deferred done first.
    pub fn read(&self) -> RwLockReadGuard<'_, ScoreIndex> {
        loop {
            let guard = self.read_unflushed();
            if !guard.has_deferred() {
                return guard;
            }
            drop(guard);
            IndexWrite(self.index.write()).flush();
        }
    }

    /// A read view whose scores may lag behind deferred upserts (facts,
    /// links and the model do not): for checks made while writing.
    fn read_unflushed(&self) -> RwLockReadGuard<'_, ScoreIndex> {
        self.index.read()
    }

    /// The index for writing, with deferred rescoring done. Watchers are
    /// told once the lock is held, so the read they make on waking waits
    /// for this change to finish.
    fn write_index(&self) -> IndexWrite<'_> {
        let mut guard = self.write_index_unflushed();
        guard.flush();
        guard
    }

    /// The index for writing, deferred rescoring left pending.
    fn write_index_unflushed(&self) -> IndexWrite<'_> {
        let guard = IndexWrite(self.index.write());
        self.changes.send_modify(|v| *v += 1);
        guard
    }

    /// A receiver that wakes after each change to the model or the scores.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    // ----- sources -----

    pub async fn create_source(&self, mut s: Source) -> Result<Source> {
        check_outbound(&self.outbound, &s)?;
        let _w = self.write_lock().await?;
        if self.read().source(&s.id).is_some() {
            return Err(Error::AlreadyExists(format!(
                "source {} already exists",
                quote(&s.id)
            )));
        }
        let now = Utc::now();
        s.create_time = now;
        s.update_time = now;
        self.store.put_source(&s).await?;
        self.write_index().put_source(s.clone());
        Ok(s)
    }

    pub fn get_source(&self, id: &str) -> Result<Source> {
        self.read()
            .source(id)
            .cloned()
            .ok_or_else(|| not_found("source", id))
    }

    /// Applies `change` to the stored source and saves it.
    pub async fn update_source(
        &self,
        id: &str,
        change: impl FnOnce(&mut Source) -> Result<()>,
    ) -> Result<Source> {
        let _w = self.write_lock().await?;
        let mut s = self.get_source(id)?;
        change(&mut s)?;
        check_outbound(&self.outbound, &s)?;
        s.update_time = Utc::now();
        self.store.put_source(&s).await?;
        self.write_index().put_source(s.clone());
        Ok(s)
    }

    pub async fn delete_source(&self, id: &str, force: bool) -> Result<u64> {
        let _w = self.write_lock().await?;
        let keys: Vec<String> = {
            let ix = self.read();
            ix.source(id).ok_or_else(|| not_found("source", id))?;
            let keys = ix.item_keys_of_source(id);
            // Removed items count too: their rows keep the history of
            // releases and evidence, and deleting the source deletes them.
            let (n, removed) = (keys.len(), ix.removed_count_of_source(id));
            if n + removed > 0 && !force {
                let also = if removed > 0 {
                    format!(" (and {removed} removed ones kept for their history)")
                } else {
                    String::new()
                };
                return Err(Error::FailedPrecondition(format!(
                    "source {} still has {n} items{also}; delete with force to remove them too",
                    quote(id)
                )));
            }
            keys
        };
        let deleted = self.store.delete_source(id).await?;
        {
            // The store's rows went with the items, removed ones included.
            let prefix = crate::domain::item_key(id, "");
            self.splits.write().retain(|k, _| !k.starts_with(&prefix));
        }
        let mut ix = self.write_index();
        for k in &keys {
            ix.remove_item(k);
        }
        ix.remove_source(id);
        ix.forget_removed_of_source(id);
        Ok(deleted)
    }

    // ----- items -----

    /// Inserts or updates items by key, all in one transaction. An item
    /// given twice is counted as written in order; the last one is kept.
    pub async fn upsert_items(&self, items: Vec<Item>) -> Result<(Vec<Item>, UpsertCounts)> {
        let _w = self.write_lock().await?;
        let (counts, _) = self
            .upsert_pages_locked(vec![items.clone()], None, true, Vec::new())
            .await?;
        Ok((items, counts[0]))
    }

    /// Upserts the items `merge` makes of the stored versions of `keys`
    /// (`None` for a key not stored), as [`upsert_items`](Self::upsert_items)
    /// does: for an update that names only some fields (`UpsertItems` with
    /// a mask). `merge` runs under the write lock, so two partial updates
    /// of one item cannot lose each other's change; it answers the items
    /// to write, or why not. A removed item's stored version counts, and
    /// writing it makes it active again.
    pub async fn upsert_items_merged(
        &self,
        keys: &[String],
        merge: impl FnOnce(Vec<Option<Item>>) -> Result<Vec<Item>>,
    ) -> Result<(Vec<Item>, UpsertCounts)> {
        let _w = self.write_lock().await?;
        let stored = self.stored_items(keys).await?;
        let items = merge(stored)?;
        let (counts, _) = self
            .upsert_pages_locked(vec![items.clone()], None, true, Vec::new())
            .await?;
        Ok((items, counts[0]))
    }

    /// Stores consecutive pages of a sync with the source's sync state (the
    /// cursor after the last page), all in one transaction, and counts each
    /// page as if the pages had been stored one by one.
    pub async fn apply_sync_pages(
        &self,
        pages: Vec<Vec<Item>>,
        state: &SyncState,
    ) -> Result<Vec<UpsertCounts>> {
        Ok(self
            .apply_sync_pages_removing(pages, Vec::new(), state)
            .await?
            .0)
    }

    /// [`apply_sync_pages`](Self::apply_sync_pages), and marks `removed`
    /// removed in the same transaction: items of the pages' source that the
    /// tracker said are gone (GitLab's moved issues). The count of those
    /// that were active comes second.
    pub async fn apply_sync_pages_removing(
        &self,
        pages: Vec<Vec<Item>>,
        removed: Vec<(String, Removal)>,
        state: &SyncState,
    ) -> Result<(Vec<UpsertCounts>, usize)> {
        let _w = self.write_lock().await?;
        self.upsert_pages_locked(pages, Some(state), false, removed)
            .await
    }

    /// The active items of `source_id` that are not in `returned` (keys),
    /// sorted: what a completed full sync no longer found. Local slices of
    /// a split (`{parent}-s{n}`, which no tracker holds) are left out.
    pub fn unreturned(
        &self,
        source_id: &str,
        returned: &std::collections::HashSet<String>,
    ) -> Vec<String> {
        let ix = self.read_unflushed();
        ix.item_keys_of_source(source_id)
            .into_iter()
            .filter(|k| !returned.contains(k))
            .filter(|k| !ix.item(k).is_some_and(|f| is_local_slice(k, &f.parent_key)))
            .collect()
    }

    /// Marks items removed, in one transaction: out of the index, kept in
    /// the store with when and why. Items that are not active (unknown, or
    /// removed already) are skipped; returns how many were marked.
    pub async fn mark_removed(&self, removals: Vec<(String, Removal)>) -> Result<usize> {
        if removals.is_empty() {
            return Ok(0);
        }
        let _w = self.write_lock().await?;
        let (_, n) = self
            .upsert_pages_locked(Vec::new(), None, false, removals)
            .await?;
        Ok(n)
    }

    /// Why and when an item left its tracker, if it did.
    pub fn removal(&self, key: &str) -> Option<Removal> {
        self.read_unflushed().removal(key).cloned()
    }

    /// The sync state of a source (never synced if none is stored).
    pub async fn sync_state(&self, source_id: &str) -> Result<SyncState> {
        Ok(self
            .store
            .get_sync_state(source_id)
            .await?
            .unwrap_or_else(|| SyncState::never(source_id)))
    }

    /// Saves a source's sync state on its own (start and end of a sync).
    pub async fn save_sync_state(&self, state: &SyncState) -> Result<()> {
        let _w = self.write_lock().await?;
        if self.read().source(&state.source_id).is_none() {
            return Err(not_found("source", &state.source_id));
        }
        Ok(self.store.put_sync_state(state).await?)
    }

    /// Writes the items of `pages` (and `sync_state`) in one transaction;
    /// returns the counts of each page. Each item is compared with the
    /// version before it: an earlier one in `pages`, else the stored one.
    /// Only the last version of each key is written, and only if it differs
    /// from the stored one, so that its rule links follow from it alone.
    ///
    /// With `check_parents` (items from the API), an item whose parent
    /// chain would come back to it is refused. A sync takes parents as the
    /// tracker has them: trackers keep their hierarchies acyclic, and a
    /// cycle seen between pages of a sync (an item moved while it ran) must
    /// not stop the sync; nothing walks parent chains, so it harms nothing.
    ///
    /// An item that was removed (see [`Removal`]) comes back: it is always
    /// written, its removal forgotten, and its stored links return to the
    /// index. `removed` marks active items removed (others are skipped);
    /// their count comes second. The caller holds the write lock.
    async fn upsert_pages_locked(
        &self,
        mut pages: Vec<Vec<Item>>,
        sync_state: Option<&SyncState>,
        check_parents: bool,
        removed: Vec<(String, Removal)>,
    ) -> Result<(Vec<UpsertCounts>, usize)> {
        // A NUL (which a tracker's JSON can carry) is kept as U+FFFD on
        // every backend: PostgreSQL's text cannot hold it, and the item
        // compared, indexed and stored must be the same.
        for it in pages.iter_mut().flatten() {
            without_nul(it);
        }
        {
            let ix = self.read_unflushed();
            let mut violations = Vec::new();
            for (i, it) in pages.iter().flatten().enumerate() {
                if ix.source(&it.source_id).is_none() {
                    violations.push(FieldViolation::new(
                        format!("items[{i}].source_id"),
                        format!("no source with id {}", quote(&it.source_id)),
                    ));
                }
            }
            if check_parents {
                let items: Vec<&Item> = pages.iter().flatten().collect();
                violations.extend(parent_cycles(&ix, &items));
            }
            if !violations.is_empty() {
                return Err(Error::InvalidArgument(violations));
            }
        }
        let all: Vec<&Item> = pages.iter().flatten().collect();
        let keys: Vec<String> = all.iter().map(|it| it.key()).collect();
        let (restored, removed): (Vec<String>, Vec<(String, Removal)>) = {
            let ix = self.read_unflushed();
            let restored: BTreeSet<&String> =
                keys.iter().filter(|k| ix.removal(k).is_some()).collect();
            let removed = removed
                .into_iter()
                .filter(|(k, _)| ix.item(k).is_some() && !keys.contains(k))
                .collect();
            (restored.into_iter().cloned().collect(), removed)
        };
        let is_restored: std::collections::HashSet<&str> =
            restored.iter().map(String::as_str).collect();
        let restored_links = if restored.is_empty() {
            Vec::new()
        } else {
            self.store.links_of_items(&restored).await?
        };
        let stored = self.stored_items(&keys).await?;
        // The last position of each key so far.
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
        let mut counts = vec![UpsertCounts::default(); pages.len()];
        let page_of = pages
            .iter()
            .enumerate()
            .flat_map(|(p, page)| std::iter::repeat_n(p, page.len()));
        for (i, p) in page_of.enumerate() {
            let before = match last.insert(&keys[i], i) {
                Some(j) => Some(all[j]),
                None => stored[i].as_ref(),
            };
            match before {
                None => counts[p].created += 1,
                Some(b) if b == all[i] && !is_restored.contains(keys[i].as_str()) => {
                    counts[p].unchanged += 1
                }
                Some(_) => counts[p].updated += 1,
            }
        }
        let write: Vec<bool> = (0..all.len())
            .map(|i| {
                last[keys[i].as_str()] == i
                    && (stored[i].as_ref() != Some(all[i])
                        || is_restored.contains(keys[i].as_str()))
            })
            .collect();
        drop((all, last, stored));
        let (changed, facts): (Vec<Item>, Vec<(String, ItemFacts)>) = pages
            .into_iter()
            .flatten()
            .zip(keys)
            .zip(write)
            .filter_map(|((it, key), w)| w.then_some((key, it)))
            .map(|(key, it)| {
                let facts = facts_of(&it);
                (it, (key, facts))
            })
            .unzip();
        let removed_count = removed.len();
        if !changed.is_empty() || sync_state.is_some() || !removed.is_empty() {
            let (remove_links, put_links) = self.rule_link_changes(&changed, &restored_links);
            self.store
                .upsert_and_remove_items(
                    changed,
                    &remove_links,
                    &put_links,
                    sync_state,
                    &restored,
                    &removed,
                )
                .await?;
            // A restored item's stored links return to the index, less
            // those its rules dropped; the rule links put win.
            let mut index_links: Vec<Link> = restored_links
                .into_iter()
                .filter(|l| {
                    !remove_links
                        .iter()
                        .any(|(k, h)| *k == l.item_key && *h == l.hypothesis_id)
                })
                .collect();
            index_links.extend(put_links);
            // The rescoring waits for the next read: a sync's pages, each
            // linking to hypotheses whose many items all need rescoring,
            // then cost one rescore per reached item, not one per page.
            let mut ix = self.write_index_unflushed();
            for k in &restored {
                ix.restore(k);
            }
            ix.defer_upsert(facts, &remove_links, index_links);
            for (k, r) in removed {
                ix.mark_removed(&k, r);
            }
        }
        Ok((counts, removed_count))
    }

    /// The stored version of each item, `None` for new ones. Only keys the
    /// index knows are read from the store: the index holds exactly the
    /// stored items (writes are serialized and go to both), so a first sync
    /// of a project reads nothing back.
    async fn stored_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>> {
        let known: Vec<String> = {
            let ix = self.read_unflushed();
            keys.iter()
                .filter(|k| ix.item(k).is_some() || ix.removal(k).is_some())
                .cloned()
                .collect()
        };
        if known.is_empty() {
            return Ok(vec![None; keys.len()]);
        }
        let found: HashMap<String, Item> = self
            .store
            .get_items(&known)
            .await?
            .into_iter()
            .flatten()
            .map(|it| (it.key(), it))
            .collect();
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    /// The link changes the sources' link rules ask for on changed items:
    /// rule links to add or update, and rule links whose label or body line
    /// is gone. Links made through the API are never touched, rules that
    /// name an unknown hypothesis are skipped, and so are rules that would
    /// link a split item to a hypothesis its split moved to its slices (its
    /// body still names it, and the tracker may bump it at any time).
    ///
    /// A restored item's links are not in the index; `restored_links` holds
    /// the stored ones, which stand in for them.
    fn rule_link_changes(
        &self,
        changed: &[Item],
        restored_links: &[Link],
    ) -> (Vec<(String, String)>, Vec<Link>) {
        let ix = self.read_unflushed();
        self.rule_link_changes_in(&ix, changed, restored_links, &|h| {
            ix.hypothesis(h).is_some()
        })
    }

    /// [`rule_link_changes`](Self::rule_link_changes) against `ix`, with
    /// `known` saying which hypotheses exist (`ApplyValueModel` links to
    /// hypotheses it creates in the same transaction).
    fn rule_link_changes_in(
        &self,
        ix: &ScoreIndex,
        changed: &[Item],
        restored_links: &[Link],
        known: &dyn Fn(&str) -> bool,
    ) -> (Vec<(String, String)>, Vec<Link>) {
        let splits = self.splits.read();
        let now = Utc::now();
        let (mut remove, mut put) = (Vec::new(), Vec::new());
        for it in changed {
            let Some(source) = ix.source(&it.source_id) else {
                continue;
            };
            let key = it.key();
            let mut wanted = crate::domain::rule_links(&source.link_rules, &it.labels, &it.body);
            if let Some(split) = splits.get(&key) {
                wanted.retain(|h, _| !split.moved(h));
            }
            // (hypothesis, origin, contribution, create time) of each link.
            let existing_links: Vec<(String, LinkOrigin, f64, Time)> = if ix.removal(&key).is_some()
            {
                restored_links
                    .iter()
                    .filter(|l| l.item_key == key)
                    .map(|l| {
                        let h = l.hypothesis_id.clone();
                        (h, l.origin, l.contribution, l.create_time)
                    })
                    .collect()
            } else {
                ix.links_of_item(&key)
                    .map(|l| {
                        let h = l.hypothesis_id.to_string();
                        (h, l.origin, l.contribution, l.create_time)
                    })
                    .collect()
            };
            for (h, origin, _, _) in &existing_links {
                if *origin == LinkOrigin::Rule && !wanted.contains_key(h.as_str()) {
                    remove.push((key.clone(), h.clone()));
                }
            }
            for (hyp, contribution) in wanted {
                if !known(&hyp) {
                    continue;
                }
                let existing = existing_links.iter().find(|(h, ..)| *h == hyp);
                match existing {
                    Some((_, LinkOrigin::Api, _, _)) => continue,
                    Some((_, _, c, _)) if *c == contribution => continue,
                    _ => {}
                }
                put.push(Link {
                    item_key: key.clone(),
                    hypothesis_id: hyp,
                    contribution,
                    origin: LinkOrigin::Rule,
                    rationale: "from the item's labels or body, by the source's link rules".into(),
                    create_time: existing.map_or(now, |(.., t)| *t),
                    update_time: now,
                });
            }
        }
        (remove, put)
    }

    /// Items by key, in order; NOT_FOUND names the first missing key.
    pub async fn get_items(&self, keys: &[String]) -> Result<Vec<Item>> {
        let found = self.store.get_items(keys).await?;
        keys.iter()
            .zip(found)
            .map(|(k, it)| it.ok_or_else(|| not_found("item", k)))
            .collect()
    }

    /// Items in key order after `after`: at most `limit`, and no more once
    /// their text adds up to `max_bytes` (see `Store::list_items`).
    pub async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>> {
        Ok(self
            .store
            .list_items(filter, after, limit, max_bytes)
            .await?)
    }

    // ----- goals -----

    fn check_goal_parent(ix: &ScoreIndex, g: &Goal) -> Result<()> {
        match g.level.parent_level() {
            None if g.parent_id.is_empty() => Ok(()),
            None => Err(Error::invalid(
                "goal.parent_id",
                "a strategic goal has no parent",
            )),
            Some(_) if g.parent_id.is_empty() => Err(Error::invalid(
                "goal.parent_id",
                "intermediate and tactical goals need a parent goal",
            )),
            Some(want) => match ix.goal(&g.parent_id) {
                None => Err(Error::invalid(
                    "goal.parent_id",
                    format!("no goal with id {}", quote(&g.parent_id)),
                )),
                Some(p) if p.level != want => Err(Error::invalid(
                    "goal.parent_id",
                    format!(
                        "the parent of a {:?} goal must be {:?}, and {} is {:?}",
                        g.level,
                        want,
                        quote(&p.id),
                        p.level
                    ),
                )),
                Some(_) => Ok(()),
            },
        }
    }

    pub async fn create_goal(&self, mut g: Goal) -> Result<Goal> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            if ix.goal(&g.id).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "goal {} already exists",
                    quote(&g.id)
                )));
            }
            Self::check_goal_parent(&ix, &g)?;
        }
        let now = Utc::now();
        g.create_time = now;
        g.update_time = now;
        self.store.put_goal(&g).await?;
        self.write_index().put_goal(g.clone());
        Ok(g)
    }

    pub fn get_goal(&self, id: &str) -> Result<Goal> {
        self.read()
            .goal(id)
            .cloned()
            .ok_or_else(|| not_found("goal", id))
    }

    pub async fn update_goal(
        &self,
        id: &str,
        change: impl FnOnce(&mut Goal) -> Result<()>,
    ) -> Result<Goal> {
        let _w = self.write_lock().await?;
        let mut g = self.get_goal(id)?;
        let old_level = g.level;
        change(&mut g)?;
        {
            let ix = self.read();
            Self::check_goal_parent(&ix, &g)?;
            if g.level != old_level && ix.goals().any(|c| c.parent_id == g.id) {
                return Err(Error::FailedPrecondition(format!(
                    "goal {} has child goals, so its level cannot change",
                    quote(&g.id)
                )));
            }
        }
        g.update_time = Utc::now();
        self.store.put_goal(&g).await?;
        self.write_index().put_goal(g.clone());
        Ok(g)
    }

    pub async fn delete_goal(&self, id: &str) -> Result<()> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            ix.goal(id).ok_or_else(|| not_found("goal", id))?;
            if let Some(c) = ix.goals().find(|c| c.parent_id == id) {
                return Err(Error::FailedPrecondition(format!(
                    "goal {} still has child goal {}",
                    quote(id),
                    quote(&c.id)
                )));
            }
            if let Some(h) = ix.hypotheses().find(|h| h.goal_id == id) {
                return Err(Error::FailedPrecondition(format!(
                    "hypothesis {} still serves goal {}",
                    quote(&h.id),
                    quote(id)
                )));
            }
        }
        self.store.delete_goal(id).await?;
        self.write_index().remove_goal(id);
        Ok(())
    }

    // ----- metrics -----

    /// A metric source's variables and URL against the outbound policy, as
    /// a tracker source's are when it is written.
    fn check_metric_source(&self, m: &Metric) -> Result<()> {
        let Some(src) = &m.source else {
            return Ok(());
        };
        let field = format!("metric.source.{}", src.kind());
        let mut v = Vec::new();
        for var in src.secret_vars() {
            if let Err(e) = self.outbound.check_token_env(var) {
                v.push(FieldViolation::new(&field, e.to_string()));
            }
        }
        let url = match src {
            crate::domain::MetricSource::HttpJson(s) => Some(s.url.as_str()),
            crate::domain::MetricSource::Csv(s) if s.location.contains("://") => {
                Some(s.location.as_str())
            }
            crate::domain::MetricSource::Posthog(s) => Some(s.base_url.as_str()),
            crate::domain::MetricSource::Prometheus(s) => Some(s.base_url.as_str()),
            _ => None,
        };
        if let Some(u) = url
            && let Ok(url) = reqwest::Url::parse(u.trim())
            && let Err(e) = self.outbound.check_url(&url)
        {
            v.push(FieldViolation::new(&field, e.to_string()));
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(v))
        }
    }

    pub async fn create_metric(&self, mut m: Metric) -> Result<MetricEntry> {
        self.check_metric_source(&m)?;
        let _w = self.write_lock().await?;
        if self.read().metric(&m.id).is_some() {
            return Err(Error::AlreadyExists(format!(
                "metric {} already exists",
                quote(&m.id)
            )));
        }
        let now = Utc::now();
        m.create_time = now;
        m.update_time = now;
        self.store.put_metric(&m).await?;
        let mut ix = self.write_index();
        ix.put_metric(m.clone());
        Ok(ix
            .metric(&m.id)
            .cloned()
            .unwrap_or_else(|| unreachable!("just inserted")))
    }

    pub fn get_metric(&self, id: &str) -> Result<MetricEntry> {
        self.read()
            .metric(id)
            .cloned()
            .ok_or_else(|| not_found("metric", id))
    }

    pub async fn update_metric(
        &self,
        id: &str,
        change: impl FnOnce(&mut Metric) -> Result<()>,
    ) -> Result<MetricEntry> {
        let _w = self.write_lock().await?;
        self.check_not_outcome_metric(id)?;
        let mut m = self.get_metric(id)?.metric;
        change(&mut m)?;
        self.check_metric_source(&m)?;
        m.update_time = Utc::now();
        self.store.put_metric(&m).await?;
        let mut ix = self.write_index();
        ix.put_metric(m);
        Ok(ix
            .metric(id)
            .cloned()
            .unwrap_or_else(|| unreachable!("just updated")))
    }

    pub async fn delete_metric(&self, id: &str) -> Result<()> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            ix.metric(id).ok_or_else(|| not_found("metric", id))?;
            self.check_not_outcome_metric(id)?;
            if let Some(h) = ix.hypotheses().find(|h| h.metric_id == id) {
                return Err(Error::FailedPrecondition(format!(
                    "hypothesis {} still measures metric {}",
                    quote(&h.id),
                    quote(id)
                )));
            }
        }
        self.store.delete_metric(id).await?;
        self.write_index().remove_metric(id);
        self.pulls.write().remove(id);
        Ok(())
    }

    /// The last pull status of a metric, if its source was ever pulled.
    pub fn pull_status(&self, metric_id: &str) -> Option<PullStatus> {
        self.pulls.read().get(metric_id).cloned()
    }

    /// Stores the checked points of a pull of `metric_id` with the pull's
    /// status, in one transaction, and rescores what the new current value
    /// reaches. Returns how many points were new or changed (a point stored
    /// before with the same value is not counted) and the metric after.
    /// `note` says what the pull refused (empty when nothing).
    pub async fn record_pull(
        &self,
        metric_id: &str,
        points: Vec<Observation>,
        refused: u32,
        note: String,
        at: Time,
    ) -> Result<(u32, MetricEntry)> {
        let _w = self.write_lock().await?;
        self.get_metric(metric_id)?;
        let changed: Vec<Observation> = match points.first() {
            None => Vec::new(),
            Some(first) => {
                let from = first.observe_time;
                let stored: HashMap<Time, f64> = self
                    .store
                    .list_observations(metric_id)
                    .await?
                    .into_iter()
                    .filter(|(t, _)| *t >= from)
                    .collect();
                points
                    .into_iter()
                    .filter(|o| stored.get(&o.observe_time) != Some(&o.value))
                    .collect()
            }
        };
        let stored = changed.len().min(u32::MAX as usize) as u32;
        let status = PullStatus {
            metric_id: metric_id.to_string(),
            last_pull_time: Some(at),
            last_success_time: Some(at),
            last_stored: stored,
            last_refused: refused,
            last_error: note,
        };
        let summary = self.store.record_pull(&changed, &status).await?;
        self.pulls.write().insert(metric_id.to_string(), status);
        let mut ix = self.write_index();
        if let Some(s) = summary {
            ix.set_observations(metric_id, s);
        }
        let entry = ix
            .metric(metric_id)
            .cloned()
            .ok_or_else(|| not_found("metric", metric_id))?;
        Ok((stored, entry))
    }

    /// Stores a failed pull's status: the error (already scrubbed of
    /// secrets); the points stored before are untouched.
    pub async fn record_pull_failure(
        &self,
        metric_id: &str,
        error: String,
        at: Time,
    ) -> Result<()> {
        let _w = self.write_lock().await?;
        self.get_metric(metric_id)?;
        let before = self.pull_status(metric_id).unwrap_or_default();
        let status = PullStatus {
            metric_id: metric_id.to_string(),
            last_pull_time: Some(at),
            last_success_time: before.last_success_time,
            last_stored: 0,
            last_refused: 0,
            last_error: error,
        };
        self.store.record_pull(&[], &status).await?;
        self.pulls.write().insert(metric_id.to_string(), status);
        Ok(())
    }

    /// Records observations in one transaction; returns the touched metrics.
    pub async fn record_observations(
        &self,
        observations: Vec<Observation>,
    ) -> Result<Vec<MetricEntry>> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            for (i, o) in observations.iter().enumerate() {
                if ix.metric(&o.metric_id).is_none() {
                    return Err(Error::NotFound(format!(
                        "observations[{i}]: metric {} not found",
                        quote(&o.metric_id)
                    )));
                }
                self.check_not_outcome_metric(&o.metric_id)?;
            }
        }
        let summaries = self.store.record_observations(&observations).await?;
        let mut ix = self.write_index();
        for (id, s) in &summaries {
            ix.set_observations(id, s.clone());
        }
        Ok(summaries
            .iter()
            .filter_map(|(id, _)| ix.metric(id).cloned())
            .collect())
    }

    // ----- hypotheses -----

    fn check_hypothesis_refs(ix: &ScoreIndex, h: &Hypothesis) -> Result<()> {
        let mut v = Vec::new();
        if ix.goal(&h.goal_id).is_none() {
            v.push(FieldViolation::new(
                "hypothesis.goal_id",
                format!("no goal with id {}", quote(&h.goal_id)),
            ));
        }
        if ix.metric(&h.metric_id).is_none() {
            v.push(FieldViolation::new(
                "hypothesis.metric_id",
                format!("no metric with id {}", quote(&h.metric_id)),
            ));
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(v))
        }
    }

    pub async fn create_hypothesis(&self, mut h: Hypothesis) -> Result<Hypothesis> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            if ix.hypothesis(&h.id).is_some() {
                return Err(Error::AlreadyExists(format!(
                    "hypothesis {} already exists",
                    quote(&h.id)
                )));
            }
            Self::check_hypothesis_refs(&ix, &h)?;
        }
        let now = Utc::now();
        h.create_time = now;
        h.update_time = now;
        self.store.put_hypothesis(&h).await?;
        self.write_index().put_hypothesis(h.clone());
        Ok(h)
    }

    pub fn get_hypothesis(&self, id: &str) -> Result<Hypothesis> {
        self.read()
            .hypothesis(id)
            .cloned()
            .ok_or_else(|| not_found("hypothesis", id))
    }

    pub async fn update_hypothesis(
        &self,
        id: &str,
        change: impl FnOnce(&mut Hypothesis) -> Result<()>,
    ) -> Result<Hypothesis> {
        let _w = self.write_lock().await?;
        let mut h = self.get_hypothesis(id)?;
        change(&mut h)?;
        Self::check_hypothesis_refs(&self.read(), &h)?;
        h.update_time = Utc::now();
        self.store.put_hypothesis(&h).await?;
        self.write_index().put_hypothesis(h.clone());
        Ok(h)
    }

    pub async fn delete_hypothesis(&self, id: &str, force: bool) -> Result<()> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            ix.hypothesis(id)
                .ok_or_else(|| not_found("hypothesis", id))?;
            let n = ix.link_count_of_hypothesis(id);
            if n > 0 && !force {
                return Err(Error::FailedPrecondition(format!(
                    "{n} items link to hypothesis {}; delete with force to remove the links too",
                    quote(id)
                )));
            }
        }
        self.store.delete_hypothesis(id).await?;
        self.write_index().remove_hypothesis(id);
        Ok(())
    }

    // ----- links -----

    /// Links an item to a hypothesis through the API, or updates that link.
    pub async fn link_item(
        &self,
        item_key: &str,
        hypothesis_id: &str,
        contribution: f64,
        rationale: String,
    ) -> Result<Link> {
        let _w = self.write_lock().await?;
        let now: Time = Utc::now();
        let link = {
            let ix = self.read();
            ix.item(item_key)
                .ok_or_else(|| missing_item(&ix, item_key))?;
            ix.hypothesis(hypothesis_id)
                .ok_or_else(|| not_found("hypothesis", hypothesis_id))?;
            let create_time = ix
                .link(item_key, hypothesis_id)
                .map_or(now, |l| l.create_time);
            Link {
                item_key: item_key.to_string(),
                hypothesis_id: hypothesis_id.to_string(),
                contribution,
                origin: LinkOrigin::Api,
                rationale,
                create_time,
                update_time: now,
            }
        };
        self.store.put_link(&link).await?;
        self.write_index().put_link(link.clone());
        Ok(link)
    }

    pub async fn unlink_item(&self, item_key: &str, hypothesis_id: &str) -> Result<()> {
        let _w = self.write_lock().await?;
        if self.read().link(item_key, hypothesis_id).is_none() {
            return Err(Error::NotFound(format!(
                "item {} is not linked to hypothesis {}",
                quote(item_key),
                quote(hypothesis_id)
            )));
        }
        self.store.delete_link(item_key, hypothesis_id).await?;
        self.write_index().remove_link(item_key, hypothesis_id);
        Ok(())
    }
}

/// The items of a batch whose chain of parents, through the batch and the
/// stored items, comes back to them.
fn parent_cycles(ix: &ScoreIndex, items: &[&Item]) -> Vec<FieldViolation> {
    // The parent each key of the batch will have: its last version's.
    let batch: HashMap<String, &str> = items
        .iter()
        .map(|it| (it.key(), it.parent_key.as_str()))
        .collect();
    let parent_of = |key: &str| -> Option<String> {
        let p = match batch.get(key) {
            Some(p) => (*p).to_string(),
            None => ix.item(key)?.parent_key.clone(),
        };
        (!p.is_empty()).then_some(p)
    };
    let mut out = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let key = it.key();
        let mut seen = std::collections::HashSet::new();
        let mut next = (!it.parent_key.is_empty()).then(|| it.parent_key.clone());
        while let Some(p) = next {
            if p == key {
                out.push(FieldViolation::new(
                    format!("items[{i}].parent_key"),
                    format!(
                        "{} would make the item its own ancestor; parents cannot form a cycle",
                        quote(&it.parent_key)
                    ),
                ));
                break;
            }
            if !seen.insert(p.clone()) {
                // A cycle above, not through this item: not this item's doing.
                break;
            }
            next = parent_of(&p);
        }
    }
    out
}

/// Whether `key` is a slice that a split without write-back made of its
/// parent (`{parent}-s{n}`): an item only plumbline holds, which no tracker
/// lists.
fn is_local_slice(key: &str, parent_key: &str) -> bool {
    !parent_key.is_empty()
        && key
            .strip_prefix(parent_key)
            .and_then(|rest| rest.strip_prefix("-s"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Why an item the index does not hold cannot be used: removed from its
/// tracker (FAILED_PRECONDITION, saying when and why), or unknown.
fn missing_item(ix: &ScoreIndex, key: &str) -> Error {
    match ix.removal(key) {
        Some(r) => Error::FailedPrecondition(format!(
            "item {} was removed from its tracker ({}) on {}; it is kept for the history of releases and evidence, and is active again once a sync returns it",
            quote(key),
            match r.reason {
                RemovalReason::Deleted => "deleted",
                RemovalReason::Moved => "moved to another project",
                RemovalReason::NotReturned => "not returned by a full sync",
            },
            r.remove_time
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        None => not_found("item", key),
    }
}

fn not_found(kind: &str, id: &str) -> Error {
    Error::NotFound(format!("{kind} {} not found", quote(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_escaped_and_cut_after_the_limit() {
        assert_eq!(quote("web/1"), "\"web/1\"");
        assert_eq!(quote("a\0b"), "\"a\\0b\"");
        let long = "é".repeat(1 << 20);
        let q = quote(&long);
        assert_eq!(q, format!("{:?}…", "é".repeat(QUOTE_LIMIT)));
        assert_eq!(
            quote(&"x".repeat(QUOTE_LIMIT)),
            format!("{:?}", "x".repeat(QUOTE_LIMIT))
        );
    }

    #[test]
    fn local_slices_are_told_from_tracker_items() {
        assert!(is_local_slice("web/7-s1", "web/7"));
        assert!(is_local_slice("web/7-s12", "web/7"));
        assert!(!is_local_slice("web/7-s", "web/7"));
        assert!(!is_local_slice("web/7-sx", "web/7"));
        assert!(!is_local_slice("web/71", "web/7"));
        assert!(!is_local_slice("web/8", "web/7"), "a write-back slice");
        assert!(!is_local_slice("web/7-s1", ""));
    }

    /// Set in the child process that [`a_panic_while_writing_the_index_aborts`]
    /// starts, where the write panics.
    const PANIC_CHILD: &str = "PLB_TEST_PANIC_IN_INDEX_WRITE";

    #[test]
    fn a_panic_while_writing_the_index_aborts() {
        if std::env::var_os(PANIC_CHILD).is_some() {
            let index = RwLock::new(ScoreIndex::new(1.0));
            let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut ix = IndexWrite(index.write());
                ix.remove_item("s/1");
                panic!("a bug half-way through an index write");
            }));
            // Reached only if the panic unwound past the guard: the lock is
            // free again and the index readable, the failure the parent
            // looks for.
            assert!(unwound.is_err());
            assert_eq!(index.read().item_count(), 0);
            return;
        }
        let exe = std::env::current_exe().expect("the test binary knows its path");
        let out = std::process::Command::new(exe)
            .args([
                "--exact",
                "engine::tests::a_panic_while_writing_the_index_aborts",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(PANIC_CHILD, "1")
            .output()
            .expect("the test binary runs again as a child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("a bug half-way through an index write"),
            "the child's write panicked: {stderr}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            // SIGABRT: the process aborted instead of unwinding.
            assert_eq!(out.status.signal(), Some(6), "{:?}: {stderr}", out.status);
        }
        #[cfg(not(unix))]
        assert!(!out.status.success(), "{:?}: {stderr}", out.status);
    }
}
