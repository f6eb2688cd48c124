//! Where segments, desired outcomes and survey waves are kept: a trait of
//! its own beside [`Store`](super::Store) (which requires it), so that the
//! customer tables' few calls stay apart from the rest of the value model.
//! An outcome is backed by the metric of the same id; the calls that write
//! an outcome or its waves write that metric and its observations in the
//! same transaction.

use async_trait::async_trait;

use super::Result;
use crate::domain::{DesiredOutcome, Metric, ObservationSummary, Segment, SurveyWave};

/// Everything about customers, as start-up reads it.
#[derive(Debug, Default, Clone)]
pub struct CustomerLoad {
    pub segments: Vec<Segment>,
    pub outcomes: Vec<DesiredOutcome>,
    /// By outcome, then time.
    pub waves: Vec<SurveyWave>,
}

#[async_trait]
pub trait CustomerStore: Send + Sync + 'static {
    /// Every segment, outcome and wave (read once, at start-up).
    async fn load_customers(&self) -> Result<CustomerLoad>;
    async fn put_segment(&self, segment: &Segment) -> Result<()>;
    /// Deletes a segment (the caller checked that no outcome belongs to it).
    async fn delete_segment(&self, id: &str) -> Result<()>;
    /// Stores an outcome and its backing metric, in one transaction.
    async fn put_outcome(&self, outcome: &DesiredOutcome, metric: &Metric) -> Result<()>;
    /// Deletes an outcome with its waves, its backing metric and the
    /// metric's observations (the caller checked no hypothesis measures it).
    async fn delete_outcome(&self, id: &str) -> Result<()>;
    /// Stores waves (the same outcome and time replaces the stored one),
    /// each as an observation of its outcome's metric (its satisfaction),
    /// and puts `metrics` (their baselines follow the first wave), in one
    /// transaction; returns the new observation summary of each metric
    /// touched, in id order.
    async fn record_waves(
        &self,
        waves: &[SurveyWave],
        metrics: &[Metric],
    ) -> Result<Vec<(String, ObservationSummary)>>;
}
