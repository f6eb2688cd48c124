//! Segments, desired outcomes and survey waves (VALUE-MODEL.md
//! "Customers"): checked, written through the store, and kept in memory
//! beside the index.
//!
//! A desired outcome is a metric: it is backed by the metric of the same
//! id (direction higher is better, target 10, baseline the first wave's
//! satisfaction, unit [`OUTCOME_UNIT`]), whose observations are its waves'
//! satisfaction. Writing the outcome or a wave writes that metric in the
//! same transaction, so the score, the goal roll-up and validation read it
//! as any other metric; the metric RPCs refuse to change it on their own
//! ([`Engine::check_not_outcome_metric`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;

use super::{Engine, Error, FieldViolation, Result, not_found, quote};
use crate::domain::{
    DesiredOutcome, Direction, MAX_OUTCOMES, MAX_SEGMENTS, MAX_WAVES_PER_OUTCOME, Metric,
    OUTCOME_UNIT, SURVEY_SCALE, Segment, SurveyWave,
};
use crate::index::ScoreIndex;
use crate::refine::customer::{self as math, OutcomeFigures, OutcomeInput, SegmentInput};
use crate::refine::rollup::{ItemInput, ServingItem};
use crate::store::CustomerLoad;

/// Segments, outcomes and their waves, as the store holds them.
#[derive(Debug, Default)]
pub struct Customers {
    segments: BTreeMap<String, Segment>,
    outcomes: BTreeMap<String, DesiredOutcome>,
    /// By outcome id, oldest first, one per time.
    waves: BTreeMap<String, Vec<SurveyWave>>,
}

impl Customers {
    /// Whether a segment of this id exists.
    pub fn has_segment(&self, id: &str) -> bool {
        self.segments.contains_key(id)
    }

    /// Whether a desired outcome of this id exists.
    pub fn has_outcome(&self, id: &str) -> bool {
        self.outcomes.contains_key(id)
    }

    pub fn from_load(load: CustomerLoad) -> Self {
        let mut c = Customers::default();
        for s in load.segments {
            c.segments.insert(s.id.clone(), s);
        }
        for o in load.outcomes {
            c.outcomes.insert(o.id.clone(), o);
        }
        for w in load.waves {
            c.put_wave(w);
        }
        c
    }

    fn put_wave(&mut self, w: SurveyWave) {
        let v = self.waves.entry(w.outcome_id.clone()).or_default();
        match v.binary_search_by_key(&w.at, |x| x.at) {
            Ok(i) => v[i] = w,
            Err(i) => v.insert(i, w),
        }
    }

    fn view(&self, o: &DesiredOutcome) -> OutcomeView {
        let waves = self.waves.get(&o.id).cloned().unwrap_or_default();
        OutcomeView {
            figures: math::figures(&waves),
            outcome: o.clone(),
            waves,
        }
    }
}

/// A desired outcome with its waves (oldest first) and current figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeView {
    pub outcome: DesiredOutcome,
    pub waves: Vec<SurveyWave>,
    /// From the latest wave; `None` before the first.
    pub figures: Option<OutcomeFigures>,
}

/// One segment's roll-up as served.
#[derive(Debug, Clone)]
pub struct SegmentRollupView {
    pub segment: Segment,
    pub share: f64,
    pub outcomes: Vec<OutcomeView>,
    pub weighted_gap: f64,
    pub addressed: f64,
    pub coverage: f64,
    pub unserved: bool,
    /// How many open items serve it; `items` holds the best-ranked.
    pub item_count: usize,
    pub items: Vec<ServingItem>,
    /// The titles of `items`, in the same order.
    pub item_titles: Vec<String>,
}

/// Every segment's roll-up, in id order.
#[derive(Debug, Clone, Default)]
pub struct SegmentTreeView {
    pub segments: Vec<SegmentRollupView>,
    pub unserved_segment_ids: Vec<String>,
}

/// The metric backing outcome `o` with these waves.
fn outcome_metric(o: &DesiredOutcome, waves: &[SurveyWave], create_time: Option<Metric>) -> Metric {
    let now = Utc::now();
    Metric {
        id: o.id.clone(),
        name: o.statement.clone(),
        unit: OUTCOME_UNIT.to_string(),
        direction: Direction::HigherIsBetter,
        baseline: math::metric_baseline(waves),
        target: SURVEY_SCALE,
        cadence: None,
        source: None,
        create_time: create_time.map_or(now, |m| m.create_time),
        update_time: now,
    }
}

fn after_key(after: Option<&str>, key: &str) -> bool {
    after.is_none_or(|a| key > a)
}

impl Engine {
    /// A segment by id.
    pub fn segment(&self, id: &str) -> Option<Segment> {
        self.customers.read().segments.get(id).cloned()
    }

    /// A desired outcome by id.
    pub fn outcome(&self, id: &str) -> Option<DesiredOutcome> {
        self.customers.read().outcomes.get(id).cloned()
    }

    /// FAILED_PRECONDITION if metric `id` backs a desired outcome: its
    /// definition and observations follow the outcome and its waves.
    pub(super) fn check_not_outcome_metric(&self, id: &str) -> Result<()> {
        if self.customers.read().outcomes.contains_key(id) {
            return Err(Error::FailedPrecondition(format!(
                "metric {} backs the desired outcome of the same id; change the outcome \
                 (UpsertDesiredOutcome, RecordSurveyWave, DeleteDesiredOutcome) instead",
                quote(id)
            )));
        }
        Ok(())
    }

    /// Creates or replaces a segment; answers it and whether it was new.
    pub async fn upsert_segment(&self, mut s: Segment) -> Result<(Segment, bool)> {
        let _w = self.write_lock().await?;
        let old = self.segment(&s.id);
        if old.is_none() && self.customers.read().segments.len() >= MAX_SEGMENTS {
            return Err(Error::FailedPrecondition(format!(
                "the model holds {MAX_SEGMENTS} segments, the most it may; delete one first"
            )));
        }
        let now = Utc::now();
        s.create_time = old.as_ref().map_or(now, |o| o.create_time);
        s.update_time = now;
        self.store.put_segment(&s).await?;
        self.customers
            .write()
            .segments
            .insert(s.id.clone(), s.clone());
        self.changes.send_modify(|v| *v += 1);
        Ok((s, old.is_none()))
    }

    pub fn get_segment(&self, id: &str) -> Result<Segment> {
        self.segment(id).ok_or_else(|| not_found("segment", id))
    }

    /// Segments in id order after `after`, at most `limit`.
    pub fn list_segments(&self, after: Option<&str>, limit: usize) -> Vec<Segment> {
        self.customers
            .read()
            .segments
            .values()
            .filter(|s| after_key(after, &s.id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Deletes a segment; FAILED_PRECONDITION while outcomes belong to it
    /// (each may be the metric of hypotheses, so they are deleted one by
    /// one, on purpose).
    pub async fn delete_segment(&self, id: &str) -> Result<()> {
        let _w = self.write_lock().await?;
        {
            let c = self.customers.read();
            c.segments.get(id).ok_or_else(|| not_found("segment", id))?;
            let outs: Vec<&str> = c
                .outcomes
                .values()
                .filter(|o| o.segment_id == id)
                .map(|o| o.id.as_str())
                .collect();
            if !outs.is_empty() {
                return Err(Error::FailedPrecondition(format!(
                    "segment {} still has {} desired outcomes ({}); delete them first",
                    quote(id),
                    outs.len(),
                    outs.iter()
                        .take(5)
                        .map(|o| quote(o))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        self.store.delete_segment(id).await?;
        self.customers.write().segments.remove(id);
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Creates or replaces a desired outcome and its backing metric. Its
    /// segment must exist; its id must not name a metric of its own.
    pub async fn upsert_outcome(&self, mut o: DesiredOutcome) -> Result<(OutcomeView, bool)> {
        let _w = self.write_lock().await?;
        let (old, waves) = {
            let c = self.customers.read();
            if !c.outcomes.contains_key(&o.id) && c.outcomes.len() >= MAX_OUTCOMES {
                return Err(Error::FailedPrecondition(format!(
                    "the model holds {MAX_OUTCOMES} desired outcomes, the most it may; delete one first"
                )));
            }
            if !c.segments.contains_key(&o.segment_id) {
                return Err(Error::invalid(
                    "outcome.segment_id",
                    format!("no segment with id {}", quote(&o.segment_id)),
                ));
            }
            (
                c.outcomes.get(&o.id).cloned(),
                c.waves.get(&o.id).cloned().unwrap_or_default(),
            )
        };
        let old_metric = self.read().metric(&o.id).map(|m| m.metric.clone());
        if old.is_none() && old_metric.is_some() {
            return Err(Error::AlreadyExists(format!(
                "metric {} already exists; a desired outcome's id names the metric that backs it, \
                 so choose another id",
                quote(&o.id)
            )));
        }
        let now = Utc::now();
        o.create_time = old.as_ref().map_or(now, |x| x.create_time);
        o.update_time = now;
        let metric = outcome_metric(&o, &waves, old_metric);
        self.store.put_outcome(&o, &metric).await?;
        self.write_index().put_metric(metric);
        let mut c = self.customers.write();
        c.outcomes.insert(o.id.clone(), o.clone());
        Ok((c.view(&o), old.is_none()))
    }

    pub fn get_outcome(&self, id: &str) -> Result<OutcomeView> {
        let c = self.customers.read();
        c.outcomes
            .get(id)
            .map(|o| c.view(o))
            .ok_or_else(|| not_found("desired outcome", id))
    }

    /// Outcomes in id order after `after` (of one segment, if given).
    pub fn list_outcomes(
        &self,
        segment_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<OutcomeView> {
        let c = self.customers.read();
        c.outcomes
            .values()
            .filter(|o| segment_id.is_none_or(|s| o.segment_id == s) && after_key(after, &o.id))
            .take(limit)
            .map(|o| c.view(o))
            .collect()
    }

    /// Deletes an outcome with its waves and its metric; FAILED_PRECONDITION
    /// while a hypothesis measures it.
    pub async fn delete_outcome(&self, id: &str) -> Result<()> {
        let _w = self.write_lock().await?;
        if self.outcome(id).is_none() {
            return Err(not_found("desired outcome", id));
        }
        if let Some(h) = self.read().hypotheses().find(|h| h.metric_id == id) {
            return Err(Error::FailedPrecondition(format!(
                "hypothesis {} still measures desired outcome {}",
                quote(&h.id),
                quote(id)
            )));
        }
        self.store.delete_outcome(id).await?;
        self.write_index().remove_metric(id);
        let mut c = self.customers.write();
        c.outcomes.remove(id);
        c.waves.remove(id);
        Ok(())
    }

    /// Records checked survey waves, all or nothing: each is stored with
    /// an observation of its outcome's metric at its time; a wave at the
    /// same outcome and time as a stored one replaces it. Returns how many
    /// were new or changed, and the outcomes touched (id order).
    pub async fn record_survey_waves(
        &self,
        waves: Vec<SurveyWave>,
    ) -> Result<(usize, Vec<OutcomeView>)> {
        let _w = self.write_lock().await?;
        // The last of each (outcome, time) in the request wins.
        let mut latest: BTreeMap<(String, crate::domain::Time), SurveyWave> = BTreeMap::new();
        let named: BTreeSet<String> = waves.iter().map(|w| w.outcome_id.clone()).collect();
        {
            let c = self.customers.read();
            let mut violations = Vec::new();
            for (i, w) in waves.iter().enumerate() {
                if !c.outcomes.contains_key(&w.outcome_id) {
                    violations.push(FieldViolation::new(
                        format!("waves[{i}].outcome_id"),
                        format!("no desired outcome with id {}", quote(&w.outcome_id)),
                    ));
                }
            }
            if !violations.is_empty() {
                return Err(Error::InvalidArgument(violations));
            }
            for w in waves {
                let stored = c
                    .waves
                    .get(&w.outcome_id)
                    .and_then(|v| v.iter().find(|x| x.at == w.at));
                if stored == Some(&w) {
                    latest.remove(&(w.outcome_id.clone(), w.at));
                    continue;
                }
                latest.insert((w.outcome_id.clone(), w.at), w);
            }
        }
        let changed: Vec<SurveyWave> = latest.into_values().collect();
        let touched: BTreeSet<String> = changed.iter().map(|w| w.outcome_id.clone()).collect();
        {
            let c = self.customers.read();
            for id in &touched {
                let stored = c.waves.get(id);
                let new = changed
                    .iter()
                    .filter(|w| &w.outcome_id == id)
                    .filter(|w| !stored.is_some_and(|v| v.iter().any(|x| x.at == w.at)))
                    .count();
                if stored.map_or(0, Vec::len) + new > MAX_WAVES_PER_OUTCOME {
                    return Err(Error::FailedPrecondition(format!(
                        "desired outcome {} would have more than {MAX_WAVES_PER_OUTCOME} survey \
                         waves, the most one keeps",
                        quote(id)
                    )));
                }
            }
        }
        if changed.is_empty() {
            let c = self.customers.read();
            let views = named
                .iter()
                .filter_map(|id| c.outcomes.get(id).map(|o| c.view(o)))
                .collect();
            return Ok((0, views));
        }
        // The metrics' baselines follow the waves as they will be.
        let metrics: Vec<Metric> = {
            let c = self.customers.read();
            let ix = self.read();
            touched
                .iter()
                .filter_map(|id| {
                    let o = c.outcomes.get(id)?;
                    let mine: Vec<&SurveyWave> =
                        changed.iter().filter(|w| &w.outcome_id == id).collect();
                    // A corrected wave replaces the stored one of its time:
                    // the baseline is read from the waves as they will be.
                    let mut all = c.waves.get(id).cloned().unwrap_or_default();
                    all.retain(|x| !mine.iter().any(|w| w.at == x.at));
                    all.extend(mine.into_iter().cloned());
                    let old = ix.metric(id).map(|m| m.metric.clone());
                    let m = outcome_metric(o, &all, old.clone());
                    (old.as_ref().map(|x| x.baseline) != Some(m.baseline)).then_some(m)
                })
                .collect()
        };
        let summaries = self.store.record_waves(&changed, &metrics).await?;
        {
            let mut ix = self.write_index();
            for m in metrics {
                ix.put_metric(m);
            }
            for (id, s) in summaries {
                ix.set_observations(&id, s);
            }
        }
        let n = changed.len();
        let mut c = self.customers.write();
        for w in changed {
            c.put_wave(w);
        }
        let views = named
            .iter()
            .filter_map(|id| c.outcomes.get(id).map(|o| c.view(o)))
            .collect();
        Ok((n, views))
    }

    /// The roll-up by segment, each with at most `items_per_segment`
    /// serving items.
    pub fn segment_rollup(&self, items_per_segment: usize) -> SegmentTreeView {
        let ix = self.read();
        let c = self.customers.read();
        segment_tree(&ix, &c, items_per_segment)
    }
}

fn segment_tree(ix: &ScoreIndex, c: &Customers, limit: usize) -> SegmentTreeView {
    let segments: Vec<SegmentInput> = c
        .segments
        .values()
        .map(|s| SegmentInput {
            id: s.id.clone(),
            weight: s.weight,
        })
        .collect();
    let views: BTreeMap<&str, OutcomeView> = c
        .outcomes
        .values()
        .map(|o| (o.id.as_str(), c.view(o)))
        .collect();
    let outcomes: Vec<OutcomeInput> = views
        .values()
        .map(|v| OutcomeInput {
            id: v.outcome.id.clone(),
            segment_id: v.outcome.segment_id.clone(),
            figures: v.figures,
        })
        .collect();
    // Only hypotheses on an outcome's metric, and only the items with a
    // term of one, reach the roll-up: the rest of a large backlog is not
    // copied for it.
    let hyps: Vec<(String, String)> = ix
        .hypotheses()
        .filter(|h| c.outcomes.contains_key(&h.metric_id))
        .map(|h| (h.id.clone(), h.metric_id.clone()))
        .collect();
    let on_outcomes: std::collections::HashSet<&str> =
        hyps.iter().map(|(h, _)| h.as_str()).collect();
    let items: Vec<ItemInput> = ix
        .open_item_scores()
        .into_iter()
        .filter(|(_, s)| {
            s.terms
                .iter()
                .any(|t| on_outcomes.contains(t.hypothesis_id.as_str()))
        })
        .map(|(key, s)| ItemInput {
            key: key.to_string(),
            value_density: s.value_density,
            terms: s
                .terms
                .iter()
                .filter(|t| on_outcomes.contains(t.hypothesis_id.as_str()))
                .map(|t| (t.hypothesis_id.clone(), t.value))
                .collect(),
        })
        .collect();
    let tree = math::rollup_by_segment(&segments, &outcomes, &hyps, &items);
    SegmentTreeView {
        segments: tree
            .segments
            .into_iter()
            .filter_map(|mut r| {
                let segment = c.segments.get(&r.segment_id)?.clone();
                let item_count = r.items.len();
                r.items.truncate(limit);
                Some(SegmentRollupView {
                    segment,
                    share: r.share,
                    outcomes: r
                        .outcomes
                        .iter()
                        .filter_map(|o| views.get(o.id.as_str()).cloned())
                        .collect(),
                    weighted_gap: r.weighted_gap,
                    addressed: r.addressed,
                    coverage: r.coverage,
                    unserved: r.unserved,
                    item_count,
                    item_titles: r
                        .items
                        .iter()
                        .map(|s| ix.item(&s.key).map(|f| f.title.clone()).unwrap_or_default())
                        .collect(),
                    items: r.items,
                })
            })
            .collect(),
        unserved_segment_ids: tree.unserved_segment_ids,
    }
}

// ----- value model files -----

/// A desired outcome of a value model file with its waves.
#[derive(Debug, Clone)]
pub struct DesiredCustomerOutcome {
    pub outcome: DesiredOutcome,
    pub waves: Vec<SurveyWave>,
}

/// What the model holds about customers, for `ExportValueModel`.
#[derive(Debug, Clone, Default)]
pub struct CustomerExport {
    pub segments: Vec<Segment>,
    /// Each with its waves, oldest first.
    pub outcomes: Vec<(DesiredOutcome, Vec<SurveyWave>)>,
}

fn at_text(t: &crate::domain::Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl Engine {
    /// Whether `id` is the metric of a stored desired outcome.
    pub(super) fn is_outcome_metric(&self, id: &str) -> bool {
        self.customers.read().outcomes.contains_key(id)
    }

    /// Plans the file's segments, outcomes and waves (and, with prune, the
    /// deletion of those it leaves out) into `changes` and `w`; pushes the
    /// file's violations and what prune may not delete without force.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plan_customers(
        &self,
        ix: &ScoreIndex,
        d: &super::Desired,
        opts: super::ApplyOptions,
        now: crate::domain::Time,
        changes: &mut Vec<super::PlannedChange>,
        w: &mut crate::store::ModelWrite,
        violations: &mut Vec<FieldViolation>,
        refusals: &mut Vec<String>,
    ) {
        use super::{Action, FieldChange, PlannedChange};
        let c = self.customers.read();
        let keep = !opts.prune;
        let change = |action, kind: &'static str, id: &str, fields, note: String| PlannedChange {
            action,
            kind,
            id: id.to_string(),
            fields,
            note,
        };
        let diff = |field: &str, old: String, new: String, out: &mut Vec<FieldChange>| {
            if old != new {
                out.push(FieldChange {
                    field: field.into(),
                    old,
                    new,
                });
            }
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in d.segments.iter().enumerate() {
            if let Some(first) = seen.insert(&s.id, i) {
                violations.push(FieldViolation::new(
                    format!("segments[{i}].id"),
                    format!(
                        "{} is also segments[{first}]; ids must be unique",
                        quote(&s.id)
                    ),
                ));
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, o) in d.outcomes.iter().enumerate() {
            if let Some(first) = seen.insert(&o.outcome.id, i) {
                violations.push(FieldViolation::new(
                    format!("outcomes[{i}].id"),
                    format!(
                        "{} is also outcomes[{first}]; ids must be unique",
                        quote(&o.outcome.id)
                    ),
                ));
            }
        }
        let file_outcomes: BTreeSet<&str> =
            d.outcomes.iter().map(|o| o.outcome.id.as_str()).collect();
        for (j, m) in d.metrics.iter().enumerate() {
            if file_outcomes.contains(m.metric.id.as_str()) || c.outcomes.contains_key(&m.metric.id)
            {
                violations.push(FieldViolation::new(
                    format!("metrics[{j}].id"),
                    format!(
                        "metric {} backs a desired outcome; list it under [[outcomes]], not [[metrics]]",
                        quote(&m.metric.id)
                    ),
                ));
            }
        }
        let file_segments: BTreeSet<&str> = d.segments.iter().map(|s| s.id.as_str()).collect();
        // How many there will be: the file's, and (without prune) the
        // stored ones it does not list, each counted once.
        let segments_after = file_segments.len()
            + if keep {
                c.segments
                    .keys()
                    .filter(|id| !file_segments.contains(id.as_str()))
                    .count()
            } else {
                0
            };
        if segments_after > MAX_SEGMENTS
            && d.segments.iter().any(|s| !c.segments.contains_key(&s.id))
        {
            violations.push(FieldViolation::new(
                "segments",
                format!("more than {MAX_SEGMENTS} segments, the most a model holds"),
            ));
        }
        let outcomes_after = file_outcomes.len()
            + if keep {
                c.outcomes
                    .keys()
                    .filter(|id| !file_outcomes.contains(id.as_str()))
                    .count()
            } else {
                0
            };
        if outcomes_after > MAX_OUTCOMES
            && d.outcomes
                .iter()
                .any(|o| !c.outcomes.contains_key(&o.outcome.id))
        {
            violations.push(FieldViolation::new(
                "outcomes",
                format!("more than {MAX_OUTCOMES} desired outcomes, the most a model holds"),
            ));
        }
        let segment_after =
            |id: &str| file_segments.contains(id) || (keep && c.segments.contains_key(id));

        for s in &d.segments {
            match c.segments.get(&s.id) {
                None => {
                    changes.push(change(
                        Action::Create,
                        "segment",
                        &s.id,
                        Vec::new(),
                        String::new(),
                    ));
                    w.segments.push(Segment {
                        create_time: now,
                        update_time: now,
                        ..s.clone()
                    });
                }
                Some(old) => {
                    let mut f = Vec::new();
                    diff("name", old.name.clone(), s.name.clone(), &mut f);
                    diff(
                        "description",
                        old.description.clone(),
                        s.description.clone(),
                        &mut f,
                    );
                    if old.weight != s.weight {
                        diff(
                            "weight",
                            old.weight.to_string(),
                            s.weight.to_string(),
                            &mut f,
                        );
                    }
                    if !f.is_empty() {
                        changes.push(change(Action::Update, "segment", &s.id, f, String::new()));
                        w.segments.push(Segment {
                            create_time: old.create_time,
                            update_time: now,
                            ..s.clone()
                        });
                    }
                }
            }
        }

        for (i, dout) in d.outcomes.iter().enumerate() {
            let o = &dout.outcome;
            if !segment_after(&o.segment_id) {
                violations.push(FieldViolation::new(
                    format!("outcomes[{i}].segment"),
                    format!("no segment with id {}", quote(&o.segment_id)),
                ));
            }
            let old = c.outcomes.get(&o.id);
            if old.is_none() && ix.metric(&o.id).is_some() {
                violations.push(FieldViolation::new(
                    format!("outcomes[{i}].id"),
                    format!(
                        "metric {} exists and backs no desired outcome; a desired outcome's id \
                         names its own metric, so choose another id",
                        quote(&o.id)
                    ),
                ));
            }
            let mut outcome_changed = false;
            match old {
                None => {
                    changes.push(change(
                        Action::Create,
                        "outcome",
                        &o.id,
                        Vec::new(),
                        String::new(),
                    ));
                    outcome_changed = true;
                }
                Some(old) => {
                    let mut f = Vec::new();
                    diff(
                        "segment",
                        old.segment_id.clone(),
                        o.segment_id.clone(),
                        &mut f,
                    );
                    diff(
                        "statement",
                        old.statement.clone(),
                        o.statement.clone(),
                        &mut f,
                    );
                    if !f.is_empty() {
                        changes.push(change(Action::Update, "outcome", &o.id, f, String::new()));
                        outcome_changed = true;
                    }
                }
            }
            if outcome_changed {
                w.outcomes.push(DesiredOutcome {
                    create_time: old.map_or(now, |x| x.create_time),
                    update_time: now,
                    ..o.clone()
                });
            }
            let stored: Vec<SurveyWave> = c.waves.get(&o.id).cloned().unwrap_or_default();
            let mut all = stored.clone();
            let mut times: BTreeMap<crate::domain::Time, usize> = BTreeMap::new();
            for (j, wave) in dout.waves.iter().enumerate() {
                let at = at_text(&wave.at);
                if let Some(first) = times.insert(wave.at, j) {
                    violations.push(FieldViolation::new(
                        format!("outcomes[{i}].waves[{j}].at"),
                        format!("{at} is also waves[{first}]; one wave per time"),
                    ));
                    continue;
                }
                let id = format!("{}@{at}", o.id);
                match stored.iter().find(|x| x.at == wave.at) {
                    None => changes.push(change(
                        Action::Create,
                        "wave",
                        &id,
                        Vec::new(),
                        String::new(),
                    )),
                    Some(x) if x == wave => continue,
                    Some(x) => {
                        let mut f = Vec::new();
                        if x.importance != wave.importance {
                            diff(
                                "importance",
                                x.importance.to_string(),
                                wave.importance.to_string(),
                                &mut f,
                            );
                        }
                        if x.satisfaction != wave.satisfaction {
                            diff(
                                "satisfaction",
                                x.satisfaction.to_string(),
                                wave.satisfaction.to_string(),
                                &mut f,
                            );
                        }
                        diff(
                            "respondents",
                            x.respondents.to_string(),
                            wave.respondents.to_string(),
                            &mut f,
                        );
                        changes.push(change(Action::Update, "wave", &id, f, String::new()));
                    }
                }
                all.retain(|x| x.at != wave.at);
                all.push(wave.clone());
                w.waves.push(wave.clone());
            }
            if all.len() > MAX_WAVES_PER_OUTCOME {
                violations.push(FieldViolation::new(
                    format!("outcomes[{i}].waves"),
                    format!("more than {MAX_WAVES_PER_OUTCOME} waves, the most one outcome keeps"),
                ));
            }
            let old_metric = ix.metric(&o.id).map(|m| m.metric.clone());
            let metric = outcome_metric(o, &all, old_metric.clone());
            let metric_changed = old_metric.as_ref().is_none_or(|m| {
                m.name != metric.name || m.baseline != metric.baseline || m.unit != metric.unit
            });
            if outcome_changed || metric_changed {
                w.metrics.push(metric);
            }
        }

        if !opts.prune {
            return;
        }
        let file_hyps: BTreeSet<&str> = d
            .hypotheses
            .iter()
            .map(|h| h.hypothesis.id.as_str())
            .collect();
        for o in c
            .outcomes
            .values()
            .filter(|o| !file_outcomes.contains(o.id.as_str()))
        {
            let users: Vec<&str> = ix
                .hypotheses()
                .filter(|h| h.metric_id == o.id && !file_hyps.contains(h.id.as_str()))
                .map(|h| h.id.as_str())
                .collect();
            let waves = c.waves.get(&o.id).map_or(0, Vec::len);
            if !users.is_empty() && !opts.force {
                refusals.push(format!(
                    "desired outcome {} is still measured by hypotheses {}",
                    quote(&o.id),
                    users
                        .iter()
                        .map(|u| quote(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if waves > 0 && !opts.force {
                refusals.push(format!(
                    "desired outcome {} still has {waves} survey waves",
                    quote(&o.id)
                ));
            }
            changes.push(change(
                Action::Delete,
                "outcome",
                &o.id,
                Vec::new(),
                format!("its {waves} waves and its metric go with it"),
            ));
            w.delete_outcomes.push(o.id.clone());
        }
        for s in c
            .segments
            .values()
            .filter(|s| !file_segments.contains(s.id.as_str()))
        {
            changes.push(change(
                Action::Delete,
                "segment",
                &s.id,
                Vec::new(),
                String::new(),
            ));
            w.delete_segments.push(s.id.clone());
        }
    }

    /// Applies what a value model write changed about customers to the
    /// in-memory copy (the store committed it).
    pub(super) fn applied_customers(&self, w: &crate::store::ModelWrite) {
        let mut c = self.customers.write();
        for s in &w.segments {
            c.segments.insert(s.id.clone(), s.clone());
        }
        for o in &w.outcomes {
            c.outcomes.insert(o.id.clone(), o.clone());
        }
        for wave in &w.waves {
            c.put_wave(wave.clone());
        }
        for id in &w.delete_outcomes {
            c.outcomes.remove(id);
            c.waves.remove(id);
        }
        for id in &w.delete_segments {
            c.segments.remove(id);
        }
    }

    /// Segments and outcomes with their waves, in id order.
    pub fn export_customers(&self) -> CustomerExport {
        let c = self.customers.read();
        CustomerExport {
            segments: c.segments.values().cloned().collect(),
            outcomes: c
                .outcomes
                .values()
                .map(|o| (o.clone(), c.waves.get(&o.id).cloned().unwrap_or_default()))
                .collect(),
        }
    }
}
