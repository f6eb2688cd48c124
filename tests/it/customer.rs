//! Customers over gRPC (issue 21): segments, desired outcomes measured by
//! survey waves (gap and ODI opportunity exact), an outcome as the metric
//! of a hypothesis validated by the next wave, the roll-up by segment, bad
//! input refused naming the field, and a restart that keeps everything.

use crate::common::*;
use pb::customer_service_client::CustomerServiceClient;
use plumbline::proto as pb;
use tonic::Code;
use tonic::transport::Channel;

fn customers(s: &TestServer) -> CustomerServiceClient<Channel> {
    CustomerServiceClient::new(s.channel.clone())
}

pub async fn segment(s: &TestServer, id: &str, name: &str, weight: f64) -> pb::Segment {
    customers(s)
        .upsert_segment(pb::UpsertSegmentRequest {
            segment: Some(pb::Segment {
                id: id.into(),
                name: name.into(),
                weight,
                ..Default::default()
            }),
        })
        .await
        .expect("UpsertSegment")
        .into_inner()
        .segment
        .expect("segment")
}

pub async fn outcome(s: &TestServer, id: &str, segment_id: &str, statement: &str) {
    customers(s)
        .upsert_desired_outcome(pb::UpsertDesiredOutcomeRequest {
            outcome: Some(pb::DesiredOutcome {
                id: id.into(),
                segment_id: segment_id.into(),
                statement: statement.into(),
                ..Default::default()
            }),
        })
        .await
        .expect("UpsertDesiredOutcome");
}

fn wave(outcome: &str, days: i64, importance: f64, satisfaction: f64, n: i32) -> pb::SurveyWave {
    pb::SurveyWave {
        outcome_id: outcome.into(),
        survey_time: Some(days_ago(days)),
        importance,
        satisfaction,
        respondents: n,
    }
}

async fn waves(
    s: &TestServer,
    w: Vec<pb::SurveyWave>,
) -> Result<pb::RecordSurveyWaveResponse, tonic::Status> {
    customers(s)
        .record_survey_wave(pb::RecordSurveyWaveRequest { waves: w })
        .await
        .map(|r| r.into_inner())
}

async fn get_outcome(s: &TestServer, id: &str) -> pb::DesiredOutcome {
    customers(s)
        .get_desired_outcome(pb::GetDesiredOutcomeRequest { id: id.into() })
        .await
        .expect("GetDesiredOutcome")
        .into_inner()
        .outcome
        .expect("outcome")
}

async fn rollup(s: &TestServer) -> pb::RollUpBySegmentResponse {
    customers(s)
        .roll_up_by_segment(pb::RollUpBySegmentRequest {
            items_per_segment: 10,
        })
        .await
        .expect("RollUpBySegment")
        .into_inner()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

/// Two segments (mobile 3, agencies 1); mobile wants pay-fast (waves 8/3
/// then 9/4) and find-items (6/5 then 5/6); agencies want api-docs (7/5).
/// Dates are fixed days back from now so a restart reads the same.
pub async fn customer_model(s: &TestServer) {
    segment(s, "mobile", "Mobile shoppers", 3.0).await;
    segment(s, "agency", "Agencies building on the API", 1.0).await;
    outcome(
        s,
        "pay-fast",
        "mobile",
        "Minimize the time it takes to pay on a phone",
    )
    .await;
    outcome(
        s,
        "find-items",
        "mobile",
        "Minimize the effort to find an item",
    )
    .await;
    outcome(
        s,
        "api-docs",
        "agency",
        "Minimize the time to a first API call",
    )
    .await;
    let r = waves(
        s,
        vec![
            wave("pay-fast", 60, 8.0, 3.0, 100),
            wave("find-items", 60, 6.0, 5.0, 100),
            wave("pay-fast", 10, 9.0, 4.0, 120),
            wave("find-items", 10, 5.0, 6.0, 120),
            wave("api-docs", 10, 7.0, 5.0, 30),
        ],
    )
    .await
    .expect("RecordSurveyWave");
    assert_eq!(r.stored, 5);
    assert_eq!(
        r.outcomes.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["api-docs", "find-items", "pay-fast"]
    );
}

#[tokio::test]
async fn two_outcomes_from_two_waves_have_exact_gap_and_opportunity() {
    let s = TestServer::start().await;
    customer_model(&s).await;

    let pay = get_outcome(&s, "pay-fast").await;
    assert_eq!(pay.waves.len(), 2);
    assert_eq!((pay.importance, pay.satisfaction), (Some(9.0), Some(4.0)));
    assert_eq!(pay.gap, Some(5.0), "9 - 4");
    assert_eq!(pay.opportunity, Some(14.0), "9 + 5");
    assert!(pay.underserved);
    assert_eq!(pay.respondents, 120);
    let find = get_outcome(&s, "find-items").await;
    assert_eq!(find.gap, Some(0.0), "over-satisfied: floored at 0");
    assert_eq!(find.opportunity, Some(5.0));
    assert!(!find.underserved);

    // The backing metric: baseline the first wave's satisfaction, target 10,
    // current the latest; its gap is (10 - 4) / (10 - 3).
    let m = s
        .model()
        .get_metric(pb::GetMetricRequest {
            id: "pay-fast".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(
        (m.baseline, m.target, m.current_value),
        (3.0, 10.0, Some(4.0))
    );
    assert_eq!(m.observation_count, 2);
    assert!(close(m.gap, 6.0 / 7.0), "{}", m.gap);

    // The same wave again stores nothing; a corrected value replaces it.
    let latest = pay.waves[1].clone();
    let again = waves(&s, vec![latest.clone()]).await.unwrap();
    assert_eq!(again.stored, 0);
    let corrected = pb::SurveyWave {
        satisfaction: 4.5,
        ..latest
    };
    let r = waves(&s, vec![corrected.clone(), corrected]).await.unwrap();
    assert_eq!(r.stored, 1, "given twice, stored once");
    let pay = get_outcome(&s, "pay-fast").await;
    assert_eq!(pay.waves.len(), 2);
    assert_eq!((pay.gap, pay.opportunity), (Some(4.5), Some(13.5)));

    // Correcting the first wave moves the metric's baseline with it.
    let first = pb::SurveyWave {
        satisfaction: 3.5,
        ..pay.waves[0].clone()
    };
    assert_eq!(waves(&s, vec![first]).await.unwrap().stored, 1);
    let m = s
        .model()
        .get_metric(pb::GetMetricRequest {
            id: "pay-fast".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!((m.baseline, m.current_value), (3.5, Some(4.5)));

    // Listing by segment, in id order.
    let listed = customers(&s)
        .list_desired_outcomes(pb::ListDesiredOutcomesRequest {
            segment_id: "mobile".into(),
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.outcomes[0].id, "find-items");
    let next = customers(&s)
        .list_desired_outcomes(pb::ListDesiredOutcomesRequest {
            segment_id: "mobile".into(),
            page_size: 1,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.outcomes[0].id, "pay-fast");
    assert!(next.next_page_token.is_empty());
}

#[tokio::test]
async fn the_roll_up_by_segment_is_exact_and_names_the_unserved_segment() {
    let s = TestServer::start().await;
    customer_model(&s).await;
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    create_hypothesis(&s, hypothesis("H-pay", "G", "pay-fast", 0.5, 0.3)).await;
    create_hypothesis(&s, hypothesis("H-conv", "G", "conv", 0.5, 0.5)).await;
    upsert(
        &s,
        vec![
            item("web", "1", "One-tap checkout"),
            item("web", "2", "Better search"),
        ],
    )
    .await;
    link(&s, "web/1", "H-pay", 1.0).await;
    link(&s, "web/2", "H-conv", 1.0).await;

    // The outcome is a metric like any other: the item's score uses its gap.
    let value = 6.0 / 7.0 * 0.5 * 0.3;
    assert!(close(item_score(&s, "web/1").await.value, value));

    let t = rollup(&s).await;
    assert_eq!(t.unserved_segment_ids, ["agency"]);
    let ids: Vec<&str> = t
        .segments
        .iter()
        .map(|r| r.segment.as_ref().unwrap().id.as_str())
        .collect();
    assert_eq!(ids, ["agency", "mobile"]);
    let (agency, mobile) = (&t.segments[0], &t.segments[1]);
    assert!(close(mobile.share, 0.75));
    // mean(5/10, 0/10) x 0.75
    assert!(
        close(mobile.weighted_gap, 0.1875),
        "{}",
        mobile.weighted_gap
    );
    assert!(close(mobile.addressed, value));
    assert!(close(mobile.coverage, value / 0.1875));
    assert_eq!(mobile.item_count, 1);
    assert_eq!(mobile.items[0].item_key, "web/1");
    assert_eq!(mobile.items[0].title, "One-tap checkout");
    assert!(!mobile.unserved);
    let gaps: Vec<(&str, Option<f64>, Option<f64>, bool)> = mobile
        .outcomes
        .iter()
        .map(|o| (o.id.as_str(), o.gap, o.opportunity, o.underserved))
        .collect();
    assert_eq!(
        gaps,
        [
            ("find-items", Some(0.0), Some(5.0), false),
            ("pay-fast", Some(5.0), Some(14.0), true)
        ]
    );
    assert!(close(agency.share, 0.25));
    assert!(close(agency.weighted_gap, 0.05), "0.25 x 2/10");
    assert_eq!((agency.addressed, agency.coverage), (0.0, 0.0));
    assert!(agency.unserved && agency.items.is_empty());

    // Closing the item leaves mobile unserved too: only open items count.
    upsert(&s, vec![closed(item("web", "1", "One-tap checkout"))]).await;
    assert_eq!(rollup(&s).await.unserved_segment_ids, ["agency", "mobile"]);
}

#[tokio::test]
async fn a_hypothesis_on_a_desired_outcome_is_validated_by_the_next_wave() {
    // One wave a side of the release is enough here: survey waves are
    // rare, so the test asks for one point each side (the default is 3).
    let s = TestServer::start_with_config(|c| c.validation.min_points = 1).await;
    segment(&s, "mobile", "Mobile shoppers", 1.0).await;
    outcome(
        &s,
        "pay-fast",
        "mobile",
        "Minimize the time it takes to pay on a phone",
    )
    .await;
    waves(&s, vec![wave("pay-fast", 80, 8.0, 4.0, 100)])
        .await
        .unwrap();
    create_source(&s, github_source("web")).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_hypothesis(&s, hypothesis("H-pay", "G", "pay-fast", 0.5, 0.5)).await;
    upsert(&s, vec![item("web", "1", "One-tap checkout")]).await;
    link(&s, "web/1", "H-pay", 1.0).await;
    let validation =
        || pb::validation_service_client::ValidationServiceClient::new(s.channel.clone());
    validation()
        .record_release(pb::RecordReleaseRequest {
            release_id: "rel-1".into(),
            item_keys: vec!["web/1".into()],
            release_time: Some(days_ago(50)),
            note: String::new(),
        })
        .await
        .unwrap();

    let validate = || async {
        validation()
            .validate_releases(pb::ValidateReleasesRequest {
                include_open_windows: false,
                as_of: None,
                dry_run: false,
            })
            .await
            .unwrap()
            .into_inner()
            .evidence
    };
    // Before the next wave there is nothing after the release to judge by.
    let ev = validate().await;
    assert!(
        ev.iter()
            .all(|e| e.outcome == pb::EvidenceOutcome::InsufficientData as i32),
        "{ev:?}"
    );
    let before = s
        .model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H-pay".into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert_eq!(before.confidence, Some(0.5));

    // The next wave: satisfaction 4 -> 7, half of the gap to 10, as
    // the hypothesis expected.
    waves(&s, vec![wave("pay-fast", 10, 8.0, 7.0, 110)])
        .await
        .unwrap();
    let ev: Vec<pb::Evidence> = validate()
        .await
        .into_iter()
        .filter(|e| e.outcome != pb::EvidenceOutcome::InsufficientData as i32)
        .collect();
    assert_eq!(ev.len(), 1, "{ev:?}");
    let e = &ev[0];
    assert_eq!(
        (e.hypothesis_id.as_str(), e.subject_id.as_str()),
        ("H-pay", "rel-1")
    );
    assert!(close(e.realized_effect.unwrap(), 0.5), "{e:?}");
    assert_eq!(e.outcome, pb::EvidenceOutcome::Supports as i32);
    let h = s
        .model()
        .get_hypothesis(pb::GetHypothesisRequest { id: "H-pay".into() })
        .await
        .unwrap()
        .into_inner()
        .hypothesis
        .unwrap();
    assert!(h.confidence.unwrap() > 0.5, "{h:?}");
    assert_eq!(h.status, pb::HypothesisStatus::Validated as i32, "{h:?}");
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_half_written() {
    let s = TestServer::start().await;
    customer_model(&s).await;
    let mut future = wave("pay-fast", 0, 5.0, 5.0, 10);
    future.survey_time = Some(ts(chrono::Utc::now() + chrono::Duration::days(2)));
    let r = waves(
        &s,
        vec![
            wave("pay-fast", 5, 8.0, 5.0, 10),
            future,
            wave("pay-fast", 4, f64::NAN, 5.0, 10),
            wave("pay-fast", 3, 8.0, 10.5, 10),
            wave("pay-fast", 2, 8.0, 5.0, 0),
            pb::SurveyWave {
                survey_time: None,
                ..wave("pay-fast", 1, 8.0, 5.0, 10)
            },
        ],
    )
    .await;
    assert_invalid(
        r,
        &[
            "waves[1].survey_time",
            "waves[2].importance",
            "waves[3].satisfaction",
            "waves[4].respondents",
            "waves[5].survey_time",
        ],
    );
    assert_invalid(
        waves(
            &s,
            vec![
                wave("nope", 5, 8.0, 5.0, 10),
                wave("pay-fast", 5, 8.0, 5.0, 10),
            ],
        )
        .await,
        &["waves[0].outcome_id"],
    );
    assert_eq!(
        get_outcome(&s, "pay-fast").await.waves.len(),
        2,
        "all or nothing"
    );
    // An outcome keeps at most 1000 waves: 999 more fit, 1000 more do not.
    let many = |n: i64| {
        (0..n)
            .map(|h| pb::SurveyWave {
                survey_time: Some(ts(chrono::Utc::now() - chrono::Duration::hours(h + 1))),
                ..wave("api-docs", 0, 7.0, 5.0, 3)
            })
            .collect::<Vec<_>>()
    };
    assert_code(waves(&s, many(1000)).await, Code::FailedPrecondition);
    assert_eq!(get_outcome(&s, "api-docs").await.waves.len(), 1);
    assert_eq!(waves(&s, many(999)).await.unwrap().stored, 999);
    let listed = customers(&s)
        .list_desired_outcomes(pb::ListDesiredOutcomesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.outcomes.iter().all(|o| o.waves.is_empty()),
        "lists leave waves out"
    );
    assert_eq!(listed.outcomes[0].wave_count, 1000);

    let seg = |weight: f64| pb::UpsertSegmentRequest {
        segment: Some(pb::Segment {
            id: "x".into(),
            name: "X".into(),
            weight,
            ..Default::default()
        }),
    };
    assert_invalid(
        customers(&s).upsert_segment(seg(0.0)).await,
        &["segment.weight"],
    );
    assert_invalid(
        customers(&s).upsert_segment(seg(2e6)).await,
        &["segment.weight"],
    );
    assert_invalid(
        customers(&s).upsert_segment(seg(f64::NAN)).await,
        &["segment.weight"],
    );
    let out = |id: &str, segment_id: &str| pb::UpsertDesiredOutcomeRequest {
        outcome: Some(pb::DesiredOutcome {
            id: id.into(),
            segment_id: segment_id.into(),
            statement: "Something".into(),
            ..Default::default()
        }),
    };
    assert_invalid(
        customers(&s)
            .upsert_desired_outcome(out("o", "nowhere"))
            .await,
        &["outcome.segment_id"],
    );
    assert_invalid(
        customers(&s)
            .upsert_desired_outcome(out("bad id", "mobile"))
            .await,
        &["outcome.id"],
    );
    create_metric(&s, metric("conv", 2.0, 3.0)).await;
    assert_code(
        customers(&s)
            .upsert_desired_outcome(out("conv", "mobile"))
            .await,
        Code::AlreadyExists,
    );

    // The outcome's metric follows the outcome only.
    assert_code(
        s.model()
            .delete_metric(pb::DeleteMetricRequest {
                id: "pay-fast".into(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert_code(
        s.model()
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![observation("pay-fast", 9.0, None)],
            })
            .await,
        Code::FailedPrecondition,
    );
    let st = assert_code(
        customers(&s)
            .delete_segment(pb::DeleteSegmentRequest {
                id: "mobile".into(),
            })
            .await,
        Code::FailedPrecondition,
    );
    assert!(st.message().contains("pay-fast"), "{st:?}");
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_hypothesis(&s, hypothesis("H-pay", "G", "pay-fast", 0.5, 0.5)).await;
    assert_code(
        customers(&s)
            .delete_desired_outcome(pb::DeleteDesiredOutcomeRequest {
                id: "pay-fast".into(),
            })
            .await,
        Code::FailedPrecondition,
    );
    // Deleted in order, everything goes, the metric with it.
    for id in ["find-items", "api-docs"] {
        customers(&s)
            .delete_desired_outcome(pb::DeleteDesiredOutcomeRequest { id: id.into() })
            .await
            .unwrap();
    }
    assert_code(
        s.model()
            .get_metric(pb::GetMetricRequest {
                id: "find-items".into(),
            })
            .await,
        Code::NotFound,
    );
    customers(&s)
        .delete_segment(pb::DeleteSegmentRequest {
            id: "agency".into(),
        })
        .await
        .unwrap();
    assert_code(
        customers(&s)
            .get_segment(pb::GetSegmentRequest {
                id: "agency".into(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_restart_keeps_segments_outcomes_waves_and_the_roll_up() {
    let s = TestServer::start().await;
    customer_model(&s).await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_hypothesis(&s, hypothesis("H-pay", "G", "pay-fast", 0.5, 0.3)).await;
    let before_outcomes = customers(&s)
        .list_desired_outcomes(pb::ListDesiredOutcomesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let before_rollup = rollup(&s).await;
    let before_metric = s
        .model()
        .get_metric(pb::GetMetricRequest {
            id: "pay-fast".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let s = s.restart().await;
    let after_outcomes = customers(&s)
        .list_desired_outcomes(pb::ListDesiredOutcomesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before_outcomes, after_outcomes);
    assert_eq!(before_outcomes.outcomes.len(), 3);
    let after_metric = s
        .model()
        .get_metric(pb::GetMetricRequest {
            id: "pay-fast".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let strip = |mut m: pb::GetMetricResponse| {
        // Staleness is computed at read time; everything else must match.
        if let Some(x) = m.metric.as_mut() {
            x.stale = false;
        }
        m
    };
    assert_eq!(strip(before_metric), strip(after_metric));
    assert_eq!(before_rollup, rollup(&s).await);
    let segs = customers(&s)
        .list_segments(pb::ListSegmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        segs.segments
            .iter()
            .map(|x| (x.id.as_str(), x.weight))
            .collect::<Vec<_>>(),
        [("agency", 1.0), ("mobile", 3.0)]
    );
}

fn model_files(s: &TestServer) -> pb::model_file_service_client::ModelFileServiceClient<Channel> {
    pb::model_file_service_client::ModelFileServiceClient::new(s.channel.clone())
}

async fn apply(
    s: &TestServer,
    document: &str,
    prune: bool,
) -> Result<pb::ApplyValueModelResponse, tonic::Status> {
    model_files(s)
        .apply_value_model(pb::ApplyValueModelRequest {
            document: document.into(),
            file_name: "product.toml".into(),
            dry_run: false,
            prune,
            force: false,
        })
        .await
        .map(|r| r.into_inner())
}

async fn export(s: &TestServer) -> String {
    model_files(s)
        .export_value_model(pb::ExportValueModelRequest {
            include_state: true,
            include_observations: true,
            include_insights: false,
        })
        .await
        .unwrap()
        .into_inner()
        .document
}

const CUSTOMERS_FILE: &str = r#"
[[goals]]
id = "G"
title = "Checkout people finish"
level = "strategic"

[[hypotheses]]
id = "H-pay"
statement = "One-tap pay makes paying on a phone quick"
goal = "G"
metric = "pay-fast"
expected_effect = 0.5

[[segments]]
id = "mobile"
name = "Mobile shoppers"
description = "Buy on a phone"
weight = 3

[[segments]]
id = "agency"
name = "Agencies"
weight = 1

[[outcomes]]
id = "pay-fast"
segment = "mobile"
statement = "Minimize the time it takes to pay on a phone"

[[outcomes.waves]]
at = 2026-09-01T00:00:00Z
importance = 8
satisfaction = 3
respondents = 100

[[outcomes.waves]]
at = 2026-11-01T00:00:00Z
importance = 9
satisfaction = 4
respondents = 120

[[outcomes]]
id = "api-docs"
segment = "agency"
statement = "Minimize the time to a first API call"
"#;

#[tokio::test]
async fn segments_and_outcomes_round_trip_through_the_model_file() {
    let s = TestServer::start().await;
    let plan = apply(&s, CUSTOMERS_FILE, false).await.expect("apply");
    assert!(plan.applied);
    let kinds: Vec<(String, String)> = plan
        .changes
        .iter()
        .filter(|c| ["segment", "outcome", "wave"].contains(&c.kind.as_str()))
        .map(|c| (c.kind.clone(), c.id.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("segment".to_string(), "mobile".to_string()),
            ("segment".into(), "agency".into()),
            ("outcome".into(), "pay-fast".into()),
            ("wave".into(), "pay-fast@2026-09-01T00:00:00Z".into()),
            ("wave".into(), "pay-fast@2026-11-01T00:00:00Z".into()),
            ("outcome".into(), "api-docs".into()),
        ]
    );
    // The hypothesis names the outcome's metric, created in the same file.
    let pay = get_outcome(&s, "pay-fast").await;
    assert_eq!(
        (pay.gap, pay.opportunity, pay.underserved),
        (Some(5.0), Some(14.0), true)
    );
    let m = s
        .model()
        .get_metric(pb::GetMetricRequest {
            id: "pay-fast".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .metric
        .unwrap();
    assert_eq!(
        (m.baseline, m.target, m.current_value),
        (3.0, 10.0, Some(4.0))
    );

    // Export, apply to a fresh server, export again: the same text, and
    // applying the export where it came from plans nothing.
    let doc = export(&s).await;
    assert!(
        doc.contains("[[segments]]") && doc.contains("[[outcomes.waves]]"),
        "{doc}"
    );
    assert!(
        !doc.contains("[[metrics]]"),
        "an outcome's metric goes with its outcome:\n{doc}"
    );
    let again = apply(&s, &doc, false).await.unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    let fresh = TestServer::start().await;
    apply(&fresh, &doc, false).await.expect("apply the export");
    let strip = |d: String| {
        d.lines()
            .skip_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(export(&fresh).await), strip(doc.clone()));
    assert_eq!(get_outcome(&fresh, "pay-fast").await.waves, pay.waves);

    // A corrected wave is an update; a wave twice, an unknown segment and
    // an outcome listed as a metric are refused, placed in the file.
    let corrected = CUSTOMERS_FILE.replace("satisfaction = 4", "satisfaction = 5");
    let plan = apply(&s, &corrected, false).await.unwrap();
    assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
    assert_eq!(plan.changes[0].kind, "wave");
    assert_eq!(get_outcome(&s, "pay-fast").await.gap, Some(4.0));
    let bad = format!(
        "{CUSTOMERS_FILE}\n[[outcomes]]\nid = \"x\"\nsegment = \"nowhere\"\nstatement = \"X\"\n\
         [[outcomes.waves]]\nat = 2026-11-01T00:00:00Z\nimportance = 11\nsatisfaction = 4\nrespondents = 0\n\
         [[metrics]]\nid = \"api-docs\"\nname = \"Docs\"\nbaseline = 0\ntarget = 1\n"
    );
    let err = apply(&s, &bad, false).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut fields = bad_fields(&err);
    fields.sort();
    assert_eq!(
        fields,
        [
            "metrics[0].id",
            "outcomes[2].segment",
            "outcomes[2].waves[0].importance",
            "outcomes[2].waves[0].respondents",
        ],
        "{err:?}"
    );

    // Prune deletes what the file leaves out, the metric with its outcome.
    let without_agency = CUSTOMERS_FILE
        .split("[[segments]]\nid = \"agency\"")
        .next()
        .unwrap()
        .to_string()
        + &CUSTOMERS_FILE[CUSTOMERS_FILE.find("[[outcomes]]").unwrap()
            ..CUSTOMERS_FILE
                .find("[[outcomes]]\nid = \"api-docs\"")
                .unwrap()];
    let plan = apply(&s, &without_agency, true).await.unwrap();
    let deletes: Vec<(String, String)> = plan
        .changes
        .iter()
        .filter(|c| c.action == pb::PlannedAction::Delete as i32)
        .map(|c| (c.kind.clone(), c.id.clone()))
        .collect();
    assert_eq!(
        deletes,
        [
            ("outcome".to_string(), "api-docs".to_string()),
            ("segment".into(), "agency".into())
        ]
    );
    assert_code(
        s.model()
            .get_metric(pb::GetMetricRequest {
                id: "api-docs".into(),
            })
            .await,
        Code::NotFound,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_segments_and_outcomes_commands_drive_the_service() {
    let s = TestServer::start().await;
    let url = s.server().url();
    let url = url.as_str();
    for args in [
        &[
            "segments",
            "add",
            "mobile",
            "--name",
            "Mobile shoppers",
            "--weight",
            "3",
        ][..],
        &[
            "segments", "add", "agency", "--name", "Agencies", "--weight", "1",
        ],
        &[
            "outcomes",
            "add",
            "pay-fast",
            "--segment",
            "mobile",
            "--statement",
            "Minimize the time it takes to pay on a phone",
        ],
        &[
            "outcomes",
            "wave",
            "pay-fast",
            "--importance",
            "9",
            "--satisfaction",
            "4",
            "--respondents",
            "120",
            "--at",
            "2026-11-01",
        ],
    ] {
        let mut a = args.to_vec();
        a.extend(["--server", url, "--json"]);
        cli_json(&a).await;
    }
    let outs = cli_json(&["outcomes", "--segment", "mobile", "--server", url, "--json"]).await;
    assert_eq!(outs[0]["id"], "pay-fast");
    assert_eq!(
        (outs[0]["gap"].as_f64(), outs[0]["opportunity"].as_f64()),
        (Some(5.0), Some(14.0))
    );
    assert_eq!(outs[0]["underserved"], true);
    let rollup = cli_json(&["segments", "--server", url, "--json"]).await;
    assert_eq!(
        rollup["unserved_segment_ids"],
        serde_json::json!(["agency", "mobile"])
    );
    let out = run_cli(&["segments", "--server", url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "mobile Mobile shoppers",
        "share   75%",
        "opp 14",
        "UNDERSERVED",
        "segments no open item serves: agency, mobile",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    // A refused wave names its field, as the RPC does.
    let out = run_cli(&[
        "outcomes",
        "wave",
        "pay-fast",
        "--importance",
        "11",
        "--satisfaction",
        "4",
        "--respondents",
        "1",
        "--server",
        url,
    ])
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("waves[0].importance"), "{err}");
    let out = run_cli(&["segments", "remove", "mobile", "--server", url]).await;
    assert!(!out.status.success(), "refused while outcomes belong to it");
}
