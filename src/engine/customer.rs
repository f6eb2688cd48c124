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
    DesiredOutcome, Direction, Metric, OUTCOME_UNIT, SURVEY_SCALE, Segment, SurveyWave,
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
        let _w = self.writes.lock().await;
        let old = self.segment(&s.id);
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
        let _w = self.writes.lock().await;
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
        let _w = self.writes.lock().await;
        let (old, waves) = {
            let c = self.customers.read();
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
        let _w = self.writes.lock().await;
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
        let _w = self.writes.lock().await;
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
                    let mut all = c.waves.get(id).cloned().unwrap_or_default();
                    all.extend(changed.iter().filter(|w| &w.outcome_id == id).cloned());
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
    let hyps: Vec<(String, String)> = ix
        .hypotheses()
        .map(|h| (h.id.clone(), h.metric_id.clone()))
        .collect();
    let items: Vec<ItemInput> = ix
        .open_item_scores()
        .into_iter()
        .map(|(key, s)| ItemInput {
            key: key.to_string(),
            value_density: s.value_density,
            terms: s
                .terms
                .iter()
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
