//! Metrics that flow in (issue 20): pulls of http_json, csv and posthog
//! sources against wiremock answering in the documented shapes (and a
//! temporary file for csv): first pull, incremental pull (the request the
//! mock received asks only for what is new), the same point twice, a
//! corrected point, bad points refused and reported, failures (unreachable,
//! 401, 429 with Retry-After, 5xx, malformed JSON) that store nothing, and
//! the score changing after a pull.

use chrono::{DateTime, Duration, Utc};
use tonic::{Code, Status};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::*;
use plumbline::proto as pb;

const KEY: &str = "phx_testkey0123456789abcdef";
const STATS_TOKEN: &str = "stats-token-0123456789";

fn day(n: i64) -> DateTime<Utc> {
    // Whole days, in the past: day(0) is 30 days ago at midnight.
    let base = (Utc::now() - Duration::days(30))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    base + Duration::days(n)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn http_json_source(url: &str) -> pb::MetricSource {
    pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::HttpJson(
            pb::HttpJsonMetricSource {
                url: url.into(),
                points_pointer: "/data/points".into(),
                time_field: "day".into(),
                value_field: "rate".into(),
                since_param: "since".into(),
                header_name: "X-Stats-Token".into(),
                header_env: "PLB_TEST_STATS_TOKEN".into(),
            },
        )),
    }
}

fn sourced(id: &str, source: pb::MetricSource) -> pb::Metric {
    pb::Metric {
        source: Some(source),
        ..metric(id, 2.0, 4.0)
    }
}

/// Runs a pull to its end: the Fetched events, then Done or the status.
pub(super) async fn pull(
    s: &TestServer,
    id: &str,
) -> Result<(Vec<pb::PullFetched>, pb::PullDone), Status> {
    let mut stream = s
        .model()
        .pull_metric(pb::PullMetricRequest {
            metric_id: id.into(),
        })
        .await?
        .into_inner();
    let mut fetched = Vec::new();
    while let Some(m) = stream.message().await? {
        match m.event {
            Some(pb::pull_metric_response::Event::Fetched(f)) => fetched.push(f),
            Some(pb::pull_metric_response::Event::Done(d)) => return Ok((fetched, d)),
            None => {}
        }
    }
    panic!("the pull stream ended without Done");
}

/// `http://127.0.0.1:PORT` where nothing listens (a wiremock server
/// dropped goes back to its pool and still answers, so a bare port).
pub(super) fn gone_url() -> String {
    format!("http://127.0.0.1:{}", super::realdeps::free_port())
}

/// Points metric `id` at `source` (UpdateMetric with the `source` mask).
pub(super) async fn set_source(s: &TestServer, id: &str, source: pb::MetricSource) {
    s.model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                id: id.into(),
                source: Some(source),
                ..Default::default()
            }),
            update_mask: mask(&["source"]),
        })
        .await
        .expect("UpdateMetric source");
}

pub(super) async fn get_metric(s: &TestServer, id: &str) -> pb::Metric {
    s.model()
        .get_metric(pb::GetMetricRequest { id: id.into() })
        .await
        .expect("GetMetric")
        .into_inner()
        .metric
        .expect("metric")
}

pub(super) async fn observations(s: &TestServer, id: &str) -> Vec<(i64, f64)> {
    let t = s.channel.clone();
    let mut c = pb::validation_service_client::ValidationServiceClient::new(t);
    let r = c
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: id.into(),
        })
        .await
        .expect("GetMetricTrend")
        .into_inner();
    r.points
        .iter()
        .map(|p| {
            (
                p.observe_time.as_ref().map(|t| t.seconds).unwrap_or(0),
                p.value,
            )
        })
        .collect()
}

fn points(rows: &[(DateTime<Utc>, serde_json::Value)]) -> serde_json::Value {
    let pts: Vec<serde_json::Value> = rows
        .iter()
        .map(|(t, v)| serde_json::json!({"day": rfc(*t), "rate": v}))
        .collect();
    serde_json::json!({"data": {"points": pts}})
}

async fn start() -> TestServer {
    set_test_token("PLB_TEST_STATS_TOKEN", STATS_TOKEN);
    TestServer::start().await
}

#[tokio::test]
async fn http_json_first_incremental_same_and_corrected_points() {
    let s = start().await;
    let mock = MockServer::start().await;
    let url = format!("{}/conv", mock.uri());
    create_metric(&s, sourced("conv", http_json_source(&url))).await;

    // First pull: no since parameter, three points.
    Mock::given(method("GET"))
        .and(path("/conv"))
        .and(header("X-Stats-Token", STATS_TOKEN))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[
            (day(0), 2.0.into()),
            (day(1), 2.5.into()),
            (day(2), 3.0.into()),
        ])))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    let (fetched, done) = pull(&s, "conv").await.expect("first pull");
    assert_eq!(fetched[0].point_count, 3);
    assert_eq!(done.stored_count, 3);
    let m = done.metric.expect("metric");
    assert_eq!(m.current_value, Some(3.0));
    assert_eq!(m.observation_count, 3);
    let st = m.pull_status.expect("pull status");
    assert_eq!(st.last_stored_count, 3);
    assert!(st.last_error.is_empty(), "{st:?}");
    assert!(
        mock.received_requests().await.unwrap()[0]
            .url
            .query()
            .is_none()
    );

    // Incremental: asks since the last stored point; that point again (the
    // same value) is not stored twice, the new one is.
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path("/conv"))
        .and(query_param("since", rfc(day(2))))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(points(&[(day(2), 3.0.into()), (day(3), 3.2.into())])),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("incremental pull");
    assert_eq!(done.stored_count, 1, "only the new point");
    let m = done.metric.expect("metric");
    assert_eq!(m.observation_count, 4, "the same point is stored once");
    assert_eq!(m.current_value, Some(3.2));
    mock.verify().await;

    // A corrected value for the same time replaces the old one.
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path("/conv"))
        .and(query_param("since", rfc(day(3))))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[(day(3), 3.4.into())])))
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("corrected pull");
    assert_eq!(done.stored_count, 1);
    let m = done.metric.expect("metric");
    assert_eq!(m.observation_count, 4);
    assert_eq!(m.current_value, Some(3.4));
    assert_eq!(
        observations(&s, "conv").await,
        vec![
            (day(0).timestamp(), 2.0),
            (day(1).timestamp(), 2.5),
            (day(2).timestamp(), 3.0),
            (day(3).timestamp(), 3.4)
        ]
    );

    // GetMetric and a restart show the source and the pull status.
    let s = s.restart().await;
    let m = get_metric(&s, "conv").await;
    assert!(matches!(
        m.source.and_then(|x| x.kind),
        Some(pb::metric_source::Kind::HttpJson(h)) if h.points_pointer == "/data/points"
    ));
    assert_eq!(m.pull_status.expect("status").last_stored_count, 1);
}

#[tokio::test]
async fn http_json_bad_points_are_refused_and_reported_never_stored() {
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(
        &s,
        sourced("conv", http_json_source(&format!("{}/conv", mock.uri()))),
    )
    .await;
    let future = Utc::now() + Duration::days(2);
    Mock::given(method("GET"))
        .and(path("/conv"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[
            (day(0), 2.0.into()),
            (day(1), "n/a".into()),
            (day(2), serde_json::Value::Null),
            (future, 9.0.into()),
            (day(3), 1e300.into()),
        ])))
        .mount(&mock)
        .await;
    let (fetched, done) = pull(&s, "conv").await.expect("pull");
    assert_eq!(fetched[0].point_count, 5);
    assert_eq!(fetched[0].refused_count, 4, "{:?}", fetched[0].refused);
    assert!(
        fetched[0]
            .refused
            .iter()
            .any(|r| r.contains("in the future")),
        "{:?}",
        fetched[0].refused
    );
    assert!(
        fetched[0].refused.iter().any(|r| r.contains("\"n/a\"")),
        "{:?}",
        fetched[0].refused
    );
    assert_eq!(done.stored_count, 1);
    assert_eq!(done.refused_count, 4);
    let m = get_metric(&s, "conv").await;
    assert_eq!(m.observation_count, 1);
    assert_eq!(m.current_value, Some(2.0));
    let st = m.pull_status.expect("status");
    assert_eq!(st.last_refused_count, 4);
    assert!(st.last_error.contains("4 point(s) refused"), "{st:?}");
}

/// A failed pull answers UNAVAILABLE or FAILED_PRECONDITION naming the
/// metric, the kind and the cause (never the secret), stores nothing and
/// keeps the points stored before.
pub(super) async fn assert_failed_pull(s: &TestServer, id: &str, code: Code, cause: &str) {
    let before = get_metric(s, id).await;
    let e = pull(s, id).await.expect_err("the pull fails");
    assert_eq!(e.code(), code, "{e:?}");
    let msg = e.message();
    assert!(msg.contains(&format!("metric \"{id}\"")), "{msg}");
    assert!(msg.contains(cause), "{msg}");
    assert!(!msg.contains(STATS_TOKEN) && !msg.contains(KEY), "{msg}");
    let after = get_metric(s, id).await;
    assert_eq!(after.observation_count, before.observation_count);
    assert_eq!(after.current_value, before.current_value);
    let st = after.pull_status.expect("status");
    assert!(st.last_error.contains(cause), "{st:?}");
    assert!(!st.last_error.contains(STATS_TOKEN), "{st:?}");
}

#[tokio::test]
async fn http_json_failures_store_nothing_and_say_why() {
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(
        &s,
        sourced("conv", http_json_source(&format!("{}/conv", mock.uri()))),
    )
    .await;
    record(
        &s,
        vec![pb::Observation {
            metric_id: "conv".into(),
            value: 2.2,
            observe_time: Some(ts(day(0))),
        }],
    )
    .await;

    // 401, with a body that echoes the token: the token never shows.
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(serde_json::json!({"error": format!("bad token {STATS_TOKEN}")})),
        )
        .mount(&mock)
        .await;
    assert_failed_pull(
        &s,
        "conv",
        Code::FailedPrecondition,
        "http_json source: the service refused the credentials (401)",
    )
    .await;

    // 5xx, every time: retried, then given up.
    mock.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(503).set_body_json(serde_json::json!({"message": "maintenance"})),
        )
        .mount(&mock)
        .await;
    assert_failed_pull(&s, "conv", Code::Unavailable, "HTTP 503").await;
    assert!(mock.received_requests().await.unwrap().len() > 1, "retried");

    // Malformed JSON.
    mock.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("{\"data\": [1, 2"))
        .mount(&mock)
        .await;
    assert_failed_pull(&s, "conv", Code::Unavailable, "malformed answer: not JSON").await;

    // The pointer names nothing.
    mock.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"data": {}})))
        .mount(&mock)
        .await;
    assert_failed_pull(
        &s,
        "conv",
        Code::Unavailable,
        "nothing at the JSON Pointer \"/data/points\"",
    )
    .await;

    // Unreachable: nothing listens there any more.
    set_source(
        &s,
        "conv",
        http_json_source(&format!("{}/conv", gone_url())),
    )
    .await;
    assert_failed_pull(&s, "conv", Code::Unavailable, "http_json source").await;
}

#[tokio::test]
async fn http_json_waits_out_429_with_retry_after() {
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(
        &s,
        sourced("conv", http_json_source(&format!("{}/conv", mock.uri()))),
    )
    .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[(day(0), 2.5.into())])))
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("pull after the wait");
    assert_eq!(done.stored_count, 1);
    assert_eq!(mock.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_pull_of_each_kind_changes_the_score_of_the_items_it_reaches() {
    set_test_token("PLB_TEST_POSTHOG_KEY", KEY);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("conv.csv"),
        format!("at,value\n{},3.0\n", rfc(day(0))),
    )
    .unwrap();
    let csv_dir = dir.path().to_path_buf();
    set_test_token("PLB_TEST_STATS_TOKEN", STATS_TOKEN);
    let s = TestServer::start_with_config(move |c| c.pulls.csv_dir = Some(csv_dir)).await;
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/conv"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[(day(0), 3.0.into())])))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/projects/4242/query/"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(hogql_answer(&[(day(0), 3.0.into())])),
        )
        .mount(&mock)
        .await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_source(
        &s,
        pb::Source {
            id: "app".into(),
            kind: pb::TrackerKind::Push as i32,
            ..Default::default()
        },
    )
    .await;
    let kinds = [
        ("json", http_json_source(&format!("{}/conv", mock.uri()))),
        ("csv", csv_source("conv.csv", "")),
        ("ph", posthog_source(&mock.uri(), HOGQL, "")),
    ];
    for (i, (id, src)) in kinds.iter().enumerate() {
        create_metric(&s, sourced(id, src.clone())).await;
        create_hypothesis(&s, hypothesis(&format!("H-{id}"), "G", id, 0.5, 0.5)).await;
        upsert(&s, vec![item("app", &i.to_string(), "Faster checkout")]).await;
        link(&s, &format!("app/{i}"), &format!("H-{id}"), 1.0).await;
    }
    for (i, (id, _)) in kinds.iter().enumerate() {
        let key = format!("app/{i}");
        let before = item_score(&s, &key).await.value;
        pull(&s, id).await.unwrap_or_else(|e| panic!("{id}: {e:?}"));
        let after = item_score(&s, &key).await.value;
        // Gap from 1 (no observation: the baseline) to 0.5 (3 of 2..4).
        assert!(
            after > 0.0 && (before - 2.0 * after).abs() < 1e-9,
            "{id}: before {before}, after {after}"
        );
    }
}

#[tokio::test]
async fn a_metric_without_a_source_is_refused_and_a_prometheus_source_reads_back() {
    let s = start().await;
    create_metric(&s, metric("plain", 1.0, 2.0)).await;
    let e = pull(&s, "plain").await.expect_err("no source");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("has no source"), "{}", e.message());

    let prom = pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Prometheus(
            pb::PrometheusMetricSource {
                base_url: "http://127.0.0.1:9090".into(),
                query: "sum(rate(http_requests_total[5m]))".into(),
                step: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                lookback: None,
                bearer_token_env: "PLB_TEST_PROM".into(),
                basic_username: String::new(),
                basic_password_env: String::new(),
            },
        )),
    };
    let m = create_metric(&s, sourced("latency", prom)).await;
    let Some(pb::metric_source::Kind::Prometheus(p)) = m.source.and_then(|x| x.kind) else {
        panic!("a prometheus source");
    };
    assert_eq!(
        p.step.map(|d| d.seconds),
        Some(86_400),
        "the step reads back"
    );
    assert_eq!(p.bearer_token_env, "PLB_TEST_PROM");
    // Its variable is not set: the pull says so, naming the variable.
    let e = pull(&s, "latency").await.expect_err("no token");
    assert!(
        e.message()
            .contains("metric \"latency\": prometheus metric source"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("PLB_TEST_PROM"), "{}", e.message());
    assert_code(pull(&s, "nope").await, Code::NotFound);
}

#[tokio::test]
async fn sources_are_checked_when_written() {
    let s = start().await;
    let mut src = http_json_source("ftp://example.com/x");
    if let Some(pb::metric_source::Kind::HttpJson(h)) = &mut src.kind {
        h.points_pointer = "data".into();
    }
    let r = s
        .model()
        .create_metric(pb::CreateMetricRequest {
            metric: Some(sourced("m", src)),
        })
        .await;
    assert_invalid(
        r,
        &[
            "metric.source.http_json.url",
            "metric.source.http_json.points_pointer",
        ],
    );

    // A variable the outbound policy does not allow.
    let mut src = http_json_source("http://127.0.0.1:1/x");
    if let Some(pb::metric_source::Kind::HttpJson(h)) = &mut src.kind {
        h.header_env = "HOME".into();
    }
    let r = s
        .model()
        .create_metric(pb::CreateMetricRequest {
            metric: Some(sourced("m", src)),
        })
        .await;
    let e = assert_code(r, Code::InvalidArgument);
    assert!(
        e.message().contains("HOME") || format!("{:?}", bad_fields(&e)).contains("http_json"),
        "{e:?}"
    );

    // Set through the mask, then cleared by naming it without a value.
    create_metric(&s, metric("m", 1.0, 2.0)).await;
    let with = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(sourced("m", http_json_source("http://127.0.0.1:1/x"))),
            update_mask: mask(&["source"]),
        })
        .await
        .expect("set source")
        .into_inner()
        .metric
        .expect("metric");
    assert!(with.source.is_some());
    let without = s
        .model()
        .update_metric(pb::UpdateMetricRequest {
            metric: Some(pb::Metric {
                id: "m".into(),
                ..Default::default()
            }),
            update_mask: mask(&["source"]),
        })
        .await
        .expect("clear source")
        .into_inner()
        .metric
        .expect("metric");
    assert!(without.source.is_none());
}

// ----- csv -----

fn csv_source(location: &str, since_param: &str) -> pb::MetricSource {
    pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Csv(pb::CsvMetricSource {
            location: location.into(),
            since_param: since_param.into(),
        })),
    }
}

#[tokio::test]
async fn csv_file_first_incremental_same_corrected_and_bad_rows() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("conv.csv");
    let csv_dir = dir.path().to_path_buf();
    let s = TestServer::start_with_config(move |c| c.pulls.csv_dir = Some(csv_dir)).await;
    std::fs::write(
        &file,
        format!("at,value\n{},2.0\n{},2.5\n", rfc(day(0)), rfc(day(1))),
    )
    .unwrap();
    create_metric(&s, sourced("conv", csv_source("conv.csv", ""))).await;
    let (_, done) = pull(&s, "conv").await.expect("first");
    assert_eq!(done.stored_count, 2);

    // The file grows, repeats its last row with a correction, and has a
    // bad row and a point in the future.
    std::fs::write(
        &file,
        format!(
            "at,value\n{},2.0\n{},2.7\n{},oops\n{},3.0\n{},5\n",
            rfc(day(0)),
            rfc(day(1)),
            rfc(day(2)),
            rfc(day(3)),
            rfc(Utc::now() + Duration::days(3)),
        ),
    )
    .unwrap();
    let (fetched, done) = pull(&s, "conv").await.expect("second");
    assert_eq!(fetched[0].refused_count, 2, "{:?}", fetched[0].refused);
    assert!(
        fetched[0]
            .refused
            .iter()
            .any(|r| r.contains("line 4") && r.contains("\"oops\"")),
        "{:?}",
        fetched[0].refused
    );
    // day 0 is older than the last stored point: not stored again; day 1
    // corrected; day 3 new.
    assert_eq!(done.stored_count, 2);
    assert_eq!(
        observations(&s, "conv").await,
        vec![
            (day(0).timestamp(), 2.0),
            (day(1).timestamp(), 2.7),
            (day(3).timestamp(), 3.0)
        ]
    );
    // The same file again stores nothing.
    let (_, done) = pull(&s, "conv").await.expect("third");
    assert_eq!(done.stored_count, 0);

    // A file outside csv_dir is refused, however it is named.
    let elsewhere = tempfile::tempdir().expect("dir");
    let outside = elsewhere.path().join("secret.csv");
    std::fs::write(&outside, format!("{},9\n", rfc(day(5)))).unwrap();
    let relative = format!(
        "../{}/secret.csv",
        elsewhere.path().file_name().unwrap().to_string_lossy()
    );
    for location in [outside.to_string_lossy().to_string(), relative] {
        s.model()
            .update_metric(pb::UpdateMetricRequest {
                metric: Some(sourced("conv", csv_source(&location, ""))),
                update_mask: mask(&["source"]),
            })
            .await
            .expect("update");
        let e = pull(&s, "conv").await.expect_err("outside");
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        assert!(
            e.message().contains("outside the server's csv_dir"),
            "{}",
            e.message()
        );
    }
    assert_eq!(get_metric(&s, "conv").await.observation_count, 3);
}

#[tokio::test]
async fn csv_over_http_asks_only_for_new_rows() {
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(
        &s,
        sourced(
            "conv",
            csv_source(&format!("{}/export.csv", mock.uri()), "from"),
        ),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/export.csv"))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "{},2.0\r\n{},2.5\r\n",
            day(0).format("%Y-%m-%d"),
            day(1).format("%Y-%m-%d")
        )))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("first");
    assert_eq!(done.stored_count, 2);
    mock.reset().await;
    Mock::given(method("GET"))
        .and(path("/export.csv"))
        .and(query_param("from", rfc(day(1))))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!(
            "{},2.5\n{},2.9\n",
            day(1).format("%Y-%m-%d"),
            day(2).format("%Y-%m-%d")
        )))
        .expect(1)
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("second");
    assert_eq!(done.stored_count, 1);
    assert_eq!(done.metric.expect("m").current_value, Some(2.9));
    mock.verify().await;

    mock.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&mock)
        .await;
    assert_failed_pull(&s, "conv", Code::Unavailable, "csv source").await;
}

// ----- posthog -----

fn posthog_source(base: &str, hogql: &str, trend_event: &str) -> pb::MetricSource {
    pb::MetricSource {
        poll_interval: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        kind: Some(pb::metric_source::Kind::Posthog(pb::PosthogMetricSource {
            base_url: base.into(),
            project_id: "4242".into(),
            api_key_env: "PLB_TEST_POSTHOG_KEY".into(),
            hogql: hogql.into(),
            trend_event: trend_event.into(),
            trend_math: String::new(),
        })),
    }
}

const HOGQL: &str = "SELECT toStartOfDay(timestamp) AS day, countIf(event = 'purchase') / count() * 100 FROM events WHERE timestamp >= {since} GROUP BY day ORDER BY day";

/// PostHog's HogQLQuery answer: columns, types, results as rows.
fn hogql_answer(rows: &[(DateTime<Utc>, serde_json::Value)]) -> serde_json::Value {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|(t, v)| serde_json::json!([t.format("%Y-%m-%dT%H:%M:%SZ").to_string(), v]))
        .collect();
    serde_json::json!({
        "cache_key": "cache_3f1e2a",
        "clickhouse": "SELECT ...",
        "columns": ["day", "rate"],
        "error": null,
        "hasMore": false,
        "hogql": HOGQL,
        "is_cached": false,
        "limit": 100,
        "offset": 0,
        "query": HOGQL,
        "results": results,
        "timezone": "UTC",
        "types": [["day", "DateTime('UTC')"], ["rate", "Float64"]]
    })
}

#[tokio::test]
async fn posthog_hogql_first_and_incremental_pull() {
    set_test_token("PLB_TEST_POSTHOG_KEY", KEY);
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(&s, sourced("conv", posthog_source(&mock.uri(), HOGQL, ""))).await;
    Mock::given(method("POST"))
        .and(path("/api/projects/4242/query/"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(serde_json::json!({
            "query": {"kind": "HogQLQuery", "query": HOGQL, "values": {"since": "1970-01-01T00:00:00Z"}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(hogql_answer(&[
            (day(0), 2.0.into()),
            (day(1), 2.4.into()),
        ])))
        .expect(1)
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("first");
    assert_eq!(done.stored_count, 2);
    mock.verify().await;

    mock.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/projects/4242/query/"))
        .and(body_partial_json(serde_json::json!({
            "query": {"kind": "HogQLQuery", "values": {"since": rfc(day(1))}}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(hogql_answer(&[
            (day(1), 2.4.into()),
            (day(2), serde_json::Value::Null),
            (day(3), 3.1.into()),
        ])))
        .expect(1)
        .mount(&mock)
        .await;
    let (fetched, done) = pull(&s, "conv").await.expect("incremental");
    assert_eq!(fetched[0].refused_count, 1, "a null rate is refused");
    assert_eq!(done.stored_count, 1);
    let m = done.metric.expect("metric");
    assert_eq!(m.observation_count, 3);
    assert_eq!(m.current_value, Some(3.1));
    mock.verify().await;

    // PostHog corrects the last day (late events): the value replaces the
    // stored one, nothing is added.
    mock.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/projects/4242/query/"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(hogql_answer(&[(day(3), 3.3.into())])),
        )
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "conv").await.expect("corrected");
    assert_eq!(done.stored_count, 1);
    let m = done.metric.expect("metric");
    assert_eq!((m.observation_count, m.current_value), (3, Some(3.3)));

    // PostHog cannot be reached: nothing stored, the cause named, no key.
    set_source(&s, "conv", posthog_source(&gone_url(), HOGQL, "")).await;
    assert_failed_pull(&s, "conv", Code::Unavailable, "posthog source").await;
}

#[tokio::test]
async fn posthog_trend_and_its_documented_errors() {
    set_test_token("PLB_TEST_POSTHOG_KEY", KEY);
    let s = start().await;
    let mock = MockServer::start().await;
    create_metric(
        &s,
        sourced("signups", posthog_source(&mock.uri(), "", "user signed up")),
    )
    .await;
    // TrendsQuery: one series with days, data and labels.
    Mock::given(method("POST"))
        .and(path("/api/projects/4242/query/"))
        .and(body_partial_json(serde_json::json!({
            "query": {"kind": "TrendsQuery", "interval": "day",
                      "series": [{"kind": "EventsNode", "event": "user signed up", "math": "total"}]}
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "is_cached": false,
            "results": [{
                "action": {"id": "user signed up", "type": "events", "math": "total"},
                "count": 7.0,
                "data": [3.0, 4.0],
                "days": [day(0).format("%Y-%m-%d").to_string(), day(1).format("%Y-%m-%d").to_string()],
                "labels": ["1-Nov-2026", "2-Nov-2026"],
                "label": "user signed up"
            }],
            "timezone": "UTC"
        })))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "signups").await.expect("trend");
    assert_eq!(done.stored_count, 2);
    assert_eq!(done.metric.expect("m").current_value, Some(4.0));

    // 401 in PostHog's error shape: its detail is shown, the key never.
    mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
            "type": "authentication_error",
            "code": "authentication_failed",
            "detail": "Personal API key found in request Authorization header is invalid.",
            "attr": null
        })))
        .mount(&mock)
        .await;
    assert_failed_pull(
        &s,
        "signups",
        Code::FailedPrecondition,
        "Personal API key found in request Authorization header is invalid",
    )
    .await;

    // 429 with Retry-After (PostHog's throttling), then an answer.
    mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(serde_json::json!({
                    "type": "throttled_error",
                    "code": "throttled",
                    "detail": "Request was throttled. Expected available in 1 second.",
                    "attr": null
                })),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "results": [{"data": [5.0], "days": [day(2).format("%Y-%m-%d").to_string()], "labels": ["x"], "count": 5.0}]
        })))
        .mount(&mock)
        .await;
    let (_, done) = pull(&s, "signups").await.expect("after the throttle");
    assert_eq!(done.stored_count, 1);

    // Malformed: no results.
    mock.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"detail": "ok"})))
        .mount(&mock)
        .await;
    assert_failed_pull(&s, "signups", Code::Unavailable, "no results array").await;
}

// ----- background pulls and the CLI -----

#[tokio::test]
async fn the_server_pulls_a_metric_at_its_interval_in_the_background() {
    set_test_token("PLB_TEST_STATS_TOKEN", STATS_TOKEN);
    let s = TestServer::start_with_config(|c| c.pulls.tick_secs = 1).await;
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[(day(0), 3.0.into())])))
        .mount(&mock)
        .await;
    let mut src = http_json_source(&format!("{}/conv", mock.uri()));
    src.poll_interval = Some(prost_types::Duration {
        seconds: 3600,
        nanos: 0,
    });
    create_metric(&s, sourced("conv", src)).await;
    // A metric without an interval is never pulled in the background.
    create_metric(
        &s,
        sourced(
            "manual",
            http_json_source(&format!("{}/manual", mock.uri())),
        ),
    )
    .await;
    let mut m = get_metric(&s, "conv").await;
    for _ in 0..200 {
        if m.pull_status.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        m = get_metric(&s, "conv").await;
    }
    assert_eq!(
        m.current_value,
        Some(3.0),
        "pulled in the background: {m:?}"
    );
    assert!(get_metric(&s, "manual").await.pull_status.is_none());
    // Within its interval it is not pulled again.
    let requests = mock.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| r.url.path() == "/conv"),
        "{requests:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn cli_metrics_pull_prints_progress_and_metrics_shows_freshness() {
    let s = start().await;
    let url = s.server().url();
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&[
            (day(0), 2.0.into()),
            (day(1), "x".into()),
            (day(2), 3.5.into()),
        ])))
        .mount(&mock)
        .await;
    create_metric(
        &s,
        sourced("conv", http_json_source(&format!("{}/conv", mock.uri()))),
    )
    .await;
    create_metric(&s, metric("plain", 1.0, 2.0)).await;

    let out = run_cli(&["metrics", "pull", "conv", "--server", &url]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("conv: fetched 3 points"), "{stderr}");
    assert!(stderr.contains("refused: point [1]"), "{stderr}");
    assert!(
        stdout.contains("conv: 2 points stored, 1 refused; current value 3.5"),
        "{stdout}"
    );

    let out = run_cli(&["metrics", "--server", &url]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("source") && table.contains("pulled") && table.contains("pull error"),
        "{table}"
    );
    let conv = table
        .lines()
        .find(|l| l.contains("conv"))
        .expect("a conv row");
    assert!(
        conv.contains("http_json") && conv.contains("refused"),
        "{table}"
    );

    let rows = cli_json(&["metrics", "--json", "--server", &url]).await;
    let conv = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == "conv")
        .expect("conv")
        .clone();
    assert_eq!(conv["source_kind"], "http_json");
    assert_eq!(conv["pull_status"]["last_stored_count"], 2);

    // A metric without a source: the CLI says what to do.
    let out = run_cli(&["metrics", "pull", "plain", "--server", &url]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no source"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_pull_that_closes_a_release_window_validates_it() {
    let s = start().await;
    let mock = MockServer::start().await;
    create_goal(&s, goal("G", pb::GoalLevel::Strategic, "", None)).await;
    create_metric(
        &s,
        sourced("conv", http_json_source(&format!("{}/conv", mock.uri()))),
    )
    .await;
    create_hypothesis(&s, hypothesis("H-1", "G", "conv", 0.5, 0.5)).await;
    create_source(
        &s,
        pb::Source {
            id: "app".into(),
            kind: pb::TrackerKind::Push as i32,
            ..Default::default()
        },
    )
    .await;
    upsert(&s, vec![item("app", "1", "Faster checkout")]).await;
    link(&s, "app/1", "H-1", 1.0).await;
    let mut v = pb::validation_service_client::ValidationServiceClient::new(s.channel.clone());
    v.record_release(pb::RecordReleaseRequest {
        release_id: "rel-1".into(),
        item_keys: vec!["app/1".into()],
        release_time: Some(days_ago(60)),
        note: String::new(),
    })
    .await
    .expect("RecordRelease");
    // Every 3 days from 120 to 6 days ago: 2.0 before the release, 2.5 after.
    let now = Utc::now();
    let rows: Vec<(DateTime<Utc>, serde_json::Value)> = (2..=40)
        .rev()
        .map(|k| {
            let d = 3 * k;
            (
                now - Duration::days(d),
                if d > 60 { 2.0 } else { 2.5 }.into(),
            )
        })
        .collect();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(points(&rows)))
        .mount(&mock)
        .await;
    pull(&s, "conv").await.expect("pull");
    let evidence = v
        .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
            hypothesis_id: "H-1".into(),
        })
        .await
        .expect("evidence")
        .into_inner()
        .evidence;
    assert_eq!(evidence.len(), 1, "validated after the pull: {evidence:?}");
    assert_eq!(evidence[0].subject_id, "rel-1");
}

/// Every example of "Metrics that flow in" reads as a metric source of its
/// kind and passes the checks the server makes, so the README stays true.
#[test]
fn the_readme_examples_of_each_kind_are_valid_sources() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme.find("## Metrics that flow in").expect("the section");
    let end = start + readme[start..].find("\n## ").expect("the next section");
    let section = &readme[start..end];
    let mut kinds = Vec::new();
    for block in section.split("```toml\n").skip(1) {
        let toml = block.split("```").next().expect("a closed block");
        let doc = if toml.contains("[[metrics]]") {
            toml.to_string()
        } else {
            format!("[[metrics]]\nid = \"m\"\nname = \"M\"\nbaseline = 1\ntarget = 2\n{toml}")
        };
        let file = plumbline::model::parse(&doc).unwrap_or_else(|e| panic!("{e:?}\n{doc}"));
        let source = file.metrics[0].source.clone().expect("a source");
        assert!(
            source.problems().is_empty(),
            "{:?}\n{doc}",
            source.problems()
        );
        kinds.push(source.kind());
    }
    kinds.sort_unstable();
    assert_eq!(kinds, ["csv", "http_json", "posthog", "prometheus", "sql"]);
}

/// The prometheus fetcher (tests/it/metric_prometheus.rs) wired into
/// PullMetric: the real Prometheus' known history arrives whole, then
/// nothing new.
#[tokio::test]
async fn pull_metric_reads_the_real_prometheus_through_the_framework() {
    use super::realdeps::{self, require, signups_history};
    let Some(prom) = require(
        "pull_metric_reads_the_real_prometheus_through_the_framework",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    let s = start().await;
    let src = pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Prometheus(
            pb::PrometheusMetricSource {
                base_url: prom.base_url.clone(),
                query: r#"signups{env="test"}"#.into(),
                step: Some(prost_types::Duration {
                    seconds: 86_400,
                    nanos: 0,
                }),
                // The history is dated around a fixed day of 2026.
                lookback: Some(prost_types::Duration {
                    seconds: 400 * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            },
        )),
    };
    create_metric(
        &s,
        pb::Metric {
            source: Some(src),
            ..metric("signups", 100.0, 200.0)
        },
    )
    .await;
    let history = signups_history();
    let (_, done) = pull(&s, "signups").await.expect("first pull");
    assert_eq!(done.stored_count as usize, history.len());
    let m = done.metric.expect("metric");
    assert_eq!(m.current_value, Some(history.last().unwrap().1));
    assert_eq!(
        observations(&s, "signups").await,
        history
            .iter()
            .map(|(t, v)| (t.timestamp(), *v))
            .collect::<Vec<_>>()
    );
    let (_, again) = pull(&s, "signups").await.expect("second pull");
    assert_eq!(again.stored_count, 0, "nothing new");
}

/// The sql fetcher (tests/it/metric_sql.rs) wired into PullMetric against
/// the real PostgreSQL: the table's rows, then only the row added since.
#[tokio::test]
async fn pull_metric_reads_the_real_postgresql_through_the_framework() {
    use super::realdeps::{self, day as pg_day, require};
    let Some(pg) = require(
        "pull_metric_reads_the_real_postgresql_through_the_framework",
        realdeps::postgres().await,
    ) else {
        return;
    };
    let db = pg.owner().await;
    db.batch_execute(
        "CREATE TABLE pull_framework_daily (day date PRIMARY KEY, v float8 NOT NULL);",
    )
    .await
    .expect("table");
    for (d, v) in [(5, 2.0), (4, 2.5), (3, 3.0)] {
        db.execute(
            "INSERT INTO pull_framework_daily VALUES ($1::timestamptz::date, $2)",
            &[&pg_day(d), &v],
        )
        .await
        .expect("row");
    }
    // SAFETY: only this test names this variable.
    unsafe { std::env::set_var("PLB_TEST_PULL_SQL_DSN", pg.dsn()) };
    let s = start().await;
    let src = pb::MetricSource {
        poll_interval: None,
        kind: Some(pb::metric_source::Kind::Sql(pb::SqlMetricSource {
            dsn_env: "PLB_TEST_PULL_SQL_DSN".into(),
            query: "SELECT day, v FROM pull_framework_daily WHERE day > :since ORDER BY day".into(),
            ..Default::default()
        })),
    };
    create_metric(&s, sourced("pg", src)).await;
    let (_, done) = pull(&s, "pg").await.expect("first pull");
    assert_eq!(done.stored_count, 3);
    assert_eq!(done.metric.expect("metric").current_value, Some(3.0));
    db.execute(
        "INSERT INTO pull_framework_daily VALUES ($1::timestamptz::date, 3.5)",
        &[&pg_day(2)],
    )
    .await
    .expect("row");
    let (_, done) = pull(&s, "pg").await.expect("incremental pull");
    assert_eq!(done.stored_count, 1);
    let m = done.metric.expect("metric");
    assert_eq!((m.observation_count, m.current_value), (4, Some(3.5)));
}
