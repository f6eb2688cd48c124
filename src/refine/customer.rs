//! Desired outcomes and segments in numbers (VALUE-MODEL.md "Customers"):
//! an outcome's satisfaction gap and Outcome-Driven Innovation opportunity
//! score from its latest survey wave, the baseline of the metric that backs
//! it, and the roll-up by segment. Pure functions over plain data.
//!
//! For a desired outcome with importance `I` and satisfaction `S` (0..10,
//! the latest wave's):
//! - satisfaction gap `gap = max(I - S, 0)`: how far satisfaction falls
//!   short of what the outcome is worth to the segment (not `10 - S`: an
//!   outcome nobody finds important has no gap however unsatisfied);
//! - opportunity `opp = I + gap` (ODI); underserved when `opp >= 10`.
//!
//! For a segment `s` with weight `w(s)` among segments of total `W`:
//! - share `w(s) / W`;
//! - weighted gap `WG(s) = share × mean(gap / 10)` over its measured
//!   outcomes, and `share` (wide open) when none is measured;
//! - addressed `A(s)` = the sum of the score terms, over open items, of
//!   links to hypotheses whose metric is one of `s`'s outcomes (the goal
//!   roll-up's rule, with outcomes for goals);
//! - coverage `min(1, A(s) / WG(s))` (0 when `WG(s)` is 0);
//! - unserved when no open item links to such a hypothesis.

use std::collections::{BTreeMap, HashMap};

use crate::domain::{SURVEY_SCALE, SurveyWave};
use crate::refine::rollup::{ItemInput, ServingItem};

/// Where opportunity starts to mean underserved (ODI).
pub const UNDERSERVED_AT: f64 = 10.0;

/// An outcome's figures from its latest survey wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutcomeFigures {
    pub importance: f64,
    pub satisfaction: f64,
    pub gap: f64,
    pub opportunity: f64,
    pub underserved: bool,
    pub respondents: u32,
}

impl OutcomeFigures {
    /// The figures of an importance and a satisfaction.
    pub fn of(importance: f64, satisfaction: f64, respondents: u32) -> Self {
        let gap = (importance - satisfaction).max(0.0);
        let opportunity = importance + gap;
        OutcomeFigures {
            importance,
            satisfaction,
            gap,
            opportunity,
            underserved: opportunity >= UNDERSERVED_AT,
            respondents,
        }
    }
}

/// The figures of the latest of `waves` (any order), `None` without one.
pub fn figures(waves: &[SurveyWave]) -> Option<OutcomeFigures> {
    waves
        .iter()
        .max_by_key(|w| w.at)
        .map(|w| OutcomeFigures::of(w.importance, w.satisfaction, w.respondents))
}

/// The baseline of an outcome's backing metric: the first wave's
/// satisfaction; 0 before any wave, and 0 when the first wave was fully
/// satisfied (the target, 10, must differ from the baseline, and a
/// satisfied outcome has nothing left to close either way).
pub fn metric_baseline(waves: &[SurveyWave]) -> f64 {
    match waves.iter().min_by_key(|w| w.at) {
        Some(w) if w.satisfaction < SURVEY_SCALE => w.satisfaction,
        _ => 0.0,
    }
}

/// A segment, as the roll-up needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInput {
    pub id: String,
    pub weight: f64,
}

/// A desired outcome: its segment and figures (`None`: no wave yet).
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeInput {
    pub id: String,
    pub segment_id: String,
    pub figures: Option<OutcomeFigures>,
}

/// One segment's roll-up.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRollup {
    pub segment_id: String,
    pub weight: f64,
    pub share: f64,
    /// Its outcomes, in id order.
    pub outcomes: Vec<OutcomeInput>,
    pub weighted_gap: f64,
    pub addressed: f64,
    pub coverage: f64,
    /// Ranked by value density, then key; `value_for_goal` is the part of
    /// the item's value that goes to this segment's outcomes.
    pub items: Vec<ServingItem>,
    pub unserved: bool,
}

/// Every segment in id order, and the ids of those no item serves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SegmentTree {
    pub segments: Vec<SegmentRollup>,
    pub unserved_segment_ids: Vec<String>,
}

/// Rolls the backlog's value up by segment. `hypotheses` are (id, metric
/// id); an outcome's metric has the outcome's id.
pub fn rollup_by_segment(
    segments: &[SegmentInput],
    outcomes: &[OutcomeInput],
    hypotheses: &[(String, String)],
    items: &[ItemInput],
) -> SegmentTree {
    let total: f64 = segments.iter().map(|s| s.weight).sum();
    let segment_of: HashMap<&str, &str> = outcomes
        .iter()
        .map(|o| (o.id.as_str(), o.segment_id.as_str()))
        .collect();
    // hypothesis -> segment, for hypotheses on an outcome's metric.
    let hyp_segment: HashMap<&str, &str> = hypotheses
        .iter()
        .filter_map(|(h, m)| segment_of.get(m.as_str()).map(|s| (h.as_str(), *s)))
        .collect();
    let mut by_segment: BTreeMap<&str, Vec<&OutcomeInput>> = BTreeMap::new();
    for o in outcomes {
        by_segment.entry(&o.segment_id).or_default().push(o);
    }
    // Each item's value per segment it serves, in one pass over the items
    // (not one per segment: a model may hold a thousand segments).
    let mut serving_by_segment: HashMap<&str, Vec<ServingItem>> = HashMap::new();
    for it in items {
        let mut per: BTreeMap<&str, f64> = BTreeMap::new();
        for (h, v) in &it.terms {
            if let Some(seg) = hyp_segment.get(h.as_str()) {
                *per.entry(seg).or_insert(0.0) += v;
            }
        }
        for (seg, value) in per {
            serving_by_segment
                .entry(seg)
                .or_default()
                .push(ServingItem {
                    key: it.key.clone(),
                    value_for_goal: value,
                    value_density: it.value_density,
                });
        }
    }
    let mut sorted: Vec<&SegmentInput> = segments.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut tree = SegmentTree::default();
    for s in sorted {
        let share = if total > 0.0 { s.weight / total } else { 0.0 };
        let mut outs: Vec<OutcomeInput> = by_segment
            .get(s.id.as_str())
            .map(|v| v.iter().map(|o| (*o).clone()).collect())
            .unwrap_or_default();
        outs.sort_by(|a, b| a.id.cmp(&b.id));
        let gaps: Vec<f64> = outs
            .iter()
            .filter_map(|o| o.figures.map(|f| f.gap / SURVEY_SCALE))
            .collect();
        let mean_gap = if gaps.is_empty() {
            1.0
        } else {
            gaps.iter().sum::<f64>() / gaps.len() as f64
        };
        let weighted_gap = share * mean_gap;
        let mut serving = serving_by_segment.remove(s.id.as_str()).unwrap_or_default();
        serving.sort_by(|a, b| {
            b.value_density
                .total_cmp(&a.value_density)
                .then_with(|| a.key.cmp(&b.key))
        });
        // A fold from +0: an empty `sum` of floats is -0, which prints "-0%".
        let addressed: f64 = serving.iter().fold(0.0, |a, i| a + i.value_for_goal);
        let coverage = if weighted_gap > 0.0 {
            (addressed / weighted_gap).min(1.0)
        } else {
            0.0
        };
        let unserved = serving.is_empty();
        if unserved {
            tree.unserved_segment_ids.push(s.id.clone());
        }
        tree.segments.push(SegmentRollup {
            segment_id: s.id.clone(),
            weight: s.weight,
            share,
            outcomes: outs,
            weighted_gap,
            addressed,
            coverage,
            items: serving,
            unserved,
        });
    }
    tree
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn scale() -> impl Strategy<Value = f64> {
        prop_oneof![Just(0.0), Just(10.0), 0.0..=10.0f64]
    }

    proptest! {
        /// More satisfaction never widens the gap nor raises opportunity;
        /// more importance never narrows either; both stay in range.
        #[test]
        fn gap_and_opportunity_are_monotone_and_bounded(
            i in scale(), s in scale(), di in 0.0..=10.0f64, ds in 0.0..=10.0f64,
        ) {
            let f = OutcomeFigures::of(i, s, 1);
            prop_assert!((0.0..=10.0).contains(&f.gap));
            prop_assert!(f.opportunity >= i && f.opportunity <= 20.0);
            let more_sat = OutcomeFigures::of(i, (s + ds).min(10.0), 1);
            prop_assert!(more_sat.gap <= f.gap && more_sat.opportunity <= f.opportunity);
            let more_imp = OutcomeFigures::of((i + di).min(10.0), s, 1);
            prop_assert!(more_imp.gap >= f.gap && more_imp.opportunity >= f.opportunity);
            prop_assert_eq!(f.underserved, f.opportunity >= UNDERSERVED_AT);
        }

        /// Shares add up to 1, coverage stays in [0, 1], and a segment is
        /// unserved exactly when no item serves it.
        #[test]
        fn segment_roll_ups_stay_in_range(
            weights in prop::collection::vec(0.001..1e6f64, 1..6),
            figures in prop::collection::vec((scale(), scale()), 0..8),
            terms in prop::collection::vec((0usize..8, 0.0..1.0f64), 0..10),
        ) {
            let segments: Vec<SegmentInput> = weights
                .iter()
                .enumerate()
                .map(|(i, w)| SegmentInput { id: format!("s{i}"), weight: *w })
                .collect();
            let outcomes: Vec<OutcomeInput> = figures
                .iter()
                .enumerate()
                .map(|(i, (imp, sat))| OutcomeInput {
                    id: format!("o{i}"),
                    segment_id: format!("s{}", i % weights.len()),
                    figures: Some(OutcomeFigures::of(*imp, *sat, 1)),
                })
                .collect();
            let hyps: Vec<(String, String)> =
                (0..8).map(|i| (format!("h{i}"), format!("o{i}"))).collect();
            let items: Vec<ItemInput> = terms
                .iter()
                .enumerate()
                .map(|(k, (h, v))| ItemInput {
                    key: format!("i/{k}"),
                    value_density: *v,
                    terms: vec![(format!("h{h}"), *v)],
                })
                .collect();
            let t = rollup_by_segment(&segments, &outcomes, &hyps, &items);
            let total: f64 = t.segments.iter().map(|r| r.share).sum();
            prop_assert!((total - 1.0).abs() < 1e-9);
            for r in &t.segments {
                prop_assert!((0.0..=1.0).contains(&r.coverage));
                prop_assert!(r.weighted_gap >= 0.0 && r.weighted_gap <= r.share + 1e-12);
                prop_assert_eq!(r.unserved, r.items.is_empty());
                prop_assert_eq!(r.unserved, t.unserved_segment_ids.contains(&r.segment_id));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn wave(day: u32, importance: f64, satisfaction: f64) -> SurveyWave {
        SurveyWave {
            outcome_id: "o".into(),
            at: Utc.with_ymd_and_hms(2026, 1, day, 0, 0, 0).unwrap(),
            importance,
            satisfaction,
            respondents: 10,
        }
    }

    #[test]
    fn the_latest_wave_gives_gap_and_opportunity() {
        let f = figures(&[wave(2, 8.0, 3.0), wave(1, 9.0, 2.0)]).unwrap();
        assert_eq!((f.importance, f.satisfaction), (8.0, 3.0));
        assert_eq!(f.gap, 5.0);
        assert_eq!(f.opportunity, 13.0);
        assert!(f.underserved);
        let over = OutcomeFigures::of(4.0, 7.0, 1);
        assert_eq!(
            (over.gap, over.opportunity, over.underserved),
            (0.0, 4.0, false)
        );
        assert!(
            OutcomeFigures::of(6.0, 2.0, 1).underserved,
            "6 + 4 = 10 is underserved"
        );
        assert!(!OutcomeFigures::of(6.0, 2.5, 1).underserved);
        assert_eq!(figures(&[]), None);
    }

    #[test]
    fn the_baseline_is_the_first_satisfaction() {
        assert_eq!(
            metric_baseline(&[wave(3, 8.0, 6.0), wave(1, 8.0, 4.0)]),
            4.0
        );
        assert_eq!(metric_baseline(&[]), 0.0);
        assert_eq!(metric_baseline(&[wave(1, 8.0, 10.0)]), 0.0);
    }

    #[test]
    fn segments_roll_up_with_coverage_and_the_unserved() {
        let segs = [
            SegmentInput {
                id: "b".into(),
                weight: 1.0,
            },
            SegmentInput {
                id: "a".into(),
                weight: 3.0,
            },
        ];
        let outs = [
            OutcomeInput {
                id: "o1".into(),
                segment_id: "a".into(),
                figures: Some(OutcomeFigures::of(8.0, 4.0, 5)),
            },
            OutcomeInput {
                id: "o2".into(),
                segment_id: "a".into(),
                figures: Some(OutcomeFigures::of(6.0, 4.0, 5)),
            },
            OutcomeInput {
                id: "o3".into(),
                segment_id: "b".into(),
                figures: None,
            },
        ];
        let hyps = [
            ("h1".to_string(), "o1".to_string()),
            ("h2".into(), "m".into()),
        ];
        let items = [
            ItemInput {
                key: "s/1".into(),
                value_density: 0.1,
                terms: vec![("h1".into(), 0.05), ("h2".into(), 0.5)],
            },
            ItemInput {
                key: "s/2".into(),
                value_density: 0.9,
                terms: vec![("h2".into(), 0.2)],
            },
        ];
        let t = rollup_by_segment(&segs, &outs, &hyps, &items);
        assert_eq!(t.unserved_segment_ids, vec!["b".to_string()]);
        let a = &t.segments[0];
        assert_eq!(a.segment_id, "a");
        assert_eq!(a.share, 0.75);
        // mean gap (0.4 + 0.2) / 2 = 0.3, times 0.75.
        assert!((a.weighted_gap - 0.225).abs() < 1e-12);
        assert_eq!(a.addressed, 0.05);
        assert!((a.coverage - 0.05 / 0.225).abs() < 1e-12);
        assert_eq!(a.items.len(), 1);
        let b = &t.segments[1];
        assert_eq!((b.share, b.weighted_gap, b.coverage), (0.25, 0.25, 0.0));
        assert!(b.coverage.is_sign_positive() && b.addressed.is_sign_positive());
        assert!(b.unserved && b.items.is_empty());
    }
}
