//! Ranking snapshots on PostgreSQL (see the SQLite backend's `history.rs`).

use super::conn::{Attempt, Fail, Tx};
use crate::domain::Time;
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::store::SnapshotRetention;

fn todo<T>() -> Attempt<T> {
    Err(Fail::Corrupt("not implemented on PostgreSQL yet".into()))
}

pub(super) async fn put(
    tx: &Tx<'_>,
    snapshot: &RankingSnapshot,
    keep: &SnapshotRetention,
) -> Attempt<SnapshotSummary> {
    let _ = (tx, snapshot, keep);
    todo()
}

pub(super) async fn prune(tx: &Tx<'_>, keep: &SnapshotRetention) -> Attempt<usize> {
    let _ = (tx, keep);
    todo()
}

pub(super) async fn list(
    tx: &Tx<'_>,
    before_id: Option<i64>,
    limit: usize,
) -> Attempt<Vec<SnapshotSummary>> {
    let _ = (tx, before_id, limit);
    todo()
}

pub(super) async fn at(tx: &Tx<'_>, at: Option<Time>) -> Attempt<Option<RankingSnapshot>> {
    let _ = (tx, at);
    todo()
}

pub(super) async fn earliest(tx: &Tx<'_>) -> Attempt<Option<SnapshotSummary>> {
    let _ = tx;
    todo()
}
