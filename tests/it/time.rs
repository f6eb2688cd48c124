//! Time, over gRPC: observations dated in the future beyond the allowed clock
//! skew are refused with nothing written, and `ValidateReleases` replays an
//! imported history at an `as_of` time, deciding what the server would have
//! decided then.

use crate::common::*;
use chrono::{Duration, Utc};
use pb::validation_service_client::ValidationServiceClient;
use plumbline::domain::MAX_CLOCK_SKEW;
use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;

fn validation(s: &TestServer) -> ValidationServiceClient<Channel> {
    ValidationServiceClient::new(s.channel.clone())
}

async fn get_metric(s: &TestServer, id: &str) -> pb::Metric {
    s.model()
        .get_metric(pb::GetMetricRequest { id: id.into() })
        .await
        .expect("GetMetric")
        .into_inner()
        .metric
        .expect("metric")
}

#[tokio::test]
async fn an_observation_from_the_future_is_refused_and_nothing_of_the_call_is_written() {
    let s = TestServer::start().await;
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    let next_year = ts(Utc::now() + Duration::days(365));
    let r = s
        .model()
        .record_observations(pb::RecordObservationsRequest {
            observations: vec![
                observation("conv", 2.2, Some(days_ago(14))),
                observation("conv", 2.3, Some(days_ago(7))),
                observation("conv", 2.4, None),
                observation("conv", 2.9, Some(next_year)),
            ],
        })
        .await;
    let status = assert_code(r, Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["observations[3].observe_time"]);
    let message = status.message();
    assert!(
        message.contains("is in the future")
            && message.contains("the server's clock is")
            && message.contains(&format!(
                "at most {} s of clock skew",
                MAX_CLOCK_SKEW.num_seconds()
            )),
        "{message}"
    );
    // All or nothing: the three good observations of the call are not
    // written either, and the metric's current value is untouched.
    let m = get_metric(&s, "conv").await;
    assert_eq!((m.current_value, m.observation_count), (None, 0));

    // Within the skew a client's clock may run ahead: accepted.
    let ahead = ts(Utc::now() + MAX_CLOCK_SKEW / 2);
    record(&s, vec![observation("conv", 2.5, Some(ahead))]).await;
    let m = get_metric(&s, "conv").await;
    assert_eq!((m.current_value, m.observation_count), (Some(2.5), 1));
    // Just past it: refused.
    let beyond = ts(Utc::now() + MAX_CLOCK_SKEW + Duration::minutes(1));
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![observation("conv", 2.9, Some(beyond))],
            })
            .await,
        &["observations[0].observe_time"],
    );
    assert_eq!(get_metric(&s, "conv").await.observation_count, 1);
}

// ----- ValidateReleases as_of -----

/// The days (before the history's "now") of its observations: every 3 days
/// from 140 to 5. The release is at day 100.5, so no observation falls on
/// it or on its windows' ends (days 128.5 and 72.5), nor on the `as_of`
/// days the tests use (110, 81, 60).
fn history_days() -> impl Iterator<Item = i64> {
    (5..=140).rev().step_by(3)
}

/// The metric's level `d` days before the history's "now": 2.0 before the
/// release, 2.2 after it, and 2.6 from day 79 on, a later movement that a
/// validation seeing the future would mix into the release's step.
fn history_level(d: i64) -> f64 {
    if d > 100 {
        2.0
    } else if d > 79 {
        2.2
    } else {
        2.6
    }
}

/// A server with metric conv (2.0 -> 3.0), hypothesis H-A on it (expects
/// 0.2, confidence 0.5) and item web/1 linked to it; validation windows of
/// 28 days a side, the geometry this history was written for.
async fn history_model() -> TestServer {
    let s = TestServer::start_with_config(|c| {
        c.validation.before_days = 28;
        c.validation.after_days = 28;
    })
    .await;
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    create_hypothesis(&s, hypothesis("H-A", "G", "conv", 0.2, 0.5)).await;
    upsert(&s, vec![item("web", "1", "Faster checkout")]).await;
    link(&s, "web/1", "H-A", 1.0).await;
    s
}

/// Release rel-a of web/1, `days` and a half ago.
async fn release_at(s: &TestServer, days: i64) {
    validation(s)
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-a".into(),
            item_keys: vec!["web/1".into()],
            release_time: Some(ts(Utc::now() - Duration::days(days) - Duration::hours(12))),
            note: String::new(),
        })
        .await
        .expect("RecordRelease");
}

/// The whole history imported after the fact: every observation and the
/// release (day 100.5), all in the past.
async fn imported_history() -> TestServer {
    let s = history_model().await;
    let obs = history_days()
        .map(|d| observation("conv", history_level(d), Some(days_ago(d))))
        .collect();
    record(&s, obs).await;
    release_at(&s, 100).await;
    s
}

/// The same history on a server living `shift` days before the history's
/// "now": it holds what had happened by then, every time `shift` days
/// nearer. What had not happened yet is in its future, and refused.
async fn history_lived_at(shift: i64) -> TestServer {
    let s = history_model().await;
    let (past, future): (Vec<i64>, Vec<i64>) = history_days().partition(|d| *d >= shift);
    let obs = past
        .iter()
        .map(|d| observation("conv", history_level(*d), Some(days_ago(d - shift))))
        .collect();
    record(&s, obs).await;
    let tomorrow = future.first().expect("some observation after the shift");
    assert_invalid(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![observation(
                    "conv",
                    history_level(*tomorrow),
                    Some(days_ago(tomorrow - shift)),
                )],
            })
            .await,
        &["observations[0].observe_time"],
    );
    release_at(&s, 100 - shift).await;
    s
}

async fn validate_as_of(
    s: &TestServer,
    as_of: Option<prost_types::Timestamp>,
    include_open_windows: bool,
) -> Vec<pb::Evidence> {
    validation(s)
        .validate_releases(pb::ValidateReleasesRequest {
            include_open_windows,
            as_of,
            dry_run: false,
        })
        .await
        .expect("ValidateReleases")
        .into_inner()
        .evidence
}

async fn hyp(s: &TestServer) -> pb::Hypothesis {
    s.model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H-A".into() })
        .await
        .expect("GetHypothesis")
        .into_inner()
        .hypothesis
        .expect("hypothesis")
}

async fn stored_evidence(s: &TestServer) -> Vec<pb::Evidence> {
    validation(s)
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: "H-A".into(),
        })
        .await
        .expect("GetHypothesisEvidence")
        .into_inner()
        .evidence
}

/// The verdict of `replayed` is the one `lived` reached: every field the
/// decision made (record times differ: the evidence is dated when it was
/// decided, on each server's own clock).
#[track_caller]
fn assert_same_verdict(replayed: &pb::Evidence, lived: &pb::Evidence) {
    let decision = |e: &pb::Evidence| {
        (
            e.subject_id.clone(),
            e.outcome,
            e.confounded,
            e.points_before,
            e.points_after,
            e.confidence_before,
            e.confidence_after,
            e.status_after.clone(),
            e.reason.clone(),
        )
    };
    assert_eq!(decision(replayed), decision(lived));
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-12,
        (a, b) => a == b,
    };
    assert!(
        close(replayed.step, lived.step) && close(replayed.realized_effect, lived.realized_effect),
        "replayed {replayed:?}\nlived {lived:?}"
    );
}

#[tokio::test]
async fn validate_releases_as_of_replays_an_imported_history() {
    let s = imported_history().await;
    let before = hyp(&s).await;

    // 81 days ago the release was 19.5 days old: its 28-day after-window had
    // not closed, so no verdict, nothing stored, the hypothesis unchanged.
    assert_eq!(validate_as_of(&s, Some(days_ago(81)), false).await, []);
    assert_eq!(stored_evidence(&s).await, []);
    assert_eq!(hyp(&s).await, before);

    // 60 days ago it had: a verdict, dated then.
    let as_of = days_ago(60);
    let ev = validate_as_of(&s, Some(as_of), false).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    let replayed = &ev[0];
    assert_eq!(replayed.subject_id, "rel-a");
    assert!(replayed.realized_effect.is_some(), "{replayed:?}");
    assert_ne!(
        replayed.outcome,
        pb::EvidenceOutcome::InsufficientData as i32
    );
    // The before-window (days 128.5 to 100.5) holds 10 observations, the
    // after-window (to day 72.5) 9, two of them after the later movement
    // to 2.6.
    assert_eq!((replayed.points_before, replayed.points_after), (10, 9));
    assert_eq!(replayed.record_time, Some(as_of));
    assert_eq!(stored_evidence(&s).await, ev);
    let replayed_hyp = hyp(&s).await;
    assert_ne!(
        (replayed_hyp.confidence, replayed_hyp.status),
        (before.confidence, before.status),
        "the verdict moved the hypothesis"
    );

    // What a server living 60 days ago, holding only what had happened by
    // then, decides by its own clock: the same.
    let lived = history_lived_at(60).await;
    let ev = validate_as_of(&lived, None, false).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_same_verdict(replayed, &ev[0]);
    let lived_hyp = hyp(&lived).await;
    assert_eq!(
        (lived_hyp.confidence, lived_hyp.status),
        (replayed_hyp.confidence, replayed_hyp.status)
    );

    // Replaying again changes nothing: the evidence moved H-A once.
    assert_eq!(validate_as_of(&s, Some(days_ago(30)), false).await, []);
    assert_eq!(hyp(&s).await.confidence, replayed_hyp.confidence);
}

#[tokio::test]
async fn validate_releases_as_of_sees_only_what_had_happened_by_then() {
    let s = imported_history().await;
    // Before the release, it had not happened: nothing to validate, even
    // with open windows.
    assert_eq!(validate_as_of(&s, Some(days_ago(110)), true).await, []);
    assert_eq!(stored_evidence(&s).await, []);

    // With open windows at day 81: only the 6 observations after the
    // release up to then (days 98 to 83, all 2.2), not those measured
    // later in the window (2.2 on day 80, 2.6 on days 77 and 74).
    let ev = validate_as_of(&s, Some(days_ago(81)), true).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    let replayed = &ev[0];
    assert_eq!((replayed.points_before, replayed.points_after), (10, 6));
    let step = replayed.step.expect("a step");
    assert!((step - 0.2).abs() < 1e-9, "step {step}");

    let lived = history_lived_at(81).await;
    let ev = validate_as_of(&lived, None, true).await;
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_same_verdict(replayed, &ev[0]);
}

#[tokio::test]
async fn validate_releases_refuses_an_as_of_in_the_future_naming_it() {
    let s = imported_history().await;
    let r = validation(&s)
        .validate_releases(pb::ValidateReleasesRequest {
            include_open_windows: true,
            as_of: Some(ts(Utc::now() + Duration::days(1))),
            dry_run: false,
        })
        .await;
    let status = assert_code(r, Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["as_of"]);
    assert!(
        status.message().starts_with("as_of: ") && status.message().contains("is in the future"),
        "{}",
        status.message()
    );
    assert_invalid(
        validation(&s)
            .validate_releases(pb::ValidateReleasesRequest {
                include_open_windows: true,
                as_of: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                dry_run: false,
            })
            .await,
        &["as_of"],
    );
    // Nothing was validated by the refused calls.
    assert_eq!(stored_evidence(&s).await, []);
    // Within the clock skew, as_of is accepted (here: closed windows only,
    // the release's closed long ago).
    let ahead = ts(Utc::now() + MAX_CLOCK_SKEW / 2);
    assert_eq!(validate_as_of(&s, Some(ahead), false).await.len(), 1);
}

#[tokio::test]
async fn a_release_or_an_experiment_dated_in_the_future_is_refused_naming_the_field() {
    let s = history_model().await;
    let tomorrow = ts(Utc::now() + Duration::days(1));
    let r = validation(&s)
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-a".into(),
            item_keys: vec!["web/1".into()],
            release_time: Some(tomorrow),
            note: String::new(),
        })
        .await;
    let status = assert_code(r, Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["release_time"]);
    assert!(
        status.message().contains("is in the future"),
        "{}",
        status.message()
    );
    let r = validation(&s)
        .record_experiment_result(pb::RecordExperimentResultRequest {
            hypothesis_id: "H-A".into(),
            lift: 0.2,
            ci_low: 0.1,
            ci_high: 0.3,
            result_time: Some(tomorrow),
            source: String::new(),
        })
        .await;
    let status = assert_code(r, Code::InvalidArgument);
    assert_eq!(bad_fields(&status), ["result_time"]);
    // Nothing was recorded: no release marker, no evidence.
    assert!(stored_evidence(&s).await.is_empty());
    let trend = validation(&s)
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: "conv".into(),
        })
        .await
        .expect("GetMetricTrend")
        .into_inner();
    assert!(trend.releases.is_empty(), "{:?}", trend.releases);
    // Within the skew both are taken: a deploy pipeline's clock may run a
    // little ahead of the server's.
    let soon = ts(Utc::now() + MAX_CLOCK_SKEW / 2);
    validation(&s)
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-a".into(),
            item_keys: vec!["web/1".into()],
            release_time: Some(soon),
            note: String::new(),
        })
        .await
        .expect("a release within the skew");
    validation(&s)
        .record_experiment_result(pb::RecordExperimentResultRequest {
            hypothesis_id: "H-A".into(),
            lift: 0.2,
            ci_low: 0.1,
            ci_high: 0.3,
            result_time: Some(soon),
            source: String::new(),
        })
        .await
        .expect("an experiment within the skew");
}
