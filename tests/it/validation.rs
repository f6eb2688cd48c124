//! Validating value after release, over gRPC: releases (named and tracker
//! closes), joint attribution of one metric's movement to several releases,
//! confounding, insufficient data, experiments taking precedence, evidence
//! applied once, and metric trends with releases marked.

use crate::common::*;
use pb::validation_service_client::ValidationServiceClient;
use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;

fn validation(s: &TestServer) -> ValidationServiceClient<Channel> {
    ValidationServiceClient::new(s.channel.clone())
}

/// Observations every 3 days from `from` to `to` days ago, valued by `level`.
async fn series(s: &TestServer, metric: &str, from: i64, to: i64, level: impl Fn(i64) -> f64) {
    let obs = (to..=from)
        .rev()
        .step_by(3)
        .map(|d| observation(metric, level(d), Some(days_ago(d))))
        .collect();
    record(s, obs).await;
}

async fn release(s: &TestServer, id: &str, items: &[&str], days: i64) {
    validation(s)
        .record_release(pb::RecordReleaseRequest {
            release_id: id.into(),
            item_keys: items.iter().map(|k| k.to_string()).collect(),
            release_time: Some(days_ago(days)),
            note: String::new(),
        })
        .await
        .unwrap();
}

async fn validate(s: &TestServer) -> Vec<pb::Evidence> {
    validation(s)
        .validate_releases(pb::ValidateReleasesRequest {
            include_open_windows: false,
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .evidence
}

async fn hyp(s: &TestServer, id: &str) -> pb::Hypothesis {
    s.model()
        .get_hypothesis(pb::GetHypothesisRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap()
}

/// A server with a goal, source "web", metric `m` (2.0 -> 3.0) and, for each
/// (hypothesis, item, expected effect), a hypothesis on `m` and an item
/// linked to it.
async fn model(m: &str, hyps: &[(&str, &str, f64)]) -> TestServer {
    let s = TestServer::start().await;
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&s, metric(m, 2.0, 3.0)).await;
    for (h, item_id, effect) in hyps {
        create_hypothesis(&s, hypothesis(h, "G", m, *effect, 0.5)).await;
        upsert(&s, vec![item("web", item_id, &format!("Item for {h}"))]).await;
        link(&s, &format!("web/{item_id}"), h, 1.0).await;
    }
    s
}

fn realized(e: &pb::Evidence) -> f64 {
    e.realized_effect.expect("a realized effect")
}

#[tokio::test]
async fn two_releases_weeks_apart_on_one_metric_are_attributed_separately() {
    let s = model("conv", &[("H-A", "1", 0.2), ("H-B", "2", 0.3)]).await;
    series(&s, "conv", 140, 5, |d| {
        if d > 100 {
            2.0
        } else if d > 60 {
            2.2
        } else {
            2.5
        }
    })
    .await;
    release(&s, "rel-a", &["web/1"], 100).await;
    release(&s, "rel-b", &["web/2"], 60).await;

    let ev = validate(&s).await;
    assert_eq!(ev.len(), 2, "{ev:?}");
    let a = ev.iter().find(|e| e.hypothesis_id == "H-A").unwrap();
    let b = ev.iter().find(|e| e.hypothesis_id == "H-B").unwrap();
    assert_eq!(
        (a.subject_id.as_str(), b.subject_id.as_str()),
        ("rel-a", "rel-b")
    );
    assert!((a.step.unwrap() - 0.2).abs() < 1e-9 && (b.step.unwrap() - 0.3).abs() < 1e-9);
    assert!((realized(a) - 0.2).abs() < 1e-9, "0.2 of a 1.0 gap");
    assert!(
        (realized(b) - 0.375).abs() < 1e-9,
        "0.3 of the 0.8 gap left after rel-a"
    );
    assert!(!a.confounded && !b.confounded);
    assert_eq!(a.outcome, pb::EvidenceOutcome::Supports as i32);
    // Supports, not confounded: confidence 0.5 -> 0.75, validated.
    let h = hyp(&s, "H-A").await;
    assert_eq!(
        (h.confidence, h.status),
        (Some(0.75), pb::HypothesisStatus::Validated as i32)
    );
    assert!((a.confidence_before, a.confidence_after) == (0.5, 0.75));

    // Evidence moves a hypothesis once: a second run stores and changes nothing.
    assert!(validate(&s).await.is_empty());
    assert_eq!(hyp(&s, "H-A").await.confidence, Some(0.75));
    let stored = validation(&s)
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: "H-B".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .evidence;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].subject_id, "rel-b");
}

#[tokio::test]
async fn two_releases_on_the_same_day_are_confounded_and_share_the_step() {
    let s = model("conv", &[("H-A", "1", 0.2), ("H-B", "2", 0.3)]).await;
    // Releases between two observation days, so none sits on the boundary.
    series(&s, "conv", 122, 5, |d| if d > 61 { 2.0 } else { 2.6 }).await;
    release(&s, "rel-a", &["web/1"], 61).await;
    release(&s, "rel-b", &["web/2"], 61).await;
    let ev = validate(&s).await;
    assert_eq!(ev.len(), 2);
    for e in &ev {
        assert!(e.confounded, "{e:?}");
        assert!(
            (e.step.unwrap() - 0.6).abs() < 1e-9,
            "one shared step: {e:?}"
        );
        assert!((realized(e) - 0.3).abs() < 1e-9, "each gets half");
        assert!(e.reason.contains("shared with"), "{}", e.reason);
    }
    // Confounded support: a quarter of the way to 1, and still testing.
    let h = hyp(&s, "H-B").await;
    assert_eq!(h.confidence, Some(0.625));
    assert_eq!(
        h.status,
        pb::HypothesisStatus::Testing as i32,
        "confounded evidence never validates"
    );
}

#[tokio::test]
async fn too_few_observations_give_insufficient_data_not_a_guess() {
    let s = model("conv", &[("H-A", "1", 0.2)]).await;
    record(
        &s,
        vec![
            observation("conv", 2.0, Some(days_ago(70))),
            observation("conv", 2.5, Some(days_ago(30))),
        ],
    )
    .await;
    release(&s, "rel-a", &["web/1"], 50).await;
    let ev = validate(&s).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, pb::EvidenceOutcome::InsufficientData as i32);
    assert_eq!(ev[0].realized_effect, None);
    assert!(ev[0].reason.contains("observation"), "{}", ev[0].reason);
    let h = hyp(&s, "H-A").await;
    assert_eq!(
        (h.confidence, h.status),
        (Some(0.5), pb::HypothesisStatus::Proposed as i32)
    );
}

#[tokio::test]
async fn an_experiment_result_overrides_before_after() {
    let s = model("conv", &[("H-A", "1", 0.4)]).await;
    series(&s, "conv", 120, 5, |_| 2.0).await;
    // A/B: +0.3 points, CI [0.25, 0.35], on a gap of 1.0 -> 0.3 of the gap, CI
    // low 0.25 >= half of 0.4: validated at confidence 0.9.
    let exp = validation(&s)
        .record_experiment_result(pb::RecordExperimentResultRequest {
            hypothesis_id: "H-A".into(),
            lift: 0.3,
            ci_low: 0.25,
            ci_high: 0.35,
            result_time: None,
            source: "growthbook: checkout-ab-12".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .evidence
        .unwrap();
    assert_eq!(exp.method, pb::EvidenceMethod::Experiment as i32);
    assert!((realized(&exp) - 0.3).abs() < 1e-9);
    assert_eq!(exp.status_after, "HYPOTHESIS_STATUS_VALIDATED");
    assert_eq!(hyp(&s, "H-A").await.confidence, Some(0.9));

    // The flat series says "nothing happened", but the experiment wins.
    release(&s, "rel-a", &["web/1"], 60).await;
    let ev = validate(&s).await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].outcome, pb::EvidenceOutcome::Refutes as i32);
    assert!(
        ev[0].reason.contains("experiment result takes precedence"),
        "{}",
        ev[0].reason
    );
    let h = hyp(&s, "H-A").await;
    assert_eq!(
        (h.confidence, h.status),
        (Some(0.9), pb::HypothesisStatus::Validated as i32)
    );
}

#[tokio::test]
async fn a_tracker_close_is_a_release_and_trends_mark_releases() {
    let s = model("conv", &[("H-A", "1", 0.2)]).await;
    series(&s, "conv", 30, 0, |_| 2.0).await;
    upsert(
        &s,
        vec![pb::Item {
            state: pb::ItemState::Closed as i32,
            close_time: Some(days_ago(10)),
            ..item("web", "1", "Item for H-A")
        }],
    )
    .await;
    release(&s, "deploy-7", &["web/1"], 5).await;
    let trend = validation(&s)
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: "conv".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trend.points.len(), 11);
    assert_eq!((trend.baseline, trend.target), (2.0, 3.0));
    let ids: Vec<&str> = trend
        .releases
        .iter()
        .map(|r| r.release.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, ["close:web/1", "deploy-7"]);
    assert_eq!(
        trend.releases[0].release.as_ref().unwrap().origin,
        pb::ReleaseOrigin::Tracker as i32
    );
    assert_eq!(trend.releases[0].hypothesis_ids, ["H-A"]);
}

#[tokio::test]
async fn validation_rpcs_refuse_bad_input() {
    let s = model("conv", &[("H-A", "1", 0.2)]).await;
    let mut v = validation(&s);
    assert_invalid(
        v.record_release(pb::RecordReleaseRequest::default()).await,
        &["item_keys"],
    );
    let r = v
        .record_release(pb::RecordReleaseRequest {
            item_keys: vec!["web/404".into()],
            ..Default::default()
        })
        .await;
    assert_code(r, Code::NotFound);
    assert_invalid(
        v.record_experiment_result(pb::RecordExperimentResultRequest {
            hypothesis_id: "H-A".into(),
            lift: 0.5,
            ci_low: 0.6,
            ci_high: 0.7,
            ..Default::default()
        })
        .await,
        &["lift"],
    );
    let r = v
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: "H-9".into(),
        })
        .await;
    assert_code(r, Code::NotFound);
    let r = v
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: "nope".into(),
        })
        .await;
    assert_code(r, Code::NotFound);
    // Named releases are idempotent on their id.
    release(&s, "deploy-1", &["web/1"], 3).await;
    release(&s, "deploy-1", &["web/1"], 1).await;
    let trend = v
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: "conv".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trend.releases.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trend_draws_the_series_and_writes_an_svg() {
    let s = model("conv", &[("H-A", "1", 0.2)]).await;
    series(&s, "conv", 30, 0, |d| if d > 15 { 2.0 } else { 2.4 }).await;
    release(&s, "deploy-7", &["web/1"], 16).await;
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("conv.svg");
    let url = s.server().url();
    let svg_arg = svg.display().to_string();
    let out = run_cli(&["trend", "conv", "--out", &svg_arg, "--server", &url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("target 3") && text.contains('•'), "{text}");
    assert!(
        text.contains("| deploy-7 at ") && text.contains("(hypotheses H-A)"),
        "{text}"
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("<polyline") && chart.contains("deploy-7"));
    assert_eq!(chart.matches("<circle").count(), 11);
}

/// With an interval set, releases whose window has closed are validated
/// without being asked.
#[tokio::test]
async fn validation_runs_by_itself_when_a_window_has_closed() {
    let s = TestServer::start_with_config(|c| c.validation.interval_secs = 1).await;
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    create_hypothesis(&s, hypothesis("H-A", "G", "conv", 0.2, 0.5)).await;
    upsert(&s, vec![item("web", "1", "Item")]).await;
    link(&s, "web/1", "H-A", 1.0).await;
    series(&s, "conv", 120, 5, |d| if d > 61 { 2.0 } else { 2.3 }).await;
    release(&s, "rel-a", &["web/1"], 62).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if hyp(&s, "H-A").await.status == pb::HypothesisStatus::Validated as i32 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no automatic validation within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
