//! Figure `metric_pull_10k`: one pull of 10,000 points from an http_json
//! source (a local wiremock) into a fresh database, against the time to
//! fetch and parse the same answer with the pull's own client and fetcher,
//! measured in the same run. What the pull adds is checking the points,
//! comparing them with what is stored, one transaction and the rescore.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use plumbline::config::SyncConfig;
use plumbline::domain::{Direction, HttpJsonSpec, Metric, MetricSource};
use plumbline::engine::Engine;
use plumbline::lifecycle::Lifecycle;
use plumbline::metric_source::{PullOptions, Puller, http_json::HttpJson};
use plumbline::store::{SqliteStore, Store};
use plumbline::sync::http::HttpClient;

use super::{BenchError, Figure, Options, Result, Target, median};

/// Points in the pulled answer.
pub const POINTS: usize = 10_000;

pub const NOTE: &str = "metric_pull_10k: PullMetric's work (fetch, check, compare with the \
     stored points, one transaction, rescore) for 10,000 points of an http_json source on \
     127.0.0.1, against fetching and parsing the same answer alone, medians of 3";

fn spec(uri: &str) -> HttpJsonSpec {
    HttpJsonSpec {
        url: format!("{uri}/points"),
        points_pointer: "/points".into(),
        time_field: "at".into(),
        value_field: "value".into(),
        ..HttpJsonSpec::default()
    }
}

pub async fn figure(opts: &Options, dir: &std::path::Path) -> Result<Figure> {
    let now = Utc::now();
    let start = now - chrono::Duration::hours(POINTS as i64 + 1);
    let points: Vec<serde_json::Value> = (0..POINTS)
        .map(|i| {
            serde_json::json!({
                "at": (start + chrono::Duration::hours(i as i64)).to_rfc3339(),
                "value": 2.0 + (i % 100) as f64 / 100.0,
            })
        })
        .collect();
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"points": points})),
        )
        .mount(&mock)
        .await;
    let spec = spec(&mock.uri());
    let http = HttpClient::new(SyncConfig::manual().http_options(), super::sync::loopback())?;

    let (mut fetch, mut pull) = (Vec::new(), Vec::new());
    for rep in 0..3 {
        let t = Instant::now();
        let got = HttpJson {
            spec: &spec,
            http: &http,
            label: "bench",
        }
        .fetch(None, Utc::now())
        .await
        .map_err(|e| BenchError::Check(e.to_string()))?;
        fetch.push(t.elapsed());
        if got.len() != POINTS {
            return Err(BenchError::Check(format!("fetched {} points", got.len())));
        }

        let path = dir.join(format!("pull-{rep}.sqlite"));
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await?);
        let engine = Arc::new(
            Engine::open(store.clone(), 3.0)
                .await?
                .with_outbound(super::sync::loopback()),
        );
        engine
            .create_metric(Metric {
                id: "conv".into(),
                name: "Conversion".into(),
                unit: "%".into(),
                direction: Direction::HigherIsBetter,
                baseline: 2.0,
                target: 4.0,
                cadence: None,
                source: Some(MetricSource::HttpJson(spec.clone())),
                create_time: now,
                update_time: now,
            })
            .await?;
        let puller = Puller::new(
            engine,
            http.clone(),
            Lifecycle::new(),
            PullOptions::default(),
        );
        let t = Instant::now();
        let s = puller
            .pull("conv", &|_| {})
            .await
            .map_err(|e| BenchError::Check(e.to_string()))?;
        pull.push(t.elapsed());
        if s.stored as usize != POINTS {
            return Err(BenchError::Check(format!("stored {} points", s.stored)));
        }
        store.close().await;
        let _ = std::fs::remove_file(&path);
    }
    let secs = |v: Vec<Duration>| median(v).as_secs_f64();
    Ok(Figure::new(
        "metric_pull_10k",
        secs(pull),
        "s",
        secs(fetch),
        "fetching and parsing the same 10,000 points",
        Target::None,
        opts.items,
    ))
}
