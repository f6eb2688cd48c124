//! Customers in the value model (VALUE-MODEL.md "Customers"): segments of
//! customers with similar desired outcomes, their desired outcomes, and the
//! survey waves that measure each outcome's importance and satisfaction.
//! Plain data; the outcome arithmetic lives in `refine::customer`.

use super::Time;

/// Highest weight of a segment (its share of customers or revenue, relative
/// to the other segments).
pub const MAX_SEGMENT_WEIGHT: f64 = 1e6;
/// Most segments a model holds: the roll-up by segment answers them all.
pub const MAX_SEGMENTS: usize = 1_000;
/// Most desired outcomes a model holds.
pub const MAX_OUTCOMES: usize = 10_000;
/// Most survey waves one outcome keeps (a weekly pulse for twenty years).
pub const MAX_WAVES_PER_OUTCOME: usize = 1_000;
/// The top of the survey scale: importance and satisfaction are 0..=10.
pub const SURVEY_SCALE: f64 = 10.0;
/// The unit of an outcome's backing metric.
pub const OUTCOME_UNIT: &str = "satisfaction (0-10)";

/// A group of customers with similar desired outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Relative weight among segments, in (0, 1e6].
    pub weight: f64,
    pub create_time: Time,
    pub update_time: Time,
}

/// What a segment wants ("minimize the time it takes to pay on a phone").
/// It is backed by the metric of the same id, whose observations are its
/// waves' satisfaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredOutcome {
    pub id: String,
    pub segment_id: String,
    pub statement: String,
    pub create_time: Time,
    pub update_time: Time,
}

/// One survey wave's answer for one desired outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct SurveyWave {
    pub outcome_id: String,
    pub at: Time,
    /// 0..=10.
    pub importance: f64,
    /// 0..=10.
    pub satisfaction: f64,
    /// At least 1.
    pub respondents: u32,
}
