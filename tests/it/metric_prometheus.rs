//! The `prometheus` metric source against the real Prometheus of Debian's
//! package, over a data directory with a known history
//! ([`super::realdeps`]): exact first and incremental pulls, NaN and +Inf as
//! Prometheus writes them, its error shapes, an unreachable server, and
//! bearer and basic auth through a loopback proxy in front of it
//! (Prometheus 2.42 has basic auth of its own but no bearer tokens).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use plumbline::config::OutboundConfig;
use plumbline::metric_source::prometheus::{HttpAuth, PrometheusSpec};
use plumbline::metric_source::{FetchError, RawPoint};
use plumbline::outbound::OutboundPolicy;
use plumbline::sync::http::{HttpClient, HttpOptions};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::realdeps::{self, day, require, signups_history};

fn client() -> HttpClient {
    let policy = OutboundPolicy::new(&OutboundConfig {
        allow_hosts: vec!["127.0.0.1".into()],
        ..OutboundConfig::default()
    })
    .expect("policy");
    let options = HttpOptions {
        max_retries: 1,
        backoff_base: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        ..HttpOptions::default()
    };
    HttpClient::new(options, Arc::new(policy)).expect("client")
}

fn spec(base_url: &str, query: &str) -> PrometheusSpec {
    PrometheusSpec {
        base_url: base_url.parse().expect("url"),
        query: query.into(),
        step: Duration::from_secs(86_400),
        lookback: Duration::from_secs(30 * 86_400),
        auth: None,
        http: client(),
    }
}

fn pairs(points: &[RawPoint]) -> Vec<(i64, f64)> {
    points.iter().map(|p| (p.at.timestamp(), p.value)).collect()
}

fn message(e: FetchError) -> String {
    e.to_string()
}

/// An hour into today: the last grid time is today's midnight, where the
/// history has no sample (older than Prometheus' 5-minute lookback).
fn now() -> chrono::DateTime<chrono::Utc> {
    day(0) + chrono::Duration::hours(1)
}

#[tokio::test]
async fn prometheus_pulls_the_history_exactly_then_only_what_is_new() {
    let Some(prom) = require(
        "prometheus_pulls_the_history_exactly_then_only_what_is_new",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    let s = spec(&prom.base_url, r#"signups{env="test"}"#);
    let expected: Vec<(i64, f64)> = signups_history()
        .iter()
        .map(|(at, v)| (at.timestamp(), *v))
        .collect();
    let first = s.fetch(None, now()).await.expect("first pull");
    assert_eq!(pairs(&first), expected);

    // Incremental: from the seventh day (asked again, for a corrected
    // value), then only the last three.
    let since = signups_history()[6].0;
    let next = s.fetch(Some(since), now()).await.expect("incremental pull");
    assert_eq!(pairs(&next), expected[6..].to_vec());

    // Nothing new after the last one: only it, again.
    let last = signups_history()[9].0;
    let again = s.fetch(Some(last), now()).await.expect("pull");
    assert_eq!(pairs(&again), expected[9..].to_vec());

    // A look-back shorter than the history: only its days.
    let mut short = s.clone();
    short.lookback = Duration::from_secs(3 * 86_400);
    let recent = short.fetch(None, now()).await.expect("pull");
    assert_eq!(pairs(&recent), expected[8..].to_vec());

    // An aggregate over both series is one series: still exact.
    let sum = spec(&prom.base_url, "sum(signups)");
    let summed = sum.fetch(None, now()).await.expect("pull");
    assert_eq!(summed[0].value, expected[0].1 + 1.0);
    assert_eq!(summed.len(), 10);
}

#[tokio::test]
async fn prometheus_nan_and_infinity_come_through_as_written() {
    let Some(prom) = require(
        "prometheus_nan_and_infinity_come_through_as_written",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    let points = spec(&prom.base_url, "odd")
        .fetch(None, now())
        .await
        .expect("pull");
    let at: Vec<i64> = points.iter().map(|p| p.at.timestamp()).collect();
    assert_eq!(
        at,
        vec![day(3).timestamp(), day(2).timestamp(), day(1).timestamp()]
    );
    assert_eq!(points[0].value, 1.0);
    assert!(points[1].value.is_nan());
    assert_eq!(points[2].value, f64::INFINITY);
}

#[tokio::test]
async fn prometheus_errors_name_the_query_and_the_cause() {
    let Some(prom) = require(
        "prometheus_errors_name_the_query_and_the_cause",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    // A PromQL syntax error: Prometheus' 400 bad_data, its message.
    let bad = message(
        spec(&prom.base_url, "sum(signups")
            .fetch(None, now())
            .await
            .expect_err("refused"),
    );
    assert!(bad.starts_with("prometheus metric source: "), "{bad}");
    assert!(bad.contains("HTTP 400"), "{bad}");
    assert!(bad.contains("parse error"), "{bad}");
    assert!(bad.contains("sum(signups"), "{bad}");

    // Two series: the query is named, and so are the series.
    let two = message(
        spec(&prom.base_url, "signups")
            .fetch(None, now())
            .await
            .expect_err("refused"),
    );
    assert!(two.contains("\"signups\" yields 2 series"), "{two}");
    assert!(two.contains("env=\"other\""), "{two}");

    // A string expression has no range: Prometheus refuses it (400).
    let string = message(
        spec(&prom.base_url, r#""text""#)
            .fetch(None, now())
            .await
            .expect_err("refused"),
    );
    assert!(string.contains("HTTP 400"), "{string}");

    // A query that matches nothing is no points, not an error.
    let none = spec(&prom.base_url, "no_such_metric")
        .fetch(None, now())
        .await
        .expect("pull");
    assert!(none.is_empty());

    // Nothing listening.
    let port = realdeps::free_port();
    let gone = message(
        spec(&format!("http://127.0.0.1:{port}"), "up")
            .fetch(None, now())
            .await
            .expect_err("unreachable"),
    );
    assert!(gone.contains("could not be reached"), "{gone}");

    // The wrong path prefix: nothing answers there.
    let wrong = message(
        spec(&format!("{}/prometheus", prom.base_url), "up")
            .fetch(None, now())
            .await
            .expect_err("404"),
    );
    assert!(wrong.contains("404"), "{wrong}");

    // A loopback address the outbound policy does not allow.
    let mut strict = spec(&prom.base_url, "up");
    strict.http = HttpClient::new(HttpOptions::default(), Arc::new(OutboundPolicy::default()))
        .expect("client");
    let refused = message(strict.fetch(None, now()).await.expect_err("refused"));
    assert!(refused.contains("loopback"), "{refused}");
}

/// Forwards to the real Prometheus: wiremock checks the credentials, the
/// answer is Prometheus' own.
struct Forward(u16);

impl Respond for Forward {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let url = &request.url;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let (status, body) = realdeps::forward_get(self.0, &target);
        ResponseTemplate::new(status).set_body_raw(body, "application/json")
    }
}

#[tokio::test]
async fn prometheus_sends_bearer_and_basic_credentials_from_named_variables() {
    let Some(prom) = require(
        "prometheus_sends_bearer_and_basic_credentials_from_named_variables",
        realdeps::prometheus().await,
    ) else {
        return;
    };
    const TOKEN: &str = "bearer-tok-3f9a1c";
    const PASSWORD: &str = "basic-pw-88e2b";
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("grafana:{PASSWORD}"))
    );
    // SAFETY: names only these tests use.
    unsafe {
        std::env::set_var("PLUMBLINE_SECRET_PROM_BEARER_T", TOKEN);
        std::env::set_var("PLUMBLINE_SECRET_PROM_BASIC_T", PASSWORD);
        std::env::set_var("PLUMBLINE_SECRET_PROM_WRONG_T", "not-the-token-1234");
    }
    let proxy = MockServer::start().await;
    for expected in [format!("Bearer {TOKEN}"), basic] {
        Mock::given(method("GET"))
            .and(path("/api/v1/query_range"))
            .and(header("authorization", expected.as_str()))
            .respond_with(Forward(prom.port))
            .mount(&proxy)
            .await;
    }
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(401)
                .insert_header("www-authenticate", "Bearer")
                .set_body_string("Unauthorized\n"),
        )
        .with_priority(10)
        .mount(&proxy)
        .await;

    let expected: Vec<(i64, f64)> = signups_history()
        .iter()
        .map(|(at, v)| (at.timestamp(), *v))
        .collect();
    let mut s = spec(&proxy.uri(), r#"signups{env="test"}"#);

    s.auth = Some(HttpAuth::Bearer {
        token_env: "PLUMBLINE_SECRET_PROM_BEARER_T".into(),
    });
    assert_eq!(
        pairs(&s.fetch(None, now()).await.expect("bearer")),
        expected
    );

    s.auth = Some(HttpAuth::Basic {
        username: "grafana".into(),
        password_env: "PLUMBLINE_SECRET_PROM_BASIC_T".into(),
    });
    assert_eq!(pairs(&s.fetch(None, now()).await.expect("basic")), expected);

    // A wrong token: 401, named as such, the token nowhere.
    s.auth = Some(HttpAuth::Bearer {
        token_env: "PLUMBLINE_SECRET_PROM_WRONG_T".into(),
    });
    let wrong = message(s.fetch(None, now()).await.expect_err("401"));
    assert!(wrong.contains("401"), "{wrong}");
    assert!(!wrong.contains("not-the-token-1234"), "{wrong}");

    // No credentials at all: the same 401.
    s.auth = None;
    let none = message(s.fetch(None, now()).await.expect_err("401"));
    assert!(none.contains("401"), "{none}");

    // A variable that is not set, and one the policy does not allow.
    s.auth = Some(HttpAuth::Bearer {
        token_env: "PLUMBLINE_SECRET_PROM_UNSET_T".into(),
    });
    let unset = message(s.fetch(None, now()).await.expect_err("unset"));
    assert!(unset.contains("PLUMBLINE_SECRET_PROM_UNSET_T"), "{unset}");
    assert!(unset.contains("not set"), "{unset}");
    s.auth = Some(HttpAuth::Bearer {
        token_env: "HOME".into(),
    });
    let home = message(s.fetch(None, now()).await.expect_err("refused"));
    assert!(home.contains("HOME is not one sources may name"), "{home}");
}
