//! Reach: which items a change can move, so that a write rescores only
//! those. A link reaches its item, and every item of its hypothesis when
//! the contributions to it are (or were) over-subscribed; a goal weight
//! reaches the items of the hypotheses under goals whose effective weight
//! moved; an observation, the items of the hypotheses measuring its metric.

use std::collections::BTreeSet;

use super::{ScoreIndex, Slot};
use crate::score;

impl ScoreIndex {
    /// Rescores what a change of one link reaches: its item, and every item
    /// of its hypothesis when the contributions were or are over-subscribed.
    pub(super) fn after_link_change(&mut self, hypothesis_id: &str, item_key: &str) {
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
        if self.item(item_key).is_some() {
            self.rescore(item_key);
        }
    }

    /// Recomputes the effective goal weights and rescores the items of the
    /// hypotheses under the goals whose weight moved.
    pub(super) fn refresh_goal_weights(&mut self) {
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

    /// Rescores the items of the hypotheses that measure a metric.
    pub(super) fn rescore_metric_dependents(&mut self, metric_id: &str) {
        // An item serving two of the metric's hypotheses is listed twice
        // and rescored once.
        let items: Vec<Slot> = self
            .hypotheses
            .values()
            .filter(|h| h.metric_id == metric_id)
            .filter_map(|h| self.contributions.get(&h.id))
            .flat_map(|m| m.values().map(|c| c.slot))
            .collect();
        self.rescore_slots(items);
    }

    /// The slots of the items linked to a hypothesis.
    pub(super) fn slots_of_hypothesis(
        &self,
        hypothesis_id: &str,
    ) -> impl Iterator<Item = Slot> + '_ {
        self.contributions
            .get(hypothesis_id)
            .into_iter()
            .flat_map(|m| m.values().map(|c| c.slot))
    }

    pub(super) fn rescore_hypothesis_items(&mut self, hypothesis_id: &str) {
        let items = self.slots_of_hypothesis(hypothesis_id).collect();
        self.rescore_slots(items);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{link, snapshot};
    use super::super::{RankOrder, RankQuery};
    use super::*;
    use crate::domain::Link;

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
