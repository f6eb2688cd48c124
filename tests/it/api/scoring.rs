//! Scoring: explained scores whose terms add up exactly, flags, and RankItems (order, pages, filters, and what moves a rank).

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

/// The terms' values added in order from 0.0, as the contract says.
fn fold_terms(s: &pb::ItemScore) -> f64 {
    s.terms.iter().fold(0.0, |acc, t| acc + t.value)
}

fn flags(s: &pb::ItemScore) -> Vec<pb::ScoreFlag> {
    s.flags
        .iter()
        .map(|f| pb::ScoreFlag::try_from(*f).expect("known flag"))
        .collect()
}

#[tokio::test]
async fn item_scores_are_explained_and_add_up_exactly() {
    let s = start_with_fixture().await;

    // web/1 by hand: goal weight 0.75 (I-conv, only child of S-growth with
    // weight 3 of 4) x gap 1 (conv has no observation) x effect 0.4 x
    // confidence 0.6 x contribution 0.5 = 0.09.
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.item_key, "web/1");
    assert_eq!(web1.title, "One-click checkout");
    assert_eq!(web1.terms.len(), 1);
    let t = &web1.terms[0];
    assert_eq!(t.hypothesis_id, "H-1");
    assert_eq!(t.goal_id, "I-conv");
    assert_eq!(t.metric_id, "conv");
    assert_eq!(t.goal_weight, 0.75);
    assert_eq!(t.gap, 1.0);
    assert_eq!(t.expected_effect, 0.4);
    assert_eq!(t.confidence, 0.6);
    assert_eq!(t.contribution, 0.5);
    assert_eq!(t.effective_contribution, 0.5);
    assert!(!t.metric_stale);
    let by_hand = 0.75 * 1.0 * 0.4 * 0.6 * 0.5;
    assert!((web1.value - 0.09).abs() < 1e-12, "value {}", web1.value);
    assert!((t.value - by_hand).abs() < 1e-15);
    assert_eq!(web1.size, 2.0);
    assert!((web1.value_density - 0.045).abs() < 1e-12);
    assert!(flags(&web1).is_empty(), "{:?}", web1.flags);

    // ops/2 has two terms, in hypothesis-id order.
    let ops2 = item_score(&s, "ops/2").await;
    let hyps: Vec<&str> = ops2
        .terms
        .iter()
        .map(|t| t.hypothesis_id.as_str())
        .collect();
    assert_eq!(hyps, ["H-1", "H-2"]);
    assert_eq!(ops2.terms[1].goal_weight, 0.25);
    assert_eq!(ops2.terms[1].confidence, 0.8);
    assert!((ops2.value - 0.07).abs() < 1e-12, "value {}", ops2.value);

    // For every item: terms add up to the value bit for bit, and density is
    // value / size bit for bit.
    let expected_values = [
        ("web/1", 0.09),
        ("web/2", 0.05),
        ("web/3", 0.045),
        ("web/4", 0.0),
        ("web/5", 0.025),
        ("web/6", 0.0),
        ("ops/1", 0.075),
        ("ops/2", 0.07),
        ("ops/3", 0.0),
    ];
    for (key, value) in expected_values {
        let sc = item_score(&s, key).await;
        assert_eq!(
            fold_terms(&sc).to_bits(),
            sc.value.to_bits(),
            "{key}: terms {:?} do not add up to {}",
            sc.terms,
            sc.value
        );
        assert_eq!(
            sc.value_density.to_bits(),
            (sc.value / sc.size).to_bits(),
            "{key}"
        );
        assert!((sc.value - value).abs() < 1e-12, "{key}: {}", sc.value);
        for t in &sc.terms {
            let product =
                t.goal_weight * t.gap * t.expected_effect * t.confidence * t.effective_contribution;
            assert!((t.value - product).abs() < 1e-15, "{key}: {t:?}");
        }
    }

    assert_code(
        s.scoring()
            .get_item_score(pb::GetItemScoreRequest {
                item_key: "web/99".into(),
            })
            .await,
        Code::NotFound,
    );
    assert_invalid(
        s.scoring()
            .get_item_score(pb::GetItemScoreRequest::default())
            .await,
        &["item_key"],
    );
}

#[tokio::test]
async fn score_flags_tell_what_the_data_lacks() {
    let s = start_with_fixture().await;

    let web4 = item_score(&s, "web/4").await;
    assert_eq!(
        flags(&web4),
        [pb::ScoreFlag::Unaligned, pb::ScoreFlag::Unestimated]
    );
    assert_eq!(web4.size, DEFAULT_SIZE, "unestimated uses the default size");
    assert_eq!(web4.value, 0.0);
    assert!(web4.terms.is_empty());

    let web6 = item_score(&s, "web/6").await;
    assert_eq!(flags(&web6), [pb::ScoreFlag::Unaligned]);
    assert_eq!(web6.size, 1.0);

    // nps has a 1-day cadence and its only observation is 10 days old.
    let nps = s
        .model()
        .get_metric(pb::GetMetricRequest { id: "nps".into() })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert!(nps.stale);
    assert_eq!(nps.gap, 0.5);
    let ops1 = item_score(&s, "ops/1").await;
    assert_eq!(flags(&ops1), [pb::ScoreFlag::StaleMetric]);
    assert!(ops1.terms[0].metric_stale);
    assert_eq!(ops1.terms[0].gap, 0.5);
    assert_eq!(ops1.terms[0].confidence, 1.0, "H-3's confidence");

    // An unestimated, linked item is flagged UNESTIMATED only.
    upsert(&s, vec![item("web", "4", "Refactor logging")]).await;
    link(&s, "web/4", "H-2", 0.0).await;
    let web4 = item_score(&s, "web/4").await;
    assert_eq!(flags(&web4), [pb::ScoreFlag::Unestimated]);
    assert_eq!(web4.size, 3.0);
    assert_eq!(web4.value_density.to_bits(), (web4.value / 3.0).to_bits());

    // A fresh observation clears the stale flag.
    record(&s, vec![observation("nps", 40.0, None)]).await;
    let ops1 = item_score(&s, "ops/1").await;
    assert!(flags(&ops1).is_empty(), "{:?}", ops1.flags);
    assert!(!ops1.terms[0].metric_stale);
}

fn assert_ranks_from_one(r: &pb::RankItemsResponse) {
    let ranks: Vec<i32> = r.items.iter().map(|i| i.rank).collect();
    let want: Vec<i32> = (1..=r.items.len() as i32).collect();
    assert_eq!(ranks, want);
}

#[tokio::test]
async fn rank_items_orders_by_density_then_key() {
    let s = start_with_fixture().await;
    let r = rank(&s, pb::RankItemsRequest::default()).await;
    assert_eq!(keys(&r), FIXTURE_DENSITY_ORDER);
    assert_ranks_from_one(&r);
    assert!(r.next_page_token.is_empty());
    // Basic view: no terms, but value, size, density and flags.
    for it in &r.items {
        let sc = it.score.as_ref().unwrap();
        assert!(sc.terms.is_empty());
        assert_eq!(sc.value_density.to_bits(), (sc.value / sc.size).to_bits());
    }
    let first = r.items[0].score.as_ref().unwrap();
    assert_eq!(first.title, "Faster CI");
    assert!((first.value_density - 0.05).abs() < 1e-12);
    // web/1 and web/3 tie exactly on density; the key breaks the tie.
    let d1 = r.items[1].score.as_ref().unwrap().value_density;
    let d3 = r.items[2].score.as_ref().unwrap().value_density;
    assert_eq!(d1.to_bits(), d3.to_bits());
    // The order is (density desc, key asc) throughout.
    let scores: Vec<&pb::ItemScore> = r.items.iter().map(|i| i.score.as_ref().unwrap()).collect();
    for w in scores.windows(2) {
        assert!(
            w[0].value_density > w[1].value_density
                || (w[0].value_density == w[1].value_density && w[0].item_key < w[1].item_key),
            "{} before {}",
            w[0].item_key,
            w[1].item_key
        );
    }
    let web4 = scores.iter().find(|s| s.item_key == "web/4").unwrap();
    assert_eq!(
        flags(web4),
        [pb::ScoreFlag::Unaligned, pb::ScoreFlag::Unestimated]
    );

    // Explicit VALUE_DENSITY is the default order.
    let explicit = rank(
        &s,
        pb::RankItemsRequest {
            order: pb::RankOrder::ValueDensity as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(explicit, r);

    // Full view carries the same terms as GetItemScore.
    let full = full_ranking(&s, false).await;
    assert_eq!(keys(&full), FIXTURE_DENSITY_ORDER);
    for it in &full.items {
        let sc = it.score.as_ref().unwrap();
        assert_eq!(sc, &item_score(&s, &sc.item_key).await);
    }
    // The basic view, encoded straight from the index, is the full view
    // without terms, field for field, on every page.
    let mut basic = Vec::new();
    let mut token = String::new();
    loop {
        let page = rank(
            &s,
            pb::RankItemsRequest {
                page_size: 2,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        basic.extend(page.items);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let mut without_terms = full.items.clone();
    for it in &mut without_terms {
        it.score.as_mut().unwrap().terms.clear();
    }
    assert_eq!(basic, without_terms);
    assert!(
        basic
            .iter()
            .any(|i| !i.score.as_ref().unwrap().flags.is_empty()),
        "the fixture has flagged items"
    );

    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                order: 42,
                ..Default::default()
            })
            .await,
        &["order"],
    );
    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                view: 42,
                ..Default::default()
            })
            .await,
        &["view"],
    );
}

#[tokio::test]
async fn rank_items_by_value() {
    let s = start_with_fixture().await;
    let r = rank(
        &s,
        pb::RankItemsRequest {
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&r), FIXTURE_VALUE_ORDER);
    assert_ranks_from_one(&r);
    let values: Vec<f64> = r
        .items
        .iter()
        .map(|i| i.score.as_ref().unwrap().value)
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
}

async fn walk_ranking(s: &TestServer, req: pb::RankItemsRequest) -> Vec<pb::RankedItem> {
    let mut out = Vec::new();
    let mut req = req;
    for _ in 0..50 {
        let page = rank(s, req.clone()).await;
        assert!(page.items.len() <= req.page_size as usize);
        out.extend(page.items);
        if page.next_page_token.is_empty() {
            return out;
        }
        req.page_token = page.next_page_token;
    }
    panic!("pagination does not end");
}

#[tokio::test]
async fn rank_items_pages_walk_the_whole_ranking() {
    let s = start_with_fixture().await;
    for (order, include_closed) in [
        (pb::RankOrder::Unspecified, false),
        (pb::RankOrder::Value, false),
        (pb::RankOrder::ValueDensity, true),
    ] {
        let whole = rank(
            &s,
            pb::RankItemsRequest {
                order: order as i32,
                include_closed,
                ..Default::default()
            },
        )
        .await;
        let walked = walk_ranking(
            &s,
            pb::RankItemsRequest {
                page_size: 2,
                order: order as i32,
                include_closed,
                ..Default::default()
            },
        )
        .await;
        let ranks: Vec<i32> = walked.iter().map(|i| i.rank).collect();
        let n = if include_closed {
            FIXTURE_ITEMS
        } else {
            FIXTURE_ITEMS - 1
        };
        assert_eq!(ranks, (1..=n as i32).collect::<Vec<_>>(), "{order:?}");
        let mut walked_keys: Vec<String> = walked
            .iter()
            .map(|i| i.score.as_ref().unwrap().item_key.clone())
            .collect();
        assert_eq!(walked, whole.items, "{order:?}: pages equal one big page");
        walked_keys.sort();
        walked_keys.dedup();
        assert_eq!(walked_keys.len(), n, "no duplicates");
    }

    // With closed items, web/5 (density 0.025) sits between ops/2 and ops/1.
    let with_closed = rank(
        &s,
        pb::RankItemsRequest {
            include_closed: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        keys(&with_closed),
        [
            "web/2", "web/1", "web/3", "ops/2", "web/5", "ops/1", "ops/3", "web/4", "web/6"
        ]
    );

    // A ranking token belongs to its order and filters.
    let first = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    for other in [
        pb::RankItemsRequest {
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
        pb::RankItemsRequest {
            include_closed: true,
            ..Default::default()
        },
        pb::RankItemsRequest {
            label: "checkout".into(),
            ..Default::default()
        },
    ] {
        assert_invalid(
            s.scoring()
                .rank_items(pb::RankItemsRequest {
                    page_size: 2,
                    page_token: first.next_page_token.clone(),
                    ..other
                })
                .await,
            &["page_token"],
        );
    }
    // A list token is not a ranking token.
    let list_token = s
        .backlog()
        .list_items(pb::ListItemsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert_invalid(
        s.scoring()
            .rank_items(pb::RankItemsRequest {
                page_token: list_token,
                ..Default::default()
            })
            .await,
        &["page_token"],
    );
    // The second page continues the ranks.
    let second = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 2,
            page_token: first.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&second), ["web/3", "ops/2"]);
    let ranks: Vec<i32> = second.items.iter().map(|i| i.rank).collect();
    assert_eq!(ranks, [3, 4]);
}

#[tokio::test]
async fn rank_items_filters_by_source_and_label() {
    let s = start_with_fixture().await;
    let ops = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "ops".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&ops), ["ops/2", "ops/1", "ops/3"]);
    assert_ranks_from_one(&ops);

    let checkout = rank(
        &s,
        pb::RankItemsRequest {
            label: "checkout".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(keys(&checkout), ["web/1", "web/3", "ops/2"]);
    assert_ranks_from_one(&checkout);

    let both = walk_ranking(
        &s,
        pb::RankItemsRequest {
            source_id: "web".into(),
            label: "checkout".into(),
            page_size: 1,
            order: pb::RankOrder::Value as i32,
            ..Default::default()
        },
    )
    .await;
    let got: Vec<(i32, String)> = both
        .iter()
        .map(|i| (i.rank, i.score.as_ref().unwrap().item_key.clone()))
        .collect();
    assert_eq!(got, [(1, "web/1".to_string()), (2, "web/3".to_string())]);

    // Closed items only with include_closed.
    let closed_web = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "web".into(),
            include_closed: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        keys(&closed_web),
        ["web/2", "web/1", "web/3", "web/5", "web/4", "web/6"]
    );
    let none = rank(
        &s,
        pb::RankItemsRequest {
            source_id: "nope".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.items.is_empty());
    assert!(none.next_page_token.is_empty());
}

#[tokio::test]
async fn reaching_the_target_zeroes_the_linked_value_and_moves_the_rank() {
    let s = start_with_fixture().await;
    let before = rank(&s, pb::RankItemsRequest::default()).await;
    let pos = |r: &pb::RankItemsResponse, k: &str| {
        r.items
            .iter()
            .find(|i| i.score.as_ref().unwrap().item_key == k)
            .map(|i| i.rank)
            .unwrap()
    };
    assert_eq!(pos(&before, "web/1"), 2);

    // Halfway: the conv part of each linked item halves.
    let r = record(&s, vec![observation("conv", 2.8, Some(days_ago(1)))]).await;
    assert!((r.metrics[0].gap - 0.5).abs() < 1e-9);
    let web1 = item_score(&s, "web/1").await;
    assert!((web1.terms[0].gap - 0.5).abs() < 1e-9);
    assert!((web1.value - 0.045).abs() < 1e-9);

    // Target reached: conv's part is zero.
    let r = record(&s, vec![observation("conv", 3.5, None)]).await;
    assert_eq!(r.metrics[0].gap, 0.0);
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.value, 0.0);
    assert_eq!(web1.terms[0].gap, 0.0);
    assert_eq!(web1.terms[0].value, 0.0);
    assert!(
        !flags(&web1).contains(&pb::ScoreFlag::Unaligned),
        "still linked"
    );
    let ops2 = item_score(&s, "ops/2").await;
    assert_eq!(ops2.terms[0].value, 0.0, "H-1 part");
    assert!((ops2.value - 0.025).abs() < 1e-12, "only H-2 remains");

    let after = rank(&s, pb::RankItemsRequest::default()).await;
    assert_eq!(
        keys(&after),
        [
            "web/2", "ops/1", "ops/2", "ops/3", "web/1", "web/3", "web/4", "web/6"
        ]
    );
    assert_eq!(pos(&after, "web/1"), 5);

    // Overshooting keeps it at zero.
    record(&s, vec![observation("conv", 4.0, None)]).await;
    assert_eq!(item_score(&s, "web/1").await.value, 0.0);
}

#[tokio::test]
async fn a_status_does_not_replace_the_confidence() {
    let s = start_with_fixture().await;
    let before = item_score(&s, "web/2").await;
    assert_eq!(before.terms[0].confidence, 0.8);
    let h = s
        .model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Validated as i32,
                ..hypothesis("H-2", "S-speed", "lead", 0.5, 0.8)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(h.confidence, Some(0.8), "stored confidence kept");
    let after = item_score(&s, "web/2").await;
    // The score uses the confidence itself (a posterior), not 1.
    assert_eq!(after.terms[0].confidence, 0.8);
    // 0.25 x 1 x 0.5 x 0.8 x 0.5
    assert!((after.value - 0.05).abs() < 1e-12, "value {}", after.value);
    assert_eq!(after.value, before.value);

    // Nor does INVALIDATED replace it with 0.
    s.model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Invalidated as i32,
                ..hypothesis("H-2", "S-speed", "lead", 0.5, 0.8)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap();
    let after = item_score(&s, "web/2").await;
    assert_eq!(after.terms[0].confidence, 0.8);
    assert_eq!(after.value, before.value);
}

#[tokio::test]
async fn oversubscribed_contributions_are_scaled_down() {
    let s = start_with_fixture().await;
    // H-1 had 0.5 + 0.25 + 0.25 = 1; web/6 adds 1, so each is divided by 2.
    link(&s, "web/6", "H-1", 1.0).await;
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].contribution, 0.5);
    assert_eq!(web1.terms[0].effective_contribution, 0.25);
    assert!((web1.value - 0.045).abs() < 1e-12);
    let web6 = item_score(&s, "web/6").await;
    assert_eq!(web6.terms[0].effective_contribution, 0.5);
    // Removing it restores the others.
    s.backlog()
        .unlink_item(pb::UnlinkItemRequest {
            item_key: "web/6".into(),
            hypothesis_id: "H-1".into(),
        })
        .await
        .unwrap();
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].effective_contribution, 0.5);
    assert!((web1.value - 0.09).abs() < 1e-12);
}

#[tokio::test]
async fn goal_weight_changes_reach_the_scores() {
    let s = start_with_fixture().await;
    // S-growth 3 -> 1: both strategic goals weigh 0.5.
    s.model()
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(goal("S-growth", pb::GoalLevel::Strategic, "", Some(1.0))),
            update_mask: mask(&["weight"]),
        })
        .await
        .unwrap();
    let web1 = item_score(&s, "web/1").await;
    assert_eq!(web1.terms[0].goal_weight, 0.5);
    assert!((web1.value - 0.06).abs() < 1e-12);
    let web2 = item_score(&s, "web/2").await;
    assert_eq!(web2.terms[0].goal_weight, 0.5);
    assert!((web2.value - 0.1).abs() < 1e-12);
}
