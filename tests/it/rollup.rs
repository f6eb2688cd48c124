//! Zoom out / zoom in over gRPC: goal roll-ups with coverage, serving items,
//! unserved goals and unaligned items, and `plumbline goals --tree`.

use crate::common::*;
use pb::GoalLevel::{Intermediate, Strategic};
use plumbline::proto as pb;
use tonic::Code;

/// Strategic S-a (weight 3) holds I-conv, measured by conv (gap 0.5) with
/// hypothesis H-1; strategic S-b (weight 1) has nothing. Item web/1 links to
/// H-1 (0.5), web/2 links nowhere, and the closed web/3 links to H-1 (0.5)
/// but is not backlog.
async fn model() -> TestServer {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("S-a", Strategic, "", Some(3.0))).await;
    create_goal(&s, goal("S-b", Strategic, "", Some(1.0))).await;
    create_goal(&s, goal("I-conv", Intermediate, "S-a", None)).await;
    create_metric(&s, metric("conv", 2.1, 3.5)).await;
    record(&s, vec![observation("conv", 2.8, Some(days_ago(1)))]).await;
    create_hypothesis(&s, hypothesis("H-1", "I-conv", "conv", 0.4, 0.6)).await;
    upsert(
        &s,
        vec![
            estimated(item("web", "1", "Linked"), 2.0),
            item("web", "2", "Unlinked"),
            closed(item("web", "3", "Shipped")),
        ],
    )
    .await;
    link(&s, "web/1", "H-1", 0.5).await;
    link(&s, "web/3", "H-1", 0.5).await;
    s
}

#[tokio::test]
async fn the_tree_shows_coverage_serving_items_and_gaps() {
    let s = model().await;
    let mut c = pb::rollup_service_client::RollupServiceClient::new(s.channel.clone());
    let t = c
        .get_goal_tree(pb::GetGoalTreeRequest::default())
        .await
        .unwrap()
        .into_inner();
    let order: Vec<(&str, i32)> = t
        .goals
        .iter()
        .map(|g| (g.goal_id.as_str(), g.depth))
        .collect();
    assert_eq!(order, [("S-a", 0), ("I-conv", 1), ("S-b", 0)]);

    let sa = &t.goals[0];
    assert!(
        (sa.weighted_gap - 0.375).abs() < 1e-12,
        "0.75 x gap 0.5: {}",
        sa.weighted_gap
    );
    // web/1's term: 0.75 x 0.5 x 0.4 x 0.6 x 0.5 = 0.045; closed web/3 does not count.
    assert!((sa.addressed - 0.045).abs() < 1e-12, "{}", sa.addressed);
    assert!((sa.coverage - 0.12).abs() < 1e-12, "{}", sa.coverage);
    assert_eq!(sa.item_count, 1);
    assert_eq!(sa.items[0].item_key, "web/1");
    assert_eq!(sa.items[0].title, "Linked");
    assert!(!sa.unserved);

    let sb = &t.goals[2];
    assert!(sb.unserved);
    assert_eq!(
        sb.weighted_gap, 0.25,
        "an unmeasured goal counts as wide open"
    );
    assert_eq!(t.unserved_goal_ids, ["S-b"]);
    assert_eq!(t.unaligned_item_keys, ["web/2"]);
    assert_eq!(t.unaligned_item_count, 1);

    // Zoom in on one goal; the numbers agree with the tree.
    let one = c
        .get_goal_rollup(pb::GetGoalRollupRequest {
            goal_id: "I-conv".into(),
            item_limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .rollup
        .unwrap();
    assert_eq!(one, t.goals[1]);

    // Reaching the target closes the gap: nothing left to cover.
    record(&s, vec![observation("conv", 3.5, Some(days_ago(0)))]).await;
    let t = c
        .get_goal_tree(pb::GetGoalTreeRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            t.goals[0].weighted_gap,
            t.goals[0].addressed,
            t.goals[0].coverage
        ),
        (0.0, 0.0, 0.0)
    );
}

#[tokio::test]
async fn rollup_errors() {
    let s = model().await;
    let mut c = pb::rollup_service_client::RollupServiceClient::new(s.channel.clone());
    let r = c
        .get_goal_rollup(pb::GetGoalRollupRequest {
            goal_id: "nope".into(),
            item_limit: 0,
        })
        .await;
    assert_code(r, Code::NotFound);
    assert_invalid(
        c.get_goal_rollup(pb::GetGoalRollupRequest {
            goal_id: String::new(),
            item_limit: 0,
        })
        .await,
        &["goal_id"],
    );
    assert_invalid(
        c.get_goal_rollup(pb::GetGoalRollupRequest {
            goal_id: "S-a".into(),
            item_limit: -1,
        })
        .await,
        &["item_limit"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goals_tree_draws_coverage_bars() {
    let s = model().await;
    let url = s.server().url();
    let out = run_cli(&["goals", "--tree", "--server", &url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sa = text
        .lines()
        .find(|l| l.starts_with("S-a"))
        .expect("a line for S-a");
    assert!(sa.contains("██░░") && sa.contains("12%"), "{sa}");
    assert!(text.contains("UNSERVED"), "{text}");
    assert!(text.contains("goals no open item serves: S-b"), "{text}");
    assert!(
        text.contains("items that serve no goal (1): web/2"),
        "{text}"
    );
}
