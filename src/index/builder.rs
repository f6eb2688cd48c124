//! The start-up builder: indexes the stored model while it is still being
//! read, and scores and ranks every item once at the end.

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::FxBuildHasher;

use super::links::{Contribution, Linked};
use super::moves::Rankings;
use super::rescore::{Model, rescore_entries};
use super::{ItemFacts, Key, MetricEntry, ScoreIndex};
use crate::domain::{Goal, Hypothesis, Link, Metric, ObservationSummary, Removal, Source};
use crate::score;

/// Builds an index from the stored model while it is being read, so that
/// reading rows and indexing them overlap at start-up: items and links may
/// come in any order and in chunks, and [`finish`](Self::finish) scores
/// every item once. The result equals [`ScoreIndex::from_snapshot`] of the
/// same rows (later rows win, as in a snapshot).
#[derive(Debug)]
pub struct IndexBuilder {
    ix: ScoreIndex,
}

impl IndexBuilder {
    pub fn new(default_size: f64) -> Self {
        IndexBuilder {
            ix: ScoreIndex::new(default_size),
        }
    }

    /// Sources, goals, metrics with their observations, and hypotheses.
    pub fn model(
        &mut self,
        sources: Vec<Source>,
        goals: Vec<Goal>,
        metrics: Vec<(Metric, ObservationSummary)>,
        hypotheses: Vec<Hypothesis>,
    ) {
        let ix = &mut self.ix;
        ix.sources = sources.into_iter().map(|s| (s.id.clone(), s)).collect();
        ix.goals = goals.into_iter().map(|g| (g.id.clone(), g)).collect();
        ix.goal_weights = score::effective_goal_weights(ix.goals.values());
        ix.metrics = metrics
            .into_iter()
            .map(|(m, o)| (m.id.clone(), MetricEntry::new(m, o)))
            .collect();
        ix.hypotheses = hypotheses.into_iter().map(|h| (h.id.clone(), h)).collect();
    }

    /// Items their tracker no longer returns (their rows and links are not
    /// given to [`items`](Self::items) and [`links`](Self::links)).
    pub fn removed(&mut self, removed: impl IntoIterator<Item = (String, Removal)>) {
        self.ix.removed.extend(removed);
    }

    /// Room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.ix.entries.reserve(n);
    }

    pub fn items(&mut self, items: impl IntoIterator<Item = (String, ItemFacts)>) {
        let ix = &mut self.ix;
        for (key, facts) in items {
            match ix.entries.get_mut(key.as_str()) {
                Some(e) => {
                    if e.set_facts(facts) {
                        ix.item_count += 1;
                    }
                }
                None => {
                    let slot = ix.entries.add(Arc::from(key));
                    if let Some(e) = ix.entries.at_mut(slot)
                        && e.set_facts(facts)
                    {
                        ix.item_count += 1;
                    }
                }
            }
        }
    }

    /// Links, kept in arrival order until [`finish`](Self::finish) sorts
    /// each item's.
    pub fn links(&mut self, links: impl IntoIterator<Item = Link>) {
        let ix = &mut self.ix;
        for link in links {
            let linked = Linked::new(&link, &mut ix.strings);
            let key = link.item_key;
            match ix.entries.get_mut(key.as_str()) {
                Some(e) => e.links.push(linked),
                None => {
                    let slot = ix.entries.add(Arc::from(key));
                    if let Some(e) = ix.entries.at_mut(slot) {
                        e.links.push(linked);
                    }
                }
            }
        }
    }

    /// Sorts the links, totals the contributions, scores every item once
    /// and builds the rankings.
    pub fn finish(self) -> ScoreIndex {
        let mut ix = self.ix;
        // Each item's links by hypothesis, and each hypothesis'
        // contributions built in one sorted pass.
        let mut per_hypothesis: HashMap<String, Vec<(Key, Contribution)>, FxBuildHasher> =
            HashMap::default();
        for (slot, e) in ix.entries.with_slots_mut() {
            e.links.shrink_to_fit();
            if e.links.len() > 1 {
                // Stable, after a reverse: of two links to one hypothesis
                // the later one wins, as `insert_link` would have it.
                e.links.reverse();
                e.links
                    .sort_by(|a, b| a.hypothesis_id.cmp(&b.hypothesis_id));
                e.links.dedup_by(|a, b| a.hypothesis_id == b.hypothesis_id);
            }
            for l in &e.links {
                let pair = (
                    e.key.clone(),
                    Contribution {
                        slot,
                        amount: l.contribution,
                    },
                );
                match per_hypothesis.get_mut(&*l.hypothesis_id) {
                    Some(v) => v.push(pair),
                    None => {
                        per_hypothesis.insert(l.hypothesis_id.to_string(), vec![pair]);
                    }
                }
            }
        }
        for (h, pairs) in per_hypothesis {
            ix.contributions
                .insert(h.clone(), pairs.into_iter().collect());
            ix.refresh_contribution_total(&h);
        }
        // Label the keys, score everything, then build the rankings in
        // one sorted pass each.
        ix.entries.label_new();
        let model = Model {
            goal_weights: &ix.goal_weights,
            metrics: &ix.metrics,
            hypotheses: &ix.hypotheses,
            contribution_totals: &ix.contribution_totals,
        };
        let all = model.link_terms(&ix.strings);
        let (items, moved) =
            rescore_entries(ix.entries.with_slots_mut().collect(), &all, ix.default_size);
        ix.rescored += items;
        Rankings {
            by_density: &mut ix.by_density,
            by_value: &mut ix.by_value,
        }
        .apply(moved);
        ix
    }
}
