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
//! measured by the metric, and [`Windows`] (defaults: 42 days before, 42 days
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
//! 6. **Confounding and credit.** A group's hypotheses share its step. Each
//!    hypothesis `h` was expected to close `m_h = d_h x expected_effect_h`
//!    of the gap, where `d_h` ([`Delivery`]) is what the group's releases
//!    delivered of it (the used contributions of the released items linked
//!    to it, summed over the group). The step is credited in proportion to
//!    `m_h` (equally when no `m_h` is positive). The pairs are flagged
//!    *confounded* when the group holds two or more releases, and also when
//!    the step is shared by two or more hypotheses.
//! 7. **Realized effect**, in the unit of a hypothesis' expected effect (share
//!    of the gap): `realized = step_share / (target - level_before)`, where
//!    `level_before` is the fitted level of the segment just before the step.
//!    It is signed for both directions: positive means the metric moved
//!    toward the target (down, for a lower-is-better metric), negative means
//!    away. If `level_before` is at the target, or already past it, there is
//!    no gap left to close and the pair gets `InsufficientData`.
//!
//! # Noise
//!
//! The residuals of every cluster's fit are pooled per metric:
//! `σ² = (RSS + NOISE_PRIOR_DOF · σ₀²) / (dof + NOISE_PRIOR_DOF)` with the
//! floor `σ₀ = NOISE_FLOOR_SHARE x |target - baseline|`, `σ >= σ₀`, and the
//! variance inflated by `ν / (ν - 2)` (`ν = dof + NOISE_PRIOR_DOF`; 3 when
//! `ν <= 3`) for a small sample ([`pooled_noise`]). A step's standard error is
//! `σ · sqrt((XᵀX)⁻¹)` on its diagonal.
//!
//! # Experiments
//!
//! An [`ExperimentInput`] (absolute lift and its 95 % interval, in the
//! metric's unit) takes precedence over before/after for its hypothesis:
//! `realized = lift / (target - level)`, where `level` is the metric's level
//! when the experiment ran (the caller passes the current level), and the
//! interval is converted the same way (its ends swap when the metric is
//! lower-is-better); its standard error is the interval's width over
//! `2 x INTERVAL_Z`, and `m` is the whole expected effect (`d = 1`). A
//! randomized experiment is not confounded by other releases. Experiments
//! for hypotheses that no given release touches are ignored here.
//!
//! # Updating confidence and status ([`update`])
//!
//! Confidence is the probability that the hypothesis is right. With `x` the
//! group's step as a share of the gap and `s` its standard error (same
//! unit), a right hypothesis' true effect is `N(m, (EFFECT_TOLERANCE · m)²)`
//! and a wrong one's `N(0, (EFFECT_TOLERANCE · m)²)`, so the step is normal
//! with mean `Σ m` over the right hypotheses of the group and variance
//! `V = s² + EFFECT_TOLERANCE² Σ m²` whichever are right. For a hypothesis
//! alone, `LLR = m (2x - m) / 2V`. With others on the same step, the
//! likelihoods are averaged over their right/wrong combinations weighted by
//! their confidences (all `2^k` for up to [`MAX_JOINT`] hypotheses; beyond,
//! the others' sum is taken as normal with its mean and variance). The
//! update is `logit(c') = logit(c) + LLR`, with `|LLR| <=`
//! [`MAX_LOG_LIKELIHOOD_RATIO`], so independent evidence commutes and
//! zero-strength evidence (`m = 0`, `s` unknown or infinite) adds exactly 0.
//! The status follows the posterior: VALIDATED at [`VALIDATED_AT`] or more,
//! INVALIDATED at [`INVALIDATED_AT`] or less, TESTING between.
//!
//! Worked example (README): baseline 0, target 100, weekly 50, 45, 55, 50 |
//! 55, 50, 60, 55; step 5 from level 50, `σ² = (100 + 2 · 0.5²) / 8`,
//! `se = sqrt(σ² · 8/6 · (1/4 + 1/4)) = 2.89`; `x = 0.1`, `s = 0.058`; a
//! hypothesis expecting 0.1 at confidence 0.6: `V = 0.058² + 0.04²`,
//! `LLR = 1.01`, confidence 0.80, TESTING.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use chrono::Duration;

use crate::domain::{Direction, HypothesisStatus, Metric, Time};

/// Posterior confidence at or above which a hypothesis is VALIDATED.
pub const VALIDATED_AT: f64 = 0.95;
/// Posterior confidence at or below which a hypothesis is INVALIDATED.
pub const INVALIDATED_AT: f64 = 0.05;
/// How rough an effect estimate is: a right hypothesis' true effect is taken
/// as normal around what it was expected to deliver, and a wrong one's around
/// 0, both with this share of the expected delivery as standard deviation.
/// A right bet that delivers 70 % or 140 % of its estimate is still right;
/// a wrong one may move the metric a little either way.
pub const EFFECT_TOLERANCE: f64 = 0.4;
/// The noise never counts as less than this share of the distance from
/// baseline to target: a perfectly flat series is a measurement artefact,
/// not infinite precision.
pub const NOISE_FLOOR_SHARE: f64 = 0.005;
/// Pseudo degrees of freedom of the noise floor in the pooled noise
/// estimate, so that a handful of residuals cannot claim a noise near 0.
pub const NOISE_PRIOR_DOF: f64 = 2.0;
/// Hypotheses sharing one step are weighed jointly (all 2^k right/wrong
/// combinations) up to this many; beyond it, the others are summarized by
/// their mean and variance (see the module docs).
pub const MAX_JOINT: usize = 8;
/// One piece of evidence moves the log-odds by at most this much, so that a
/// zero-width interval or a noiseless series cannot make a confidence
/// exactly 0 or 1.
pub const MAX_LOG_LIKELIHOOD_RATIO: f64 = 20.0;
/// z of a two-sided 95 % interval: an experiment's interval is read as
/// `lift ± INTERVAL_Z x se`.
pub const INTERVAL_Z: f64 = 1.959_963_984_540_054;
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
    /// What the release delivers of each hypothesis, by id. A hypothesis
    /// listed in `hypothesis_ids` but missing here counts as fully delivered
    /// with an expected effect of 1 (equal weights among such hypotheses).
    pub deliveries: BTreeMap<String, Delivery>,
}

/// What one release delivers of one hypothesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// `d`: the sum of the used contributions (scaled down when the
    /// hypothesis' contributions add up to more than 1, as in the score) of
    /// the released items linked to the hypothesis.
    pub delivered: f64,
    /// The hypothesis' expected effect (share of the gap) when fully
    /// delivered.
    pub expected_effect: f64,
}

impl Delivery {
    /// The default for a hypothesis a release lists without a delivery.
    pub const WHOLE: Delivery = Delivery {
        delivered: 1.0,
        expected_effect: 1.0,
    };

    /// `d x expected_effect`: the share of the gap this delivery should close,
    /// 0 for anything that is not a finite positive number.
    pub fn expected_share(&self) -> f64 {
        let e = self.delivered * self.expected_effect;
        if e.is_finite() && e > 0.0 { e } else { 0.0 }
    }
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
    /// Six weeks each side (six points of a weekly metric), three days
    /// apart, three points a side.
    fn default() -> Self {
        Windows {
            before: Duration::days(42),
            after: Duration::days(42),
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
    /// Standard error of `step` in the metric's unit (see "Noise"); for an
    /// experiment, from its interval.
    pub step_se: f64,
    /// This hypothesis' share of `step`, in proportion to what each
    /// hypothesis of the group was expected to deliver (the whole lift for an
    /// experiment).
    pub step_share: f64,
    /// `d`: how much of the hypothesis the group delivered (1 for an
    /// experiment).
    pub delivered: f64,
    /// `d x expected_effect`: the share of the gap this hypothesis should
    /// have closed had it been right; what `realized_effect` is judged against.
    pub expected_share: f64,
    /// Standard error of the group's whole realized share `step / gap`.
    pub realized_se: f64,
    /// The step as a share of the gap: `step / (target - level_before)`.
    pub step_realized: f64,
    /// Every distinct hypothesis sharing the step, this one included, with
    /// its expected share, by id; the joint update weighs them together.
    pub group: Vec<(String, f64)>,
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

/// The evidence's verdict on a hypothesis: the status it leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supports,
    Refutes,
    Inconclusive,
}

impl Verdict {
    /// Supports when the posterior is at or above [`VALIDATED_AT`], refutes
    /// at or below [`INVALIDATED_AT`], inconclusive in between: the verdict
    /// always agrees with [`status_of`].
    pub fn of_confidence(c: f64) -> Verdict {
        match status_of(c) {
            HypothesisStatus::Validated => Verdict::Supports,
            HypothesisStatus::Invalidated => Verdict::Refutes,
            _ => Verdict::Inconclusive,
        }
    }
}

/// The status a posterior confidence stands for.
pub fn status_of(c: f64) -> HypothesisStatus {
    if c >= VALIDATED_AT {
        HypothesisStatus::Validated
    } else if c <= INVALIDATED_AT {
        HypothesisStatus::Invalidated
    } else {
        HypothesisStatus::Testing
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
    let mut pooled = Residuals::default();
    for cluster in clusters(&groups, windows) {
        let (cluster_fits, residuals) = fit_cluster(&groups[cluster], observations, windows);
        fits.extend(cluster_fits);
        pooled.sum_of_squares += residuals.sum_of_squares;
        pooled.degrees_of_freedom += residuals.degrees_of_freedom;
    }
    let (noise, inflation) = pooled_noise(metric, pooled.sum_of_squares, pooled.degrees_of_freedom);
    for fit in &mut fits {
        if let Ok((_, _, variance)) = fit.estimate {
            fit.step_se = noise * (variance.max(0.0) * inflation).sqrt();
        }
    }

    let mut out = Vec::new();
    for (group, fit) in groups.iter().zip(&fits) {
        // d summed over the group's releases, per distinct hypothesis.
        let mut deliveries: BTreeMap<&str, Delivery> = BTreeMap::new();
        for r in &group.releases {
            let own: BTreeSet<&str> = r.hypothesis_ids.iter().map(String::as_str).collect();
            for h in own {
                let d = r.deliveries.get(h).copied().unwrap_or(Delivery::WHOLE);
                deliveries
                    .entry(h)
                    .and_modify(|sum| sum.delivered += d.delivered)
                    .or_insert(d);
            }
        }
        let members: Vec<(String, f64)> = deliveries
            .iter()
            .map(|(h, d)| (h.to_string(), d.expected_share()))
            .collect();
        let confounded = group.releases.len() > 1 || deliveries.len() > 1;
        for release in &group.releases {
            let own: BTreeSet<&str> = release.hypothesis_ids.iter().map(String::as_str).collect();
            for hypothesis_id in own {
                let delivery = deliveries
                    .get(hypothesis_id)
                    .copied()
                    .unwrap_or(Delivery::WHOLE);
                let pair = Pair {
                    release_id: &release.id,
                    hypothesis_id,
                    fit,
                    delivered: delivery.delivered,
                    expected_effect: delivery.expected_effect,
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
                        pair.before_after(metric, &members, confounded, shared_with)
                    }
                };
                out.push(outcome);
            }
        }
    }
    Ok(out)
}

/// The log of a normal density.
fn log_normal(x: f64, mean: f64, variance: f64) -> f64 {
    -0.5 * ((x - mean).powi(2) / variance + (std::f64::consts::TAU * variance).ln())
}

/// `ln Σ exp(v)`, stable; `-inf` for nothing.
fn log_sum_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// How much one attribution says for its hypothesis being right against it
/// being wrong: `ln P(observed | right) / P(observed | wrong)`, in the units
/// of the gap (see "Updating confidence" in the module docs). `prior_of`
/// gives the current confidence of the other hypotheses sharing the step.
/// Zero-strength evidence (nothing expected of the hypothesis, an infinite
/// or unknown standard error, a non-finite observation) gives exactly 0.
pub fn log_likelihood_ratio(a: &Attribution, prior_of: impl Fn(&str) -> f64) -> f64 {
    let x = a.step_realized;
    let se = a.realized_se;
    let Some(own) = a.group.iter().position(|(h, _)| *h == a.hypothesis_id) else {
        return 0.0;
    };
    let m = a.group[own].1;
    if !(m > 0.0 && m.is_finite() && x.is_finite() && se.is_finite() && se >= 0.0) {
        return 0.0;
    }
    let others: Vec<(f64, f64)> = a
        .group
        .iter()
        .enumerate()
        .filter(|(i, (_, e))| *i != own && *e > 0.0 && e.is_finite())
        .map(|(_, (h, e))| {
            let p = prior_of(h);
            (if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }, *e)
        })
        .collect();
    // Right or wrong, each hypothesis' true effect is uncertain by
    // EFFECT_TOLERANCE of what it was expected to deliver, so the variance
    // of the step is the same under every combination.
    let variance = se * se
        + EFFECT_TOLERANCE.powi(2) * (m * m + others.iter().map(|(_, e)| e * e).sum::<f64>());
    let llr = if others.len() < MAX_JOINT {
        let mut right = Vec::with_capacity(1 << others.len());
        let mut wrong = Vec::with_capacity(1 << others.len());
        for mask in 0u32..(1 << others.len()) {
            let (mut log_weight, mut mean) = (0.0, 0.0);
            for (j, &(p, e)) in others.iter().enumerate() {
                if mask & (1 << j) != 0 {
                    log_weight += p.ln();
                    mean += e;
                } else {
                    log_weight += (1.0 - p).ln();
                }
            }
            if log_weight == f64::NEG_INFINITY {
                continue;
            }
            right.push(log_weight + log_normal(x, mean + m, variance));
            wrong.push(log_weight + log_normal(x, mean, variance));
        }
        log_sum_exp(&right) - log_sum_exp(&wrong)
    } else {
        // Many hypotheses on one step: the others' combined contribution is
        // summarized by its mean and variance under their priors.
        let (mean, variance) = others.iter().fold((0.0, variance), |(mean, var), &(p, e)| {
            (mean + p * e, var + p * (1.0 - p) * e * e)
        });
        log_normal(x, mean + m, variance) - log_normal(x, mean, variance)
    };
    if llr.is_nan() {
        0.0
    } else {
        llr.clamp(-MAX_LOG_LIKELIHOOD_RATIO, MAX_LOG_LIKELIHOOD_RATIO)
    }
}

/// The confidence after evidence worth `log_likelihood_ratio`:
/// `logistic(logit(prior) + llr)`. A prior of exactly 0 or 1 (NaN counts as
/// 0) is certain and stays.
pub fn posterior(prior: f64, log_likelihood_ratio: f64) -> f64 {
    let c = if prior.is_nan() {
        0.0
    } else {
        prior.clamp(0.0, 1.0)
    };
    if c == 0.0 || c == 1.0 || log_likelihood_ratio == 0.0 || !log_likelihood_ratio.is_finite() {
        return c;
    }
    let log_odds = (c / (1.0 - c)).ln() + log_likelihood_ratio;
    1.0 / (1.0 + (-log_odds).exp())
}

/// The result of one piece of evidence on a hypothesis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    pub confidence: f64,
    /// `None` keeps the current status (insufficient data).
    pub status: Option<HypothesisStatus>,
    pub log_likelihood_ratio: f64,
}

/// New confidence and status of a hypothesis after one piece of evidence:
/// the posterior from [`log_likelihood_ratio`], and the status it crosses
/// into ([`status_of`]). Insufficient data changes nothing.
pub fn update(prior_confidence: f64, evidence: &Outcome, prior_of: impl Fn(&str) -> f64) -> Update {
    let Outcome::Attributed(a) = evidence else {
        let c = posterior(prior_confidence, 0.0);
        return Update {
            confidence: c,
            status: None,
            log_likelihood_ratio: 0.0,
        };
    };
    let llr = log_likelihood_ratio(a, prior_of);
    let confidence = posterior(prior_confidence, llr);
    Update {
        confidence,
        // Zero-strength evidence changes nothing, the status included.
        status: (llr != 0.0).then(|| status_of(confidence)),
        log_likelihood_ratio: llr,
    }
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
    /// The step, the fitted level just before it, and the step's variance
    /// per unit of noise variance (`(XᵀX)⁻¹` on its diagonal).
    estimate: Result<(f64, f64, f64), InsufficientReason>,
    /// The step's standard error, once the metric's noise is known.
    step_se: f64,
}

/// What a cluster's fit says about the noise: residual sum of squares and
/// degrees of freedom.
#[derive(Debug, Clone, Copy, Default)]
struct Residuals {
    sum_of_squares: f64,
    degrees_of_freedom: usize,
}

/// Fits the step model over one cluster of groups (see the module docs).
fn fit_cluster(
    groups: &[Group],
    observations: &[(Time, f64)],
    windows: &Windows,
) -> (Vec<GroupFit>, Residuals) {
    let n = groups.len();
    let (Some(head), Some(tail)) = (groups.first(), groups.last()) else {
        return (Vec::new(), Residuals::default());
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
    let fit = fit_steps(&rows, &column, columns);
    let residuals = fit.as_ref().map_or(Residuals::default(), |f| f.residuals);

    let fits = (0..n)
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
                    match (&fit, column[g]) {
                        (Some(StepFit { beta, variance, .. }), Some(col)) => {
                            let level_before = beta[0]
                                + column[..g]
                                    .iter()
                                    .flatten()
                                    .fold(0.0, |acc, &c| acc + beta[c]);
                            Ok((beta[col], level_before, variance[col]))
                        }
                        _ => Err(InsufficientReason::SingularFit),
                    }
                };
            GroupFit {
                points_before,
                points_after,
                estimate,
                step_se: f64::INFINITY,
            }
        })
        .collect();
    (fits, residuals)
}

/// A least-squares fit of the step model.
struct StepFit {
    beta: Vec<f64>,
    /// `(XᵀX)⁻¹` on its diagonal: each coefficient's variance per unit of
    /// noise variance.
    variance: Vec<f64>,
    residuals: Residuals,
}

/// Least squares of `y = a + Σ β_g · 1[segment > g]` over the included step
/// columns, from the normal equations. Values are centred first so that a
/// metric in the thousands keeps its small steps' precision. `None` when
/// there is nothing to fit or the system is singular.
fn fit_steps(rows: &[(usize, f64)], column: &[Option<usize>], columns: usize) -> Option<StepFit> {
    if rows.is_empty() {
        return None;
    }
    let shift = rows.iter().map(|&(_, y)| y).sum::<f64>() / rows.len() as f64;
    let mut normal = vec![vec![0.0; columns]; columns];
    let mut rhs = vec![0.0; columns];
    let mut x = vec![0.0; columns];
    let design = |x: &mut Vec<f64>, segment: usize| {
        x.fill(0.0);
        x[0] = 1.0;
        for (g, col) in column.iter().enumerate() {
            if let Some(c) = col
                && segment > g
            {
                x[*c] = 1.0;
            }
        }
    };
    for &(segment, y) in rows {
        design(&mut x, segment);
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
    let variance = (0..columns)
        .map(|j| {
            let mut unit = vec![0.0; columns];
            unit[j] = 1.0;
            solve(normal.clone(), unit).map(|inv| inv[j])
        })
        .collect::<Option<Vec<f64>>>()?;
    let mut beta = solve(normal, rhs)?;
    let mut sum_of_squares = 0.0;
    for &(segment, y) in rows {
        design(&mut x, segment);
        let fitted: f64 = x.iter().zip(&beta).map(|(xi, b)| xi * b).sum();
        sum_of_squares += (y - shift - fitted).powi(2);
    }
    beta[0] += shift;
    Some(StepFit {
        beta,
        variance,
        residuals: Residuals {
            sum_of_squares,
            degrees_of_freedom: rows.len().saturating_sub(columns),
        },
    })
}

/// The observation noise (standard deviation, in the metric's unit) from the
/// residuals pooled over a metric's clusters; see "Noise" in the module docs.
/// Returns the noise and the factor its variance is inflated by for a small
/// sample.
pub fn pooled_noise(
    metric: &MetricSpan,
    sum_of_squares: f64,
    degrees_of_freedom: usize,
) -> (f64, f64) {
    let floor = noise_floor(metric);
    let nu = degrees_of_freedom as f64 + NOISE_PRIOR_DOF;
    let variance = (sum_of_squares + NOISE_PRIOR_DOF * floor * floor) / nu;
    let inflation = if nu > 3.0 { nu / (nu - 2.0) } else { 3.0 };
    (variance.sqrt().max(floor), inflation)
}

/// The smallest noise plausible on a metric: [`NOISE_FLOOR_SHARE`] of the
/// distance from baseline to target (of `max(|target|, 1)` when they meet).
pub fn noise_floor(metric: &MetricSpan) -> f64 {
    let span = (metric.target - metric.baseline).abs();
    let scale = if span > 0.0 && span.is_finite() {
        span
    } else {
        metric.target.abs().max(1.0)
    };
    NOISE_FLOOR_SHARE * scale
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
    /// `d`, summed over the group's releases.
    delivered: f64,
    expected_effect: f64,
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
        members: &[(String, f64)],
        confounded: bool,
        shared_with: Vec<String>,
    ) -> Outcome {
        let (step, level_before) = match &self.fit.estimate {
            Ok((step, level, _)) => (*step, *level),
            Err(reason) => return self.insufficient(reason.clone()),
        };
        let expected_share = members
            .iter()
            .find(|(h, _)| h == self.hypothesis_id)
            .map_or(0.0, |(_, e)| *e);
        let total: f64 = members.iter().map(|(_, e)| e).sum();
        // Credit in proportion to what each was expected to deliver; equal
        // shares when nothing was expected of any.
        let weight = if total > 0.0 {
            expected_share / total
        } else {
            1.0 / members.len().max(1) as f64
        };
        let step_share = step * weight;
        let shares = realized_share(metric, level_before, step_share).and_then(|realized| {
            let whole = realized_share(metric, level_before, step)?;
            let se = realized_share(metric, level_before, self.fit.step_se)?.abs();
            Ok((realized, whole, se))
        });
        let delivered = members
            .iter()
            .position(|(h, _)| h == self.hypothesis_id)
            .map_or(0.0, |_| self.delivered);
        match shares {
            Ok((realized_effect, step_realized, realized_se)) => Outcome::Attributed(Attribution {
                release_id: self.release_id.to_string(),
                hypothesis_id: self.hypothesis_id.to_string(),
                step,
                step_se: self.fit.step_se,
                step_share,
                delivered,
                expected_share,
                realized_se,
                step_realized,
                group: members.to_vec(),
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
        let expected_share = Delivery {
            delivered: 1.0,
            expected_effect: self.expected_effect,
        }
        .expected_share();
        match shares {
            Ok((realized_effect, ci)) => Outcome::Attributed(Attribution {
                release_id: self.release_id.to_string(),
                hypothesis_id: self.hypothesis_id.to_string(),
                step: e.lift,
                step_se: (e.ci_high - e.ci_low) / (2.0 * INTERVAL_Z),
                step_share: e.lift,
                delivered: 1.0,
                expected_share,
                realized_se: (ci.1 - ci.0) / (2.0 * INTERVAL_Z),
                step_realized: realized_effect,
                group: vec![(self.hypothesis_id.to_string(), expected_share)],
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
            deliveries: BTreeMap::new(),
        }
    }

    /// A release delivering `(hypothesis, d, expected effect)`.
    fn delivering(id: &str, time: Time, hypotheses: &[(&str, f64, f64)]) -> ReleaseInput {
        ReleaseInput {
            id: id.into(),
            time,
            hypothesis_ids: hypotheses.iter().map(|(h, _, _)| h.to_string()).collect(),
            deliveries: hypotheses
                .iter()
                .map(|&(h, delivered, expected_effect)| {
                    (
                        h.to_string(),
                        Delivery {
                            delivered,
                            expected_effect,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Daily observations on days `from..=to` at 13:00, an hour after a
    /// release at [`day`] noon, valued by `f(day)`.
    fn daily(from: i64, to: i64, f: impl Fn(i64) -> f64) -> Vec<(Time, f64)> {
        (from..=to).map(|d| (at(d, 1), f(d))).collect()
    }

    /// The geometry these tests were written for: four weeks a side (the
    /// defaults are six; see `defaults_give_a_weekly_metric_six_points`).
    fn four_weeks() -> Windows {
        Windows {
            before: Duration::days(28),
            after: Duration::days(28),
            ..Windows::default()
        }
    }

    #[test]
    fn defaults_give_a_weekly_metric_six_points() {
        let weekly: Vec<(Time, f64)> = (-6..6).map(|w| (at(7 * w, 1), 1.0)).collect();
        let out = attribute(
            &span(0.0, 2.0),
            &weekly,
            &[release("R1", day(0), &["H1"])],
            &[],
            f64::NAN,
            &Windows::default(),
        )
        .unwrap();
        let a = attributed(&out[0]);
        assert_eq!((a.points_before, a.points_after), (6, 6));
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
            &four_weeks(),
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
        // A flat series: the noise is the floor, 0.5 % of the 1.4 span.
        close(a.step_se, 0.007 * (0.5 * 8.0 / 6.0f64).sqrt(), 1e-12);
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
            // H1 is delivered twice (by A and B, d = 2), H2 once: 2/3 and 1/3.
            let share = if a.hypothesis_id == "H1" { 0.4 } else { 0.2 };
            close(a.step_share, share, 1e-12);
            assert!(a.confounded);
            assert_eq!((a.points_before, a.points_after), (28, 28));
        }
        assert_eq!(attributed(&out[0]).shared_with, vec!["B", "C"]);

        // Four days apart is enough separation: two steps.
        let releases = [release("A", day(0), &["H1"]), release("B", day(4), &["H2"])];
        let windows = Windows {
            min_points: 2,
            ..four_weeks()
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
        let u = update(0.6, &out[0], |_| 0.5);
        assert_eq!((u.confidence, u.status), (0.6, None));

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
        let expecting = [delivering("R1", day(0), &[("H1", 1.0, 0.4)])];
        let out = run(metric, &down, &expecting);
        let a = attributed(&out[0]);
        close(a.step, -1.5, 1e-12);
        close(a.realized_effect, 0.25, 1e-12);
        assert!(log_likelihood_ratio(a, |_| 0.5) > 0.0);

        let up = daily(-28, 28, |d| if d < 0 { 10.0 } else { 11.0 });
        let out = run(metric, &up, &expecting);
        let a = attributed(&out[0]);
        close(a.step, 1.0, 1e-12);
        close(a.realized_effect, -1.0 / 6.0, 1e-12);
        let u = update(0.6, &out[0], |_| 0.5);
        assert!(u.confidence < 0.6);
        assert_eq!(u.status, Some(HypothesisStatus::Invalidated));
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
            &four_weeks(),
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
        close(h1.step_se, 0.1 / (2.0 * INTERVAL_Z), 1e-12);

        // Without any usable series the experiment still counts.
        let out = attribute(
            &span(2.0, 3.0),
            &[],
            &releases[..],
            &experiments,
            2.5,
            &four_weeks(),
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
            &four_weeks(),
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
        let w = four_weeks();
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

    #[test]
    fn credit_follows_what_each_hypothesis_was_expected_to_deliver() {
        // One release delivers 0.25 of H1 (expected 0.4) and half of H2
        // (expected 0.1): expected shares 0.1 and 0.05 of the gap.
        let obs = daily(-42, 42, |d| if d < 0 { 0.0 } else { 15.0 });
        let releases = [delivering(
            "R1",
            day(0),
            &[("H1", 0.25, 0.4), ("H2", 0.5, 0.1)],
        )];
        let out = run(span(0.0, 100.0), &obs, &releases);
        let (h1, h2) = (attributed(&out[0]), attributed(&out[1]));
        close(h1.expected_share, 0.1, 1e-12);
        close(h2.expected_share, 0.05, 1e-12);
        close(h1.delivered, 0.25, 1e-12);
        // The 15-point step is credited 2:1.
        close(h1.step_share, 10.0, 1e-9);
        close(h2.step_share, 5.0, 1e-9);
        close(h1.realized_effect, 0.1, 1e-9);
        close(h2.realized_effect, 0.05, 1e-9);
        assert_eq!(
            h1.group,
            vec![("H1".to_string(), 0.1), ("H2".to_string(), 0.05)]
        );

        // Released six weeks apart, each gets its own step and is judged
        // against its own delivery.
        let obs = daily(-42, 84, |d| match d {
            ..0 => 0.0,
            0..42 => 10.0,
            _ => 15.0,
        });
        let releases = [
            delivering("R1", day(0), &[("H1", 0.25, 0.4)]),
            delivering("R2", day(42), &[("H2", 0.5, 0.1)]),
        ];
        let out = run(span(0.0, 100.0), &obs, &releases);
        let (h1, h2) = (attributed(&out[0]), attributed(&out[1]));
        close(h1.step, 10.0, 1e-9);
        close(h2.step, 5.0, 1e-9);
        assert!(!h1.confounded && !h2.confounded);
        close(h1.realized_effect / h1.expected_share, 1.0, 1e-9);
        close(
            h2.realized_effect / h2.expected_share,
            5.0 / 90.0 / 0.05,
            1e-9,
        );
    }

    #[test]
    fn noise_is_estimated_from_the_residuals() {
        // Weekly 50, 45, 55, 50 | 55, 50, 60, 55: residual sum of squares
        // 100 on 6 degrees of freedom, pooled with the floor (0.5 on 2
        // pseudo degrees of freedom), inflated by 8/6 for the small sample.
        let obs: Vec<(Time, f64)> = [(-28, 50.0), (-21, 45.0), (-14, 55.0), (-7, 50.0)]
            .into_iter()
            .chain([(0, 55.0), (7, 50.0), (14, 60.0), (21, 55.0)])
            .map(|(d, v)| (at(d, 1), v))
            .collect();
        let out = run(span(0.0, 100.0), &obs, &[release("R1", day(0), &["H1"])]);
        let a = attributed(&out[0]);
        close(a.step, 5.0, 1e-9);
        let noise = ((100.0 + 2.0 * 0.25) / 8.0f64).sqrt();
        close(a.step_se, noise * (0.5 * 8.0 / 6.0f64).sqrt(), 1e-9);
        close(a.realized_se, a.step_se / 50.0, 1e-12);
        let (n, inflation) = pooled_noise(&span(0.0, 100.0), 0.0, 0);
        assert_eq!((n, inflation), (0.5, 3.0));
    }

    /// Before/after evidence for `H` alone: realized share `x` of the gap,
    /// expected `m`, standard error `se`.
    fn evidence(x: f64, m: f64, se: f64) -> Outcome {
        Outcome::Attributed(Attribution {
            release_id: "R".into(),
            hypothesis_id: "H".into(),
            step: x,
            step_se: se,
            step_share: x,
            delivered: 1.0,
            expected_share: m,
            realized_se: se,
            step_realized: x,
            group: vec![("H".into(), m)],
            level_before: 0.0,
            realized_effect: x,
            realized_ci: None,
            confounded: false,
            shared_with: Vec::new(),
            points_before: 6,
            points_after: 6,
            method: Method::BeforeAfter,
        })
    }

    #[test]
    fn the_log_likelihood_ratio_is_linear_in_the_observed_step() {
        // Equal variances under right and wrong: m (2x - m) / 2V.
        let (m, se) = (0.1, 0.05);
        let v = se * se + (EFFECT_TOLERANCE * m).powi(2);
        for x in [-0.1, 0.0, 0.05, 0.1, 0.2] {
            let Outcome::Attributed(a) = evidence(x, m, se) else {
                unreachable!()
            };
            close(
                log_likelihood_ratio(&a, |_| 0.5),
                m * (2.0 * x - m) / (2.0 * v),
                1e-12,
            );
        }
        // Halfway is no evidence either way.
        let u = update(0.6, &evidence(0.05, m, se), |_| 0.5);
        close(u.confidence, 0.6, 1e-12);
        // Statuses only past the thresholds; the verdict agrees.
        let strong = update(0.6, &evidence(0.1, 0.1, 0.001), |_| 0.5);
        assert!(strong.confidence >= VALIDATED_AT && strong.confidence < 1.0);
        assert_eq!(strong.status, Some(HypothesisStatus::Validated));
        assert_eq!(Verdict::of_confidence(strong.confidence), Verdict::Supports);
        let against = update(0.5, &evidence(0.0, 0.1, 0.001), |_| 0.5);
        assert_eq!(against.status, Some(HypothesisStatus::Invalidated));
        assert!(against.confidence > 0.0);
    }

    #[test]
    fn hypotheses_sharing_a_step_are_weighed_jointly() {
        // H1 expected 0.3, H2 expected 0.1; the step is 0.3: H1 explains it,
        // H2 adds nothing it needs.
        let shared = |who: &str| Attribution {
            hypothesis_id: who.into(),
            group: vec![("H1".into(), 0.3), ("H2".into(), 0.1)],
            ..match evidence(0.3, 0.3, 0.02) {
                Outcome::Attributed(a) => a,
                Outcome::InsufficientData { .. } => unreachable!(),
            }
        };
        let h1 = log_likelihood_ratio(&shared("H1"), |_| 0.6);
        let h2 = log_likelihood_ratio(&shared("H2"), |_| 0.6);
        assert!(h1 > 1.0, "{h1}");
        assert!(h2 < 0.0, "{h2}");
        // Many hypotheses: the approximation still separates them.
        let mut many = shared("H1");
        many.group.extend((3..12).map(|i| (format!("H{i}"), 0.001)));
        let approx = log_likelihood_ratio(&many, |_| 0.6);
        assert!(approx > 1.0, "{approx}");
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

    fn any_evidence() -> impl Strategy<Value = (f64, f64, f64)> {
        // (realized as a multiple of expected, expected share, se).
        (-0.5..1.5f64, 0.01..1.0f64, 0.001..1.0f64)
    }

    proptest! {
        #[test]
        fn consistent_evidence_moves_confidence_monotonically(
            prior in 0.01..0.99f64,
            pieces in prop::collection::vec((1.0..2.0f64, 0.01..1.0f64, 0.001..1.0f64), 1..6),
            contrary in any::<bool>(),
        ) {
            let mut c = prior;
            for (r, m, se) in pieces {
                let x = if contrary { (1.0 - r) * m } else { r * m };
                let next = update(c, &evidence(x, m, se), |_| 0.5).confidence;
                prop_assert!((0.0..=1.0).contains(&next));
                if contrary { prop_assert!(next <= c) } else { prop_assert!(next >= c) }
                c = next;
            }
            if contrary { prop_assert!(c < prior) } else { prop_assert!(c > prior) }
        }

        #[test]
        fn order_of_independent_evidence_does_not_matter(
            prior in 0.05..0.95f64,
            pieces in prop::collection::vec(any_evidence(), 1..5),
            rotate in 0usize..5,
        ) {
            let apply = |order: &[(f64, f64, f64)]| {
                order.iter().fold(prior, |c, &(r, m, se)| {
                    update(c, &evidence(r * m, m, se), |_| 0.5).confidence
                })
            };
            let mut other = pieces.clone();
            other.reverse();
            let k = rotate % other.len();
            other.rotate_left(k);
            let (a, b) = (apply(&pieces), apply(&other));
            prop_assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }

        #[test]
        fn zero_strength_evidence_changes_nothing(
            prior in 0.0..=1.0f64,
            (r, m, se) in any_evidence(),
        ) {
            for outcome in [evidence(r * m, 0.0, se), evidence(r * m, m, f64::INFINITY)] {
                let u = update(prior, &outcome, |_| 0.5);
                prop_assert_eq!(u.confidence, prior);
                prop_assert_eq!(u.status, None);
                prop_assert_eq!(u.log_likelihood_ratio, 0.0);
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
