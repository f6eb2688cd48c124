//! The engine's answer to roll-up queries: the goal tree with coverage,
//! computed by the pure [`crate::refine::rollup`] from the index, each goal
//! with the title, parent, effective weight and item titles the API serves,
//! as owned values.

use super::{Engine, Error, Result, quote};
use crate::index::ScoreIndex;
use crate::refine::rollup::{self, GoalInput, GoalRollup, HypothesisInput, ItemInput, Tree};

/// One goal's roll-up as served.
#[derive(Debug, Clone)]
pub struct GoalRollupView {
    /// Its serving items cut to the limit asked for; `item_count` counts
    /// them all.
    pub rollup: GoalRollup,
    pub item_count: usize,
    pub title: String,
    pub parent_id: String,
    pub effective_weight: f64,
    /// The titles of `rollup.items`, in the same order.
    pub item_titles: Vec<String>,
}

/// The whole goal tree as served.
#[derive(Debug, Clone)]
pub struct GoalTreeView {
    pub goals: Vec<GoalRollupView>,
    pub unserved_goal_ids: Vec<String>,
    pub unaligned_item_keys: Vec<String>,
}

/// The roll-up of the whole tree from the index.
fn tree_of(ix: &ScoreIndex) -> Tree {
    let goals: Vec<GoalInput> = ix
        .goals()
        .map(|g| GoalInput {
            id: g.id.clone(),
            parent_id: g.parent_id.clone(),
            effective_weight: ix.goal_weight(&g.id),
        })
        .collect();
    let hyps: Vec<HypothesisInput> = ix
        .hypotheses()
        .map(|h| HypothesisInput {
            id: h.id.clone(),
            goal_id: h.goal_id.clone(),
            metric_id: h.metric_id.clone(),
            gap: ix.metric(&h.metric_id).map_or(0.0, |m| m.gap),
        })
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
    rollup::rollup(&goals, &hyps, &items)
}

fn rollup_view(mut r: GoalRollup, ix: &ScoreIndex, limit: usize) -> GoalRollupView {
    let goal = ix.goal(&r.goal_id);
    let item_count = r.items.len();
    r.items.truncate(limit);
    GoalRollupView {
        title: goal.map(|g| g.title.clone()).unwrap_or_default(),
        parent_id: goal.map(|g| g.parent_id.clone()).unwrap_or_default(),
        effective_weight: ix.goal_weight(&r.goal_id),
        item_titles: r
            .items
            .iter()
            .map(|s| ix.item(&s.key).map(|f| f.title.clone()).unwrap_or_default())
            .collect(),
        item_count,
        rollup: r,
    }
}

impl Engine {
    /// One goal's roll-up with at most `limit` serving items; NOT_FOUND for
    /// an unknown goal.
    pub fn goal_rollup(&self, goal_id: &str, limit: usize) -> Result<Option<GoalRollupView>> {
        let ix = self.read();
        if ix.goal(goal_id).is_none() {
            return Err(if goal_id.is_empty() {
                Error::invalid("goal_id", "is required")
            } else {
                Error::NotFound(format!("goal {} not found", quote(goal_id)))
            });
        }
        let tree = tree_of(&ix);
        Ok(tree
            .goals
            .into_iter()
            .find(|g| g.goal_id == goal_id)
            .map(|g| rollup_view(g, &ix, limit)))
    }

    /// The whole tree, each goal with at most `items_per_goal` serving items.
    pub fn goal_tree(&self, items_per_goal: usize) -> GoalTreeView {
        let ix = self.read();
        let tree = tree_of(&ix);
        GoalTreeView {
            goals: tree
                .goals
                .into_iter()
                .map(|g| rollup_view(g, &ix, items_per_goal))
                .collect(),
            unserved_goal_ids: tree.unserved_goal_ids,
            unaligned_item_keys: tree.unaligned_item_keys,
        }
    }
}
