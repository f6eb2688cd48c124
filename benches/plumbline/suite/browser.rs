//! The web view's figures in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven through fantoccini): the time from navigation
//! to the backlog table painted, and a live update's delay from a write's
//! start to the open page's rows replaced. Without chromium or
//! chromedriver on PATH they are not measured, and the report says so.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::rpc::connect;
use super::{BenchError, Figure, Options, Result, Target, synth};
use plumbline::proto as pb;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;

/// How the figures were measured, for the report's notes.
pub const NOTE: &str = "web_backlog_paint and web_live_update_p50: headless Chromium \
     (chromedriver) on loopback against the in-process server; paint is the page's \
     first-contentful-paint (the table is the page's content, rendered on the server), p50 \
     of fresh navigations, against the HTML's responseEnd; the live update is from just \
     before RecordObservations on the hot metric to a MutationObserver seeing the open \
     page's rows replaced, p50, against the RecordObservations round trip";

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn check<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError::Check(format!("{what}: {e}"))
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// The two figures, or why they could not be measured.
pub async fn figures(
    opts: &Options,
    grpc_url: &str,
    web_url: &str,
) -> Result<std::result::Result<(Figure, Figure), String>> {
    let (Some(driver), Some(chromium)) = (
        on_path(&["chromedriver"]),
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
    ) else {
        return Ok(Err(
            "web_backlog_paint and web_live_update_p50 not measured: no chromium and chromedriver on PATH (scripts/test-deps.sh installs them)".into(),
        ));
    };
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    let _driver = Driver(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut up = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !up {
        return Err(BenchError::Check("chromedriver did not start".into()));
    }
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900",
                     format!("--user-data-dir={}", dir.path().join("profile").display())],
        },
    });
    let Value::Object(caps) = caps else {
        return Err(BenchError::Check("capabilities are an object".into()));
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .map_err(check("a WebDriver session"))?;
    let measured = measure(opts, &c, grpc_url, web_url).await;
    let _ = c.close().await;
    measured.map(Ok)
}

async fn number(c: &Client, script: &str) -> Result<f64> {
    c.execute(script, vec![])
        .await
        .map_err(check("a script in the page"))?
        .as_f64()
        .ok_or_else(|| BenchError::Check(format!("not a number from {script}")))
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn measure(
    opts: &Options,
    c: &Client,
    grpc_url: &str,
    web_url: &str,
) -> Result<(Figure, Figure)> {
    let n = opts.items;
    let page = format!("{web_url}/");
    let rounds = (opts.samples / 20).clamp(5, 25);

    // 1. Navigation to the table painted.
    let (mut paint, mut response) = (Vec::new(), Vec::new());
    for i in 0..=rounds {
        // A fresh document each time (a query string the server ignores
        // would be refused, so alternate between two equal orderings).
        let url = if i % 2 == 0 {
            page.clone()
        } else {
            format!("{page}?order=density")
        };
        c.goto(&url).await.map_err(check("navigating"))?;
        c.find(Locator::Css("#rows tr"))
            .await
            .map_err(check("the table"))?;
        let fcp = number(
            c,
            "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : -1;",
        )
        .await?;
        let end = number(
            c,
            "return performance.getEntriesByType('navigation')[0].responseEnd;",
        )
        .await?;
        // The first navigation warms the browser and the connection.
        if i > 0 && fcp >= 0.0 {
            paint.push(fcp);
            response.push(end);
        }
    }
    if paint.is_empty() {
        return Err(BenchError::Check(
            "the browser reported no first-contentful-paint".into(),
        ));
    }
    let paint_figure = Figure::new(
        "web_backlog_paint",
        p50(paint),
        "ms",
        p50(response),
        "the HTML's responseEnd",
        Target::Below(300.0),
        n,
    );

    // 2. A write to the open page's rows replaced.
    c.goto(&page).await.map_err(check("navigating"))?;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("body[data-live=on]"))
        .await
        .map_err(check("the live stream"))?;
    c.execute(
        "window.benchUpdates = []; new MutationObserver(() => window.benchUpdates.push(performance.timeOrigin + performance.now())).observe(document.getElementById('rows'), {childList: true});",
        vec![],
    )
    .await
    .map_err(check("installing the observer"))?;
    let model = synth::model(opts.seed);
    let hot = model
        .metrics
        .iter()
        .find(|m| m.id == synth::HOT_METRIC)
        .ok_or_else(|| BenchError::Check("no hot metric".into()))?;
    let mut values = ValueModelServiceClient::new(connect(grpc_url).await?);
    let (mut delay, mut write) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let value = hot.baseline + (hot.target - hot.baseline) * if i % 2 == 0 { 0.3 } else { 0.6 };
        let at = synth::epoch() + chrono::Duration::days(2) + chrono::Duration::minutes(i as i64);
        let seen = number(c, "return window.benchUpdates.length;").await? as usize;
        let start = epoch_ms();
        values
            .record_observations(pb::RecordObservationsRequest {
                observations: vec![pb::Observation {
                    metric_id: synth::HOT_METRIC.to_string(),
                    value,
                    observe_time: Some(prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: 0,
                    }),
                }],
            })
            .await?;
        write.push(epoch_ms() - start);
        let mut updated = None;
        for _ in 0..400 {
            let got: Value = c
                .execute(
                    "return window.benchUpdates.length > arguments[0] ? window.benchUpdates[arguments[0]] : null;",
                    vec![json!(seen)],
                )
                .await
                .map_err(check("reading the observer"))?;
            if let Some(t) = got.as_f64() {
                updated = Some(t);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let t = updated.ok_or_else(|| BenchError::Check("the open page did not update".into()))?;
        delay.push(t - start);
        // Let the page settle before the next write, so that each is its
        // own update rather than coalescing with the previous.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let live_figure = Figure::new(
        "web_live_update_p50",
        p50(delay),
        "ms",
        p50(write),
        "RecordObservations round trip",
        Target::Below(100.0),
        // A delay that does not grow with the product.
        super::TARGET_ITEMS.min(n),
    );
    Ok((paint_figure, live_figure))
}
