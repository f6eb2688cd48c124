//! Products for the index's tests: small and large snapshots, links, and
//! the check that two indexes score and rank alike.

use chrono::Utc;

use super::{ItemFacts, RankKey, RankOrder, RankQuery, ScoreIndex, Snapshot};
use crate::domain::{
    Direction, Goal, GoalLevel, Hypothesis, HypothesisStatus, ItemState, KeyValueArea, Link,
    LinkOrigin, Metric,
};

/// Forty open items under one goal, one metric and two hypotheses
/// (`H-1`, `H-2`), with `links`.
pub(super) fn snapshot(links: Vec<Link>) -> Snapshot {
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
        source: None,
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
                    votes: None,
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

/// A rule link of item `i` of [`snapshot`] to hypothesis `h`.
pub(super) fn link(i: usize, h: &str, c: f64) -> Link {
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

/// A product of `n` items over two metrics and six hypotheses, with
/// links drawn from `seed`; over-subscribed hypotheses included.
pub(super) fn big_snapshot(n: usize, seed: u64) -> Snapshot {
    let mut snap = snapshot(vec![]);
    let now = Utc::now();
    let mut m2 = snap.metrics[0].0.clone();
    m2.id = "m2".into();
    snap.metrics.push((m2, Default::default()));
    let base = snap.hypotheses[0].clone();
    snap.hypotheses = (0..6)
        .map(|h| Hypothesis {
            id: format!("H-{h}"),
            metric_id: if h < 2 { "m".into() } else { "m2".into() },
            expected_effect: 0.1 + 0.1 * h as f64,
            ..base.clone()
        })
        .collect();
    let mut rng = fastrand::Rng::with_seed(seed);
    snap.items = (0..n)
        .map(|i| {
            (
                format!("s/{i:05}"),
                ItemFacts {
                    source_id: "s".into(),
                    title: format!("item {i}"),
                    state: if i % 7 == 0 {
                        ItemState::Closed
                    } else {
                        ItemState::Open
                    },
                    labels: vec![],
                    estimate: (i % 4 != 0).then(|| [1.0, 2.0, 3.0, 5.0][rng.usize(..4)]),
                    parent_key: String::new(),
                    votes: None,
                },
            )
        })
        .collect();
    snap.links = (0..n)
        .flat_map(|i| {
            let hyps: Vec<usize> = (0..rng.usize(0..3)).map(|_| rng.usize(..6)).collect();
            let c = [0.1, 0.25, 0.5, 1.0][rng.usize(..4)];
            hyps.into_iter().map(move |h| Link {
                item_key: format!("s/{i:05}"),
                hypothesis_id: format!("H-{h}"),
                contribution: c,
                origin: LinkOrigin::Rule,
                rationale: String::new(),
                create_time: now,
                update_time: now,
            })
        })
        .collect();
    snap
}

/// Asserts that `a` and `b` score every item alike and rank them in the
/// same order by both numbers.
pub(super) fn same_scores_and_rankings(a: &ScoreIndex, b: &ScoreIndex) {
    assert_eq!(a.item_count(), b.item_count());
    for (k, _) in a.items() {
        assert_eq!(a.score(k), b.score(k), "{k}");
    }
    for order in [RankOrder::ValueDensity, RankOrder::Value] {
        let q = RankQuery {
            include_closed: true,
            limit: usize::MAX,
            ..Default::default()
        };
        let ka: Vec<RankKey> = a.rank(order, &q).into_iter().map(|(k, _)| k).collect();
        let kb: Vec<RankKey> = b.rank(order, &q).into_iter().map(|(k, _)| k).collect();
        assert_eq!(ka.len(), a.item_count());
        assert_eq!(ka, kb, "{order:?}");
    }
}
