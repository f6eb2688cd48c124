//! Hypotheses: create, read, update, and forced delete.

use crate::common::*;
use plumbline::proto as pb;
use tonic::Code;

#[tokio::test]
async fn hypotheses_crud_and_forced_delete() {
    use pb::GoalLevel::Strategic;
    let s = TestServer::start().await;
    create_goal(&s, goal("S", Strategic, "", None)).await;
    create_goal(&s, goal("S2", Strategic, "", None)).await;
    create_metric(&s, metric("conv", 2.1, 3.5)).await;
    create_metric(&s, metric("lead", 10.0, 4.0)).await;

    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "S", "conv", 0.0, 0.5)),
            })
            .await,
        &["hypothesis.expected_effect"],
    );
    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "S", "conv", 0.5, 1.5)),
            })
            .await,
        &["hypothesis.confidence"],
    );
    assert_invalid(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-0", "nope", "nada", 0.5, 0.5)),
            })
            .await,
        &["hypothesis.goal_id", "hypothesis.metric_id"],
    );

    let h1 = create_hypothesis(
        &s,
        pb::Hypothesis {
            confidence: None,
            ..hypothesis("H-1", "S", "conv", 0.4, 0.0)
        },
    )
    .await;
    assert_eq!(h1.confidence, Some(0.5), "unset means 0.5");
    assert_eq!(h1.status, pb::HypothesisStatus::Proposed as i32);
    // Goal weight 0.5 (two equal strategic goals) x gap 1 x 0.4 x 0.5.
    assert!((h1.value - 0.1).abs() < 1e-12, "value {}", h1.value);
    create_hypothesis(&s, hypothesis("H-2", "S2", "conv", 0.2, 0.9)).await;
    create_hypothesis(&s, hypothesis("H-3", "S", "lead", 0.3, 0.9)).await;
    assert_code(
        s.model()
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.4, 0.5)),
            })
            .await,
        Code::AlreadyExists,
    );
    let got = s
        .model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H-1".into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(got, h1);

    let list = |goal_id: &'static str, metric_id: &'static str| {
        let c = s.model();
        async move {
            let mut c = c;
            let mut seen = Vec::new();
            let mut token = String::new();
            loop {
                let page = c
                    .list_hypotheses(pb::ListHypothesesRequest {
                        goal_id: goal_id.into(),
                        metric_id: metric_id.into(),
                        page_size: 1,
                        page_token: token,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert!(page.hypotheses.len() <= 1);
                seen.extend(page.hypotheses.into_iter().map(|h| h.id));
                token = page.next_page_token;
                if token.is_empty() {
                    return seen;
                }
            }
        }
    };
    assert_eq!(list("", "").await, ["H-1", "H-2", "H-3"]);
    assert_eq!(list("S", "").await, ["H-1", "H-3"]);
    assert_eq!(list("", "conv").await, ["H-1", "H-2"]);
    assert_eq!(list("S", "conv").await, ["H-1"]);

    // Update: status only; the score keeps using the confidence.
    let v = s
        .model()
        .update_hypothesis(pb::UpdateHypothesisRequest {
            hypothesis: Some(pb::Hypothesis {
                status: pb::HypothesisStatus::Validated as i32,
                ..hypothesis("H-1", "S2", "lead", 0.9, 0.1)
            }),
            update_mask: mask(&["status"]),
        })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(v.status, pb::HypothesisStatus::Validated as i32);
    assert_eq!(v.confidence, Some(0.5));
    assert_eq!(v.goal_id, "S");
    assert_eq!(v.expected_effect, 0.4);
    assert!((v.value - 0.1).abs() < 1e-12, "value {}", v.value);
    assert_eq!(v.create_time, h1.create_time);
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.0, 0.5)),
                update_mask: mask(&["expected_effect"]),
            })
            .await,
        &["hypothesis.expected_effect"],
    );
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "missing", 0.5, 0.5)),
                update_mask: mask(&["metric_id"]),
            })
            .await,
        &["hypothesis.metric_id"],
    );
    assert_invalid(
        s.model()
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(hypothesis("H-1", "S", "conv", 0.5, 0.5)),
                update_mask: mask(&["value"]),
            })
            .await,
        &["update_mask"],
    );

    // The model's references hold.
    assert_code(
        s.model()
            .delete_goal(pb::DeleteGoalRequest { id: "S".into() })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        s.model()
            .delete_metric(pb::DeleteMetricRequest { id: "conv".into() })
            .await,
        Code::FailedPrecondition,
    );

    // Delete with links needs force; force takes the links too.
    create_source(&s, github_source("web")).await;
    upsert(
        &s,
        vec![estimated(item("web", "1", "A"), 1.0), item("web", "2", "B")],
    )
    .await;
    link(&s, "web/1", "H-1", 1.0).await;
    link(&s, "web/2", "H-1", 0.5).await;
    link(&s, "web/1", "H-2", 0.5).await;
    assert_code(
        s.model()
            .delete_hypothesis(pb::DeleteHypothesisRequest {
                id: "H-1".into(),
                force: false,
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(item_score(&s, "web/1").await.terms.len(), 2);
    s.model()
        .delete_hypothesis(pb::DeleteHypothesisRequest {
            id: "H-1".into(),
            force: true,
        })
        .await
        .unwrap();
    assert_code(
        s.model()
            .get_hypothesis(pb::GetHypothesisRequest { id: "H-1".into() })
            .await,
        Code::NotFound,
    );
    let links = s
        .backlog()
        .list_links(pb::ListLinksRequest {
            hypothesis_id: "H-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .links;
    assert!(links.is_empty());
    let all: Vec<(String, String)> = s
        .backlog()
        .list_links(pb::ListLinksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .links
        .into_iter()
        .map(|l| (l.item_key, l.hypothesis_id))
        .collect();
    assert_eq!(all, [("web/1".to_string(), "H-2".to_string())]);
    let web1 = item_score(&s, "web/1").await;
    let hyps: Vec<&str> = web1
        .terms
        .iter()
        .map(|t| t.hypothesis_id.as_str())
        .collect();
    assert_eq!(hyps, ["H-2"]);
    let web2 = item_score(&s, "web/2").await;
    assert!(web2.terms.is_empty());
    assert_eq!(web2.value, 0.0);
    assert!(web2.flags.contains(&(pb::ScoreFlag::Unaligned as i32)));

    // Without links, no force is needed.
    s.model()
        .delete_hypothesis(pb::DeleteHypothesisRequest {
            id: "H-3".into(),
            force: false,
        })
        .await
        .unwrap();
    assert_code(
        s.model()
            .delete_hypothesis(pb::DeleteHypothesisRequest {
                id: "H-3".into(),
                force: false,
            })
            .await,
        Code::NotFound,
    );
}
