//! When the ranking's history is written (`[history]`): a snapshot of the
//! top N every `interval_secs` when the ranking changed since the last one,
//! one at shutdown when it changed, and one whenever asked for
//! (TakeRankingSnapshot). Retention is applied in the same transaction as
//! each snapshot, and by the background task when it took none (time alone
//! moves snapshots past the daily bound).
//!
//! "Changed" is decided in two steps: the engine's change counter (the one
//! `WatchRanking` wakes on) says cheaply that nothing happened; when it
//! moved, the top N is read and compared with the last snapshot's items,
//! so a write that moves nothing in the top N (a goal's description, an
//! item below the top) takes no snapshot. After a restart the last stored
//! snapshot is the reference.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::domain::history::{RankingSnapshot, SnapshotItem, SnapshotOrigin, SnapshotSummary};
use crate::engine::{Engine, MAX_TOP_N, Result};
use crate::lifecycle::Lifecycle;
use crate::store::SnapshotRetention;

/// Past this many days, at most one snapshot a UTC day is kept.
pub const DAILY_AFTER_DAYS: i64 = 14;

/// `[history]`: the ranking snapshots behind "since last refinement".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Items a snapshot holds (1..1000).
    pub top_n: usize,
    /// Seconds between looks at whether the ranking changed (at least 1).
    pub interval_secs: u64,
    /// Snapshots kept at most (the newest); beyond 14 days, one a day.
    pub max_snapshots: usize,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            top_n: 200,
            interval_secs: 3600,
            max_snapshots: 2000,
        }
    }
}

impl HistoryConfig {
    /// Refuses settings out of their bounds, naming the setting.
    pub fn check(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_TOP_N).contains(&self.top_n) {
            return Err(format!(
                "history.top_n must be 1..{MAX_TOP_N}, got {}",
                self.top_n
            ));
        }
        if self.interval_secs == 0 {
            return Err("history.interval_secs must be at least 1".into());
        }
        if self.max_snapshots == 0 {
            return Err("history.max_snapshots must be at least 1".into());
        }
        Ok(())
    }

    fn top_n(&self) -> usize {
        self.top_n.clamp(1, MAX_TOP_N)
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }

    fn retention(&self) -> SnapshotRetention {
        SnapshotRetention {
            max_snapshots: self.max_snapshots.max(1),
            daily_before: Utc::now() - chrono::Duration::days(DAILY_AFTER_DAYS),
        }
    }
}

/// What the last snapshot held, and at which change count it was checked.
#[derive(Debug, Default)]
struct Last {
    /// `None` until read from the store (first use after start).
    items: Option<Vec<SnapshotItem>>,
    checked_at: Option<u64>,
}

/// Takes ranking snapshots: shared by the background task and the API.
pub struct Historian {
    engine: Arc<Engine>,
    config: HistoryConfig,
    last: tokio::sync::Mutex<Last>,
    checks: AtomicU64,
}

impl Historian {
    pub fn new(engine: Arc<Engine>, config: HistoryConfig) -> Self {
        Historian {
            engine,
            config,
            last: tokio::sync::Mutex::new(Last::default()),
            checks: AtomicU64::new(0),
        }
    }

    /// The engine snapshots are read from.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// How many times the background task looked whether the ranking
    /// changed (for tests, which wait on it instead of sleeping).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::SeqCst)
    }

    /// Takes a snapshot now. When the ranking's top N is the same as the
    /// last snapshot's, that snapshot is answered and nothing is stored:
    /// "the ranking as of now" is the same, and repeated calls (a CI job
    /// on every pipeline) cannot push older history out of the bound.
    pub async fn take(&self, note: String) -> Result<SnapshotSummary> {
        let mut last = self.last.lock().await;
        let (count, items) = self.engine.ranking_top(self.config.top_n());
        if let Some(latest) = self.engine.latest_ranking_snapshot().await?
            && latest.items == items
        {
            *last = Last {
                items: Some(items),
                checked_at: Some(count),
            };
            return Ok(latest.summary);
        }
        let summary = self.store(SnapshotOrigin::Explicit, note, &items).await?;
        *last = Last {
            items: Some(items),
            checked_at: Some(count),
        };
        Ok(summary)
    }

    /// Takes a snapshot if the ranking changed since the last one; answers
    /// it, or `None` when nothing changed.
    pub async fn take_if_changed(&self, origin: SnapshotOrigin) -> Result<Option<SnapshotSummary>> {
        let mut last = self.last.lock().await;
        let count = self.engine.change_count();
        if last.items.is_some() && last.checked_at == Some(count) {
            return Ok(None);
        }
        // On a shared database another sidecar may have taken the last
        // snapshot (the lease moves): compare with the store's.
        if self.engine.store().is_shared() {
            last.items = None;
        }
        if last.items.is_none() {
            last.items = Some(
                self.engine
                    .latest_ranking_snapshot()
                    .await?
                    .map(|s| s.items)
                    .unwrap_or_default(),
            );
        }
        let (count, items) = self.engine.ranking_top(self.config.top_n());
        if last.items.as_ref() == Some(&items) {
            last.checked_at = Some(count);
            return Ok(None);
        }
        let summary = self.store(origin, String::new(), &items).await?;
        *last = Last {
            items: Some(items),
            checked_at: Some(count),
        };
        Ok(Some(summary))
    }

    async fn store(
        &self,
        origin: SnapshotOrigin,
        note: String,
        items: &[SnapshotItem],
    ) -> Result<SnapshotSummary> {
        let snapshot = RankingSnapshot {
            summary: SnapshotSummary {
                id: 0,
                take_time: Utc::now(),
                origin,
                note,
                top_n: u32::try_from(self.config.top_n()).unwrap_or(u32::MAX),
                item_count: 0,
            },
            items: items.to_vec(),
        };
        self.engine
            .store_ranking_snapshot(&snapshot, &self.config.retention())
            .await
    }
}

/// Every interval, a snapshot if the ranking changed; at shutdown, one more
/// if it changed since. Runs until the server stops.
/// On a shared database only the sidecar holding the `snapshots` lease
/// takes them (see [`crate::lease`]).
pub async fn background_snapshots(
    historian: Arc<Historian>,
    lifecycle: Lifecycle,
    lease: std::time::Duration,
) {
    let interval = historian.config.interval();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            () = lifecycle.cancelled() => true,
        };
        let origin = if stopping {
            SnapshotOrigin::Shutdown
        } else {
            SnapshotOrigin::Background
        };
        let store = historian.engine.store().clone();
        let taken = crate::lease::run_leased(
            store.as_ref(),
            "snapshots",
            lease,
            historian.take_if_changed(origin),
        )
        .await
        .unwrap_or(Ok(None));
        match taken {
            Ok(Some(s)) => tracing::info!(
                id = s.id,
                items = s.item_count,
                ?origin,
                "ranking snapshot taken"
            ),
            // No snapshot (and so no pruning with it): time alone may
            // have moved old ones past the daily bound.
            Ok(None) if !stopping => {
                if let Err(e) = historian
                    .engine
                    .prune_ranking_snapshots(&historian.config.retention())
                    .await
                {
                    tracing::warn!(error = %e, "pruning ranking snapshots failed");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ranking snapshot failed"),
        }
        historian.checks.fetch_add(1, Ordering::SeqCst);
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_out_of_bounds_are_refused_by_name() {
        assert_eq!(HistoryConfig::default().check(), Ok(()));
        for (bad, name) in [
            (
                HistoryConfig {
                    top_n: 0,
                    ..Default::default()
                },
                "history.top_n",
            ),
            (
                HistoryConfig {
                    top_n: 1001,
                    ..Default::default()
                },
                "history.top_n",
            ),
            (
                HistoryConfig {
                    interval_secs: 0,
                    ..Default::default()
                },
                "history.interval_secs",
            ),
            (
                HistoryConfig {
                    max_snapshots: 0,
                    ..Default::default()
                },
                "history.max_snapshots",
            ),
        ] {
            let err = bad.check().unwrap_err();
            assert!(err.contains(name), "{err}");
        }
    }
}
