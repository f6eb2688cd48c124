//! The engine's answers to list and read queries of the value model, as
//! owned values: one page of sources, goals (with their effective weight),
//! metrics, hypotheses (with their value) and links. The API layer pages
//! and translates them; it never holds the index's read guard.
//!
//! A page is the entries whose key is greater than `after`, in key order,
//! at most `limit` of them: callers ask for one more than they serve to
//! learn whether another page follows.

use super::Engine;
use crate::domain::{Goal, Hypothesis, Link, Source};
use crate::index::MetricEntry;

/// A goal with the weight it carries in the tree.
#[derive(Debug, Clone)]
pub struct GoalView {
    pub goal: Goal,
    pub effective_weight: f64,
}

/// A hypothesis with the value it is expected to deliver.
#[derive(Debug, Clone)]
pub struct HypothesisView {
    pub hypothesis: Hypothesis,
    pub value: f64,
    /// Neither insights nor observations stand behind it.
    pub unsupported: bool,
}

/// Which links a listing takes: those of an item, of a hypothesis, both
/// (at most one link), or all when neither is given.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter<'a> {
    pub item_key: Option<&'a str>,
    pub hypothesis_id: Option<&'a str>,
}

/// The key links are listed in: item key, then hypothesis id.
pub fn link_order_key(item_key: &str, hypothesis_id: &str) -> String {
    format!("{item_key}\u{0}{hypothesis_id}")
}

fn after_key(after: Option<&str>, key: &str) -> bool {
    after.is_none_or(|a| key > a)
}

impl Engine {
    /// Sources in id order.
    pub fn list_sources(&self, after: Option<&str>, limit: usize) -> Vec<Source> {
        self.read()
            .sources()
            .filter(|s| after_key(after, &s.id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A goal with its effective weight.
    pub fn goal_view(&self, goal: Goal) -> GoalView {
        let effective_weight = self.read().goal_weight(&goal.id);
        GoalView {
            goal,
            effective_weight,
        }
    }

    /// Goals in id order, those under `parent_id` when given.
    pub fn list_goals(
        &self,
        parent_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<GoalView> {
        let ix = self.read();
        ix.goals()
            .filter(|g| parent_id.is_none_or(|p| g.parent_id == p) && after_key(after, &g.id))
            .take(limit)
            .map(|g| GoalView {
                goal: g.clone(),
                effective_weight: ix.goal_weight(&g.id),
            })
            .collect()
    }

    /// Metrics in id order, with their observations.
    pub fn list_metrics(&self, after: Option<&str>, limit: usize) -> Vec<MetricEntry> {
        self.read()
            .metrics()
            .filter(|m| after_key(after, &m.metric.id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// A hypothesis with its value.
    pub fn hypothesis_view(&self, hypothesis: Hypothesis) -> HypothesisView {
        let ix = self.read();
        let value = ix.hypothesis_value(&hypothesis);
        let unsupported = self.hypothesis_unsupported(&ix, &hypothesis.id);
        HypothesisView {
            hypothesis,
            value,
            unsupported,
        }
    }

    /// Hypotheses in id order, those of a goal and/or a metric when given.
    pub fn list_hypotheses(
        &self,
        goal_id: Option<&str>,
        metric_id: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<HypothesisView> {
        let ix = self.read();
        ix.hypotheses()
            .filter(|h| {
                goal_id.is_none_or(|g| h.goal_id == g)
                    && metric_id.is_none_or(|m| h.metric_id == m)
                    && after_key(after, &h.id)
            })
            .take(limit)
            .map(|h| HypothesisView {
                hypothesis: h.clone(),
                value: ix.hypothesis_value(h),
                unsupported: self.hypothesis_unsupported(&ix, &h.id),
            })
            .collect()
    }

    /// Links in [`link_order_key`] order.
    pub fn list_links(
        &self,
        filter: &LinkFilter<'_>,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<Link> {
        let ix = self.read();
        let mut links: Vec<(String, crate::index::LinkRef<'_>)> =
            match (filter.item_key, filter.hypothesis_id) {
                (Some(i), Some(h)) => ix.link(i, h).into_iter().collect(),
                (Some(i), None) => ix.links_of_item(i).collect(),
                (None, Some(h)) => ix.links_of_hypothesis(h),
                (None, None) => ix.all_links(),
            }
            .into_iter()
            .map(|l| (link_order_key(l.item_key, l.hypothesis_id), l))
            .filter(|(k, _)| after_key(after, k))
            .collect();
        links.sort_by(|a, b| a.0.cmp(&b.0));
        links
            .into_iter()
            .take(limit)
            .map(|(_, l)| l.to_link())
            .collect()
    }

    /// An item's title, empty for an unknown item.
    pub fn item_title(&self, key: &str) -> String {
        self.read()
            .item(key)
            .map(|f| f.title.clone())
            .unwrap_or_default()
    }
}
