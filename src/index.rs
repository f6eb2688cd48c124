//! The in-memory score index: the whole value model except item bodies and
//! observation history, with every item's score and two orderings (by value
//! density and by value). `RankItems` reads only this.
//!
//! Every mutation works out which items its change can reach and rescores only
//! those: an observation reaches the items linked to the hypotheses that
//! measure its metric; a link reaches its item (or every item of its
//! hypothesis, when the contributions to it are over-subscribed); a goal
//! weight reaches the items of hypotheses under goals whose effective weight
//! moved. The index is rebuilt from the store at start-up.
//!
//! Shaped for 100,000s of items: an item's facts, links and ranking numbers
//! live in one entry, in a slab (`index/entries.rs`); the rankings and the
//! hypotheses' contribution maps name it by slot. A rescore computes value
//! and density only, and touches the rankings only when they moved; the
//! explained [`Score`] (terms with their ids) is built when first read and
//! kept until the next rescore, since few items are ever explained. Many
//! rescores look each hypothesis up once and read the entries in slot
//! order, on two threads when they are many; the rankings take their moves
//! in one batch. At start-up, [`IndexBuilder`] indexes rows while more are
//! read.
//!
//! A sync can [`defer`](ScoreIndex::defer_upsert) the rescoring its pages
//! cause until [`flush`](ScoreIndex::flush), so that a page linking to an
//! over-subscribed hypothesis does not rescore that hypothesis' every item
//! once per page.
//!
//! The parts, by job: `entries` (the slab of entries and their key labels),
//! `strings` (the links' shared strings), `links` (link storage and the
//! contribution maps), `reach` (which items a change reaches), `rescore`
//! (value and density, on two threads when many), `ranking` (one ranking),
//! `moves` (both rankings moved together) and `builder` (start-up). This
//! file keeps the public types and [`ScoreIndex`] with its public methods.

mod builder;
mod entries;
#[cfg(test)]
mod fixtures;
mod links;
mod moves;
mod ranking;
mod reach;
mod rescore;
mod strings;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub use builder::IndexBuilder;
pub use links::LinkRef;

use entries::{Entries, Entry};
use links::Contribution;
use moves::Rankings;
use ranking::{Move, Ranking, after_label};
use rescore::{Model, rescore_entries, term_inputs};
use strings::Strings;

use crate::domain::{
    Goal, Hypothesis, ItemState, Link, Metric, ObservationSummary, Removal, Source, Time,
};
use crate::score::{self, Score};

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
    /// The tracker's demand signal (votes); shown beside the score, never
    /// in it.
    pub votes: Option<u64>,
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
    /// Narrower filters of the web view, checked while the ranking is
    /// walked, so that a page of a filtered ranking builds no more than
    /// its own rows.
    pub narrow: Narrow,
}

/// Filters beyond source, label and state, all optional.
#[derive(Debug, Clone, Default)]
pub struct Narrow {
    /// Only items whose key or title contains this text, compared in
    /// lower case (give it in lower case).
    pub text: Option<String>,
    /// Only closed items (needs `include_closed`).
    pub closed_only: bool,
    /// Only these items (those serving a goal).
    pub keys: Option<std::sync::Arc<std::collections::HashSet<String>>>,
}

impl Narrow {
    fn keeps(&self, key: &str, f: &ItemFacts) -> bool {
        (!self.closed_only || f.state == ItemState::Closed)
            && self.keys.as_ref().is_none_or(|k| k.contains(key))
            && self
                .text
                .as_ref()
                .is_none_or(|t| contains_lowercase(key, t) || contains_lowercase(&f.title, t))
    }
}

/// Whether `hay` in lower case contains `needle` (already lower case),
/// allocating only for a `hay` that is not ASCII.
fn contains_lowercase(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        let Some(last) = h.len().checked_sub(n.len()) else {
            return false;
        };
        // Jump from one place the first letter is (either case) to the
        // next: a search walks every title of the backlog.
        return memchr::memchr2_iter(n[0], n[0].to_ascii_uppercase(), &h[..=last])
            .any(|i| h[i..i + n.len()].eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
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

/// An item key, shared by the entry maps and the contribution maps.
type Key = Arc<str>;

/// Where an entry sits in the index's slab of entries.
type Slot = u32;

/// The in-memory model and scores.
#[derive(Debug)]
pub struct ScoreIndex {
    default_size: f64,
    sources: BTreeMap<String, Source>,
    goals: BTreeMap<String, Goal>,
    goal_weights: HashMap<String, f64>,
    metrics: BTreeMap<String, MetricEntry>,
    hypotheses: BTreeMap<String, Hypothesis>,
    /// item key -> facts, links and score
    entries: Entries,
    /// Entries that are items (have facts).
    item_count: usize,
    /// hypothesis id -> item key -> contribution, in item-key order
    contributions: HashMap<String, BTreeMap<Key, Contribution>>,
    /// hypothesis id -> sum of contributions, added in item-key order
    contribution_totals: HashMap<String, f64>,
    by_density: Ranking,
    by_value: Ranking,
    /// Deferred by `defer_upsert`: hypotheses whose links changed and items
    /// whose facts or links did, not yet rescored.
    deferred_hypotheses: BTreeSet<String>,
    /// Slots (some maybe freed or reused since: rescoring them is harmless).
    deferred_items: Vec<Slot>,
    /// Shared hypothesis ids and rationales of the links.
    strings: Strings,
    rescored: u64,
    /// Items their tracker no longer returns, by key: stored, but not
    /// entries (so out of rankings, roll-ups and contribution totals).
    removed: HashMap<String, Removal>,
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
            entries: Entries::default(),
            item_count: 0,
            contributions: HashMap::new(),
            contribution_totals: HashMap::new(),
            by_density: Ranking::default(),
            by_value: Ranking::default(),
            deferred_hypotheses: BTreeSet::new(),
            deferred_items: Vec::new(),
            strings: Strings::default(),
            rescored: 0,
            removed: HashMap::new(),
        }
    }

    /// Builds the index from a snapshot, scoring every item once.
    pub fn from_snapshot(default_size: f64, snap: Snapshot) -> Self {
        let mut b = IndexBuilder::new(default_size);
        b.model(snap.sources, snap.goals, snap.metrics, snap.hypotheses);
        b.items(snap.items);
        b.links(snap.links);
        b.finish()
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
        self.entries.get(key)?.facts.as_deref()
    }

    pub fn item_count(&self) -> usize {
        self.item_count
    }

    /// The known items, in no particular order.
    fn items(&self) -> impl Iterator<Item = (&str, &ItemFacts)> {
        self.entries
            .values()
            .filter_map(|e| Some((&*e.key, e.facts.as_deref()?)))
    }

    /// Why and when an item left its tracker, if it did (then it is no
    /// entry: [`item`](Self::item) does not know it).
    pub fn removal(&self, key: &str) -> Option<&Removal> {
        self.removed.get(key)
    }

    /// Keys of the items whose parent is `parent_key` (itself excluded),
    /// sorted. A scan: children are asked for one item at a time.
    pub fn children_of(&self, parent_key: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items()
            .filter(|(k, f)| f.parent_key == parent_key && *k != parent_key)
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    /// Keys of a source's items, sorted.
    pub fn item_keys_of_source(&self, source_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .items()
            .filter(|(_, f)| f.source_id == source_id)
            .map(|(k, _)| k.to_string())
            .collect();
        keys.sort();
        keys
    }

    pub fn link(&self, item_key: &str, hypothesis_id: &str) -> Option<LinkRef<'_>> {
        let e = self.entries.get(item_key)?;
        let l = e.links.get(e.link_position(hypothesis_id).ok()?)?;
        Some(l.view(&e.key))
    }

    /// Links of one item, by hypothesis id.
    pub fn links_of_item(&self, item_key: &str) -> impl Iterator<Item = LinkRef<'_>> {
        self.entries
            .get(item_key)
            .into_iter()
            .flat_map(|e| e.links.iter().map(|l| l.view(&e.key)))
    }

    /// Links to one hypothesis, by item key.
    pub fn links_of_hypothesis(&self, hypothesis_id: &str) -> Vec<LinkRef<'_>> {
        self.contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter_map(|k| self.link(k, hypothesis_id))
            .collect()
    }

    /// Keys of the items linked to one hypothesis, in key order, without
    /// building their links (demand asks this per term of a ranking page).
    pub fn item_keys_of_hypothesis(&self, hypothesis_id: &str) -> impl Iterator<Item = &str> {
        self.contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.keys().map(|k| &**k))
    }

    /// How many links point at one hypothesis.
    pub fn link_count_of_hypothesis(&self, hypothesis_id: &str) -> usize {
        self.contributions.get(hypothesis_id).map_or(0, |m| m.len())
    }

    /// Every link, ordered by (item key, hypothesis id).
    pub fn all_links(&self) -> Vec<LinkRef<'_>> {
        let mut entries: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| !e.links.is_empty())
            .collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        entries
            .into_iter()
            .flat_map(|e| e.links.iter().map(|l| l.view(&e.key)))
            .collect()
    }

    pub fn score(&self, item_key: &str) -> Option<&Score> {
        self.explained(self.entries.get(item_key)?)
    }

    /// The explained score of an item, built from the model now (what its
    /// last rescore computed, since every change rescores what it reaches).
    fn explained<'s>(&'s self, e: &'s Entry) -> Option<&'s Score> {
        debug_assert!(!self.has_deferred(), "flush before reading scores");
        e.facts.as_ref()?;
        e.ranked?;
        let score = e.explained.get_or_init(|| {
            let model = self.model();
            let mut s = score::empty_score();
            score::rescore_into(
                &mut s,
                e.estimate,
                self.default_size,
                term_inputs(e, |l| model.lookup(&l.hypothesis_id)),
            );
            Box::new(s)
        });
        Some(score)
    }

    fn model(&self) -> Model<'_> {
        Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        }
    }

    /// Scores of the open items (the backlog), in key order.
    pub fn open_item_scores(&self) -> Vec<(&str, &Score)> {
        debug_assert!(!self.has_deferred(), "flush before reading scores");
        let mut out: Vec<(&str, &Score)> = self
            .entries
            .values()
            .filter(|e| e.facts.as_ref().is_some_and(|f| f.state == ItemState::Open))
            .filter_map(|e| Some((&*e.key, self.explained(e)?)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Items in ranking order, after `query.after`, filtered, at most
    /// `query.limit`, with the position to continue from.
    pub fn rank(&self, order: RankOrder, query: &RankQuery) -> Vec<(RankKey, &Score)> {
        debug_assert!(!self.has_deferred(), "flush before ranking");
        let ranking = match order {
            RankOrder::ValueDensity => &self.by_density,
            RankOrder::Value => &self.by_value,
        };
        // After the page's last key, or the greatest key before it if it
        // is gone.
        let after = query
            .after
            .as_ref()
            .map(|(v, k)| after_label(v.0.0, self.entries.label_up_to(k)));
        ranking
            .after(after.as_ref())
            .filter_map(|&(_, _, slot)| {
                let e = self.entries.at(slot)?;
                let f = e.facts.as_ref()?;
                let keep = (query.include_closed || f.state == ItemState::Open)
                    && query.source_id.as_ref().is_none_or(|s| *s == f.source_id)
                    && query.label.as_ref().is_none_or(|l| f.labels.contains(l))
                    && query.narrow.keeps(&e.key, f);
                keep.then_some(e)
            })
            .take(query.limit)
            .filter_map(|e| {
                let (value, density) = e.ranked?;
                let number = match order {
                    RankOrder::ValueDensity => density,
                    RankOrder::Value => value,
                };
                Some((
                    (Reverse(OrdF64(number)), String::from(&*e.key)),
                    self.explained(e)?,
                ))
            })
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
        self.flush();
        self.goals.insert(goal.id.clone(), goal);
        self.refresh_goal_weights();
    }

    pub fn remove_goal(&mut self, id: &str) {
        self.flush();
        self.goals.remove(id);
        self.refresh_goal_weights();
    }

    /// Inserts or replaces a metric definition, keeping its observations.
    pub fn put_metric(&mut self, metric: Metric) {
        self.flush();
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
        self.flush();
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
        self.flush();
        self.metrics.remove(id);
        self.rescore_metric_dependents(id);
    }

    pub fn put_hypothesis(&mut self, h: Hypothesis) {
        self.flush();
        let id = h.id.clone();
        self.hypotheses.insert(id.clone(), h);
        self.rescore_hypothesis_items(&id);
    }

    /// Removes a hypothesis and every link to it.
    pub fn remove_hypothesis(&mut self, id: &str) {
        self.flush();
        self.hypotheses.remove(id);
        let items = self.contributions.remove(id).unwrap_or_default();
        self.contribution_totals.remove(id);
        for (k, c) in &items {
            if let Some(e) = self.entries.at_mut(c.slot)
                && let Ok(i) = e.link_position(id)
            {
                e.links.remove(i);
            }
            self.drop_if_empty(k);
        }
        self.rescore_slots(items.values().map(|c| c.slot).collect());
    }

    /// Inserts or replaces an item's facts and rescores it.
    pub fn put_item(&mut self, key: String, facts: ItemFacts) {
        self.flush();
        if self.set_facts(key.as_str(), facts) {
            self.rescore(&key);
        }
    }

    /// Removes an item, its links and its score.
    pub fn remove_item(&mut self, key: &str) {
        self.flush();
        let Some(slot) = self.entries.slot(key) else {
            return;
        };
        let Some(e) = self.entries.remove(key) else {
            return;
        };
        if e.facts.is_some() {
            self.item_count -= 1;
        }
        if let Some((value, density)) = e.ranked {
            let gone = |old| Move {
                old: Some(old),
                new: None,
                label: e.label,
                slot,
            };
            self.by_density.apply([gone(density)]);
            self.by_value.apply([gone(value)]);
        }
        for l in &e.links {
            if let Some(m) = self.contributions.get_mut(&*l.hypothesis_id) {
                m.remove(key);
            }
            self.after_link_change(&l.hypothesis_id, key);
        }
    }

    /// Takes an item out of the index as removed from its tracker: like
    /// [`remove_item`](Self::remove_item), remembering why.
    pub fn mark_removed(&mut self, key: &str, removal: Removal) {
        self.remove_item(key);
        self.removed.insert(key.to_string(), removal);
    }

    /// How many of a source's items are removed (kept in the store, out of
    /// the ranking).
    pub fn removed_count_of_source(&self, source_id: &str) -> usize {
        let prefix = crate::domain::item_key(source_id, "");
        self.removed
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .count()
    }

    /// Forgets the removed items of a deleted source.
    pub fn forget_removed_of_source(&mut self, source_id: &str) {
        let prefix = crate::domain::item_key(source_id, "");
        self.removed.retain(|k, _| !k.starts_with(&prefix));
    }

    /// Forgets that an item was removed; its facts and links come back
    /// through [`defer_upsert`](Self::defer_upsert).
    pub fn restore(&mut self, key: &str) {
        self.removed.remove(key);
    }

    /// Inserts or replaces a link.
    pub fn put_link(&mut self, link: Link) {
        self.flush();
        let (item, hyp) = (link.item_key.clone(), link.hypothesis_id.clone());
        self.insert_link(link);
        self.after_link_change(&hyp, &item);
    }

    pub fn remove_link(&mut self, item_key: &str, hypothesis_id: &str) {
        self.flush();
        self.delete_link(item_key, hypothesis_id);
        self.after_link_change(hypothesis_id, item_key);
    }

    /// Removes and puts many links at once, rescoring each affected item
    /// once: a sync page that links dozens of items to one over-subscribed
    /// hypothesis rescores that hypothesis' items once, not once per link.
    pub fn apply_links(&mut self, remove: &[(String, String)], put: Vec<Link>) {
        self.flush();
        let (hyps, mut items) = self.change_links(remove, put);
        for h in &hyps {
            let before = self.contribution_totals.get(h).copied().unwrap_or(0.0);
            let after = self.refresh_contribution_total(h);
            if before > 1.0 || after > 1.0 {
                items.extend(self.slots_of_hypothesis(h));
            }
        }
        self.rescore_slots(items);
    }

    /// Like `put_item` for each item and then `apply_links`, but leaves the
    /// rescoring to [`flush`](Self::flush): until then, scores and rankings
    /// are stale (facts and links are not). For a sync, whose pages each
    /// link to many over-subscribed hypotheses: one flush at the end
    /// rescores each reached item once instead of once per page. Every
    /// other write flushes first.
    pub fn defer_upsert(
        &mut self,
        items: Vec<(String, ItemFacts)>,
        remove: &[(String, String)],
        put: Vec<Link>,
    ) {
        for (key, facts) in items {
            if self.set_facts(&key, facts)
                && let Some(slot) = self.entries.slot(&key)
            {
                self.deferred_items.push(slot);
            }
        }
        let (hyps, items) = self.change_links(remove, put);
        self.deferred_hypotheses.extend(hyps);
        self.deferred_items.extend(items);
    }

    /// Whether [`defer_upsert`](Self::defer_upsert) left work for
    /// [`flush`](Self::flush).
    pub fn has_deferred(&self) -> bool {
        !self.deferred_items.is_empty() || !self.deferred_hypotheses.is_empty()
    }

    /// Does the rescoring deferred by [`defer_upsert`](Self::defer_upsert):
    /// afterwards every score equals what the writes done one by one would
    /// have left.
    pub fn flush(&mut self) {
        if !self.has_deferred() {
            return;
        }
        let mut items = std::mem::take(&mut self.deferred_items);
        for h in std::mem::take(&mut self.deferred_hypotheses) {
            let before = self.contribution_totals.get(&h).copied().unwrap_or(0.0);
            let after = self.refresh_contribution_total(&h);
            if before > 1.0 || after > 1.0 {
                items.extend(self.slots_of_hypothesis(&h));
            }
        }
        self.rescore_slots(items);
    }

    /// Recomputes every item's score (what a change reaching every item
    /// costs); the result equals a rebuild.
    pub fn rescore_all(&mut self) {
        self.flush();
        self.label_new_entries();
        let model = Model {
            goal_weights: &self.goal_weights,
            metrics: &self.metrics,
            hypotheses: &self.hypotheses,
            contribution_totals: &self.contribution_totals,
        };
        let all = model.link_terms(&self.strings);
        let mut rankings = Rankings {
            by_density: &mut self.by_density,
            by_value: &mut self.by_value,
        };
        let (items, moved) = rescore_entries(
            self.entries.with_slots_mut().collect(),
            &all,
            self.default_size,
        );
        self.rescored += items;
        rankings.apply(moved);
    }

    // ----- internals -----

    /// Sets an item's facts; false when they were already these.
    fn set_facts(&mut self, key: &str, facts: ItemFacts) -> bool {
        if let Some(e) = self.entries.get_mut(key) {
            if e.facts.as_deref() == Some(&facts) {
                return false;
            }
            if e.set_facts(facts) {
                self.item_count += 1;
            }
            return true;
        }
        let slot = self.entries.add(Arc::from(key));
        if let Some(e) = self.entries.at_mut(slot)
            && e.set_facts(facts)
        {
            self.item_count += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{big_snapshot, same_scores_and_rankings};
    use super::*;
    use chrono::Utc;

    #[test]
    fn text_matches_in_lower_case_whatever_the_script() {
        assert!(contains_lowercase("Faster CHECKOUT", "checkout"));
        assert!(contains_lowercase("web/415", "b/41"));
        assert!(contains_lowercase("anything", ""));
        assert!(!contains_lowercase("check", "checkout"));
        assert!(contains_lowercase("abcXYZ", "xyz"));
        assert!(contains_lowercase("xyz", "xyz"));
        assert!(!contains_lowercase("xyXz", "xyz"));
        assert!(contains_lowercase("Größere ÄNDERUNG", "änderung"));
        assert!(!contains_lowercase("Größere", "x"));
    }

    #[test]
    fn narrowed_rankings_keep_order_and_only_what_matches() {
        let ix = ScoreIndex::from_snapshot(3.0, big_snapshot(400, 5));
        let all = ix.rank(
            RankOrder::ValueDensity,
            &RankQuery {
                include_closed: true,
                limit: usize::MAX,
                ..Default::default()
            },
        );
        let wanted: std::collections::HashSet<String> = all
            .iter()
            .map(|((_, k), _)| k.clone())
            .filter(|k| k.ends_with('7'))
            .collect();
        let narrowed = ix.rank(
            RankOrder::ValueDensity,
            &RankQuery {
                include_closed: true,
                limit: usize::MAX,
                narrow: Narrow {
                    keys: Some(std::sync::Arc::new(wanted.clone())),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let expected: Vec<&String> = all
            .iter()
            .map(|((_, k), _)| k)
            .filter(|k| wanted.contains(*k))
            .collect();
        let got: Vec<&String> = narrowed.iter().map(|((_, k), _)| k).collect();
        assert_eq!(got, expected);
        assert!(!got.is_empty());
    }

    #[test]
    fn deferred_upserts_end_where_item_by_item_ones_do() {
        // Pages of items with links to over-subscribed hypotheses, applied
        // eagerly to one index and deferred (then flushed) on another.
        let start = || {
            let mut s = big_snapshot(600, 11);
            s.items.truncate(300);
            s.links.retain(|l| l.item_key.as_str() < "s/00300");
            ScoreIndex::from_snapshot(3.0, s)
        };
        let full = big_snapshot(600, 11);
        let (mut eager, mut deferred) = (start(), start());
        for page in full.items[300..].chunks(50) {
            let keys: Vec<&String> = page.iter().map(|(k, _)| k).collect();
            let links: Vec<Link> = full
                .links
                .iter()
                .filter(|l| keys.contains(&&l.item_key))
                .cloned()
                .collect();
            // Also drop one old link per page, as a rule that no longer
            // applies would.
            let old = eager.all_links()[0];
            let remove = vec![(old.item_key.to_string(), old.hypothesis_id.to_string())];
            for (k, f) in page {
                eager.put_item(k.clone(), f.clone());
            }
            eager.apply_links(&remove, links.clone());
            deferred.defer_upsert(page.to_vec(), &remove, links);
            assert!(deferred.has_deferred());
        }
        deferred.flush();
        assert!(!deferred.has_deferred());
        same_scores_and_rankings(&eager, &deferred);
        // The deferred index did less work for the same result.
        assert!(deferred.rescored_count() < eager.rescored_count());
    }

    #[test]
    fn items_added_between_others_one_by_one_rank_and_page_like_a_rebuild() {
        // Every fourth item first, then the rest one at a time from the
        // end, three between each two ranked items. The tests' label
        // spacing is small, so the labels are respaced again and again.
        let late = |k: &str| !k["s/".len()..].parse::<usize>().is_ok_and(|i| i % 4 == 0);
        let full = big_snapshot(600, 5);
        let mut start = big_snapshot(600, 5);
        start.items.retain(|(k, _)| !late(k));
        start.links.retain(|l| !late(&l.item_key));
        let mut ix = ScoreIndex::from_snapshot(3.0, start);
        let summary = |v: f64| ObservationSummary {
            latest: Some((Utc::now(), v)),
            count: 1,
        };
        let mut last = None;
        for (n, (k, f)) in full.items.iter().rev().filter(|(k, _)| late(k)).enumerate() {
            ix.put_item(k.clone(), f.clone());
            let links = full
                .links
                .iter()
                .filter(|l| l.item_key == *k)
                .cloned()
                .collect();
            ix.apply_links(&[], links);
            if n % 60 == 59 {
                let v = n as f64 / 1000.0;
                ix.set_observations("m", summary(v));
                last = Some(v);
            }
        }
        let mut want = big_snapshot(600, 5);
        want.metrics[0].1 = summary(last.unwrap());
        let mut rebuilt = ScoreIndex::from_snapshot(3.0, want);
        same_scores_and_rankings(&ix, &rebuilt);

        let all = |ix: &ScoreIndex, order| -> Vec<RankKey> {
            let q = RankQuery {
                include_closed: true,
                limit: usize::MAX,
                ..Default::default()
            };
            ix.rank(order, &q).into_iter().map(|(k, _)| k).collect()
        };
        let gone = "s/00100";
        let tokens: Vec<RankKey> = [RankOrder::ValueDensity, RankOrder::Value]
            .into_iter()
            .map(|o| all(&ix, o).into_iter().find(|k| k.1 == gone).unwrap())
            .collect();
        ix.remove_item(gone);
        rebuilt.remove_item(gone);
        for (order, token) in [RankOrder::ValueDensity, RankOrder::Value]
            .into_iter()
            .zip(tokens)
        {
            let want = all(&rebuilt, order);
            // Page by page, each after the last one's token.
            let (mut pages, mut after) = (Vec::new(), None);
            loop {
                let q = RankQuery {
                    include_closed: true,
                    limit: 7,
                    after: after.clone(),
                    ..Default::default()
                };
                let page: Vec<RankKey> = ix.rank(order, &q).into_iter().map(|(k, _)| k).collect();
                let Some(last) = page.last() else { break };
                after = Some(last.clone());
                pages.extend(page);
            }
            assert_eq!(pages, want, "{order:?}");
            // A token on an item removed since continues after its place.
            let q = RankQuery {
                include_closed: true,
                limit: usize::MAX,
                after: Some(token.clone()),
                ..Default::default()
            };
            let got: Vec<RankKey> = ix.rank(order, &q).into_iter().map(|(k, _)| k).collect();
            let rest: Vec<RankKey> = want.into_iter().filter(|k| *k > token).collect();
            assert!(!rest.is_empty());
            assert_eq!(got, rest, "{order:?}");
        }
    }
}
