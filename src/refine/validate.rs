//! Validating value after release: how far did a metric move at each release,
//! how much of that movement belongs to each hypothesis the release was meant
//! to prove, and what that does to the hypothesis' confidence and status.
//! Pure functions over plain values; the engine fetches observations and
//! stores the evidence.
//!
//! # Attribution (before/after)
//!
//! Inputs are one metric (its baseline and target; the direction is implied by
//! them), its observations `(time, value)`, the releases that touch hypotheses
//! measured by the metric, and [`Windows`] (defaults: 28 days before, 28 days
//! after, 3 days minimum separation, 3 points).
//!
//! 1. **Groups.** Releases are sorted by time (then id). A release less than
//!    `min_separation` after the previous one (or at the same instant) joins
//!    its group, so groups chain: releases on days 0, 2 and 4 form one group
//!    when the separation is 3 days. A group has one shared step.
//! 2. **Clusters.** Consecutive groups whose windows touch or overlap
//!    (`last + after >= next first - before`) are fitted jointly; groups whose
//!    windows do not meet are fitted apart, each cluster with its own
//!    intercept, so that drift in the unwatched months between two distant
//!    releases is credited to neither.
//! 3. **Observations.** A cluster uses the observations in
//!    `[first release - before, last release + after]` (both ends included).
//!    An observation at or after a group's last release is *after* its step;
//!    observations between a group's first and last release are in transition
//!    and left out.
//! 4. **Fit.** Ordinary least squares of the step model
//!    `y(t) = a + Σ_j β_j · 1[t >= τ_j]`, one step per group, solved from the
//!    normal equations by Gaussian elimination with partial pivoting. `β_j` is
//!    the group's *step* in the metric's unit. No trend term: with a few
//!    weekly points a side, a slope is nearly collinear with the steps and
//!    would make every step far noisier, and a trend fitted across a release
//!    would absorb the very movement the release is supposed to explain.
//! 5. **Enough data or nothing.** A step is estimated only if at least
//!    `min_points` fitted observations lie in the segment just before it and in
//!    the segment just after it (a segment runs from one group to the next,
//!    clipped to the windows). Otherwise, or if the least-squares system is
//!    singular, each of the group's (release, hypothesis) pairs gets
//!    [`Outcome::InsufficientData`], never a guess. A step without
//!    observations on one side does not distort its neighbours: its column is
//!    left out of the fit, which merges the empty segment into the previous
//!    one.
//! 6. **Confounding.** The step of a group is shared equally by the distinct
//!    hypotheses its releases touch. The pairs are flagged *confounded* when
//!    the group holds two or more releases, and also when the step is shared
//!    by two or more hypotheses (one release proving two bets on one metric
//!    cannot tell them apart either).
//! 7. **Realized effect**, in the unit of a hypothesis' expected effect (share
//!    of the gap): `realized = step_share / (target - level_before)`, where
//!    `level_before` is the fitted level of the segment just before the step.
//!    It is signed for both directions: positive means the metric moved
//!    toward the target (down, for a lower-is-better metric), negative means
//!    away. If `level_before` is at the target, or already past it, there is
//!    no gap left to close and the pair gets `InsufficientData`.
//!
//! # Experiments
//!
//! An [`ExperimentInput`] (absolute lift and its confidence interval, in the
//! metric's unit) takes precedence over before/after for its hypothesis:
//! `realized = lift / (target - level)`, where `level` is the metric's level
//! when the experiment ran (the caller passes the current level), and the
//! interval is converted the same way (its ends swap when the metric is
//! lower-is-better). A randomized experiment is not confounded by other
//! releases. Experiments for hypotheses that no given release touches are
//! ignored here.
//!
//! # Updating confidence and status ([`update`])
//!
//! With `r = realized / expected_effect`: `r >= 0.5` supports, `r <= 0`
//! refutes, in between is inconclusive.
//! - Before/after, not confounded: supports -> `c + (1 - c) · 0.5`,
//!   VALIDATED; refutes -> `c · 0.5`, INVALIDATED; inconclusive -> `c`,
//!   TESTING.
//! - Before/after, confounded: half those moves (`c + (1 - c) · 0.25`,
//!   `c · 0.75`, `c`), and the status is TESTING.
//! - Experiment: the interval decides. Lower end (as share)
//!   `>= 0.5 · expected_effect` -> VALIDATED with `max(c, 0.9)`; upper end
//!   `<= 0` -> INVALIDATED with `min(c, 0.1)`; otherwise TESTING with `c`
//!   moved halfway toward `clamp(r, 0, 1)`.
//! - Insufficient data: no change.
//!
//! Worked example: checkout conversion, baseline 2.1 %, target 3.5 %, weekly
//! observations 2.1, 2.1, 2.1, 2.1 before a release and 2.8, 2.8, 2.8, 2.8
//! after. Step 0.7, level before 2.1, realized `0.7 / (3.5 - 2.1) = 0.5`. A
//! hypothesis expecting 0.4 with confidence 0.6: `r = 1.25`, supports,
//! confidence `0.6 + 0.4 · 0.5 = 0.8`, VALIDATED.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use chrono::Duration;

use crate::domain::{Direction, HypothesisStatus, Metric, Time};

/// `r = realized / expected` at or above which evidence supports a hypothesis.
pub const SUPPORT_RATIO: f64 = 0.5;
/// `r` at or below which evidence refutes a hypothesis: it did not move the
/// metric toward the target at all.
pub const REFUTE_RATIO: f64 = 0.0;
/// Share of the remaining doubt `1 - c` that supporting evidence removes.
pub const SUPPORT_GAIN: f64 = 0.5;
/// Factor refuting evidence multiplies the confidence by.
pub const REFUTE_FACTOR: f64 = 0.5;
/// Confounded evidence moves the confidence by this share of the move the
/// same evidence would make unconfounded.
pub const CONFOUNDED_WEIGHT: f64 = 0.5;
/// Confidence floor of a hypothesis an experiment validates.
pub const EXPERIMENT_VALIDATED_CONFIDENCE: f64 = 0.9;
/// Confidence ceiling of a hypothesis an experiment invalidates.
pub const EXPERIMENT_INVALIDATED_CONFIDENCE: f64 = 0.1;
/// Share of the distance to `clamp(r, 0, 1)` an inconclusive experiment moves
/// the confidence.
pub const EXPERIMENT_PULL: f64 = 0.5;
/// Relative size (of `max(|target|, |level|, 1)`) under which the remaining
/// gap `target - level` counts as zero: the metric is at its target.
pub const AT_TARGET_TOLERANCE: f64 = 1e-9;
/// Relative size (of the largest normal-matrix entry) under which a pivot
/// counts as zero: the least-squares system is singular.
const PIVOT_TOLERANCE: f64 = 1e-10;

/// What validation needs to know about a metric: where it started and where
/// it should go. The direction is implied by the two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricSpan {
    pub baseline: f64,
    pub target: f64,
}

impl MetricSpan {
    /// Higher is better when the target lies above the baseline.
    pub fn direction(&self) -> Direction {
        Direction::implied(self.baseline, self.target)
    }
}

impl From<&Metric> for MetricSpan {
    fn from(m: &Metric) -> Self {
        MetricSpan {
            baseline: m.baseline,
            target: m.target,
        }
    }
}

/// A release that touches hypotheses measured by the metric under study.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseInput {
    pub id: String,
    pub time: Time,
    /// Hypotheses of this metric the release is meant to prove; duplicates
    /// count once. A release with none still gets its own step, so that its
    /// movement is not credited to its neighbours.
    pub hypothesis_ids: Vec<String>,
}

/// The result of a controlled experiment on one hypothesis, in the metric's
/// unit: an absolute lift (e.g. +0.3 percentage points) and its interval.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentInput {
    pub hypothesis_id: String,
    pub lift: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// How much of the series around each release the fit looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Looked at before the first release of a cluster.
    pub before: Duration,
    /// Looked at after the last release of a cluster.
    pub after: Duration,
    /// Releases closer than this (chained) share one step.
    pub min_separation: Duration,
    /// Observations a step needs on each side, at least 1.
    pub min_points: usize,
}

impl Default for Windows {
    /// Four weeks each side, three days apart, three points a side.
    fn default() -> Self {
        Windows {
            before: Duration::days(28),
            after: Duration::days(28),
            min_separation: Duration::days(3),
            min_points: 3,
        }
    }
}

/// How a realized effect was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The fitted step of the release's group in the observation series.
    BeforeAfter,
    /// A controlled experiment's lift.
    Experiment,
}

/// The measured effect of one release on one hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    pub release_id: String,
    pub hypothesis_id: String,
    /// In the metric's unit: the fitted step of the release's group, or the
    /// experiment's lift.
    pub step: f64,
    /// This hypothesis' share of `step`: `step / distinct hypotheses of the
    /// group` (the whole lift for an experiment).
    pub step_share: f64,
    /// Fitted level just before the step (the level passed in for an
    /// experiment).
    pub level_before: f64,
    /// `step_share / (target - level_before)`: share of the remaining gap
    /// closed; negative when the metric moved away from its target.
    pub realized_effect: f64,
    /// The experiment's interval as shares of the gap, low end first; `None`
    /// for before/after.
    pub realized_ci: Option<(f64, f64)>,
    /// The step is shared with other releases or other hypotheses.
    pub confounded: bool,
    /// The other releases in this release's group, in time order; empty
    /// for an experiment.
    pub shared_with: Vec<String>,
    /// Fitted observations in the segment just before and just after the step.
    pub points_before: usize,
    pub points_after: usize,
    pub method: Method,
}

/// Why a (release, hypothesis) pair has no realized effect.
#[derive(Debug, Clone, PartialEq)]
pub enum InsufficientReason {
    /// Fewer than `need` fitted observations on one side of the step.
    TooFewPoints {
        before: usize,
        after: usize,
        need: usize,
    },
    /// The least-squares system could not be solved.
    SingularFit,
    /// The level before the step was already at the target.
    AtTarget { level: f64 },
    /// The level before the step was already past the target.
    BeyondTarget { level: f64 },
}

impl fmt::Display for InsufficientReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InsufficientReason::TooFewPoints {
                before,
                after,
                need,
            } => write!(
                f,
                "{before} observations before the release and {after} after it within the windows; each side needs at least {need}"
            ),
            InsufficientReason::SingularFit => write!(
                f,
                "the observations cannot separate this release's step from its neighbours' (singular least-squares system)"
            ),
            InsufficientReason::AtTarget { level } => write!(
                f,
                "the metric was already at its target ({level}) before the release, so there was no gap left to close"
            ),
            InsufficientReason::BeyondTarget { level } => write!(
                f,
                "the metric ({level}) was already past its target before the release, so there was no gap left to close"
            ),
        }
    }
}

/// The result for one (release, hypothesis) pair.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Attributed(Attribution),
    InsufficientData {
        release_id: String,
        hypothesis_id: String,
        reason: InsufficientReason,
    },
}

impl Outcome {
    pub fn release_id(&self) -> &str {
        match self {
            Outcome::Attributed(a) => &a.release_id,
            Outcome::InsufficientData { release_id, .. } => release_id,
        }
    }

    pub fn hypothesis_id(&self) -> &str {
        match self {
            Outcome::Attributed(a) => &a.hypothesis_id,
            Outcome::InsufficientData { hypothesis_id, .. } => hypothesis_id,
        }
    }
}

/// Input that cannot be validated at all (as opposed to too little data,
/// which is an [`Outcome`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidateError {
    #[error("the metric's baseline ({baseline}) and target ({target}) must be finite numbers")]
    NonFiniteMetric { baseline: f64, target: f64 },
    #[error("the observation at {time} is not a finite number")]
    NonFiniteObservation { time: Time },
    #[error("the {which} window must not be negative")]
    NegativeWindow { which: &'static str },
    #[error("min_points must be at least 1: a step needs observations on both sides")]
    ZeroMinPoints,
    #[error("release {id} is listed twice")]
    DuplicateRelease { id: String },
    #[error("hypothesis {hypothesis_id} has more than one experiment")]
    DuplicateExperiment { hypothesis_id: String },
    #[error("the experiment on hypothesis {hypothesis_id} is invalid: {reason}")]
    InvalidExperiment {
        hypothesis_id: String,
        reason: &'static str,
    },
    #[error("the metric's level for experiments ({0}) must be a finite number")]
    NonFiniteLevel(f64),
}

/// The evidence's verdict on a hypothesis, from `r = realized / expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supports,
    Refutes,
    Inconclusive,
}

impl Verdict {
    /// `r >= SUPPORT_RATIO` supports, `r <= REFUTE_RATIO` refutes, in between
    /// is inconclusive.
    pub fn from_ratio(r: f64) -> Verdict {
        if r >= SUPPORT_RATIO {
            Verdict::Supports
        } else if r <= REFUTE_RATIO {
            Verdict::Refutes
        } else {
            Verdict::Inconclusive
        }
    }
}

/// The share of the remaining gap that a movement of the metric closes:
/// `movement / (target - level_before)`. Signed: negative when the movement
/// points away from the target, in either direction. No share exists when
/// `level_before` is at the target (within [`AT_TARGET_TOLERANCE`]) or past
/// it (on the far side from the baseline).
pub fn realized_share(
    metric: &MetricSpan,
    level_before: f64,
    movement: f64,
) -> Result<f64, InsufficientReason> {
    let remaining = metric.target - level_before;
    let tolerance = AT_TARGET_TOLERANCE * metric.target.abs().max(level_before.abs()).max(1.0);
    if remaining.abs() <= tolerance {
        return Err(InsufficientReason::AtTarget {
            level: level_before,
        });
    }
    let span = metric.target - metric.baseline;
    if span != 0.0 && remaining.signum() != span.signum() {
        return Err(InsufficientReason::BeyondTarget {
            level: level_before,
        });
    }
    Ok(movement / remaining)
}

/// Attributes the movement of one metric to the releases that touch its
/// hypotheses, one [`Outcome`] per (release, distinct hypothesis) pair,
/// ordered by release time, release id, hypothesis id. `experiments` take
/// precedence over before/after for their hypotheses, converted at
/// `experiment_level` (the metric's current level; ignored when there are
/// no experiments). See the module docs for every rule.
pub fn attribute(
    metric: &MetricSpan,
    observations: &[(Time, f64)],
    releases: &[ReleaseInput],
    experiments: &[ExperimentInput],
    experiment_level: f64,
    windows: &Windows,
) -> Result<Vec<Outcome>, ValidateError> {
    check_input(metric, observations, releases, windows)?;
    let experiments = index_experiments(experiments, experiment_level)?;

    let mut sorted: Vec<&ReleaseInput> = releases.iter().collect();
    sorted.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    let groups = group_releases(&sorted, windows.min_separation);
    let mut fits = Vec::with_capacity(groups.len());
    for cluster in clusters(&groups, windows) {
        fits.extend(fit_cluster(&groups[cluster], observations, windows));
    }

    let mut out = Vec::new();
    for (group, fit) in groups.iter().zip(&fits) {
        let group_hypotheses: BTreeSet<&str> = group
            .releases
            .iter()
            .flat_map(|r| r.hypothesis_ids.iter().map(String::as_str))
            .collect();
        let confounded = group.releases.len() > 1 || group_hypotheses.len() > 1;
        for release in &group.releases {
            let own: BTreeSet<&str> = release.hypothesis_ids.iter().map(String::as_str).collect();
            for hypothesis_id in own {
                let pair = Pair {
                    release_id: &release.id,
                    hypothesis_id,
                    fit,
                };
                let outcome = match experiments.get(hypothesis_id) {
                    Some(e) => pair.experiment(metric, experiment_level, e),
                    None => {
                        let shared_with = group
                            .releases
                            .iter()
                            .filter(|r| r.id != release.id)
                            .map(|r| r.id.clone())
                            .collect();
                        pair.before_after(metric, group_hypotheses.len(), confounded, shared_with)
                    }
                };
                out.push(outcome);
            }
        }
    }
    Ok(out)
}

/// New confidence and status of a hypothesis after one piece of evidence;
/// `None` keeps the current status. The prior is clamped to [0, 1] (NaN
/// counts as 0). Insufficient data, an `expected_effect` that is not a
/// positive number, or a non-finite realized effect change nothing. See the
/// module docs for the rule.
pub fn update(
    prior_confidence: f64,
    expected_effect: f64,
    evidence: &Outcome,
) -> (f64, Option<HypothesisStatus>) {
    let c = if prior_confidence.is_nan() {
        0.0
    } else {
        prior_confidence.clamp(0.0, 1.0)
    };
    let Outcome::Attributed(a) = evidence else {
        return (c, None);
    };
    if !(expected_effect > 0.0 && expected_effect.is_finite() && a.realized_effect.is_finite()) {
        return (c, None);
    }
    let r = a.realized_effect / expected_effect;
    let (confidence, status) = match a.method {
        Method::Experiment => {
            let (low, high) = a
                .realized_ci
                .unwrap_or((a.realized_effect, a.realized_effect));
            if low >= SUPPORT_RATIO * expected_effect {
                (
                    c.max(EXPERIMENT_VALIDATED_CONFIDENCE),
                    HypothesisStatus::Validated,
                )
            } else if high <= REFUTE_RATIO * expected_effect {
                (
                    c.min(EXPERIMENT_INVALIDATED_CONFIDENCE),
                    HypothesisStatus::Invalidated,
                )
            } else {
                let toward = r.clamp(0.0, 1.0);
                (
                    c + (toward - c) * EXPERIMENT_PULL,
                    HypothesisStatus::Testing,
                )
            }
        }
        Method::BeforeAfter => {
            let weight = if a.confounded { CONFOUNDED_WEIGHT } else { 1.0 };
            let (confidence, status) = match Verdict::from_ratio(r) {
                Verdict::Supports => (
                    c + (1.0 - c) * SUPPORT_GAIN * weight,
                    HypothesisStatus::Validated,
                ),
                Verdict::Refutes => (
                    c * (1.0 - (1.0 - REFUTE_FACTOR) * weight),
                    HypothesisStatus::Invalidated,
                ),
                Verdict::Inconclusive => (c, HypothesisStatus::Testing),
            };
            let status = if a.confounded {
                HypothesisStatus::Testing
            } else {
                status
            };
            (confidence, status)
        }
    };
    (confidence.clamp(0.0, 1.0), Some(status))
}

fn check_input(
    metric: &MetricSpan,
    observations: &[(Time, f64)],
    releases: &[ReleaseInput],
    windows: &Windows,
) -> Result<(), ValidateError> {
    if !metric.baseline.is_finite() || !metric.target.is_finite() {
        return Err(ValidateError::NonFiniteMetric {
            baseline: metric.baseline,
            target: metric.target,
        });
    }
    if let Some(&(time, _)) = observations.iter().find(|(_, v)| !v.is_finite()) {
        return Err(ValidateError::NonFiniteObservation { time });
    }
    for (which, d) in [
        ("before", windows.before),
        ("after", windows.after),
        ("min_separation", windows.min_separation),
    ] {
        if d < Duration::zero() {
            return Err(ValidateError::NegativeWindow { which });
        }
    }
    if windows.min_points == 0 {
        return Err(ValidateError::ZeroMinPoints);
    }
    let mut ids = BTreeSet::new();
    if let Some(r) = releases.iter().find(|r| !ids.insert(r.id.as_str())) {
        return Err(ValidateError::DuplicateRelease { id: r.id.clone() });
    }
    Ok(())
}

fn index_experiments(
    experiments: &[ExperimentInput],
    level: f64,
) -> Result<BTreeMap<&str, &ExperimentInput>, ValidateError> {
    if !experiments.is_empty() && !level.is_finite() {
        return Err(ValidateError::NonFiniteLevel(level));
    }
    let mut out = BTreeMap::new();
    for e in experiments {
        let invalid = |reason| ValidateError::InvalidExperiment {
            hypothesis_id: e.hypothesis_id.clone(),
            reason,
        };
        if !(e.lift.is_finite() && e.ci_low.is_finite() && e.ci_high.is_finite()) {
            return Err(invalid("lift and interval must be finite numbers"));
        }
        if !(e.ci_low <= e.lift && e.lift <= e.ci_high) {
            return Err(invalid("the lift must lie within its interval"));
        }
        if out.insert(e.hypothesis_id.as_str(), e).is_some() {
            return Err(ValidateError::DuplicateExperiment {
                hypothesis_id: e.hypothesis_id.clone(),
            });
        }
    }
    Ok(out)
}

/// Releases that share one step.
struct Group<'a> {
    releases: Vec<&'a ReleaseInput>,
    first: Time,
    last: Time,
}

/// Chains time-sorted releases into groups: a release less than
/// `min_separation` after the previous one, or at the same instant, joins
/// its group.
fn group_releases<'a>(sorted: &[&'a ReleaseInput], min_separation: Duration) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    for &release in sorted {
        match groups.last_mut() {
            Some(g) if release.time - g.last < min_separation || release.time == g.last => {
                g.releases.push(release);
                g.last = release.time;
            }
            _ => groups.push(Group {
                releases: vec![release],
                first: release.time,
                last: release.time,
            }),
        }
    }
    groups
}

/// Ranges of consecutive groups whose windows touch or overlap.
fn clusters(groups: &[Group], windows: &Windows) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=groups.len() {
        let split = i == groups.len()
            || groups[i - 1].last + windows.after < groups[i].first - windows.before;
        if split {
            out.push(start..i);
            start = i;
        }
    }
    out
}

/// The fit around one group's step.
struct GroupFit {
    points_before: usize,
    points_after: usize,
    /// The step and the fitted level just before it.
    estimate: Result<(f64, f64), InsufficientReason>,
}

/// Fits the step model over one cluster of groups (see the module docs).
fn fit_cluster(groups: &[Group], observations: &[(Time, f64)], windows: &Windows) -> Vec<GroupFit> {
    let n = groups.len();
    let (Some(head), Some(tail)) = (groups.first(), groups.last()) else {
        return Vec::new();
    };
    let (start, end) = (head.first - windows.before, tail.last + windows.after);

    // Segment s lies between group s-1 and group s; the step of group g
    // separates segments g and g+1.
    let mut rows: Vec<(usize, f64)> = Vec::new();
    'observations: for &(t, y) in observations {
        if t < start || t > end {
            continue;
        }
        let mut segment = 0;
        for g in groups {
            if t >= g.last {
                segment += 1;
            } else if t >= g.first {
                continue 'observations; // in transition
            } else {
                break;
            }
        }
        rows.push((segment, y));
    }
    let mut counts = vec![0usize; n + 1];
    for &(s, _) in &rows {
        counts[s] += 1;
    }

    // A step column enters only with observations after it and somewhere
    // before it; otherwise the system would be singular. Leaving it out
    // merges its empty segment into a neighbour without moving other steps.
    let mut column: Vec<Option<usize>> = vec![None; n];
    let mut columns = 1; // the intercept
    for g in 0..n {
        if counts[g + 1] > 0 && counts[..=g].iter().any(|&c| c > 0) {
            column[g] = Some(columns);
            columns += 1;
        }
    }
    let coefficients = fit_steps(&rows, &column, columns);

    (0..n)
        .map(|g| {
            let (points_before, points_after) = (counts[g], counts[g + 1]);
            let estimate =
                if points_before < windows.min_points || points_after < windows.min_points {
                    Err(InsufficientReason::TooFewPoints {
                        before: points_before,
                        after: points_after,
                        need: windows.min_points,
                    })
                } else {
                    match (&coefficients, column[g]) {
                        (Some(beta), Some(col)) => {
                            let level_before = beta[0]
                                + column[..g]
                                    .iter()
                                    .flatten()
                                    .fold(0.0, |acc, &c| acc + beta[c]);
                            Ok((beta[col], level_before))
                        }
                        _ => Err(InsufficientReason::SingularFit),
                    }
                };
            GroupFit {
                points_before,
                points_after,
                estimate,
            }
        })
        .collect()
}

/// Least squares of `y = a + Σ β_g · 1[segment > g]` over the included step
/// columns, from the normal equations. Values are centred first so that a
/// metric in the thousands keeps its small steps' precision. `None` when
/// there is nothing to fit or the system is singular.
fn fit_steps(rows: &[(usize, f64)], column: &[Option<usize>], columns: usize) -> Option<Vec<f64>> {
    if rows.is_empty() {
        return None;
    }
    let shift = rows.iter().map(|&(_, y)| y).sum::<f64>() / rows.len() as f64;
    let mut normal = vec![vec![0.0; columns]; columns];
    let mut rhs = vec![0.0; columns];
    let mut x = vec![0.0; columns];
    for &(segment, y) in rows {
        x.fill(0.0);
        x[0] = 1.0;
        for (g, col) in column.iter().enumerate() {
            if let Some(c) = col
                && segment > g
            {
                x[*c] = 1.0;
            }
        }
        for (i, xi) in x.iter().enumerate() {
            if *xi == 0.0 {
                continue;
            }
            for (n, xj) in normal[i].iter_mut().zip(&x) {
                *n += xi * xj;
            }
            rhs[i] += xi * (y - shift);
        }
    }
    let mut beta = solve(normal, rhs)?;
    beta[0] += shift;
    Some(beta)
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting. `None`
/// when a pivot is negligible against the matrix's largest entry.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    if !(scale > 0.0 && scale.is_finite()) {
        return None;
    }
    for col in 0..n {
        let pivot_row = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot_row][col].abs() <= PIVOT_TOLERANCE * scale {
            return None;
        }
        a.swap(col, pivot_row);
        b.swap(col, pivot_row);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let factor = row[col] / pivot[col];
            if factor == 0.0 {
                continue;
            }
            for (v, p) in row[col..].iter_mut().zip(&pivot[col..]) {
                *v -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s = (i + 1..n).fold(b[i], |s, k| s - a[i][k] * x[k]);
        x[i] = s / a[i][i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// One (release, hypothesis) pair being turned into an [`Outcome`].
struct Pair<'a> {
    release_id: &'a str,
    hypothesis_id: &'a str,
    fit: &'a GroupFit,
}

impl Pair<'_> {
    fn insufficient(&self, reason: InsufficientReason) -> Outcome {
        Outcome::InsufficientData {
            release_id: self.release_id.to_string(),
            hypothesis_id: self.hypothesis_id.to_string(),
            reason,
        }
    }

    fn before_after(
        &self,
        metric: &MetricSpan,
        hypotheses: usize,
        confounded: bool,
        shared_with: Vec<String>,
    ) -> Outcome {
        let (step, level_before) = match &self.fit.estimate {
            Ok(estimate) => *estimate,
            Err(reason) => return self.insufficient(reason.clone()),
        };
        let step_share = step / hypotheses.max(1) as f64;
        match realized_share(metric, level_before, step_share) {
            Ok(realized_effect) => Outcome::Attributed(Attribution {
                release_id: self.release_id.to_string(),
                hypothesis_id: self.hypothesis_id.to_string(),
                step,
                step_share,
                level_before,
                realized_effect,
                realized_ci: None,
                confounded,
                shared_with,
                points_before: self.fit.points_before,
                points_after: self.fit.points_after,
                method: Method::BeforeAfter,
            }),
            Err(reason) => self.insufficient(reason),
        }
    }

    fn experiment(&self, metric: &MetricSpan, level: f64, e: &ExperimentInput) -> Outcome {
        let shares = realized_share(metric, level, e.lift).and_then(|realized| {
            let low = realized_share(metric, level, e.ci_low)?;
            let high = realized_share(metric, level, e.ci_high)?;
            Ok((realized, (low.min(high), low.max(high))))
        });
        match shares {
            Ok((realized_effect, ci)) => Outcome::Attributed(Attribution {
                release_id: self.release_id.to_string(),
                hypothesis_id: self.hypothesis_id.to_string(),
                step: e.lift,
                step_share: e.lift,
                level_before: level,
                realized_effect,
                realized_ci: Some(ci),
                confounded: false,
                shared_with: Vec::new(),
                points_before: self.fit.points_before,
                points_after: self.fit.points_after,
                method: Method::Experiment,
            }),
            Err(reason) => self.insufficient(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use proptest::prelude::*;

    /// Noon UTC on day `d` after 2024-01-01 (a Monday), plus `hours`.
    fn at(d: i64, hours: i64) -> Time {
        DateTime::from_timestamp(1_704_067_200 + d * 86_400 + hours * 3_600, 0).unwrap()
            + Duration::hours(12)
    }

    fn day(d: i64) -> Time {
        at(d, 0)
    }

    fn release(id: &str, time: Time, hypotheses: &[&str]) -> ReleaseInput {
        ReleaseInput {
            id: id.into(),
            time,
            hypothesis_ids: hypotheses.iter().map(|h| h.to_string()).collect(),
        }
    }

    /// Daily observations on days `from..=to` at 13:00, an hour after a
    /// release at [`day`] noon, valued by `f(day)`.
    fn daily(from: i64, to: i64, f: impl Fn(i64) -> f64) -> Vec<(Time, f64)> {
        (from..=to).map(|d| (at(d, 1), f(d))).collect()
    }

    fn span(baseline: f64, target: f64) -> MetricSpan {
        MetricSpan { baseline, target }
    }

    fn run(
        metric: MetricSpan,
        observations: &[(Time, f64)],
        releases: &[ReleaseInput],
    ) -> Vec<Outcome> {
        attribute(
            &metric,
            observations,
            releases,
            &[],
            f64::NAN,
            &Windows::default(),
        )
        .unwrap()
    }

    fn attributed(o: &Outcome) -> &Attribution {
        match o {
            Outcome::Attributed(a) => a,
            other => panic!("expected an attribution, got {other:?}"),
        }
    }

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} is not within {tol} of {b}");
    }

    /// Deterministic noise in [-amplitude, amplitude] (a 64-bit LCG).
    fn noise(amplitude: f64) -> impl FnMut() -> f64 {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
        }
    }

    #[test]
    fn a_single_clean_step_is_recovered() {
        let obs = daily(-28, 28, |d| if d < 0 { 2.0 } else { 2.5 });
        let out = run(span(2.0, 3.0), &obs, &[release("R1", day(0), &["H1"])]);
        assert_eq!(out.len(), 1);
        let a = attributed(&out[0]);
        assert_eq!(
            (a.release_id.as_str(), a.hypothesis_id.as_str()),
            ("R1", "H1")
        );
        close(a.step, 0.5, 1e-12);
        close(a.step_share, 0.5, 1e-12);
        close(a.level_before, 2.0, 1e-12);
        close(a.realized_effect, 0.5, 1e-12);
        assert!(!a.confounded);
        assert!(a.shared_with.is_empty());
        // 13:00 on days -28..=-1 before; days 0..=27 after (day 28 at 13:00
        // is past the window's end at noon).
        assert_eq!((a.points_before, a.points_after), (28, 28));
        assert_eq!(a.method, Method::BeforeAfter);
        assert_eq!(a.realized_ci, None);
    }

    #[test]
    fn the_readme_worked_example() {
        // Checkout conversion: baseline 2.1 %, target 3.5 %, weekly points.
        let obs: Vec<(Time, f64)> = [-27, -20, -13, -6]
            .into_iter()
            .map(|d| (day(d), 2.1))
            .chain([1, 8, 15, 22].into_iter().map(|d| (day(d), 2.8)))
            .collect();
        let out = run(span(2.1, 3.5), &obs, &[release("R-7", day(0), &["H-1"])]);
        let a = attributed(&out[0]);
        close(a.step, 0.7, 1e-12);
        close(a.level_before, 2.1, 1e-12);
        close(a.realized_effect, 0.5, 1e-12);
        assert_eq!((a.points_before, a.points_after), (4, 4));
        let r = a.realized_effect / 0.4;
        close(r, 1.25, 1e-12);
        assert_eq!(Verdict::from_ratio(r), Verdict::Supports);
        let (confidence, status) = update(0.6, 0.4, &out[0]);
        close(confidence, 0.8, 1e-12);
        assert_eq!(status, Some(HypothesisStatus::Validated));
    }

    #[test]
    fn two_releases_weeks_apart_are_attributed_separately() {
        let level = |d: i64| match d {
            ..0 => 2.0,
            0..21 => 2.2,
            _ => 2.5,
        };
        let obs = daily(-40, 60, level);
        let releases = [
            release("R2", day(21), &["H2"]),
            release("R1", day(0), &["H1"]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        let ids: Vec<(&str, &str)> = out
            .iter()
            .map(|o| (o.release_id(), o.hypothesis_id()))
            .collect();
        assert_eq!(ids, vec![("R1", "H1"), ("R2", "H2")], "ordered by time");
        let (a, b) = (attributed(&out[0]), attributed(&out[1]));
        close(a.step, 0.2, 1e-9);
        close(b.step, 0.3, 1e-9);
        close(a.level_before, 2.0, 1e-9);
        close(b.level_before, 2.2, 1e-9);
        close(a.realized_effect, 0.2, 1e-9);
        close(b.realized_effect, 0.3 / 0.8, 1e-9);
        assert!(!a.confounded && !b.confounded);
        assert_eq!((a.points_before, a.points_after), (28, 21));
        assert_eq!((b.points_before, b.points_after), (21, 28));
    }

    #[test]
    fn two_releases_with_noise_are_attributed_within_tolerance() {
        let mut jitter = noise(0.05);
        let obs: Vec<(Time, f64)> = daily(-40, 60, |d| match d {
            ..0 => 2.0,
            0..21 => 2.2,
            _ => 2.5,
        })
        .into_iter()
        .map(|(t, y)| (t, y + jitter()))
        .collect();
        let releases = [
            release("R1", day(0), &["H1"]),
            release("R2", day(21), &["H2"]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        let (a, b) = (attributed(&out[0]), attributed(&out[1]));
        close(a.step, 0.2, 0.03);
        close(b.step, 0.3, 0.03);

        // Without a trend the least-squares steps are the differences of the
        // segment means; the solver must agree to rounding.
        let mean = |from: Time, to: Time| {
            let v: Vec<f64> = obs
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, y)| *y)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let m0 = mean(day(-28), day(0));
        let m1 = mean(day(0), day(21));
        let m2 = mean(day(21), day(49) + Duration::seconds(1));
        close(a.step, m1 - m0, 1e-12);
        close(b.step, m2 - m1, 1e-12);
        close(a.level_before, m0, 1e-12);
        close(b.level_before, m1, 1e-12);
    }

    #[test]
    fn same_day_releases_are_confounded_and_share_the_step() {
        let obs = daily(-28, 28, |d| if d < 0 { 2.0 } else { 2.6 });
        let releases = [
            release("R1", at(0, -2), &["H1"]),
            release("R2", at(0, 3), &["H2"]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        assert_eq!(out.len(), 2);
        for (o, other) in out.iter().zip(["R2", "R1"]) {
            let a = attributed(o);
            close(a.step, 0.6, 1e-12);
            close(a.step_share, 0.3, 1e-12);
            close(a.realized_effect, 0.3, 1e-12);
            assert!(a.confounded);
            assert_eq!(a.shared_with, vec![other.to_string()]);
        }
        // Confounded support: half the move, still testing.
        let (c, status) = update(0.6, 0.4, &out[0]);
        close(c, 0.7, 1e-12);
        assert_eq!(status, Some(HypothesisStatus::Testing));
    }

    #[test]
    fn close_releases_chain_into_one_group_and_skip_the_transition() {
        // Days 0, 2 and 4 with a 3-day separation: one group, although the
        // first and last are 4 days apart. Days 0..4 are in transition.
        let obs = daily(-28, 40, |d| match d {
            ..0 => 2.0,
            0..2 => 2.1,
            2..4 => 2.3,
            _ => 2.6,
        });
        let releases = [
            release("A", day(0), &["H1"]),
            release("B", day(2), &["H1", "H2", "H1"]),
            release("C", day(4), &[]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        let ids: Vec<(&str, &str)> = out
            .iter()
            .map(|o| (o.release_id(), o.hypothesis_id()))
            .collect();
        assert_eq!(ids, vec![("A", "H1"), ("B", "H1"), ("B", "H2")]);
        for o in &out {
            let a = attributed(o);
            close(a.step, 0.6, 1e-12);
            close(a.step_share, 0.3, 1e-12);
            assert!(a.confounded);
            assert_eq!((a.points_before, a.points_after), (28, 28));
        }
        assert_eq!(attributed(&out[0]).shared_with, vec!["B", "C"]);

        // Four days apart is enough separation: two steps.
        let releases = [release("A", day(0), &["H1"]), release("B", day(4), &["H2"])];
        let windows = Windows {
            min_points: 2,
            ..Windows::default()
        };
        let obs = daily(-28, 40, |d| match d {
            ..0 => 2.0,
            0..4 => 2.1,
            _ => 2.6,
        });
        let out = attribute(&span(2.0, 3.0), &obs, &releases, &[], 0.0, &windows).unwrap();
        close(attributed(&out[0]).step, 0.1, 1e-12);
        close(attributed(&out[1]).step, 0.5, 1e-12);
        assert!(!attributed(&out[0]).confounded);
    }

    #[test]
    fn too_few_observations_give_insufficient_data() {
        let obs = vec![
            (day(-13), 2.0),
            (day(-6), 2.0),
            (day(1), 2.5),
            (day(8), 2.5),
            (day(15), 2.5),
            (day(22), 2.5),
        ];
        let out = run(span(2.0, 3.0), &obs, &[release("R1", day(0), &["H1"])]);
        let reason = InsufficientReason::TooFewPoints {
            before: 2,
            after: 4,
            need: 3,
        };
        assert_eq!(
            out,
            vec![Outcome::InsufficientData {
                release_id: "R1".into(),
                hypothesis_id: "H1".into(),
                reason: reason.clone(),
            }]
        );
        assert_eq!(
            reason.to_string(),
            "2 observations before the release and 4 after it within the windows; each side needs at least 3"
        );
        assert_eq!(update(0.6, 0.4, &out[0]), (0.6, None));

        // Points outside the windows do not count.
        let far = vec![(day(-40), 2.0), (day(-35), 2.0), (day(-30), 2.0)];
        let obs: Vec<_> = far.into_iter().chain(obs).collect();
        let out = run(span(2.0, 3.0), &obs, &[release("R1", day(0), &["H1"])]);
        assert!(matches!(
            &out[0],
            Outcome::InsufficientData {
                reason: InsufficientReason::TooFewPoints { before: 2, .. },
                ..
            }
        ));

        // No observations at all.
        let out = run(span(2.0, 3.0), &[], &[release("R1", day(0), &["H1"])]);
        assert!(matches!(
            &out[0],
            Outcome::InsufficientData {
                reason: InsufficientReason::TooFewPoints {
                    before: 0,
                    after: 0,
                    need: 3
                },
                ..
            }
        ));
    }

    #[test]
    fn an_unobserved_gap_between_releases_leaves_only_those_steps_unknown() {
        // R1 (day 0) and R2 (day 5) are separate groups with no observation
        // between them; R3 (day 30) still gets its exact step.
        let obs: Vec<_> = daily(-28, 60, |d| match d {
            ..0 => 2.0,
            0..30 => 2.5,
            _ => 2.7,
        })
        .into_iter()
        .filter(|(t, _)| *t < day(0) || *t > day(5))
        .collect();
        let releases = [
            release("R1", day(0), &["H1"]),
            release("R2", day(5), &["H2"]),
            release("R3", day(30), &["H3"]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        assert!(matches!(
            &out[0],
            Outcome::InsufficientData {
                reason: InsufficientReason::TooFewPoints { after: 0, .. },
                ..
            }
        ));
        assert!(matches!(
            &out[1],
            Outcome::InsufficientData {
                reason: InsufficientReason::TooFewPoints { before: 0, .. },
                ..
            }
        ));
        let a = attributed(&out[2]);
        close(a.step, 0.2, 1e-12);
        close(a.level_before, 2.5, 1e-12);
        close(a.realized_effect, 0.4, 1e-12);
    }

    #[test]
    fn distant_releases_are_fitted_apart_so_drift_between_is_not_credited() {
        // Level 2.0, +0.2 at day 0, an unexplained ramp to 2.5 over days
        // 40..60, +0.1 at day 100. The windows (28 days) do not meet.
        let obs = daily(-40, 140, |d| match d {
            ..0 => 2.0,
            0..40 => 2.2,
            40..60 => 2.2 + 0.3 * (d - 40) as f64 / 20.0,
            60..100 => 2.5,
            _ => 2.6,
        });
        let releases = [
            release("R1", day(0), &["H1"]),
            release("R2", day(100), &["H2"]),
        ];
        let out = run(span(2.0, 3.0), &obs, &releases);
        let (a, b) = (attributed(&out[0]), attributed(&out[1]));
        close(a.step, 0.2, 1e-9);
        close(b.step, 0.1, 1e-9);
        close(b.level_before, 2.5, 1e-9);
        close(b.realized_effect, 0.2, 1e-9);
    }

    #[test]
    fn a_lower_is_better_metric_counts_moving_down_as_progress() {
        // Lead time 10 days -> 4 days.
        let metric = span(10.0, 4.0);
        assert_eq!(metric.direction(), Direction::LowerIsBetter);
        let down = daily(-28, 28, |d| if d < 0 { 10.0 } else { 8.5 });
        let out = run(metric, &down, &[release("R1", day(0), &["H1"])]);
        let a = attributed(&out[0]);
        close(a.step, -1.5, 1e-12);
        close(a.realized_effect, 0.25, 1e-12);
        assert_eq!(
            update(0.6, 0.4, &out[0]).1,
            Some(HypothesisStatus::Validated)
        );

        let up = daily(-28, 28, |d| if d < 0 { 10.0 } else { 11.0 });
        let out = run(metric, &up, &[release("R1", day(0), &["H1"])]);
        let a = attributed(&out[0]);
        close(a.step, 1.0, 1e-12);
        close(a.realized_effect, -1.0 / 6.0, 1e-12);
        let (c, status) = update(0.6, 0.4, &out[0]);
        close(c, 0.3, 1e-12);
        assert_eq!(status, Some(HypothesisStatus::Invalidated));
    }

    #[test]
    fn a_metric_at_or_past_its_target_has_no_gap_to_close() {
        let at_target = daily(-28, 28, |d| if d < 0 { 3.0 } else { 3.2 });
        let out = run(
            span(2.0, 3.0),
            &at_target,
            &[release("R1", day(0), &["H1"])],
        );
        assert!(matches!(
            &out[0],
            Outcome::InsufficientData { reason: InsufficientReason::AtTarget { level }, .. }
                if (level - 3.0).abs() < 1e-12
        ));
        let past = daily(-28, 28, |d| if d < 0 { 3.4 } else { 3.6 });
        let out = run(span(2.0, 3.0), &past, &[release("R1", day(0), &["H1"])]);
        assert!(matches!(
            &out[0],
            Outcome::InsufficientData {
                reason: InsufficientReason::BeyondTarget { .. },
                ..
            }
        ));
        // Below the baseline is still on the near side of the target.
        close(
            realized_share(&span(2.0, 3.0), 1.5, 0.3).unwrap(),
            0.2,
            1e-12,
        );
    }

    #[test]
    fn an_experiment_overrides_before_after_for_its_hypothesis() {
        let obs = daily(-28, 28, |d| if d < 0 { 2.0 } else { 2.5 });
        let releases = [release("R1", day(0), &["H1", "H2"])];
        let experiments = [ExperimentInput {
            hypothesis_id: "H1".into(),
            lift: 0.1,
            ci_low: 0.05,
            ci_high: 0.15,
        }];
        let out = attribute(
            &span(2.0, 3.0),
            &obs,
            &releases,
            &experiments,
            2.5,
            &Windows::default(),
        )
        .unwrap();
        let h1 = attributed(&out[0]);
        assert_eq!(h1.method, Method::Experiment);
        close(h1.step, 0.1, 1e-12);
        close(h1.realized_effect, 0.2, 1e-12);
        let (low, high) = h1.realized_ci.unwrap();
        close(low, 0.1, 1e-12);
        close(high, 0.3, 1e-12);
        assert!(!h1.confounded);
        // H2 has no experiment: it shares the 0.5 step with H1.
        let h2 = attributed(&out[1]);
        assert_eq!(h2.method, Method::BeforeAfter);
        close(h2.step_share, 0.25, 1e-12);
        close(h2.realized_effect, 0.25, 1e-12);
        assert!(h2.confounded);
        // The interval straddles the support bar: testing, pulled toward r = 0.5.
        let (c, status) = update(0.6, 0.4, &out[0]);
        close(c, 0.55, 1e-12);
        assert_eq!(status, Some(HypothesisStatus::Testing));

        // Without any usable series the experiment still counts.
        let out = attribute(
            &span(2.0, 3.0),
            &[],
            &releases[..],
            &experiments,
            2.5,
            &Windows::default(),
        )
        .unwrap();
        assert_eq!(attributed(&out[0]).method, Method::Experiment);
        assert!(matches!(out[1], Outcome::InsufficientData { .. }));

        // Lower is better: the interval's ends swap when converted.
        let lead_time = [ExperimentInput {
            hypothesis_id: "H1".into(),
            lift: -1.2,
            ci_low: -2.0,
            ci_high: -0.4,
        }];
        let out = attribute(
            &span(10.0, 4.0),
            &[],
            &[release("R1", day(0), &["H1"])],
            &lead_time,
            10.0,
            &Windows::default(),
        )
        .unwrap();
        let a = attributed(&out[0]);
        close(a.realized_effect, 0.2, 1e-12);
        let (low, high) = a.realized_ci.unwrap();
        close(low, 0.4 / 6.0, 1e-12);
        close(high, 2.0 / 6.0, 1e-12);
    }

    #[test]
    fn invalid_input_is_an_error() {
        let r = [release("R1", day(0), &["H1"])];
        let w = Windows::default();
        let m = span(2.0, 3.0);
        assert_eq!(
            attribute(&m, &[(day(1), f64::NAN)], &r, &[], 0.0, &w),
            Err(ValidateError::NonFiniteObservation { time: day(1) })
        );
        assert!(matches!(
            attribute(&span(f64::INFINITY, 3.0), &[], &r, &[], 0.0, &w),
            Err(ValidateError::NonFiniteMetric { .. })
        ));
        let negative = Windows {
            after: Duration::days(-1),
            ..w
        };
        assert_eq!(
            attribute(&m, &[], &r, &[], 0.0, &negative),
            Err(ValidateError::NegativeWindow { which: "after" })
        );
        let zero = Windows { min_points: 0, ..w };
        assert_eq!(
            attribute(&m, &[], &r, &[], 0.0, &zero),
            Err(ValidateError::ZeroMinPoints)
        );
        let twice = [r[0].clone(), r[0].clone()];
        assert_eq!(
            attribute(&m, &[], &twice, &[], 0.0, &w),
            Err(ValidateError::DuplicateRelease { id: "R1".into() })
        );
        let e = ExperimentInput {
            hypothesis_id: "H1".into(),
            lift: 0.3,
            ci_low: 0.0,
            ci_high: 0.2,
        };
        assert!(matches!(
            attribute(&m, &[], &r, std::slice::from_ref(&e), 2.0, &w),
            Err(ValidateError::InvalidExperiment { .. })
        ));
        let ok = ExperimentInput { lift: 0.1, ..e };
        assert_eq!(
            attribute(&m, &[], &r, &[ok.clone(), ok.clone()], 2.0, &w),
            Err(ValidateError::DuplicateExperiment {
                hypothesis_id: "H1".into()
            })
        );
        assert!(matches!(
            attribute(&m, &[], &r, &[ok], f64::NAN, &w),
            Err(ValidateError::NonFiniteLevel(l)) if l.is_nan()
        ));
    }

    fn evidence(
        method: Method,
        confounded: bool,
        realized: f64,
        ci: Option<(f64, f64)>,
    ) -> Outcome {
        Outcome::Attributed(Attribution {
            release_id: "R".into(),
            hypothesis_id: "H".into(),
            step: 0.0,
            step_share: 0.0,
            level_before: 0.0,
            realized_effect: realized,
            realized_ci: ci,
            confounded,
            shared_with: Vec::new(),
            points_before: 3,
            points_after: 3,
            method,
        })
    }

    #[test]
    fn update_rule_for_before_after_evidence() {
        use HypothesisStatus::*;
        let ba = |confounded, realized| evidence(Method::BeforeAfter, confounded, realized, None);
        let cases = [
            // (confounded, realized, new confidence, status); expected 0.4.
            (false, 0.2, 0.8, Validated),   // r = 0.5: supports
            (false, 0.6, 0.8, Validated),   // r = 1.5
            (false, 0.0, 0.3, Invalidated), // r = 0: refutes
            (false, -0.1, 0.3, Invalidated),
            (false, 0.1, 0.6, Testing), // r = 0.25: inconclusive
            (true, 0.2, 0.7, Testing),
            (true, -0.1, 0.45, Testing),
            (true, 0.1, 0.6, Testing),
        ];
        for (confounded, realized, want, status) in cases {
            let (c, s) = update(0.6, 0.4, &ba(confounded, realized));
            close(c, want, 1e-12);
            assert_eq!(
                s,
                Some(status),
                "confounded {confounded}, realized {realized}"
            );
        }
        assert_eq!(update(0.6, 0.0, &ba(false, 0.5)), (0.6, None));
        assert_eq!(update(0.6, 0.4, &ba(false, f64::NAN)), (0.6, None));
        assert_eq!(update(1.7, 0.4, &ba(false, 0.5)).0, 1.0);
    }

    #[test]
    fn update_rule_for_experiments() {
        use HypothesisStatus::*;
        let ex =
            |realized, low, high| evidence(Method::Experiment, false, realized, Some((low, high)));
        // Lower end 0.25 >= 0.5 x 0.4: validated, confidence at least 0.9.
        assert_eq!(
            update(0.6, 0.4, &ex(0.3, 0.25, 0.35)),
            (0.9, Some(Validated))
        );
        assert_eq!(
            update(0.95, 0.4, &ex(0.3, 0.25, 0.35)),
            (0.95, Some(Validated))
        );
        // Upper end <= 0: invalidated, confidence at most 0.1.
        assert_eq!(
            update(0.6, 0.4, &ex(-0.1, -0.2, 0.0)),
            (0.1, Some(Invalidated))
        );
        assert_eq!(
            update(0.05, 0.4, &ex(-0.1, -0.2, 0.0)),
            (0.05, Some(Invalidated))
        );
        // Otherwise halfway toward clamp(r, 0, 1): r = 2 -> 1, r < 0 -> 0.
        let (c, s) = update(0.6, 0.4, &ex(0.8, 0.1, 1.5));
        close(c, 0.8, 1e-12);
        assert_eq!(s, Some(Testing));
        let (c, s) = update(0.6, 0.4, &ex(-0.1, -0.3, 0.1));
        close(c, 0.3, 1e-12);
        assert_eq!(s, Some(Testing));
        // Confounding never applies to an experiment's rule.
        let confounded = evidence(Method::Experiment, true, 0.3, Some((0.25, 0.35)));
        assert_eq!(update(0.6, 0.4, &confounded).1, Some(Validated));
    }

    #[test]
    fn solver_handles_pivoting_and_reports_singular_systems() {
        // Needs a row swap: the first pivot is 0.
        let x = solve(vec![vec![0.0, 2.0], vec![3.0, 1.0]], vec![4.0, 5.0]).unwrap();
        close(x[0], 1.0, 1e-15);
        close(x[1], 2.0, 1e-15);
        assert_eq!(
            solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]),
            None
        );
        assert_eq!(solve(vec![vec![0.0]], vec![1.0]), None);
    }

    fn any_outcome() -> impl Strategy<Value = Outcome> {
        let method = prop_oneof![Just(Method::BeforeAfter), Just(Method::Experiment)];
        (
            method,
            any::<bool>(),
            -10.0..10.0f64,
            -10.0..10.0f64,
            0.0..5.0f64,
            any::<bool>(),
        )
            .prop_map(|(method, confounded, realized, low, width, insufficient)| {
                if insufficient {
                    Outcome::InsufficientData {
                        release_id: "R".into(),
                        hypothesis_id: "H".into(),
                        reason: InsufficientReason::SingularFit,
                    }
                } else {
                    let ci = (method == Method::Experiment).then_some((low, low + width));
                    evidence(method, confounded, realized, ci)
                }
            })
    }

    proptest! {
        #[test]
        fn confidence_stays_within_zero_and_one(
            prior in 0.0..=1.0f64,
            expected in 0.001..=1.0f64,
            outcome in any_outcome(),
        ) {
            let (c, status) = update(prior, expected, &outcome);
            prop_assert!((0.0..=1.0).contains(&c), "{c}");
            if let Outcome::Attributed(a) = &outcome
                && a.method == Method::BeforeAfter
            {
                match Verdict::from_ratio(a.realized_effect / expected) {
                    Verdict::Supports => prop_assert!(c >= prior),
                    Verdict::Refutes => prop_assert!(c <= prior),
                    Verdict::Inconclusive => prop_assert_eq!(c, prior),
                }
                if a.confounded {
                    prop_assert_eq!(status, Some(HypothesisStatus::Testing));
                }
            }
        }

        #[test]
        fn noiseless_steps_are_recovered_exactly(
            base in 1.0..10.0f64,
            steps in prop::collection::vec((-1.0..1.0f64, 7i64..70), 1..5),
        ) {
            let mut releases = Vec::new();
            let mut when = 0;
            for (i, (_, gap)) in steps.iter().enumerate() {
                releases.push(release(&format!("R{i}"), day(when), &[&format!("H{i}")]));
                when += gap;
            }
            let level = |d: i64| {
                let mut y = base;
                let mut t = 0;
                for (step, gap) in &steps {
                    if d >= t { y += step; }
                    t += gap;
                }
                y
            };
            let obs = daily(-30, when + 30, level);
            let out = run(span(base, base + 100.0), &obs, &releases);
            prop_assert_eq!(out.len(), steps.len());
            let mut t = 0;
            for (o, (step, gap)) in out.iter().zip(&steps) {
                let a = attributed(o);
                prop_assert!((a.step - step).abs() < 1e-9, "{} vs {}", a.step, step);
                prop_assert!((a.level_before - level(t - 1)).abs() < 1e-9);
                t += gap;
            }
        }
    }
}
