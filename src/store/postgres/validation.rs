//! Releases, experiments, observations and evidence on PostgreSQL (see the
//! SQLite backend's trait impl).

use super::conn::{Attempt, Fail, Tx};
use crate::domain::{Evidence, Experiment, Hypothesis, Release, Time};

fn todo<T>() -> Attempt<T> {
    Err(Fail::Corrupt("not implemented on PostgreSQL yet".into()))
}

pub(super) async fn put_release(tx: &Tx<'_>, r: &Release) -> Attempt<()> {
    let _ = (tx, r);
    todo()
}

pub(super) async fn list_releases(tx: &Tx<'_>) -> Attempt<Vec<Release>> {
    let _ = tx;
    todo()
}

pub(super) async fn closed_items(tx: &Tx<'_>) -> Attempt<Vec<(String, Time)>> {
    let _ = tx;
    todo()
}

pub(super) async fn put_experiment(tx: &Tx<'_>, e: &Experiment) -> Attempt<()> {
    let _ = (tx, e);
    todo()
}

pub(super) async fn list_experiments(tx: &Tx<'_>) -> Attempt<Vec<Experiment>> {
    let _ = tx;
    todo()
}

pub(super) async fn list_observations(tx: &Tx<'_>, metric_id: &str) -> Attempt<Vec<(Time, f64)>> {
    let _ = (tx, metric_id);
    todo()
}

/// Stores evidence (replacing the same hypothesis and subject) and the
/// hypotheses it updated (through [`super::put_hypothesis`]).
pub(super) async fn record_evidence(
    tx: &Tx<'_>,
    evidence: &[Evidence],
    hypotheses: &[Hypothesis],
) -> Attempt<()> {
    let _ = (tx, evidence, hypotheses);
    todo()
}

pub(super) async fn list_evidence(
    tx: &Tx<'_>,
    hypothesis_id: Option<&str>,
) -> Attempt<Vec<Evidence>> {
    let _ = (tx, hypothesis_id);
    todo()
}
