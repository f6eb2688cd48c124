//! A restart on the same SQLite file rebuilds the index from the store, and
//! must serve the same model and the same ranking, byte for byte.

use crate::common::*;
use plumbline::proto as pb;
use prost::Message;

/// Encoded responses of every read that depends on the model and scores.
async fn snapshot(s: &TestServer) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, order) in [
        ("rank density", pb::RankOrder::ValueDensity),
        ("rank value", pb::RankOrder::Value),
    ] {
        let r = rank(
            s,
            pb::RankItemsRequest {
                page_size: 1000,
                order: order as i32,
                include_closed: true,
                view: pb::ScoreView::Full as i32,
                ..Default::default()
            },
        )
        .await;
        out.push((name.to_string(), r.encode_to_vec()));
    }
    let open = rank(
        s,
        pb::RankItemsRequest {
            view: pb::ScoreView::Full as i32,
            ..Default::default()
        },
    )
    .await;
    out.push(("rank open".into(), open.encode_to_vec()));
    let items = s
        .backlog()
        .list_items(pb::ListItemsRequest::default())
        .await
        .unwrap()
        .into_inner();
    for it in &items.items {
        let sc = item_score(s, &it.key).await;
        out.push((format!("score {}", it.key), sc.encode_to_vec()));
    }
    out.push(("items".into(), items.encode_to_vec()));
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(("links".into(), links.encode_to_vec()));
    let sources = s
        .sources()
        .list_sources(pb::ListSourcesRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(("sources".into(), sources.encode_to_vec()));
    let goals = s
        .model()
        .list_goals(pb::ListGoalsRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(("goals".into(), goals.encode_to_vec()));
    let metrics = s
        .model()
        .list_metrics(pb::ListMetricsRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(("metrics".into(), metrics.encode_to_vec()));
    let hyps = s
        .model()
        .list_hypotheses(pb::ListHypothesesRequest::default())
        .await
        .unwrap()
        .into_inner();
    out.push(("hypotheses".into(), hyps.encode_to_vec()));
    out
}

fn assert_same(before: &[(String, Vec<u8>)], after: &[(String, Vec<u8>)]) {
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(before), names(after));
    for ((name, b), (_, a)) in before.iter().zip(after) {
        assert!(b == a, "{name} differs after restart");
    }
}

#[tokio::test]
async fn a_restart_serves_the_same_ranking_byte_for_byte() {
    let s = start_with_fixture().await;
    record(&s, vec![observation("conv", 2.8, Some(days_ago(1)))]).await;

    let req = pb::RankItemsRequest {
        page_size: 1000,
        view: pb::ScoreView::Full as i32,
        ..Default::default()
    };
    let before = rank(&s, req.clone()).await;
    // conv halfway: web/1 and web/3 halve, ops/2 moves up.
    assert_eq!(
        keys(&before),
        [
            "web/2", "ops/2", "web/1", "web/3", "ops/1", "ops/3", "web/4", "web/6"
        ]
    );
    let before_bytes = before.encode_to_vec();
    let before_all = snapshot(&s).await;
    // A token handed out before the restart.
    let first_page = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 3,
            ..Default::default()
        },
    )
    .await;
    let second_page = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 3,
            page_token: first_page.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;

    let s = s.restart().await;
    assert!(crate::common::on_postgres() || s.db_path().exists());
    // The index was rebuilt from the store: every item scored exactly once.
    assert_eq!(s.server().engine().read().item_count(), FIXTURE_ITEMS);
    assert_eq!(s.rescored(), FIXTURE_ITEMS as u64);

    let after = rank(&s, req).await;
    assert_eq!(after.encode_to_vec(), before_bytes);
    assert_eq!(after, before);
    assert_same(&before_all, &snapshot(&s).await);

    // Page tokens survive a restart.
    let second_after = rank(
        &s,
        pb::RankItemsRequest {
            page_size: 3,
            page_token: first_page.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(second_after, second_page);

    // And the scores still move after the restart.
    let before = s.rescored();
    record(&s, vec![observation("conv", 3.5, None)]).await;
    assert_eq!(s.rescored() - before, 3);
    assert_eq!(item_score(&s, "web/1").await.value, 0.0);
    s.stop().await;
}

#[tokio::test]
async fn the_incrementally_kept_index_equals_a_rebuilt_one_after_many_writes() {
    use pb::GoalLevel::{Intermediate, Strategic};
    let s = start_with_fixture().await;

    // Goals: weights move, a new branch appears.
    s.model()
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(goal("S-growth", Strategic, "", Some(2.0))),
            update_mask: mask(&["weight"]),
        })
        .await
        .unwrap();
    create_goal(&s, goal("I-retention", Intermediate, "S-growth", Some(0.5))).await;
    // Metrics: observations, a moved target.
    record(
        &s,
        vec![
            observation("conv", 2.6, Some(days_ago(3))),
            observation("conv", 3.1, Some(days_ago(1))),
            observation("lead", 8.5, None),
        ],
    )
    .await;
    s.model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(metric("lead", 10.0, 3.0)),
            update_mask: mask(&["target"]),
        })
        .await
        .unwrap();
    // Hypotheses: a new one, a changed effect and goal.
    create_hypothesis(&s, hypothesis("H-4", "I-retention", "conv", 0.3, 0.7)).await;
    s.model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                goal_id: "T-checkout".into(),
                ..hypothesis("H-1", "", "", 0.35, 0.0)
            }),
            update_mask: mask(&["expected_effect", "goal_id"]),
        })
        .await
        .unwrap();
    // Links: over-subscribe H-1, then take part of it back; rewrite one.
    link(&s, "web/6", "H-1", 0.7).await;
    link(&s, "web/4", "H-1", 0.3).await;
    link(&s, "web/4", "H-4", 0.0).await;
    link(&s, "web/2", "H-2", 0.9).await;
    s.backlog()
        .unlink_item(pb::UnlinkItemRequest {
            item_key: "web/6".into(),
            hypothesis_id: "H-1".into(),
        })
        .await
        .unwrap();
    link(&s, "ops/3", "H-4", 0.6).await;
    // Items: new estimate, closed, new item, new labels.
    upsert(
        &s,
        vec![
            labelled(
                estimated(item("web", "1", "One-click checkout"), 3.0),
                &["ux"],
            ),
            closed(estimated(item("web", "2", "Faster CI"), 1.0)),
            estimated(item("web", "7", "New thing"), 0.5),
        ],
    )
    .await;
    link(&s, "web/7", "H-4", 0.2).await;
    // Deletes: a hypothesis with links (forced), a source with items (forced).
    s.model()
        .delete_hypothesis(pb::DeleteHypothesisRequest {
            id: "H-3".into(),
            force: true,
        })
        .await
        .unwrap();
    create_source(&s, github_source("tmp")).await;
    upsert(&s, vec![estimated(item("tmp", "1", "Temporary"), 1.0)]).await;
    link(&s, "tmp/1", "H-2", 0.5).await;
    let r = s
        .sources()
        .delete_source(pb::DeleteSourceRequest {
            id: "tmp".into(),
            force: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted_item_count, 1);

    let before = snapshot(&s).await;
    let ranking = full_ranking(&s, true).await;
    // Sanity: every score still adds up after all this.
    for it in &ranking.items {
        let sc = it.score.as_ref().unwrap();
        let sum = sc.terms.iter().fold(0.0, |acc, t| acc + t.value);
        assert_eq!(sum.to_bits(), sc.value.to_bits(), "{}", sc.item_key);
    }
    let s = s.restart().await;
    assert_same(&before, &snapshot(&s).await);
    assert_eq!(
        full_ranking(&s, true).await.encode_to_vec(),
        ranking.encode_to_vec()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_leave_store_and_index_in_step() {
    let s = start_with_fixture().await;
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let mut backlog = s.backlog();
        let mut model = s.model();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u32 {
                let key = format!("web/c{w}-{i}");
                backlog
                    .upsert_items(pb::UpsertItemsRequest {
                        items: vec![estimated(
                            item("web", &format!("c{w}-{i}"), "Concurrent"),
                            f64::from(1 + i % 3),
                        )],
                        update_mask: None,
                    })
                    .await
                    .unwrap();
                let hyp = ["H-1", "H-2", "H-3"][(w + i) as usize % 3];
                backlog
                    .link_item(pb::LinkItemRequest {
                        item_key: key.clone(),
                        hypothesis_id: hyp.into(),
                        contribution: 0.1 * f64::from(1 + (w + i) % 5),
                        rationale: String::new(),
                    })
                    .await
                    .unwrap();
                if i % 4 == 3 {
                    backlog
                        .unlink_item(pb::UnlinkItemRequest {
                            item_key: key,
                            hypothesis_id: hyp.into(),
                        })
                        .await
                        .unwrap();
                }
                model
                    .record_observations(pb::RecordObservationsRequest {
                        observations: vec![observation(
                            ["conv", "lead", "nps"][(w as usize + i as usize) % 3],
                            [2.5, 8.0, 42.0][(w as usize + i as usize) % 3] + f64::from(i) * 0.01,
                            Some(prost_types::Timestamp {
                                seconds: 1_700_000_000 + i64::from(w * 100 + i),
                                nanos: 0,
                            }),
                        )],
                    })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let before = snapshot(&s).await;
    let ranking = full_ranking(&s, true).await;
    assert_eq!(ranking.items.len(), FIXTURE_ITEMS + 80);
    let s = s.restart().await;
    assert_same(&before, &snapshot(&s).await);
    s.stop().await;
}
