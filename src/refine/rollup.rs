//! Zoom out / zoom in: roll the backlog's value up the goal tree.
//!
//! For a goal `g` and its subtree `S(g)` (g and every goal below it):
//! - weighted gap `WG(g) = effective_weight(g) × G(g)`, where `G(g)` is the
//!   mean gap of the distinct metrics that hypotheses in `S(g)` measure, and 1
//!   when nothing under `g` is measured (an unmeasured goal counts as wide
//!   open);
//! - addressed value `A(g)` = the sum of the score terms, over open items, of
//!   links to hypotheses in `S(g)`: what the backlog is expected to deliver
//!   toward `g`, in the same unit as item values;
//! - coverage `C(g) = min(1, A(g) / WG(g))` (0 when `WG(g)` is 0);
//! - the items serving `g` are the open items with a link to a hypothesis in
//!   `S(g)`, ranked by value density (ties by key), each with the part of its
//!   value that goes to `g`;
//! - a goal is unserved when no open item links to a hypothesis in `S(g)`;
//!   an item is unaligned when it links to no hypothesis at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A goal of the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalInput {
    pub id: String,
    pub parent_id: String,
    pub effective_weight: f64,
}

/// A hypothesis: where it hangs and what its metric's gap is.
#[derive(Debug, Clone, PartialEq)]
pub struct HypothesisInput {
    pub id: String,
    pub goal_id: String,
    pub metric_id: String,
    pub gap: f64,
}

/// An open item with its score terms (hypothesis id, term value).
#[derive(Debug, Clone, PartialEq)]
pub struct ItemInput {
    pub key: String,
    pub value_density: f64,
    pub terms: Vec<(String, f64)>,
}

/// An item serving a goal.
#[derive(Debug, Clone, PartialEq)]
pub struct ServingItem {
    pub key: String,
    /// The part of the item's value that goes to this goal's subtree.
    pub value_for_goal: f64,
    pub value_density: f64,
}

/// One goal's roll-up.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalRollup {
    pub goal_id: String,
    /// Depth in the tree (strategic goals are 0).
    pub depth: usize,
    pub weighted_gap: f64,
    pub addressed: f64,
    pub coverage: f64,
    /// Ranked by value density, then key.
    pub items: Vec<ServingItem>,
    pub unserved: bool,
}

/// The whole tree.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tree {
    /// Depth-first, children in id order.
    pub goals: Vec<GoalRollup>,
    pub unserved_goal_ids: Vec<String>,
    pub unaligned_item_keys: Vec<String>,
}

/// Rolls value up the goal tree.
pub fn rollup(goals: &[GoalInput], hypotheses: &[HypothesisInput], items: &[ItemInput]) -> Tree {
    let ids: BTreeSet<&str> = goals.iter().map(|g| g.id.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<&GoalInput>> = BTreeMap::new();
    for g in goals {
        let parent = if ids.contains(g.parent_id.as_str()) {
            g.parent_id.as_str()
        } else {
            ""
        };
        children.entry(parent).or_default().push(g);
    }
    for v in children.values_mut() {
        v.sort_by(|a, b| a.id.cmp(&b.id));
    }
    let hyp_goal: HashMap<&str, &str> = hypotheses
        .iter()
        .map(|h| (h.id.as_str(), h.goal_id.as_str()))
        .collect();

    let mut tree = Tree::default();
    let mut stack: Vec<(&GoalInput, usize)> = children
        .get("")
        .map(|v| v.iter().rev().map(|g| (*g, 0)).collect())
        .unwrap_or_default();
    while let Some((g, depth)) = stack.pop() {
        let subtree = subtree_of(g, &children);
        let mut gaps: BTreeMap<&str, f64> = BTreeMap::new();
        for h in hypotheses
            .iter()
            .filter(|h| subtree.contains(h.goal_id.as_str()))
        {
            gaps.insert(&h.metric_id, h.gap);
        }
        let mean_gap = if gaps.is_empty() {
            1.0
        } else {
            gaps.values().sum::<f64>() / gaps.len() as f64
        };
        let weighted_gap = g.effective_weight * mean_gap;
        let mut serving: Vec<ServingItem> = items
            .iter()
            .filter_map(|it| {
                let mut linked = false;
                let mut value = 0.0;
                for (h, v) in &it.terms {
                    if hyp_goal
                        .get(h.as_str())
                        .is_some_and(|goal| subtree.contains(goal))
                    {
                        linked = true;
                        value += v;
                    }
                }
                linked.then(|| ServingItem {
                    key: it.key.clone(),
                    value_for_goal: value,
                    value_density: it.value_density,
                })
            })
            .collect();
        serving.sort_by(|a, b| {
            b.value_density
                .total_cmp(&a.value_density)
                .then_with(|| a.key.cmp(&b.key))
        });
        let addressed: f64 = serving.iter().map(|s| s.value_for_goal).sum();
        let coverage = if weighted_gap > 0.0 {
            (addressed / weighted_gap).min(1.0)
        } else {
            0.0
        };
        let unserved = serving.is_empty();
        if unserved {
            tree.unserved_goal_ids.push(g.id.clone());
        }
        tree.goals.push(GoalRollup {
            goal_id: g.id.clone(),
            depth,
            weighted_gap,
            addressed,
            coverage,
            items: serving,
            unserved,
        });
        if let Some(kids) = children.get(g.id.as_str()) {
            stack.extend(kids.iter().rev().map(|k| (*k, depth + 1)));
        }
    }
    tree.unaligned_item_keys = items
        .iter()
        .filter(|i| i.terms.is_empty())
        .map(|i| i.key.clone())
        .collect();
    tree.unaligned_item_keys.sort();
    tree
}

fn subtree_of<'a>(
    g: &'a GoalInput,
    children: &BTreeMap<&str, Vec<&'a GoalInput>>,
) -> BTreeSet<&'a str> {
    let mut out = BTreeSet::new();
    let mut todo = vec![g];
    while let Some(x) = todo.pop() {
        // `insert` is false for a goal seen before, so a cycle cannot loop.
        if out.insert(x.id.as_str()) {
            todo.extend(children.get(x.id.as_str()).into_iter().flatten().copied());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn goal(id: &str, parent: &str, w: f64) -> GoalInput {
        GoalInput {
            id: id.into(),
            parent_id: parent.into(),
            effective_weight: w,
        }
    }

    fn hyp(id: &str, goal: &str, metric: &str, gap: f64) -> HypothesisInput {
        HypothesisInput {
            id: id.into(),
            goal_id: goal.into(),
            metric_id: metric.into(),
            gap,
        }
    }

    fn item(key: &str, density: f64, terms: &[(&str, f64)]) -> ItemInput {
        ItemInput {
            key: key.into(),
            value_density: density,
            terms: terms.iter().map(|(h, v)| (h.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn value_rolls_up_and_gaps_show() {
        let goals = [
            goal("S1", "", 0.6),
            goal("I1", "S1", 0.45),
            goal("I2", "S1", 0.15),
            goal("S2", "", 0.4),
        ];
        let hyps = [hyp("H1", "I1", "conv", 0.5), hyp("H2", "I2", "apps", 0.8)];
        let items = [
            item("a", 0.02, &[("H1", 0.04)]),
            item("b", 0.05, &[("H1", 0.01), ("H2", 0.02)]),
            item("c", 0.0, &[]),
        ];
        let t = rollup(&goals, &hyps, &items);
        let order: Vec<(&str, usize)> = t
            .goals
            .iter()
            .map(|g| (g.goal_id.as_str(), g.depth))
            .collect();
        assert_eq!(order, [("S1", 0), ("I1", 1), ("I2", 1), ("S2", 0)]);
        let s1 = &t.goals[0];
        // Mean gap of conv and apps = 0.65; weighted gap = 0.6 x 0.65.
        assert!((s1.weighted_gap - 0.39).abs() < 1e-12);
        assert!((s1.addressed - 0.07).abs() < 1e-12);
        assert!((s1.coverage - 0.07 / 0.39).abs() < 1e-12);
        assert_eq!(
            s1.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
            ["b", "a"],
            "by density"
        );
        let i1 = &t.goals[1];
        assert!((i1.weighted_gap - 0.225).abs() < 1e-12);
        assert!(
            (i1.items[0].value_for_goal - 0.01).abs() < 1e-12,
            "b's H1 part only"
        );
        let s2 = &t.goals[3];
        assert!(s2.unserved);
        assert_eq!(s2.weighted_gap, 0.4, "unmeasured goals count as wide open");
        assert_eq!(s2.coverage, 0.0);
        assert_eq!(t.unserved_goal_ids, ["S2"]);
        assert_eq!(t.unaligned_item_keys, ["c"]);
    }

    #[test]
    fn coverage_is_capped_at_one() {
        let t = rollup(
            &[goal("S", "", 1.0)],
            &[hyp("H", "S", "m", 0.1)],
            &[item("a", 1.0, &[("H", 0.5)])],
        );
        assert_eq!(t.goals[0].coverage, 1.0);
    }
}
