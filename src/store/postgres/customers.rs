//! Segments, desired outcomes and survey waves on PostgreSQL (see the
//! SQLite backend's `customers.rs`).

use std::collections::BTreeSet;

use async_trait::async_trait;

use super::PostgresStore;
use super::conn::{Attempt, Fail, Tx};
use crate::domain::{DesiredOutcome, Metric, ObservationSummary, Segment, SurveyWave};
use crate::store::{CustomerLoad, CustomerStore, Result, StoreError};

fn todo<T>() -> Attempt<T> {
    Err(Fail::Corrupt("not implemented on PostgreSQL yet".into()))
}

fn not_yet<T>() -> Result<T> {
    Err(StoreError::Backend {
        doing: "customers".into(),
        source: "not implemented on PostgreSQL yet".into(),
    })
}

pub(super) async fn put_segment(tx: &Tx<'_>, s: &Segment) -> Attempt<()> {
    let _ = (tx, s);
    todo()
}

pub(super) async fn put_outcome(tx: &Tx<'_>, o: &DesiredOutcome) -> Attempt<()> {
    let _ = (tx, o);
    todo()
}

/// Stores waves with their observations; answers the metrics touched.
pub(super) async fn put_waves(tx: &Tx<'_>, waves: &[SurveyWave]) -> Attempt<BTreeSet<String>> {
    let _ = (tx, waves);
    todo()
}

pub(super) async fn delete_outcome(tx: &Tx<'_>, id: &str) -> Attempt<()> {
    let _ = (tx, id);
    todo()
}

#[async_trait]
impl CustomerStore for PostgresStore {
    async fn load_customers(&self) -> Result<CustomerLoad> {
        not_yet()
    }

    async fn put_segment(&self, s: &Segment) -> Result<()> {
        let _ = s;
        not_yet()
    }

    async fn delete_segment(&self, id: &str) -> Result<()> {
        let _ = id;
        not_yet()
    }

    async fn put_outcome(&self, o: &DesiredOutcome, m: &Metric) -> Result<()> {
        let _ = (o, m);
        not_yet()
    }

    async fn delete_outcome(&self, id: &str) -> Result<()> {
        let _ = id;
        not_yet()
    }

    async fn record_waves(
        &self,
        waves: &[SurveyWave],
        metrics: &[Metric],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        let _ = (waves, metrics);
        not_yet()
    }
}
