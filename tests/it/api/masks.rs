//! Field masks of every Update RPC, as AIP-134 has them: without a mask only
//! the fields set in the message change, `*` replaces the whole resource,
//! and an unknown path is INVALID_ARGUMENT naming `update_mask`.

use crate::common::*;
use plumbline::proto as pb;

fn rules() -> Option<pb::LinkRules> {
    Some(pb::LinkRules {
        label_prefix: "value:".into(),
        body_keyword: "Serves".into(),
        disabled: false,
    })
}

async fn update_source(
    s: &TestServer,
    source: pb::Source,
    paths: Option<&[&str]>,
) -> Result<pb::Source, tonic::Status> {
    s.sources()
        .update_source(pb::UpdateSourceRequest {
            source: Some(source),
            update_mask: paths.and_then(mask),
        })
        .await
        .map(|r| r.into_inner().source.unwrap_or_default())
}

#[tokio::test]
async fn update_source_without_mask_keeps_the_fields_left_out() {
    let s = TestServer::start().await;
    let before = create_source(
        &s,
        pb::Source {
            link_rules: rules(),
            ..github_source("web")
        },
    )
    .await;
    let after = update_source(
        &s,
        pb::Source {
            id: "web".into(),
            base_url: "https://ghe.example.com/api/v3".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(after.base_url, "https://ghe.example.com/api/v3");
    assert_eq!(after.link_rules, before.link_rules);
    assert_eq!(after.link_rules, rules());
    assert_eq!(after.kind, before.kind);
    assert_eq!(after.project_key, before.project_key);
    assert_eq!(after.token_env, before.token_env);

    // An empty mask is the same as none.
    let after = update_source(
        &s,
        pb::Source {
            id: "web".into(),
            project_key: "acme/other".into(),
            ..Default::default()
        },
        Some(&[]),
    )
    .await
    .unwrap();
    assert_eq!(after.project_key, "acme/other");
    assert_eq!(after.link_rules, rules());
    assert_eq!(after.base_url, "https://ghe.example.com/api/v3");
}

#[tokio::test]
async fn update_source_star_replaces_everything() {
    let s = TestServer::start().await;
    create_source(
        &s,
        pb::Source {
            link_rules: rules(),
            ..github_source("web")
        },
    )
    .await;
    let after = update_source(&s, github_source("web"), Some(&["*"]))
        .await
        .unwrap();
    let rules = after.link_rules.unwrap_or_default();
    assert_eq!(rules.label_prefix, "", "`*` wipes the link rules left out");
    assert_eq!(rules.body_keyword, "");
    assert_eq!(after.project_key, "acme/web");

    // `*` replaces the whole resource, so it stands alone.
    assert_invalid(
        update_source(&s, github_source("web"), Some(&["*", "kind"])).await,
        &["update_mask"],
    );
}

#[tokio::test]
async fn update_source_refuses_unknown_paths() {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    for bad in [&["colour"][..], &["id"], &["link_rules.label_prefix"]] {
        assert_invalid(
            update_source(&s, github_source("web"), Some(bad)).await,
            &["update_mask"],
        );
    }
}

#[tokio::test]
async fn update_goal_follows_the_mask_rules() {
    use pb::GoalLevel::Strategic;
    let s = TestServer::start().await;
    create_goal(
        &s,
        pb::Goal {
            description: "Why this goal matters.".into(),
            ..goal("S-a", Strategic, "", Some(2.0))
        },
    )
    .await;
    let update = |g: pb::Goal, paths: Option<&'static [&'static str]>| {
        let mut client = s.model();
        async move {
            client
                .update_goal(pb::UpdateGoalRequest {
                    goal: Some(g),
                    update_mask: paths.and_then(mask),
                })
                .await
                .map(|r| r.into_inner().goal.unwrap_or_default())
        }
    };

    let after = update(
        pb::Goal {
            id: "S-a".into(),
            title: "Renamed".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(after.title, "Renamed");
    assert_eq!(after.description, "Why this goal matters.");
    assert_eq!(after.weight, Some(2.0));
    assert_eq!(after.level, Strategic as i32);

    let after = update(goal("S-a", Strategic, "", None), Some(&["*"]))
        .await
        .unwrap();
    assert_eq!(after.title, "Goal S-a");
    assert_eq!(after.description, "", "`*` wipes the description left out");
    assert_eq!(
        after.weight,
        Some(1.0),
        "the weight left out is back to its default"
    );

    assert_invalid(
        update(goal("S-a", Strategic, "", None), Some(&["colour"])).await,
        &["update_mask"],
    );
}

#[tokio::test]
async fn update_metric_follows_the_mask_rules() {
    let s = TestServer::start().await;
    create_metric(&s, metric("conv", 10.0, 50.0)).await;
    let update = |m: pb::Metric, paths: Option<&'static [&'static str]>| {
        let mut client = s.model();
        async move {
            client
                .update_metric(pb::UpdateMetricRequest {
                    metric: Some(m),
                    update_mask: paths.and_then(mask),
                })
                .await
                .map(|r| r.into_inner().metric.unwrap_or_default())
        }
    };

    let after = update(
        pb::Metric {
            id: "conv".into(),
            name: "Conversion".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(after.name, "Conversion");
    assert_eq!(after.unit, "%");
    assert_eq!((after.baseline, after.target), (10.0, 50.0));

    let after = update(
        pb::Metric {
            unit: String::new(),
            ..metric("conv", 20.0, 60.0)
        },
        Some(&["*"]),
    )
    .await
    .unwrap();
    assert_eq!(after.unit, "", "`*` wipes the unit left out");
    assert_eq!((after.baseline, after.target), (20.0, 60.0));

    assert_invalid(
        update(metric("conv", 1.0, 2.0), Some(&["current_value"])).await,
        &["update_mask"],
    );
}

#[tokio::test]
async fn update_hypothesis_follows_the_mask_rules() {
    let s = TestServer::start().await;
    create_goal(&s, goal("S-a", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&s, metric("conv", 10.0, 50.0)).await;
    create_hypothesis(
        &s,
        pb::Hypothesis {
            status: pb::HypothesisStatus::Testing as i32,
            ..hypothesis("h1", "S-a", "conv", 0.4, 0.8)
        },
    )
    .await;
    let update = |h: pb::Hypothesis, paths: Option<&'static [&'static str]>| {
        let mut client = s.model();
        async move {
            client
                .update_hypothesis(pb::UpdateHypothesisRequest {
                    hypothesis: Some(h),
                    update_mask: paths.and_then(mask),
                })
                .await
                .map(|r| r.into_inner().hypothesis.unwrap_or_default())
        }
    };

    let after = update(
        pb::Hypothesis {
            id: "h1".into(),
            statement: "A sharper statement.".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(after.statement, "A sharper statement.");
    assert_eq!(after.expected_effect, 0.4);
    assert_eq!(after.confidence, Some(0.8));
    assert_eq!(after.status, pb::HypothesisStatus::Testing as i32);

    let after = update(hypothesis("h1", "S-a", "conv", 0.2, 0.6), Some(&["*"]))
        .await
        .unwrap();
    assert_eq!(after.expected_effect, 0.2);
    assert_eq!(
        after.status,
        pb::HypothesisStatus::Proposed as i32,
        "`*` resets the status left out"
    );

    assert_invalid(
        update(hypothesis("h1", "S-a", "conv", 0.2, 0.6), Some(&["value"])).await,
        &["update_mask"],
    );
}
