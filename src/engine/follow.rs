//! Following the other sidecars of a shared database (PostgreSQL).
//!
//! Every sidecar keeps its own in-memory index. A write anywhere appends an
//! entry to the store's change log in its own transaction (see
//! [`crate::store::ChangeRecord`]); each sidecar reads the log in commit
//! order and brings its index up to it:
//!
//! - entries naming items only: those items are read back by key (row,
//!   links, removal) and set in the index, which rescores what they reach;
//! - an entry naming the model (sources, goals, metrics, observations,
//!   hypotheses, splits, pulls, customers, insights): everything is read
//!   back as at start-up and replaces the engine's state at once;
//! - a gap (the log was pruned past what this sidecar had read): the same.
//!
//! Reading the current rows rather than replaying what each entry wrote
//! makes applying idempotent: an entry read twice, or read after later
//! writes to the same rows, leaves the index equal to the store.
//!
//! Writes take the store's write turn (one sidecar writes at a time) and
//! catch up with the log before deciding anything, so a write is always
//! checked against an index that has every other sidecar's writes. The
//! background follower ([`Engine::follow`]) catches up as soon as the
//! store's listener is woken, and at least every poll interval.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Engine, IndexWrite, Result, facts_of};
use crate::domain::Link;
use crate::store::WriteTurn;

/// Entries read from the log at a time.
const BATCH: usize = 1000;

/// How often the change log is pruned (by the sidecar holding the
/// `change-log` lease), what is kept: an hour of entries, and at least the
/// last 10,000. A sidecar stopped for longer reads everything back when it
/// starts anyway.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_FOR: Duration = Duration::from_secs(3600);
const KEEP_LAST: i64 = 10_000;

/// Held for the length of one write: the engine's own lock, then the
/// store's write turn. Dropped in reverse order.
pub(crate) struct WriteGuard<'a> {
    _turn: WriteTurn,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

/// How far this sidecar is behind the change log, for health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowHealth {
    /// Caught up at the last poll.
    InStep,
    /// The log could not be read, or more entries wait than one poll
    /// reads.
    Behind,
}

impl Engine {
    /// Takes this engine's write lock and, on a shared store, the store's
    /// write turn, then catches up with the other sidecars' writes.
    pub(crate) async fn write_lock(&self) -> Result<WriteGuard<'_>> {
        let local = self.writes.lock().await;
        if !self.store.is_shared() {
            return Ok(WriteGuard {
                _turn: WriteTurn::none(),
                _local: local,
            });
        }
        // Most of the catching up (a model read back whole) is done before
        // the turn, so that the other sidecars do not wait for it.
        self.catch_up_locked().await?;
        let turn = self.store.write_turn().await?;
        self.catch_up_locked().await?;
        Ok(WriteGuard {
            _turn: turn,
            _local: local,
        })
    }

    /// The last change log position this sidecar's index reflects.
    pub fn applied_change(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Brings the index up to the change log (see the module doc); answers
    /// whether anything was applied. The caller holds the write lock.
    async fn catch_up_locked(&self) -> Result<bool> {
        let mut applied_any = false;
        loop {
            let from = self.applied_change();
            let records = self.store.changes_after(from, BATCH).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                return Ok(applied_any);
            };
            let me = self.store.replica_id();
            let gap = records[0].seq != from + 1;
            let mut model = gap;
            let mut keys = BTreeSet::new();
            for r in records.iter().filter(|r| r.replica != me) {
                model |= r.changed.model;
                keys.extend(r.changed.items.iter().cloned());
            }
            if model {
                let at = self.store.last_change().await?;
                self.reload_locked().await?;
                self.applied.fetch_max(at.max(last), Ordering::AcqRel);
                applied_any = true;
                continue;
            }
            if !keys.is_empty() {
                self.refresh_items_locked(keys.into_iter().collect())
                    .await?;
                applied_any = true;
            }
            self.applied.fetch_max(last, Ordering::AcqRel);
            if records.len() < BATCH {
                return Ok(applied_any);
            }
        }
    }

    /// Reads everything back as at start-up and replaces the state.
    async fn reload_locked(&self) -> Result<()> {
        let state = super::State::load(self.store.as_ref(), self.default_size).await?;
        let mut ix = self.write_index_unflushed();
        *self.splits.write() = state.splits;
        *self.pulls.write() = state.pulls;
        *self.insights.write() = state.insights;
        *self.customers.write() = state.customers;
        *ix = state.index;
        drop(ix);
        Ok(())
    }

    /// Sets these items in the index as the store has them now: row,
    /// links, removal; an item the store no longer has leaves the index.
    async fn refresh_items_locked(&self, keys: Vec<String>) -> Result<()> {
        let items = self.store.get_items(&keys).await?;
        let removals: HashMap<String, crate::domain::Removal> =
            self.store.item_removals(&keys).await?.into_iter().collect();
        let mut links: HashMap<String, Vec<Link>> = HashMap::new();
        for l in self.store.links_of_items(&keys).await? {
            links.entry(l.item_key.clone()).or_default().push(l);
        }
        let mut ix: IndexWrite<'_> = self.write_index_unflushed();
        let mut facts = Vec::new();
        let mut remove_links = Vec::new();
        let mut put_links = Vec::new();
        for (key, item) in keys.into_iter().zip(items) {
            let Some(item) = item else {
                if ix.item(&key).is_some() || ix.removal(&key).is_some() {
                    ix.remove_item(&key);
                }
                continue;
            };
            if let Some(r) = removals.get(&key) {
                // Also for an item this index never held (created and
                // removed between two reads of the log).
                ix.mark_removed(&key, r.clone());
                continue;
            }
            if ix.removal(&key).is_some() {
                ix.restore(&key);
            }
            let stored = links.remove(&key).unwrap_or_default();
            remove_links.extend(
                ix.links_of_item(&key)
                    .filter(|l| !stored.iter().any(|s| s.hypothesis_id == l.hypothesis_id))
                    .map(|l| (key.clone(), l.hypothesis_id.to_string())),
            );
            put_links.extend(stored);
            facts.push((key, facts_of(&item)));
        }
        ix.defer_upsert(facts, &remove_links, put_links);
        Ok(())
    }

    /// Follows the change log until `stop` says so: catches up whenever
    /// the store's listener wakes, and at least every `poll`. Reports each
    /// round's outcome on `health`.
    pub async fn follow(
        &self,
        poll: Duration,
        health: tokio::sync::watch::Sender<FollowHealth>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut signal = self.store.change_signal();
        let mut pruned = tokio::time::Instant::now();
        loop {
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = tokio::time::Instant::now();
                let store = self.store.as_ref();
                let work = store.prune_changes(KEEP_FOR, KEEP_LAST);
                if let Some(Err(e)) =
                    crate::lease::run_leased(store, "change-log", PRUNE_EVERY, work).await
                {
                    tracing::warn!(error = %e, "pruning the change log failed");
                }
            }
            let outcome = {
                let _local = self.writes.lock().await;
                self.catch_up_locked().await
            };
            let now = match &outcome {
                Ok(_) => FollowHealth::InStep,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot follow the change log");
                    FollowHealth::Behind
                }
            };
            health.send_if_modified(|h| std::mem::replace(h, now) != now);
            let woken = async {
                match signal.as_mut() {
                    Some(s) => {
                        if s.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = woken => {}
                () = tokio::time::sleep(poll) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}
