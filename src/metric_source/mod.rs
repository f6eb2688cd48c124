//! The seam between the metric-source framework and its fetchers (issue 20).
//! This branch carries only the seam; the framework's own `mod.rs` replaces
//! it at merge.

pub mod prometheus;
pub mod sql;
pub struct RawPoint {
    pub at: crate::domain::Time,
    pub value: f64,
}
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{kind} metric source: {message}")]
    Source { kind: &'static str, message: String },
}
