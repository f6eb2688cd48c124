//! Insights on PostgreSQL (see the SQLite backend's `insights.rs`).

use super::conn::{Attempt, Fail, Tx};
use crate::domain::{Insight, Time};

fn todo<T>() -> Attempt<T> {
    Err(Fail::Corrupt("not implemented on PostgreSQL yet".into()))
}

/// Inserts or replaces insights by (source, external id).
pub(super) async fn put(tx: &Tx<'_>, insights: &[Insight], now: &Time) -> Attempt<()> {
    let _ = (tx, insights, now);
    todo()
}

pub(super) async fn get(tx: &Tx<'_>, keys: &[(String, String)]) -> Attempt<Vec<Insight>> {
    let _ = (tx, keys);
    todo()
}

pub(super) async fn all(tx: &Tx<'_>) -> Attempt<Vec<Insight>> {
    let _ = tx;
    todo()
}

pub(super) async fn forget(tx: &Tx<'_>, customer: &str) -> Attempt<u64> {
    let _ = (tx, customer);
    todo()
}
