//! The value-alignment score: pure functions from plain values to an explained
//! score. Nothing here knows about storage, time zones or gRPC, so every
//! property VALUE-MODEL.md asks of the score is pinned by unit and property
//! tests below.
//!
//! Formulas (the README states them with a worked example):
//! - gap = clamp((target - current) / (target - baseline), 0, 1)
//! - goal weight = product of sibling-normalized weights from the root
//! - hypothesis value = goal weight x gap x expected effect x confidence
//! - term = hypothesis value x effective contribution, where the contributions
//!   to one hypothesis are divided by their sum when it exceeds 1
//! - item value = sum of its terms (in hypothesis-id order)
//! - value density = item value / size

use std::collections::{BTreeMap, HashMap};

use crate::domain::{Goal, HypothesisStatus};

/// Satisfaction gap of a metric: the share of the way from `baseline` to
/// `target` still to go. One expression for both directions. `current` is the
/// latest observation, the baseline where there is none.
pub fn gap(baseline: f64, target: f64, current: Option<f64>) -> f64 {
    let current = current.unwrap_or(baseline);
    let span = target - baseline;
    if span == 0.0 || !span.is_finite() {
        return 0.0;
    }
    let g = (target - current) / span;
    if g.is_nan() { 0.0 } else { g.clamp(0.0, 1.0) }
}

/// The confidence the score uses: the confidence itself, whatever the
/// status. Validation keeps the confidence a posterior probability and sets
/// the status from it (VALIDATED at 0.95 or more, INVALIDATED at 0.05 or
/// less), so the score never jumps to exactly 1 or 0 on a status.
pub fn effective_confidence(_status: HypothesisStatus, confidence: f64) -> f64 {
    confidence
}

/// A goal's own weight as the score counts it: within the bounds the API
/// takes (0 for NaN), so that rows written before the bounds cannot make a
/// sum of sibling weights overflow.
fn weight_of(g: &Goal) -> f64 {
    if g.weight.is_nan() {
        0.0
    } else {
        g.weight.clamp(0.0, crate::domain::MAX_GOAL_WEIGHT)
    }
}

/// Effective weight of every goal: the product of sibling-normalized weights
/// on the path from the root, so that all strategic goals together weigh 1.
/// Siblings whose weights sum to 0 all weigh 0. Goals whose parent is missing
/// are treated as roots.
pub fn effective_goal_weights<'a>(
    goals: impl IntoIterator<Item = &'a Goal>,
) -> HashMap<String, f64> {
    let goals: BTreeMap<&str, &Goal> = goals.into_iter().map(|g| (g.id.as_str(), g)).collect();
    fn parent_of<'g>(goals: &BTreeMap<&str, &'g Goal>, g: &'g Goal) -> Option<&'g str> {
        (!g.parent_id.is_empty() && goals.contains_key(g.parent_id.as_str()))
            .then_some(g.parent_id.as_str())
    }
    // Sum of the weights of each sibling group, keyed by parent (None = roots).
    let mut sibling_sum: HashMap<Option<&str>, f64> = HashMap::new();
    for g in goals.values() {
        *sibling_sum.entry(parent_of(&goals, g)).or_default() += weight_of(g);
    }
    let mut out: HashMap<String, f64> = HashMap::with_capacity(goals.len());
    for g in goals.values() {
        // Walk up to the root, multiplying normalized weights. Bounded by the
        // number of goals, so a cycle in bad data cannot hang us.
        let mut w = 1.0;
        let mut cur = *g;
        for _ in 0..=goals.len() {
            let parent = parent_of(&goals, cur);
            let sum = sibling_sum.get(&parent).copied().unwrap_or(0.0);
            w *= if sum > 0.0 { weight_of(cur) / sum } else { 0.0 };
            match parent {
                Some(p) => cur = goals[p],
                None => break,
            }
        }
        out.insert(g.id.clone(), w);
    }
    out
}

/// Everything about one link that the score needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TermInput {
    pub hypothesis_id: String,
    pub goal_id: String,
    pub goal_weight: f64,
    pub metric_id: String,
    pub gap: f64,
    pub expected_effect: f64,
    /// Already effective (see [`effective_confidence`]).
    pub confidence: f64,
    pub contribution: f64,
    /// Sum of all contributions to this hypothesis, this link's included.
    pub contribution_total: f64,
}

impl TermInput {
    /// The borrowed input, for [`rescore_into`].
    pub fn as_ref(&self) -> TermRef<'_> {
        TermRef {
            hypothesis_id: &self.hypothesis_id,
            goal_id: &self.goal_id,
            goal_weight: self.goal_weight,
            metric_id: &self.metric_id,
            gap: self.gap,
            expected_effect: self.expected_effect,
            confidence: self.confidence,
            contribution: self.contribution,
            contribution_total: self.contribution_total,
        }
    }
}

/// One link's part of an item's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub hypothesis_id: String,
    pub goal_id: String,
    pub goal_weight: f64,
    pub metric_id: String,
    pub gap: f64,
    pub expected_effect: f64,
    pub confidence: f64,
    pub contribution: f64,
    pub effective_contribution: f64,
    pub value: f64,
}

/// An item's explained score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Sum of `terms[i].value` in order; exactly.
    pub value: f64,
    pub size: f64,
    pub estimated: bool,
    pub value_density: f64,
    /// Ordered by hypothesis id.
    pub terms: Vec<Term>,
}

impl Score {
    /// No link to any hypothesis.
    pub fn unaligned(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Hypothesis value: goal weight x gap x expected effect x confidence.
pub fn hypothesis_value(goal_weight: f64, gap: f64, expected_effect: f64, confidence: f64) -> f64 {
    goal_weight * gap * expected_effect * confidence
}

/// The contribution a link counts with: scaled down when the contributions to
/// its hypothesis add up to more than 1.
pub fn effective_contribution(contribution: f64, total: f64) -> f64 {
    if total > 1.0 {
        contribution / total
    } else {
        contribution
    }
}

/// Scores one item from its links. `estimate` is the item's size if
/// estimated; `default_size` (> 0) is used otherwise.
pub fn score_item(estimate: Option<f64>, default_size: f64, inputs: Vec<TermInput>) -> Score {
    let mut score = empty_score();
    rescore_into(
        &mut score,
        estimate,
        default_size,
        inputs.iter().map(TermInput::as_ref),
    );
    score
}

/// The size an item counts with, and whether it was estimated.
fn size_of(estimate: Option<f64>, default_size: f64) -> (f64, bool) {
    match estimate {
        Some(e) if crate::domain::is_valid_estimate(e) => (e, true),
        _ => (default_size, false),
    }
}

/// The item value: the terms added in order, so that a reader who adds the
/// terms the same way gets the same number, bit for bit.
pub fn sum_terms(terms: &[Term]) -> f64 {
    terms.iter().fold(0.0, |acc, t| acc + t.value)
}

/// [`TermInput`] with borrowed ids: what [`rescore_into`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TermRef<'a> {
    pub hypothesis_id: &'a str,
    pub goal_id: &'a str,
    pub goal_weight: f64,
    pub metric_id: &'a str,
    pub gap: f64,
    pub expected_effect: f64,
    /// Already effective (see [`effective_confidence`]).
    pub confidence: f64,
    pub contribution: f64,
    /// Sum of all contributions to this hypothesis, this link's included.
    pub contribution_total: f64,
}

/// An item's value and value density from its term inputs, in
/// hypothesis-id order: the same numbers, bit for bit, as
/// [`score_item`]'s, without building the explanation. For ranking.
pub fn value_and_density<'a>(
    estimate: Option<f64>,
    default_size: f64,
    inputs: impl IntoIterator<Item = TermRef<'a>>,
) -> (f64, f64) {
    let mut value = 0.0;
    let mut last: Option<&str> = None;
    for t in inputs {
        debug_assert!(
            last.is_none_or(|l| l < t.hypothesis_id),
            "terms in hypothesis-id order"
        );
        last = Some(t.hypothesis_id);
        let effective_contribution = effective_contribution(t.contribution, t.contribution_total);
        value += hypothesis_value(t.goal_weight, t.gap, t.expected_effect, t.confidence)
            * effective_contribution;
    }
    let (size, _) = size_of(estimate, default_size);
    (value, value / size)
}

/// A score with no terms, to be filled by [`rescore_into`].
pub fn empty_score() -> Score {
    Score {
        value: 0.0,
        size: 0.0,
        estimated: false,
        value_density: 0.0,
        terms: Vec::new(),
    }
}

fn set_id(dst: &mut String, src: &str) {
    if dst != src {
        dst.clear();
        dst.push_str(src);
    }
}

/// Recomputes `score` from `inputs` (what [`score_item`] does on an empty
/// score), but reuses the storage of its terms (their id strings included), so that
/// rescoring an item whose links did not change allocates nothing. This is
/// what keeps a change that reaches every item cheap.
pub fn rescore_into<'a>(
    score: &mut Score,
    estimate: Option<f64>,
    default_size: f64,
    inputs: impl IntoIterator<Item = TermRef<'a>>,
) {
    let inputs = inputs.into_iter();
    // Most items have one or two terms: grow to fit, not to Vec's first
    // step of four.
    if let (_, Some(upper)) = inputs.size_hint()
        && score.terms.capacity() < upper
    {
        score.terms.reserve_exact(upper - score.terms.len());
    }
    let mut n = 0;
    for t in inputs {
        let effective_contribution = effective_contribution(t.contribution, t.contribution_total);
        let value = hypothesis_value(t.goal_weight, t.gap, t.expected_effect, t.confidence)
            * effective_contribution;
        match score.terms.get_mut(n) {
            Some(term) => {
                set_id(&mut term.hypothesis_id, t.hypothesis_id);
                set_id(&mut term.goal_id, t.goal_id);
                set_id(&mut term.metric_id, t.metric_id);
                term.goal_weight = t.goal_weight;
                term.gap = t.gap;
                term.expected_effect = t.expected_effect;
                term.confidence = t.confidence;
                term.contribution = t.contribution;
                term.effective_contribution = effective_contribution;
                term.value = value;
            }
            None => score.terms.push(Term {
                hypothesis_id: t.hypothesis_id.to_string(),
                goal_id: t.goal_id.to_string(),
                goal_weight: t.goal_weight,
                metric_id: t.metric_id.to_string(),
                gap: t.gap,
                expected_effect: t.expected_effect,
                confidence: t.confidence,
                contribution: t.contribution,
                effective_contribution,
                value,
            }),
        }
        n += 1;
    }
    score.terms.truncate(n);
    // Callers pass links in hypothesis-id order; sorting (stably, like
    // `score_item`) keeps the result the same if one does not.
    if !score
        .terms
        .is_sorted_by(|a, b| a.hypothesis_id <= b.hypothesis_id)
    {
        score
            .terms
            .sort_by(|a, b| a.hypothesis_id.cmp(&b.hypothesis_id));
    }
    score.value = sum_terms(&score.terms);
    let (size, estimated) = size_of(estimate, default_size);
    score.size = size;
    score.estimated = estimated;
    score.value_density = score.value / size;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GoalLevel, KeyValueArea};
    use chrono::Utc;
    use proptest::prelude::*;

    fn goal(id: &str, parent: &str, weight: f64) -> Goal {
        Goal {
            id: id.into(),
            title: id.into(),
            description: String::new(),
            level: if parent.is_empty() {
                GoalLevel::Strategic
            } else {
                GoalLevel::Intermediate
            },
            parent_id: parent.into(),
            key_value_area: KeyValueArea::Unspecified,
            weight,
            create_time: Utc::now(),
            update_time: Utc::now(),
        }
    }

    fn input(h: &str, gw: f64, gap: f64, eff: f64, conf: f64, c: f64, total: f64) -> TermInput {
        TermInput {
            hypothesis_id: h.into(),
            goal_id: "g".into(),
            goal_weight: gw,
            metric_id: "m".into(),
            gap,
            expected_effect: eff,
            confidence: conf,
            contribution: c,
            contribution_total: total,
        }
    }

    #[test]
    fn gap_handles_both_directions() {
        // Conversion 2.1% -> 3.5%, now 2.8%: half the way done.
        assert!((gap(2.1, 3.5, Some(2.8)) - 0.5).abs() < 1e-12);
        // Lead time 10 days -> 4 days, now 7: half done.
        assert!((gap(10.0, 4.0, Some(7.0)) - 0.5).abs() < 1e-12);
        assert_eq!(gap(2.1, 3.5, None), 1.0);
        assert_eq!(gap(2.1, 3.5, Some(3.5)), 0.0);
        assert_eq!(gap(2.1, 3.5, Some(4.0)), 0.0, "overshoot closes the gap");
        assert_eq!(
            gap(2.1, 3.5, Some(1.0)),
            1.0,
            "a drop below baseline is capped"
        );
        assert_eq!(gap(1.0, 1.0, Some(0.0)), 0.0, "degenerate span");
        assert_eq!(gap(1.0, 2.0, Some(f64::NAN)), 0.0);
    }

    #[test]
    fn goal_weights_normalize_among_siblings() {
        let goals = [
            goal("s1", "", 3.0),
            goal("s2", "", 1.0),
            goal("i1", "s1", 1.0),
            goal("i2", "s1", 1.0),
            goal("z", "s2", 0.0),
        ];
        let w = effective_goal_weights(&goals);
        assert_eq!(w["s1"], 0.75);
        assert_eq!(w["s2"], 0.25);
        assert_eq!(w["i1"], 0.375);
        assert_eq!(w["i2"], 0.375);
        assert_eq!(w["z"], 0.0, "all-zero siblings weigh nothing");
        let roots: f64 = w["s1"] + w["s2"];
        assert_eq!(roots, 1.0);
    }

    #[test]
    fn worked_example_from_the_readme() {
        // Goal weight 0.375, conversion gap 0.5, effect 0.4, confidence 0.6,
        // contribution 0.5 of a hypothesis whose contributions sum to 0.5.
        let s = score_item(
            Some(2.0),
            3.0,
            vec![input("H-1", 0.375, 0.5, 0.4, 0.6, 0.5, 0.5)],
        );
        assert!((s.value - 0.0225).abs() < 1e-15);
        assert!((s.value_density - 0.01125).abs() < 1e-15);
        assert!(s.estimated);
    }

    #[test]
    fn oversubscribed_contributions_are_scaled_down() {
        let s = score_item(None, 4.0, vec![input("H", 1.0, 1.0, 1.0, 1.0, 1.0, 2.5)]);
        assert_eq!(s.terms[0].effective_contribution, 0.4);
        assert_eq!(s.value, 0.4);
        assert!(!s.estimated);
        assert_eq!(s.size, 4.0);
        assert_eq!(s.value_density, 0.1);
    }

    #[test]
    fn the_score_uses_the_confidence_whatever_the_status() {
        assert_eq!(
            effective_confidence(HypothesisStatus::Validated, 0.97),
            0.97
        );
        assert_eq!(
            effective_confidence(HypothesisStatus::Invalidated, 0.03),
            0.03
        );
        assert_eq!(effective_confidence(HypothesisStatus::Testing, 0.3), 0.3);
    }

    #[test]
    fn unlinked_items_score_zero_and_are_unaligned() {
        let s = score_item(Some(1.0), 3.0, vec![]);
        assert_eq!(s.value, 0.0);
        assert!(s.unaligned());
    }

    fn unit() -> impl Strategy<Value = f64> {
        0.0..=1.0f64
    }

    prop_compose! {
        fn term_input()(h in 0u8..6, gw in unit(), g in unit(), e in unit(), c in unit(),
                        contrib in 0.001..=1.0f64, others in 0.0..=2.0f64) -> TermInput {
            input(&format!("H-{h}"), gw, g, e, c, contrib, contrib + others)
        }
    }

    fn dedup(mut v: Vec<TermInput>) -> Vec<TermInput> {
        v.sort_by(|a, b| a.hypothesis_id.cmp(&b.hypothesis_id));
        v.dedup_by(|a, b| a.hypothesis_id == b.hypothesis_id);
        v
    }

    proptest! {
        #[test]
        fn terms_add_up_exactly_and_order_does_not_matter(
            inputs in prop::collection::vec(term_input(), 0..6).prop_map(dedup),
            estimate in prop::option::of(0.1..20.0f64),
        ) {
            let s = score_item(estimate, 3.0, inputs.clone());
            let mut reversed = inputs.clone();
            reversed.reverse();
            let r = score_item(estimate, 3.0, reversed);
            prop_assert_eq!(&s, &r, "deterministic whatever the input order");
            let sum = s.terms.iter().fold(0.0, |acc, t| acc + t.value);
            prop_assert_eq!(sum.to_bits(), s.value.to_bits());
            for t in &s.terms {
                let expect = t.goal_weight * t.gap * t.expected_effect * t.confidence * t.effective_contribution;
                prop_assert_eq!(expect.to_bits(), t.value.to_bits());
                prop_assert!((0.0..=1.0).contains(&t.value));
            }
            prop_assert!(s.value >= 0.0);
            prop_assert_eq!(s.value_density, s.value / s.size);
        }

        #[test]
        fn rescoring_in_place_equals_scoring_afresh(
            previous in prop::collection::vec(term_input(), 0..6).prop_map(dedup),
            inputs in prop::collection::vec(term_input(), 0..6).prop_map(dedup),
            reverse in any::<bool>(),
            estimate in prop::option::of(0.1..20.0f64),
        ) {
            let mut inputs = inputs;
            if reverse {
                inputs.reverse();
            }
            let mut s = score_item(Some(2.0), 3.0, previous);
            let refs: Vec<TermRef> = inputs.iter().map(TermInput::as_ref).collect();
            rescore_into(&mut s, estimate, 3.0, refs.iter().copied());
            let fresh = score_item(estimate, 3.0, inputs.clone());
            prop_assert_eq!(&s, &fresh);
            prop_assert_eq!(s.value.to_bits(), fresh.value.to_bits());
            prop_assert_eq!(s.value_density.to_bits(), fresh.value_density.to_bits());
            // The ranking numbers alone, from the inputs in id order.
            let mut sorted = refs.clone();
            sorted.sort_by(|a, b| a.hypothesis_id.cmp(b.hypothesis_id));
            let (value, density) = value_and_density(estimate, 3.0, sorted);
            prop_assert_eq!(value.to_bits(), fresh.value.to_bits());
            prop_assert_eq!(density.to_bits(), fresh.value_density.to_bits());
        }

        #[test]
        fn raising_any_factor_never_lowers_the_value(
            inputs in prop::collection::vec(term_input(), 1..6).prop_map(dedup),
            which in 0usize..6,
            factor in 0usize..5,
            bump in 0.0..1.0f64,
        ) {
            let before = score_item(Some(2.0), 3.0, inputs.clone());
            let mut raised = inputs.clone();
            let i = which % raised.len();
            let t = &mut raised[i];
            let up = |x: f64| (x + bump * (1.0 - x)).min(1.0);
            match factor {
                0 => t.gap = up(t.gap),
                1 => t.confidence = up(t.confidence),
                2 => t.goal_weight = up(t.goal_weight),
                3 => t.expected_effect = up(t.expected_effect),
                _ => {
                    let others = t.contribution_total - t.contribution;
                    t.contribution = up(t.contribution);
                    t.contribution_total = t.contribution + others;
                }
            }
            let after = score_item(Some(2.0), 3.0, raised);
            prop_assert!(after.value >= before.value, "{} < {}", after.value, before.value);
        }

        #[test]
        fn reaching_the_target_zeroes_the_metric_part(baseline in -100.0..100.0f64, span in 0.01..50.0f64,
                                                     down in any::<bool>(), beyond in 0.0..10.0f64) {
            let target = if down { baseline - span } else { baseline + span };
            let reached = if down { target - beyond } else { target + beyond };
            let g = gap(baseline, target, Some(reached));
            prop_assert_eq!(g, 0.0);
            let s = score_item(Some(1.0), 3.0, vec![input("H", 1.0, g, 1.0, 1.0, 1.0, 1.0)]);
            prop_assert_eq!(s.value, 0.0);
        }

        #[test]
        fn a_larger_goal_weight_never_lowers_a_goals_effective_weight(w in prop::collection::vec(0.0..5.0f64, 2..5), i in 0usize..5, bump in 0.0..5.0f64) {
            let goals: Vec<Goal> = w.iter().enumerate().map(|(k, &x)| goal(&format!("g{k}"), "", x)).collect();
            let i = i % goals.len();
            let before = effective_goal_weights(&goals)[&goals[i].id];
            let mut raised = goals.clone();
            raised[i].weight += bump;
            let after = effective_goal_weights(&raised)[&goals[i].id];
            prop_assert!(after >= before - 1e-15);
        }
    }
}
