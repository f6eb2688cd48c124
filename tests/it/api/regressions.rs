//! Regressions: read-modify-write updates, page tokens across methods, and link rules.

use crate::common::*;
use plumbline::proto as pb;

/// Fields outside the update mask never decide the outcome: a client that
/// reads a metric, flips baseline and target and sends it back with mask
/// ["baseline", "target"] (AIP-134 read-modify-write) gets the direction
/// re-derived, not refused.
#[tokio::test]
async fn update_metric_ignores_fields_outside_the_mask() {
    let s = TestServer::start().await;
    let read = create_metric(&s, metric("lead", 4.0, 10.0)).await;
    assert_eq!(read.direction, pb::MetricDirection::HigherIsBetter as i32);
    let updated = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                baseline: 10.0,
                target: 4.0,
                ..read
            }),
            update_mask: mask(&["baseline", "target"]),
        })
        .await
        .expect("fields outside the mask are ignored")
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(updated.direction, pb::MetricDirection::LowerIsBetter as i32);
}

/// A page token of one list call is refused by another, even when both
/// have no filters (ListSources and ListMetrics).
#[tokio::test]
async fn a_page_token_of_another_method_is_refused() {
    let s = start_with_fixture().await;
    let token = s
        .sources()
        .list_sources(pb::ListSourcesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    assert_invalid(
        s.model()
            .list_metrics(pb::ListMetricsRequest {
                page_size: 10,
                page_token: token,
            })
            .await,
        &["page_token"],
    );
}

/// An item pushed with the label "hypothesis:H-1" and the body line
/// "Hypothesis: H-2 (0.5)" is linked by its source's rules, with origin RULE.
#[tokio::test]
async fn link_rules_link_items_on_upsert() {
    let s = start_with_fixture().await;
    upsert(
        &s,
        vec![pb::Item {
            body: "Context\nHypothesis: H-2 (0.5)\n".into(),
            ..labelled(item("web", "20", "Ruled"), &["hypothesis:H-1"])
        }],
    )
    .await;
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "web/20".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    let got: Vec<(&str, f64, i32)> = links
        .iter()
        .map(|l| (l.hypothesis_id.as_str(), l.contribution, l.origin))
        .collect();
    let rule = pb::LinkOrigin::Rule as i32;
    assert_eq!(got, [("H-1", 1.0, rule), ("H-2", 0.5, rule)]);
}

/// A rule-made link disappears with its label; a link made through the API
/// survives every upsert, even when a body line names the same hypothesis.
#[tokio::test]
async fn rule_links_follow_the_tracker_and_never_touch_api_links() {
    let s = start_with_fixture().await;
    upsert(
        &s,
        vec![labelled(item("web", "21", "Ruled"), &["hypothesis:H-1"])],
    )
    .await;
    link(&s, "web/21", "H-2", 0.4).await;
    upsert(
        &s,
        vec![pb::Item {
            body: "Hypothesis: H-2 (0.9)\n".into(),
            ..item("web", "21", "Ruled, relabelled")
        }],
    )
    .await;
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            item_key: "web/21".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    let got: Vec<(&str, f64, i32)> = links
        .iter()
        .map(|l| (l.hypothesis_id.as_str(), l.contribution, l.origin))
        .collect();
    assert_eq!(got, [("H-2", 0.4, pb::LinkOrigin::Api as i32)]);
    let score = item_score(&s, "web/21").await;
    let terms: Vec<(&str, f64)> = score
        .terms
        .iter()
        .map(|t| (t.hypothesis_id.as_str(), t.contribution))
        .collect();
    assert_eq!(terms, [("H-2", 0.4)]);
}
