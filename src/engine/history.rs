//! The ranking's history as use cases: the top N now as snapshot items,
//! storing and listing snapshots, and comparing a past snapshot with the
//! ranking now ("since the last refinement"). When to take a snapshot is
//! `crate::history`'s business; this module only reads the index and the
//! store.
//!
//! Snapshots do not take the writes lock: they change nothing the index
//! holds, and SQLite serializes their one-row writes with everything else.

use std::collections::HashMap;

use chrono::{SecondsFormat, Utc};

use super::{Engine, Error, Result};
use crate::domain::history::{RankingSnapshot, SnapshotItem, SnapshotSummary, snapshot_terms};
use crate::domain::{ItemState, RemovalReason, Time};
use crate::index::{RankOrder, RankQuery, ScoreIndex};
use crate::refine::since::{self, Comparison, LeftNow, LeftReason};
use crate::store::SnapshotRetention;

/// Most items a snapshot or a comparison holds.
pub const MAX_TOP_N: usize = 1000;

/// A comparison with what it compared.
#[derive(Debug, Clone)]
pub struct SinceView {
    pub snapshot: SnapshotSummary,
    /// Places compared: the request's, or the snapshot's when smaller.
    pub top_n: usize,
    pub compare_time: Time,
    pub changes: Comparison,
}

fn snapshot_item(ix: &ScoreIndex, key: &str) -> Option<SnapshotItem> {
    let (facts, score) = (ix.item(key)?, ix.score(key)?);
    Some(SnapshotItem {
        key: key.to_owned(),
        title: facts.title.clone(),
        state: facts.state,
        value: score.value,
        size: score.size,
        value_density: score.value_density,
        terms: snapshot_terms(&score.terms),
    })
}

fn open_ranking(ix: &ScoreIndex, source_id: Option<&str>, limit: usize) -> Vec<SnapshotItem> {
    let query = RankQuery {
        source_id: source_id.map(str::to_owned),
        limit,
        ..RankQuery::default()
    };
    ix.rank(RankOrder::ValueDensity, &query)
        .into_iter()
        .filter_map(|((_, key), _)| snapshot_item(ix, &key))
        .collect()
}

fn rfc3339(t: &Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Engine {
    /// How many changes the index has seen (the counter `WatchRanking`
    /// wakes on): equal numbers mean an unchanged ranking.
    pub fn change_count(&self) -> u64 {
        *self.changes.borrow()
    }

    /// The top `n` of the value-density ranking of open items now, as a
    /// snapshot holds them, with the change count it was read at.
    pub fn ranking_top(&self, n: usize) -> (u64, Vec<SnapshotItem>) {
        // Read the count first: a change after it makes the next look
        // see a different count, never the reverse.
        let count = self.change_count();
        let ix = self.read();
        (count, open_ranking(&ix, None, n.min(MAX_TOP_N)))
    }

    /// Stores `snapshot` and prunes by `keep`; answers it with its id.
    pub async fn store_ranking_snapshot(
        &self,
        snapshot: &RankingSnapshot,
        keep: &SnapshotRetention,
    ) -> Result<SnapshotSummary> {
        Ok(self.store.put_ranking_snapshot(snapshot, keep).await?)
    }

    /// Applies `keep` to the snapshots kept; answers how many went.
    pub async fn prune_ranking_snapshots(&self, keep: &SnapshotRetention) -> Result<usize> {
        Ok(self.store.prune_ranking_snapshots(keep).await?)
    }

    /// The newest snapshot, with its items.
    pub async fn latest_ranking_snapshot(&self) -> Result<Option<RankingSnapshot>> {
        Ok(self.store.ranking_snapshot_at(None).await?)
    }

    /// Snapshots newest first, older than `before_id` when given.
    pub async fn list_ranking_snapshots(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotSummary>> {
        Ok(self.store.list_ranking_snapshots(before_id, limit).await?)
    }

    /// The ranking now against the last snapshot taken at or before
    /// `since`, in its top `top_n` (1..=1000), of one source's items when
    /// `source_id` is given. INVALID_ARGUMENT naming `since` for a future
    /// time and `top_n` out of bounds; FAILED_PRECONDITION naming the
    /// earliest snapshot when none is that old.
    pub async fn compare_ranking(
        &self,
        since: Time,
        top_n: usize,
        source_id: Option<&str>,
    ) -> Result<SinceView> {
        if !(1..=MAX_TOP_N).contains(&top_n) {
            return Err(Error::invalid("top_n", "must be 1..1000"));
        }
        let compare_time = Utc::now();
        if since > compare_time {
            return Err(Error::invalid(
                "since",
                format!(
                    "is in the future ({}); compare with a past time",
                    rfc3339(&since)
                ),
            ));
        }
        let Some(snap) = self.store.ranking_snapshot_at(Some(since)).await? else {
            return Err(match self.store.earliest_ranking_snapshot().await? {
                Some(first) => Error::FailedPrecondition(format!(
                    "no ranking snapshot was taken at or before {}; the earliest is from {}",
                    rfc3339(&since),
                    rfc3339(&first.take_time)
                )),
                None => Error::FailedPrecondition(format!(
                    "no ranking snapshot was taken at or before {}; none is kept yet (take one with `plumbline history snapshot`)",
                    rfc3339(&since)
                )),
            });
        };
        let n = top_n.min(snap.summary.top_n as usize).max(1);
        let prefix = source_id.map(|s| format!("{s}/"));
        let old: Vec<SnapshotItem> = snap
            .items
            .iter()
            .filter(|it| prefix.as_ref().is_none_or(|p| it.key.starts_with(p)))
            .take(n)
            .cloned()
            .collect();
        let released = self.released_since(snap.summary.take_time).await?;
        let (changes, closed) = {
            let ix = self.read();
            // One source's items are compared within the same horizon on
            // both sides: a snapshot that was cut at its top N holds only
            // the source's items within that cut, so today's side is the
            // source's items within today's top N too (not the source's own
            // top n, which reaches below the cut and would show items as
            // entered that never moved).
            let cut = snap.items.len() >= snap.summary.top_n as usize;
            let new = match (&prefix, cut) {
                (Some(p), true) => open_ranking(&ix, None, snap.summary.top_n as usize)
                    .into_iter()
                    .filter(|it| it.key.starts_with(p.as_str()))
                    .take(n)
                    .collect(),
                _ => open_ranking(&ix, source_id, n),
            };
            let mut whole: Option<HashMap<String, u32>> = None;
            let mut closed = Vec::new();
            let changes = since::compare(&old, &new, |before| {
                let now = left_now(&ix, before, &released, source_id, &mut whole);
                if now.reason == LeftReason::Closed {
                    closed.push(before.key.clone());
                }
                now
            });
            (changes, closed)
        };
        let changes = self.with_close_times(changes, closed).await?;
        Ok(SinceView {
            snapshot: snap.summary,
            top_n: n,
            compare_time,
            changes,
        })
    }

    /// Item key -> id of a release recorded after `t` that lists it.
    async fn released_since(&self, t: Time) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for r in self.store.list_releases().await? {
            if r.time >= t {
                for k in r.item_keys {
                    out.entry(k).or_insert_with(|| r.id.clone());
                }
            }
        }
        Ok(out)
    }

    /// Says when each item that left as closed was closed.
    async fn with_close_times(
        &self,
        mut changes: Comparison,
        closed: Vec<String>,
    ) -> Result<Comparison> {
        if closed.is_empty() {
            return Ok(changes);
        }
        let items = self.store.get_items(&closed).await?;
        let times: HashMap<&str, Time> = closed
            .iter()
            .zip(&items)
            .filter_map(|(k, it)| Some((k.as_str(), it.as_ref()?.close_time?)))
            .collect();
        for c in &mut changes.left {
            if let Some(now) = c.left.as_mut()
                && now.reason == LeftReason::Closed
                && let Some(t) = times.get(c.item_key.as_str())
            {
                now.detail = format!("closed {}", rfc3339(t));
            }
        }
        Ok(changes)
    }
}

/// What is known now of `before`, which left the top N.
fn left_now(
    ix: &ScoreIndex,
    before: &SnapshotItem,
    released: &HashMap<String, String>,
    source_id: Option<&str>,
    whole: &mut Option<HashMap<String, u32>>,
) -> LeftNow {
    let key = before.key.as_str();
    if let Some(r) = ix.removal(key) {
        let why = match r.reason {
            RemovalReason::Deleted => "deleted",
            RemovalReason::Moved => "moved to another project",
            RemovalReason::NotReturned => "not returned by a full sync",
        };
        return LeftNow {
            reason: LeftReason::Removed,
            detail: format!(
                "removed from its tracker ({why}) {}",
                rfc3339(&r.remove_time)
            ),
            current_rank: 0,
            item: None,
        };
    }
    let Some(now) = snapshot_item(ix, key) else {
        return LeftNow {
            reason: LeftReason::Gone,
            detail: "no longer known (its source was deleted)".into(),
            current_rank: 0,
            item: None,
        };
    };
    if now.state == ItemState::Closed {
        return match released.get(key) {
            Some(release) => LeftNow {
                reason: LeftReason::Released,
                detail: format!("released in {release}"),
                current_rank: 0,
                item: Some(now),
            },
            None => LeftNow {
                reason: LeftReason::Closed,
                detail: "closed".into(),
                current_rank: 0,
                item: Some(now),
            },
        };
    }
    // The whole ranking is read once, and only when an item was pushed out.
    let ranks = whole.get_or_insert_with(|| {
        let query = RankQuery {
            source_id: source_id.map(str::to_owned),
            limit: usize::MAX,
            ..RankQuery::default()
        };
        ix.rank(RankOrder::ValueDensity, &query)
            .into_iter()
            .enumerate()
            .map(|(i, ((_, k), _))| (k, u32::try_from(i + 1).unwrap_or(u32::MAX)))
            .collect()
    });
    LeftNow {
        reason: LeftReason::PushedOut,
        detail: String::new(),
        current_rank: ranks.get(key).copied().unwrap_or(0),
        item: Some(now),
    }
}
