//! Validating value after release: releases, experiments, and the evidence
//! that moves hypotheses' confidence and status (rules in
//! [`crate::refine::validate`]).
//!
//! Releases are those named through the API plus one implicit release per
//! item closed in its tracker (`close:<item key>` at its close time), so a
//! sync that sees a close needs no extra write. A release touches the
//! hypotheses its items link to, and delivers of each the used
//! contributions of its items linked to it. Evidence is stored per
//! (hypothesis, subject) with the log-likelihood ratio it added, and moves a
//! hypothesis at most once: the first time it has a step, and once per group
//! of releases that share a step. A hypothesis with an experiment result is
//! moved by the experiment only; before/after evidence for it is kept for
//! the record, with the outcome it would have had.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::Utc;

use super::{Engine, Error, Result, not_found, quote};
use crate::domain::{
    Evidence, EvidenceMethod, EvidenceOutcome, Experiment, Hypothesis, Release, ReleaseOrigin, Time,
};
use crate::index::MetricEntry;
use crate::refine::validate::{
    self, Attribution, Delivery, Method, MetricSpan, Outcome, ReleaseInput, Update, Verdict,
    Windows,
};
use crate::score::effective_contribution;

/// A release with the hypotheses its items serve.
#[derive(Debug, Clone, PartialEq)]
pub struct TouchedRelease {
    pub release: Release,
    pub hypothesis_ids: Vec<String>,
    /// `d` per hypothesis: the sum of the used contributions (scaled as in
    /// the score) of the released items linked to it.
    pub delivered: BTreeMap<String, f64>,
}

fn evidence_of(
    outcome: &Outcome,
    subject_id: String,
    h: &Hypothesis,
    applied: Option<Update>,
    would: Option<Update>,
    reason_extra: &str,
    now: Time,
) -> Evidence {
    let (new_conf, new_status, llr) = match applied {
        Some(u) => (
            u.confidence,
            u.status.unwrap_or(h.status),
            u.log_likelihood_ratio,
        ),
        None => (h.confidence, h.status, 0.0),
    };
    let mut e = Evidence {
        hypothesis_id: h.id.clone(),
        subject_id,
        method: EvidenceMethod::BeforeAfter,
        outcome: EvidenceOutcome::InsufficientData,
        realized_effect: None,
        expected_effect: h.expected_effect,
        confounded: false,
        step: None,
        step_se: None,
        delivered: None,
        log_likelihood_ratio: llr,
        points_before: 0,
        points_after: 0,
        confidence_before: h.confidence,
        confidence_after: new_conf,
        status_after: new_status,
        reason: String::new(),
        record_time: now,
    };
    match outcome {
        Outcome::Attributed(a) => {
            fill(&mut e, a);
            // The verdict is the status the evidence leads to (or would
            // have led to, had it been the one to move the hypothesis).
            let leads_to = would.map_or(e.confidence_after, |u| u.confidence);
            e.outcome = match Verdict::of_confidence(leads_to) {
                Verdict::Supports => EvidenceOutcome::Supports,
                Verdict::Refutes => EvidenceOutcome::Refutes,
                Verdict::Inconclusive => EvidenceOutcome::Inconclusive,
            };
        }
        Outcome::InsufficientData { reason, .. } => e.reason = reason.to_string(),
    }
    if !reason_extra.is_empty() {
        e.reason = if e.reason.is_empty() {
            reason_extra.to_string()
        } else {
            format!("{}; {reason_extra}", e.reason)
        };
    }
    e
}

fn fill(e: &mut Evidence, a: &Attribution) {
    e.method = match a.method {
        Method::BeforeAfter => EvidenceMethod::BeforeAfter,
        Method::Experiment => EvidenceMethod::Experiment,
    };
    e.realized_effect = Some(a.realized_effect);
    e.step = Some(a.step);
    e.step_se = a.step_se.is_finite().then_some(a.step_se);
    e.delivered = Some(a.delivered);
    e.confounded = a.confounded;
    e.points_before = a.points_before as i64;
    e.points_after = a.points_after as i64;
    if !a.shared_with.is_empty() {
        e.reason = format!("step shared with {}", a.shared_with.join(", "));
    }
}

impl Engine {
    /// Records a release of existing items. Idempotent on the id.
    pub async fn record_release(&self, mut release: Release) -> Result<Release> {
        let _w = self.write_lock().await?;
        {
            let ix = self.read();
            for (i, k) in release.item_keys.iter().enumerate() {
                if ix.item(k).is_none() {
                    return Err(Error::NotFound(format!(
                        "item_keys[{i}]: item {} not found",
                        quote(k)
                    )));
                }
            }
        }
        if release.id.is_empty() {
            release.id = format!("R-{}", release.time.format("%Y%m%dT%H%M%S%.9fZ"));
        }
        if let Some(existing) = self
            .store
            .list_releases()
            .await?
            .into_iter()
            .find(|r| r.id == release.id)
        {
            return Ok(existing);
        }
        self.store.put_release(&release).await?;
        Ok(release)
    }

    /// Every release (named ones and tracker closes), by time, with the
    /// hypotheses its items serve.
    pub async fn releases(&self) -> Result<Vec<TouchedRelease>> {
        let mut releases = self.store.list_releases().await?;
        releases.extend(
            self.store
                .closed_items()
                .await?
                .into_iter()
                .map(|(key, time)| Release {
                    id: format!("close:{key}"),
                    time,
                    item_keys: vec![key],
                    origin: ReleaseOrigin::Tracker,
                    note: String::new(),
                }),
        );
        releases.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        // A released item its tracker no longer returns is out of the index
        // with its links; the release still served what its stored links
        // name.
        let removed: Vec<String> = {
            let ix = self.read_unflushed();
            let keys: BTreeSet<&String> = releases
                .iter()
                .flat_map(|r| &r.item_keys)
                .filter(|k| ix.removal(k).is_some())
                .collect();
            keys.into_iter().cloned().collect()
        };
        let mut removed_links: HashMap<String, Vec<(String, f64)>> = HashMap::new();
        if !removed.is_empty() {
            for l in self.store.links_of_items(&removed).await? {
                removed_links
                    .entry(l.item_key)
                    .or_default()
                    .push((l.hypothesis_id, l.contribution));
            }
        }
        let ix = self.read();
        let mut totals: HashMap<String, f64> = HashMap::new();
        let mut total_of = |h: &str| -> f64 {
            *totals.entry(h.to_string()).or_insert_with(|| {
                ix.links_of_hypothesis(h)
                    .iter()
                    .map(|l| l.contribution)
                    .sum()
            })
        };
        Ok(releases
            .into_iter()
            .map(|release| {
                let mut delivered: BTreeMap<String, f64> = BTreeMap::new();
                for k in &release.item_keys {
                    let links: Vec<(String, f64)> = ix
                        .links_of_item(k)
                        .map(|l| (l.hypothesis_id.to_string(), l.contribution))
                        .collect();
                    for (h, c) in links {
                        let total = total_of(&h);
                        *delivered.entry(h).or_default() += effective_contribution(c, total);
                    }
                    // A removed item's link is no longer counted in the
                    // index's totals: it is added back for its own share.
                    for (h, c) in removed_links.get(k).into_iter().flatten() {
                        let total = total_of(h) + c;
                        *delivered.entry(h.clone()).or_default() +=
                            effective_contribution(*c, total);
                    }
                }
                TouchedRelease {
                    release,
                    hypothesis_ids: delivered.keys().cloned().collect(),
                    delivered,
                }
            })
            .collect())
    }

    /// Records an A/B result and lets it move its hypothesis now.
    pub async fn record_experiment(&self, e: Experiment) -> Result<Evidence> {
        let _w = self.write_lock().await?;
        let (h, metric) = {
            let ix = self.read();
            let h = ix
                .hypothesis(&e.hypothesis_id)
                .cloned()
                .ok_or_else(|| not_found("hypothesis", &e.hypothesis_id))?;
            let m = ix
                .metric(&h.metric_id)
                .cloned()
                .ok_or_else(|| not_found("metric", &h.metric_id))?;
            (h, m)
        };
        let span = MetricSpan::from(&metric.metric);
        let level = metric
            .observations
            .latest
            .map_or(metric.metric.baseline, |(_, v)| v);
        let outcome = experiment_outcome(&span, level, &e, h.expected_effect);
        let applied = validate::update(h.confidence, &outcome, |_| 0.0);
        let now = Utc::now();
        let evidence = evidence_of(
            &outcome,
            format!("experiment:{}", e.id),
            &h,
            Some(applied),
            Some(applied),
            "",
            now,
        );
        let mut updated = h.clone();
        updated.confidence = evidence.confidence_after;
        updated.status = evidence.status_after;
        updated.update_time = now;
        self.store.put_experiment(&e).await?;
        self.store
            .record_evidence(
                std::slice::from_ref(&evidence),
                std::slice::from_ref(&updated),
            )
            .await?;
        self.write_index().put_hypothesis(updated);
        Ok(evidence)
    }

    /// Validates releases as of `as_of` (the server's clock, or a time a
    /// caller replays an imported history at): per metric, attributes its
    /// movement to the releases touching it (only those whose after-window
    /// has closed by `as_of` unless `include_open`), stores the evidence,
    /// and moves hypotheses by the update rule. Returns the evidence that is
    /// new or changed.
    ///
    /// Everything later than `as_of` is out of sight, as it was for a server
    /// running then: releases (named or tracker closes), observations and
    /// experiment results after it. The evidence is dated `as_of`; a changed
    /// hypothesis' `update_time` is the server's clock, when its row changed.
    /// The links, hypotheses and evidence already stored are those of now,
    /// so a history is replayed in time order. With `dry_run`, the evidence
    /// is returned and nothing is stored or moved.
    pub async fn validate_releases(
        &self,
        windows: &Windows,
        as_of: Time,
        include_open: bool,
        dry_run: bool,
    ) -> Result<Vec<Evidence>> {
        let releases = self.releases().await?;
        let _w = self.write_lock().await?;
        let existing: HashMap<(String, String), Evidence> = self
            .store
            .list_evidence(None)
            .await?
            .into_iter()
            .map(|e| ((e.hypothesis_id.clone(), e.subject_id.clone()), e))
            .collect();
        let with_experiment: HashSet<String> = self
            .store
            .list_experiments()
            .await?
            .into_iter()
            .filter(|e| e.time <= as_of)
            .map(|e| e.hypothesis_id)
            .collect();

        // Metric -> its releases (with only that metric's hypotheses).
        let (by_metric, mut hyps): (
            BTreeMap<String, Vec<ReleaseInput>>,
            HashMap<String, Hypothesis>,
        ) = {
            let ix = self.read();
            let mut by_metric: BTreeMap<String, Vec<ReleaseInput>> = BTreeMap::new();
            for r in &releases {
                // A release after `as_of` had not happened yet; one whose
                // after-window ends after it had not been measured yet.
                if r.release.time > as_of
                    || (!include_open && r.release.time + windows.after > as_of)
                {
                    continue;
                }
                let mut per_metric: BTreeMap<String, BTreeMap<String, Delivery>> = BTreeMap::new();
                for h in &r.hypothesis_ids {
                    if let Some(hyp) = ix.hypothesis(h) {
                        per_metric.entry(hyp.metric_id.clone()).or_default().insert(
                            h.clone(),
                            Delivery {
                                delivered: r.delivered.get(h).copied().unwrap_or(0.0),
                                expected_effect: hyp.expected_effect,
                            },
                        );
                    }
                }
                for (m, deliveries) in per_metric {
                    by_metric.entry(m).or_default().push(ReleaseInput {
                        id: r.release.id.clone(),
                        time: r.release.time,
                        hypothesis_ids: deliveries.keys().cloned().collect(),
                        deliveries,
                    });
                }
            }
            (
                by_metric,
                ix.hypotheses().map(|h| (h.id.clone(), h.clone())).collect(),
            )
        };

        let mut stored = Vec::new();
        let mut changed: BTreeMap<String, Hypothesis> = BTreeMap::new();
        // (hypothesis, release) pairs whose group already moved the hypothesis.
        let mut moved: HashSet<(String, String)> = existing
            .values()
            .filter(|e| e.outcome != EvidenceOutcome::InsufficientData)
            .map(|e| (e.hypothesis_id.clone(), e.subject_id.clone()))
            .collect();
        for (metric_id, inputs) in by_metric {
            let Some(entry): Option<MetricEntry> = self.read().metric(&metric_id).cloned() else {
                continue;
            };
            let mut observations = self.store.list_observations(&metric_id).await?;
            observations.retain(|(t, _)| *t <= as_of);
            let span = MetricSpan::from(&entry.metric);
            let outcomes = match validate::attribute(
                &span,
                &observations,
                &inputs,
                &[],
                entry.metric.baseline,
                windows,
            ) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(metric = %metric_id, error = %e, "cannot validate releases on this metric");
                    continue;
                }
            };
            // The confidences the hypotheses sharing a step are weighed
            // with: as they stood before this metric's evidence, so that the
            // order of the pairs does not matter.
            let priors: HashMap<String, f64> = hyps
                .iter()
                .map(|(id, h)| (id.clone(), h.confidence))
                .collect();
            let prior_of = |id: &str| priors.get(id).copied().unwrap_or(0.0);
            for outcome in outcomes {
                let (release_id, hyp_id) = (
                    outcome.release_id().to_string(),
                    outcome.hypothesis_id().to_string(),
                );
                let Some(h) = hyps.get(&hyp_id).cloned() else {
                    continue;
                };
                let key = (hyp_id.clone(), release_id.clone());
                let conclusive = matches!(outcome, Outcome::Attributed(_));
                let group: Vec<String> = match &outcome {
                    Outcome::Attributed(a) => a.shared_with.clone(),
                    Outcome::InsufficientData { .. } => Vec::new(),
                };
                let already = moved.contains(&key)
                    || group
                        .iter()
                        .any(|g| moved.contains(&(hyp_id.clone(), g.clone())));
                let (applied, note) = if !conclusive || already {
                    (
                        None,
                        if already && conclusive {
                            "already counted for this hypothesis"
                        } else {
                            ""
                        },
                    )
                } else if with_experiment.contains(&hyp_id) {
                    (None, "an experiment result takes precedence")
                } else {
                    (Some(validate::update(h.confidence, &outcome, prior_of)), "")
                };
                // Evidence an experiment overrides still says what it would
                // have done; evidence already counted reads as the status.
                let would = applied.or_else(|| {
                    (conclusive && !already)
                        .then(|| validate::update(h.confidence, &outcome, prior_of))
                });
                let ev = evidence_of(
                    &outcome,
                    release_id.clone(),
                    &h,
                    applied,
                    would,
                    note,
                    as_of,
                );
                // A stored row that moved nothing now keeps its record: the
                // verdict it read then, not one recomputed from a confidence
                // that other evidence has moved since.
                if let Some(old) = existing.get(&key)
                    && old.realized_effect == ev.realized_effect
                    && old.step_se == ev.step_se
                    && applied.is_none()
                {
                    continue;
                }
                if applied.is_some() {
                    moved.insert(key);
                    let mut updated = h.clone();
                    updated.confidence = ev.confidence_after;
                    updated.status = ev.status_after;
                    updated.update_time = Utc::now();
                    hyps.insert(hyp_id.clone(), updated.clone());
                    changed.insert(hyp_id, updated);
                }
                stored.push(ev);
            }
        }
        // A dry run answers what this run concludes and keeps nothing: the
        // same computation, so that it cannot drift from a real run.
        if !stored.is_empty() && !dry_run {
            let updated: Vec<Hypothesis> = changed.values().cloned().collect();
            self.store.record_evidence(&stored, &updated).await?;
            let mut ix = self.write_index();
            for h in updated {
                ix.put_hypothesis(h);
            }
        }
        Ok(stored)
    }

    /// The evidence of one hypothesis, newest first.
    pub async fn hypothesis_evidence(&self, hypothesis_id: &str) -> Result<Vec<Evidence>> {
        self.read()
            .hypothesis(hypothesis_id)
            .ok_or_else(|| not_found("hypothesis", hypothesis_id))?;
        Ok(self.store.list_evidence(Some(hypothesis_id)).await?)
    }

    /// A metric, its observations, and the releases touching it.
    pub async fn metric_trend(
        &self,
        metric_id: &str,
    ) -> Result<(MetricEntry, Vec<(Time, f64)>, Vec<TouchedRelease>)> {
        let entry = self.get_metric(metric_id)?;
        let points = self.store.list_observations(metric_id).await?;
        let releases = self.releases().await?;
        let ix = self.read();
        let touching = releases
            .into_iter()
            .filter_map(|mut r| {
                r.hypothesis_ids
                    .retain(|h| ix.hypothesis(h).is_some_and(|h| h.metric_id == metric_id));
                (!r.hypothesis_ids.is_empty()).then_some(r)
            })
            .collect();
        Ok((entry, points, touching))
    }
}

/// An experiment as an attribution: the lift and its interval as shares of
/// the gap still open at `level`.
fn experiment_outcome(
    span: &MetricSpan,
    level: f64,
    e: &Experiment,
    expected_effect: f64,
) -> Outcome {
    let share = |x: f64| validate::realized_share(span, level, x);
    let expected_share = Delivery {
        delivered: 1.0,
        expected_effect,
    }
    .expected_share();
    match (share(e.lift), share(e.ci_low), share(e.ci_high)) {
        (Ok(r), Ok(lo), Ok(hi)) => Outcome::Attributed(Attribution {
            release_id: format!("experiment:{}", e.id),
            hypothesis_id: e.hypothesis_id.clone(),
            step: e.lift,
            step_se: (e.ci_high - e.ci_low) / (2.0 * validate::INTERVAL_Z),
            step_share: e.lift,
            delivered: 1.0,
            expected_share,
            realized_se: (hi - lo).abs() / (2.0 * validate::INTERVAL_Z),
            step_realized: r,
            group: vec![(e.hypothesis_id.clone(), expected_share)],
            level_before: level,
            realized_effect: r,
            realized_ci: Some((lo.min(hi), lo.max(hi))),
            confounded: false,
            shared_with: Vec::new(),
            points_before: 0,
            points_after: 0,
            method: Method::Experiment,
        }),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => {
            Outcome::InsufficientData {
                release_id: format!("experiment:{}", e.id),
                hypothesis_id: e.hypothesis_id.clone(),
                reason,
            }
        }
    }
}
