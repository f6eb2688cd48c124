//! The in-memory score index: the whole value model except item bodies and
//! observation history, with every item's explained score and two orderings
//! (by value density and by value). `RankItems` reads only this.
//!
//! Every mutation works out which items its change can reach and rescores only
//! those: an observation reaches the items linked to the hypotheses that
//! measure its metric; a link reaches its item (or every item of its
//! hypothesis, when the contributions to it are over-subscribed); a goal
//! weight reaches the items of hypotheses under goals whose effective weight
//! moved. The index is rebuilt from the store at start-up.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use crate::domain::{Goal, Hypothesis, ItemState, Link, Metric, ObservationSummary, Source, Time};
use crate::score::{self, Score, TermInput};

/// What the score and the ranking filters need of an item.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFacts {
    pub source_id: String,
    pub title: String,
    pub state: ItemState,
    pub labels: Vec<String>,
    pub estimate: Option<f64>,
    /// Key of the parent item; empty when it has none. Lets splitting find
    /// an item's children without a SQL round trip.
    pub parent_key: String,
}

/// A metric with its latest observation and current gap.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEntry {
    pub metric: Metric,
    pub observations: ObservationSummary,
    pub gap: f64,
}

impl MetricEntry {
    fn new(metric: Metric, observations: ObservationSummary) -> Self {
        let gap = score::gap(
            metric.baseline,
            metric.target,
            observations.latest.map(|(_, v)| v),
        );
        MetricEntry {
            metric,
            observations,
            gap,
        }
    }

    /// No observation within the metric's cadence, as of `now`.
    pub fn stale(&self, now: Time) -> bool {
        match (self.metric.cadence, self.observations.latest) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(cadence), Some((at, _))) => at + cadence < now,
        }
    }
}

/// A total order on f64 for the rankings (scores are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrdF64(pub f64);

impl Eq for OrdF64 {}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Position in a ranking: higher number first, ties broken by item key.
pub type RankKey = (Reverse<OrdF64>, String);

/// Which number a ranking orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankOrder {
    ValueDensity,
    Value,
}

/// A ranking request against the index.
#[derive(Debug, Clone, Default)]
pub struct RankQuery {
    pub source_id: Option<String>,
    pub label: Option<String>,
    pub include_closed: bool,
    /// Continue after this position (exclusive).
    pub after: Option<RankKey>,
    pub limit: usize,
}

/// The whole model as read from the store at start-up.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub sources: Vec<Source>,
    pub goals: Vec<Goal>,
    pub metrics: Vec<(Metric, ObservationSummary)>,
    pub hypotheses: Vec<Hypothesis>,
    pub items: Vec<(String, ItemFacts)>,
    pub links: Vec<Link>,
}

/// The in-memory model and scores.
#[derive(Debug)]
pub struct ScoreIndex {
    default_size: f64,
    sources: BTreeMap<String, Source>,
    goals: BTreeMap<String, Goal>,
    goal_weights: HashMap<String, f64>,
    metrics: BTreeMap<String, MetricEntry>,
    hypotheses: BTreeMap<String, Hypothesis>,
    items: HashMap<String, ItemFacts>,
    /// item key -> hypothesis id -> link
    links_by_item: HashMap<String, BTreeMap<String, Link>>,
    /// hypothesis id -> item keys
    items_by_hypothesis: HashMap<String, BTreeSet<String>>,
    /// hypothesis id -> sum of contributions, added in item-key order
    contribution_totals: HashMap<String, f64>,
    scores: HashMap<String, Score>,
    by_density: BTreeSet<RankKey>,
    by_value: BTreeSet<RankKey>,
    rescored: u64,
}

impl ScoreIndex {
    /// An empty index; unestimated items count with `default_size` (> 0).
    pub fn new(default_size: f64) -> Self {
        ScoreIndex {
            default_size,
            sources: BTreeMap::new(),
            goals: BTreeMap::new(),
            goal_weights: HashMap::new(),
            metrics: BTreeMap::new(),
            hypotheses: BTreeMap::new(),
            items: HashMap::new(),
            links_by_item: HashMap::new(),
            items_by_hypothesis: HashMap::new(),
            contribution_totals: HashMap::new(),
            scores: HashMap::new(),
            by_density: BTreeSet::new(),
            by_value: BTreeSet::new(),
            rescored: 0,
        }
    }

    /// Builds the index from a snapshot, scoring every item once.
    pub fn from_snapshot(default_size: f64, snap: Snapshot) -> Self {
        let mut ix = ScoreIndex::new(default_size);
        ix.sources = snap
            .sources
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        ix.goals = snap.goals.into_iter().map(|g| (g.id.clone(), g)).collect();
        ix.goal_weights = score::effective_goal_weights(ix.goals.values());
        ix.metrics = snap
            .metrics
            .into_iter()
            .map(|(m, o)| (m.id.clone(), MetricEntry::new(m, o)))
            .collect();
        ix.hypotheses = snap
            .hypotheses
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .collect();
        ix.items = snap.items.into_iter().collect();
        for link in snap.links {
            ix.items_by_hypothesis
                .entry(link.hypothesis_id.clone())
                .or_default()
                .insert(link.item_key.clone());
            ix.links_by_item
                .entry(link.item_key.clone())
                .or_default()
                .insert(link.hypothesis_id.clone(), link);
        }
        let hyps: Vec<String> = ix.items_by_hypothesis.keys().cloned().collect();
        for h in hyps {
            ix.refresh_contribution_total(&h);
        }
        let keys: Vec<String> = ix.items.keys().cloned().collect();
        for k in keys {
            ix.rescore(&k);
        }
        ix
    }

    // ----- reads -----

    /// How many item scores have been computed since start; lets tests see
    /// that a write rescored only what it reaches.
    pub fn rescored_count(&self) -> u64 {
        self.rescored
    }

    pub fn source(&self, id: &str) -> Option<&Source> {
        self.sources.get(id)
    }

    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.sources.values()
    }

    pub fn goal(&self, id: &str) -> Option<&Goal> {
        self.goals.get(id)
    }

    pub fn goals(&self) -> impl Iterator<Item = &Goal> {
        self.goals.values()
    }

    pub fn goal_weight(&self, id: &str) -> f64 {
        self.goal_weights.get(id).copied().unwrap_or(0.0)
    }

    pub fn metric(&self, id: &str) -> Option<&MetricEntry> {
        self.metrics.get(id)
    }

    pub fn metrics(&self) -> impl Iterator<Item = &MetricEntry> {
        self.metrics.values()
    }

    pub fn hypothesis(&self, id: &str) -> Option<&Hypothesis> {
        self.hypotheses.get(id)
    }

    pub fn hypotheses(&self) -> impl Iterator<Item = &Hypothesis> {
        self.hypotheses.values()
    }

    /// goal weight x gap x expected effect x effective confidence.
    pub fn hypothesis_value(&self, h: &Hypothesis) -> f64 {
        score::hypothesis_value(
            self.goal_weight(&h.goal_id),
            self.metrics.get(&h.metric_id).map_or(0.0, |m| m.gap),
            h.expected_effect,
            score::effective_confidence(h.status, h.confidence),
        )
    }

    pub fn item(&self, key: &str) -> Option<&ItemFacts> {
        self.items.get(key)
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// Keys of the items whose parent is `parent_key` (itself excluded),
    /// sorted. A scan: children are asked for one item at a time.
    pub fn children_of(&self, parent_key: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items
            .iter()
            .filter(|(k, f)| f.parent_key == parent_key && k.as_str() != parent_key)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Keys of a source's items, sorted.
    pub fn item_keys_of_source(&self, source_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items
            .iter()
            .filter(|(_, f)| f.source_id == source_id)
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    pub fn link(&self, item_key: &str, hypothesis_id: &str) -> Option<&Link> {
        self.links_by_item.get(item_key)?.get(hypothesis_id)
    }

    /// Links of one item, by hypothesis id.
    pub fn links_of_item(&self, item_key: &str) -> impl Iterator<Item = &Link> {
        self.links_by_item
            .get(item_key)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Links to one hypothesis, by item key.
    pub fn links_of_hypothesis(&self, hypothesis_id: &str) -> Vec<&Link> {
        self.items_by_hypothesis
            .get(hypothesis_id)
            .into_iter()
            .flatten()
            .filter_map(|k| self.link(k, hypothesis_id))
            .collect()
    }

    /// Every link, ordered by (item key, hypothesis id).
    pub fn all_links(&self) -> Vec<&Link> {
        let mut keys: Vec<&String> = self.links_by_item.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| self.links_by_item[k].values())
            .collect()
    }

    pub fn score(&self, item_key: &str) -> Option<&Score> {
        self.scores.get(item_key)
    }

    /// Scores of the open items (the backlog), in key order.
    pub fn open_item_scores(&self) -> Vec<(&str, &Score)> {
        let mut out: Vec<(&str, &Score)> = self
            .items
            .iter()
            .filter(|(_, f)| f.state == ItemState::Open)
            .filter_map(|(k, _)| Some((k.as_str(), self.scores.get(k)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Items in ranking order, after `query.after`, filtered, at most
    /// `query.limit`, with the position to continue from.
    pub fn rank(&self, order: RankOrder, query: &RankQuery) -> Vec<(RankKey, &Score)> {
        let set = match order {
            RankOrder::ValueDensity => &self.by_density,
            RankOrder::Value => &self.by_value,
        };
        let start = match &query.after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        set.range((start, Bound::Unbounded))
            .filter(|(_, key)| {
                let Some(f) = self.items.get(key) else {
                    return false;
                };
                (query.include_closed || f.state == ItemState::Open)
                    && query.source_id.as_ref().is_none_or(|s| *s == f.source_id)
                    && query.label.as_ref().is_none_or(|l| f.labels.contains(l))
            })
            .take(query.limit)
            .filter_map(|k| Some((k.clone(), self.scores.get(&k.1)?)))
            .collect()
    }

    /// Whether a metric has no observation within its cadence as of `now`.
    pub fn metric_is_stale(&self, metric_id: &str, now: Time) -> bool {
        self.metrics.get(metric_id).is_some_and(|m| m.stale(now))
    }

    // ----- writes: each rescores only what it reaches -----

    pub fn put_source(&mut self, source: Source) {
        self.sources.insert(source.id.clone(), source);
    }

    pub fn remove_source(&mut self, id: &str) {
        self.sources.remove(id);
    }

    /// Inserts or replaces a goal; rescores the items whose goal weight moved.
    pub fn put_goal(&mut self, goal: Goal) {
        self.goals.insert(goal.id.clone(), goal);
        self.refresh_goal_weights();
    }

    pub fn remove_goal(&mut self, id: &str) {
        self.goals.remove(id);
        self.refresh_goal_weights();
    }

    /// Inserts or replaces a metric definition, keeping its observations.
    pub fn put_metric(&mut self, metric: Metric) {
        let obs = self
            .metrics
            .get(&metric.id)
            .map(|m| m.observations.clone())
            .unwrap_or_default();
        let id = metric.id.clone();
        self.metrics
            .insert(id.clone(), MetricEntry::new(metric, obs));
        self.rescore_metric_dependents(&id);
    }

    /// New latest observation and count of a metric.
    pub fn set_observations(&mut self, metric_id: &str, observations: ObservationSummary) {
        let Some(entry) = self.metrics.get(metric_id) else {
            return;
        };
        let updated = MetricEntry::new(entry.metric.clone(), observations);
        let gap_moved = updated.gap.to_bits() != entry.gap.to_bits();
        self.metrics.insert(metric_id.to_string(), updated);
        if gap_moved {
            self.rescore_metric_dependents(metric_id);
        }
    }

    pub fn remove_metric(&mut self, id: &str) {
        self.metrics.remove(id);
        self.rescore_metric_dependents(id);
    }

    pub fn put_hypothesis(&mut self, h: Hypothesis) {
        let id = h.id.clone();
        self.hypotheses.insert(id.clone(), h);
        self.rescore_hypothesis_items(&id);
    }

    /// Removes a hypothesis and every link to it.
    pub fn remove_hypothesis(&mut self, id: &str) {
        self.hypotheses.remove(id);
        let items = self.items_by_hypothesis.remove(id).unwrap_or_default();
        self.contribution_totals.remove(id);
        for k in &items {
            if let Some(m) = self.links_by_item.get_mut(k) {
                m.remove(id);
            }
            self.rescore(k);
        }
    }

    /// Inserts or replaces an item's facts and rescores it.
    pub fn put_item(&mut self, key: String, facts: ItemFacts) {
        if self.items.get(&key) == Some(&facts) {
            return;
        }
        self.items.insert(key.clone(), facts);
        self.rescore(&key);
    }

    /// Removes an item, its links and its score.
    pub fn remove_item(&mut self, key: &str) {
        self.items.remove(key);
        self.unrank(key);
        self.scores.remove(key);
        let hyps: Vec<String> = self
            .links_by_item
            .remove(key)
            .map(|m| m.into_keys().collect())
            .unwrap_or_default();
        for h in hyps {
            if let Some(set) = self.items_by_hypothesis.get_mut(&h) {
                set.remove(key);
            }
            self.after_link_change(&h, key);
        }
    }

    /// Inserts or replaces a link.
    pub fn put_link(&mut self, link: Link) {
        let (item, hyp) = (link.item_key.clone(), link.hypothesis_id.clone());
        self.items_by_hypothesis
            .entry(hyp.clone())
            .or_default()
            .insert(item.clone());
        self.links_by_item
            .entry(item.clone())
            .or_default()
            .insert(hyp.clone(), link);
        self.after_link_change(&hyp, &item);
    }

    pub fn remove_link(&mut self, item_key: &str, hypothesis_id: &str) {
        if let Some(m) = self.links_by_item.get_mut(item_key) {
            m.remove(hypothesis_id);
        }
        if let Some(s) = self.items_by_hypothesis.get_mut(hypothesis_id) {
            s.remove(item_key);
        }
        self.after_link_change(hypothesis_id, item_key);
    }

    /// Removes and puts many links at once, rescoring each affected item
    /// once: a sync page that links dozens of items to one over-subscribed
    /// hypothesis rescores that hypothesis' items once, not once per link.
    pub fn apply_links(&mut self, remove: &[(String, String)], put: Vec<Link>) {
        let mut hyps: BTreeSet<String> = BTreeSet::new();
        let mut items: BTreeSet<String> = BTreeSet::new();
        for (item, hyp) in remove {
            if let Some(m) = self.links_by_item.get_mut(item) {
                m.remove(hyp);
            }
            if let Some(set) = self.items_by_hypothesis.get_mut(hyp) {
                set.remove(item);
            }
            hyps.insert(hyp.clone());
            items.insert(item.clone());
        }
        for link in put {
            let (item, hyp) = (link.item_key.clone(), link.hypothesis_id.clone());
            self.items_by_hypothesis
                .entry(hyp.clone())
                .or_default()
                .insert(item.clone());
            self.links_by_item
                .entry(item.clone())
                .or_default()
                .insert(hyp.clone(), link);
            hyps.insert(hyp);
            items.insert(item);
        }
        for h in &hyps {
            let before = self.contribution_totals.get(h).copied().unwrap_or(0.0);
            let after = self.refresh_contribution_total(h);
            if before > 1.0 || after > 1.0 {
                items.extend(
                    self.items_by_hypothesis
                        .get(h)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
        for k in &items {
            self.rescore(k);
        }
    }

    /// Recomputes every item's score (what a change reaching every item
    /// costs); the result equals a rebuild.
    pub fn rescore_all(&mut self) {
        let keys: Vec<String> = self.items.keys().cloned().collect();
        for k in keys {
            self.rescore(&k);
        }
    }

    // ----- internals -----

    fn after_link_change(&mut self, hypothesis_id: &str, item_key: &str) {
        let before = self
            .contribution_totals
            .get(hypothesis_id)
            .copied()
            .unwrap_or(0.0);
        let after = self.refresh_contribution_total(hypothesis_id);
        if before > 1.0 || after > 1.0 {
            // Over-subscribed before or after: every co-contributor's
            // effective contribution moved.
            self.rescore_hypothesis_items(hypothesis_id);
        }
        if self.items.contains_key(item_key) {
            self.rescore(item_key);
        }
    }

    fn refresh_contribution_total(&mut self, hypothesis_id: &str) -> f64 {
        let total = self
            .items_by_hypothesis
            .get(hypothesis_id)
            .into_iter()
            .flatten()
            .filter_map(|k| self.links_by_item.get(k)?.get(hypothesis_id))
            .fold(0.0, |acc, l| acc + l.contribution);
        self.contribution_totals
            .insert(hypothesis_id.to_string(), total);
        total
    }

    fn refresh_goal_weights(&mut self) {
        let new = score::effective_goal_weights(self.goals.values());
        let moved: BTreeSet<String> = new
            .iter()
            .filter(|(id, w)| self.goal_weights.get(*id).map(|o| o.to_bits()) != Some(w.to_bits()))
            .map(|(id, _)| id.clone())
            .chain(
                self.goal_weights
                    .keys()
                    .filter(|id| !new.contains_key(*id))
                    .cloned(),
            )
            .collect();
        self.goal_weights = new;
        let hyps: Vec<String> = self
            .hypotheses
            .values()
            .filter(|h| moved.contains(&h.goal_id))
            .map(|h| h.id.clone())
            .collect();
        for h in hyps {
            self.rescore_hypothesis_items(&h);
        }
    }

    fn rescore_metric_dependents(&mut self, metric_id: &str) {
        let hyps: Vec<String> = self
            .hypotheses
            .values()
            .filter(|h| h.metric_id == metric_id)
            .map(|h| h.id.clone())
            .collect();
        let mut items = BTreeSet::new();
        for h in &hyps {
            if let Some(s) = self.items_by_hypothesis.get(h) {
                items.extend(s.iter().cloned());
            }
        }
        for k in items {
            self.rescore(&k);
        }
    }

    fn rescore_hypothesis_items(&mut self, hypothesis_id: &str) {
        let items: Vec<String> = self
            .items_by_hypothesis
            .get(hypothesis_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for k in items {
            self.rescore(&k);
        }
    }

    fn unrank(&mut self, key: &str) {
        if let Some(old) = self.scores.get(key) {
            self.by_density
                .remove(&(Reverse(OrdF64(old.value_density)), key.to_string()));
            self.by_value
                .remove(&(Reverse(OrdF64(old.value)), key.to_string()));
        }
    }

    fn rescore(&mut self, key: &str) {
        let Some(facts) = self.items.get(key) else {
            return;
        };
        let inputs: Vec<TermInput> = self
            .links_by_item
            .get(key)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|l| {
                let h = self.hypotheses.get(&l.hypothesis_id)?;
                Some(TermInput {
                    hypothesis_id: h.id.clone(),
                    goal_id: h.goal_id.clone(),
                    goal_weight: self.goal_weight(&h.goal_id),
                    metric_id: h.metric_id.clone(),
                    gap: self.metrics.get(&h.metric_id).map_or(0.0, |m| m.gap),
                    expected_effect: h.expected_effect,
                    confidence: score::effective_confidence(h.status, h.confidence),
                    contribution: l.contribution,
                    contribution_total: self
                        .contribution_totals
                        .get(&h.id)
                        .copied()
                        .unwrap_or(l.contribution),
                })
            })
            .collect();
        let s = score::score_item(facts.estimate, self.default_size, inputs);
        self.unrank(key);
        self.by_density
            .insert((Reverse(OrdF64(s.value_density)), key.to_string()));
        self.by_value
            .insert((Reverse(OrdF64(s.value)), key.to_string()));
        self.scores.insert(key.to_string(), s);
        self.rescored += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Direction, GoalLevel, HypothesisStatus, KeyValueArea, LinkOrigin};
    use chrono::Utc;

    fn snapshot(links: Vec<Link>) -> Snapshot {
        let now = Utc::now();
        let goal = Goal {
            id: "G".into(),
            title: "G".into(),
            description: String::new(),
            level: GoalLevel::Strategic,
            parent_id: String::new(),
            key_value_area: KeyValueArea::CurrentValue,
            weight: 1.0,
            create_time: now,
            update_time: now,
        };
        let metric = Metric {
            id: "m".into(),
            name: "m".into(),
            unit: String::new(),
            direction: Direction::HigherIsBetter,
            baseline: 0.0,
            target: 1.0,
            cadence: None,
            create_time: now,
            update_time: now,
        };
        let hyp = |id: &str| Hypothesis {
            id: id.into(),
            statement: id.into(),
            goal_id: "G".into(),
            metric_id: "m".into(),
            expected_effect: 0.5,
            confidence: 0.5,
            status: HypothesisStatus::Testing,
            check_time: None,
            create_time: now,
            update_time: now,
        };
        let items = (0..40)
            .map(|i| {
                (
                    format!("s/{i:02}"),
                    ItemFacts {
                        source_id: "s".into(),
                        title: format!("item {i}"),
                        state: ItemState::Open,
                        labels: vec![],
                        estimate: Some(1.0 + (i % 5) as f64),
                        parent_key: String::new(),
                    },
                )
            })
            .collect();
        Snapshot {
            goals: vec![goal],
            metrics: vec![(metric, Default::default())],
            hypotheses: vec![hyp("H-1"), hyp("H-2")],
            items,
            links,
            ..Default::default()
        }
    }

    fn link(i: usize, h: &str, c: f64) -> Link {
        let now = Utc::now();
        Link {
            item_key: format!("s/{i:02}"),
            hypothesis_id: h.into(),
            contribution: c,
            origin: LinkOrigin::Rule,
            rationale: String::new(),
            create_time: now,
            update_time: now,
        }
    }

    #[test]
    fn batched_links_score_like_a_rebuild_and_rescore_each_item_once() {
        // Start with some links, then a batch that over-subscribes H-1 and
        // removes two links.
        let initial: Vec<Link> = (0..10).map(|i| link(i, "H-2", 0.05)).collect();
        let mut ix = ScoreIndex::from_snapshot(3.0, snapshot(initial.clone()));
        let batch: Vec<Link> = (0..30).map(|i| link(i, "H-1", 0.3)).collect();
        let remove = vec![
            ("s/01".to_string(), "H-2".to_string()),
            ("s/02".to_string(), "H-2".to_string()),
        ];
        let before = ix.rescored_count();
        ix.apply_links(&remove, batch.clone());
        assert_eq!(ix.rescored_count() - before, 30, "each touched item once");

        let mut all: Vec<Link> = initial
            .into_iter()
            .filter(|l| !matches!(l.item_key.as_str(), "s/01" | "s/02"))
            .collect();
        all.extend(batch);
        let rebuilt = ScoreIndex::from_snapshot(3.0, snapshot(all));
        for i in 0..40 {
            let k = format!("s/{i:02}");
            assert_eq!(ix.score(&k), rebuilt.score(&k), "{k}");
        }
        let q = RankQuery {
            limit: 40,
            ..Default::default()
        };
        let a: Vec<String> = ix
            .rank(RankOrder::ValueDensity, &q)
            .into_iter()
            .map(|(k, _)| k.1)
            .collect();
        let b: Vec<String> = rebuilt
            .rank(RankOrder::ValueDensity, &q)
            .into_iter()
            .map(|(k, _)| k.1)
            .collect();
        assert_eq!(a, b);
    }
}
