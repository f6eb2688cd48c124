//! The web view in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; fantoccini as the client)
//! against a real server on 127.0.0.1:0 with the demo product. Each test
//! starts its own chromedriver on a free loopback port, in a temporary
//! folder, and kills it at the end.
//!
//! Every page is checked for console errors (the browser log) and scanned
//! with axe-core's WCAG 2 A/AA rules (no serious or critical violation).
//!
//! Without chromium, chromedriver or axe-core the tests (or the scan) print
//! why and pass, except with `CI=true`, where they fail:
//! `scripts/test-deps.sh` installs all three.
//! Screenshots of each page go to `docs/screenshots/` (the README shows
//! them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::common::*;
use crate::web::{WebServer, demo_server};

/// How long a wait for the page may last before the test fails: a bound
/// for a broken page, not a speed target.
const PAGE_WAIT: Duration = Duration::from_secs(20);

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// chromedriver, running; killed on drop.
struct Driver {
    child: Child,
    url: String,
    browser: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts chromedriver, or says why it cannot (and fails under CI).
async fn driver() -> Option<Driver> {
    let driver = on_path(&["chromedriver"]);
    let browser = on_path(&["chromium", "chromium-browser", "google-chrome"]);
    let (Some(driver), Some(browser)) = (driver, browser) else {
        let why = "the browser tests need chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver; or scripts/test-deps.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true: {why}");
        }
        eprintln!("skipped: {why}");
        return None;
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!(
            "--log-path={}",
            dir.path().join("chromedriver.log").display()
        ))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let d = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        browser,
        dir,
    };
    // Ready when it accepts connections.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(d);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not listen on {}", d.url);
}

/// A headless Chromium session with the browser log on.
async fn browser(d: &Driver) -> Client {
    let profile = d.dir.path().join("profile");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": d.browser,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--no-default-browser-check",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&d.url)
        .await
        .expect("a WebDriver session")
}

/// chromedriver's browser log since the last read (`/se/log`).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (tonic::codegen::http::Method, Option<String>) {
        (
            tonic::codegen::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

/// The browser's errors since the last read, as messages.
async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.expect("the browser log");
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn assert_no_console_errors(c: &Client, page: &str) {
    let errors = console_errors(c).await;
    assert!(errors.is_empty(), "console errors on {page}: {errors:?}");
    assert_accessible(c, page).await;
}

/// axe-core, as `scripts/test-deps.sh` fetches it (pinned, from npm).
fn axe_source() -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/axe/axe.min.js");
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "CI=true: {} is missing; scripts/test-deps.sh fetches it",
                path.display()
            )
        }
        Err(_) => {
            eprintln!(
                "accessibility scan skipped: no {} (scripts/test-deps.sh fetches axe-core)",
                path.display()
            );
            None
        }
    }
}

/// Runs axe-core's WCAG 2 A and AA rules on the page: no serious or
/// critical violation.
async fn assert_accessible(c: &Client, page: &str) {
    let Some(axe) = axe_source() else { return };
    c.execute(&format!("{axe}\nreturn true;"), vec![])
        .await
        .expect("axe-core loads");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } })
               .then(r => done(r.violations
                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("axe-core runs");
    let found: Vec<String> = serde_json::from_value(found).expect("a list");
    assert!(
        found.is_empty(),
        "accessibility violations on {page}: {found:#?}"
    );
}

/// Saves a screenshot of the window as `docs/screenshots/NAME.png`.
async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
}

/// The item keys of the backlog rows, in page order.
async fn row_keys(c: &Client) -> Vec<String> {
    let mut keys = Vec::new();
    for row in c
        .find_all(Locator::Css("#rows tr[data-key]"))
        .await
        .unwrap()
    {
        keys.push(row.attr("data-key").await.unwrap().unwrap_or_default());
    }
    keys
}

/// "1.2345" as ten-thousandths.
fn ticks(s: &str) -> i64 {
    s.trim()
        .replace('.', "")
        .parse()
        .unwrap_or_else(|_| panic!("a number: {s:?}"))
}

async fn ranked(w: &WebServer, label: &str) -> Vec<String> {
    keys(
        &rank(
            &w.s,
            plumbline::proto::RankItemsRequest {
                page_size: 50,
                label: label.into(),
                ..Default::default()
            },
        )
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refinement_room_works_in_chromium() {
    let Some(d) = driver().await else { return };
    let w = demo_server(false, |_| {}).await;
    let c = browser(&d).await;

    // The backlog, as RankItems ranks it.
    c.goto(&format!("{}/", w.web)).await.unwrap();
    wait_for(&c, "#rows tr[data-key]").await;
    assert_eq!(row_keys(&c).await, ranked(&w, "").await);
    screenshot(&c, "backlog").await;
    assert_no_console_errors(&c, "the backlog").await;

    // Filter by a label through the form.
    c.find(Locator::Id("f-label"))
        .await
        .unwrap()
        .send_keys("payments")
        .await
        .unwrap();
    c.find(Locator::Id("f-apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css("#f-label[value=payments]"))
        .await
        .expect("the filtered page");
    let filtered = row_keys(&c).await;
    assert_eq!(filtered, ranked(&w, "payments").await);
    assert!(!filtered.is_empty());
    assert_no_console_errors(&c, "the filtered backlog").await;

    // Keyboard: j twice, Enter opens the second row's item.
    let second = filtered[1].clone();
    c.find(Locator::Css("body"))
        .await
        .unwrap()
        .send_keys("jj\u{E007}")
        .await
        .unwrap();
    wait_for(&c, "#terms, #why").await;
    let h1 = c
        .find(Locator::Css("h1 .key"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(h1, second, "Enter opens the selected row");

    // An item: the drawn terms add up to the value shown.
    c.goto(&format!("{}/items/web%2F415", w.web)).await.unwrap();
    let value = wait_for(&c, "#value").await.text().await.unwrap();
    let mut drawn = Vec::new();
    for t in c
        .find_all(Locator::Css("#terms .term-value"))
        .await
        .unwrap()
    {
        drawn.push(ticks(&t.text().await.unwrap()));
    }
    assert!(drawn.len() >= 2, "one bar per term");
    assert_eq!(
        drawn.iter().sum::<i64>(),
        ticks(&value),
        "terms {drawn:?} vs value {value}"
    );
    let score = item_score(&w.s, "web/415").await;
    assert_eq!(
        format!("{:.4}", score.value),
        value,
        "the value the engine returns"
    );
    // Bar widths are the terms' shares.
    let widths: Value = c
        .execute(
            "return [...document.querySelectorAll('#terms .bar > span')].map(s => s.getBoundingClientRect().width / s.parentElement.getBoundingClientRect().width);",
            vec![],
        )
        .await
        .unwrap();
    let share_sum: f64 = widths
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(
        (share_sum - 1.0).abs() < 0.01,
        "the bars' shares sum to 1: {widths}"
    );
    screenshot(&c, "item").await;
    assert_no_console_errors(&c, "an item").await;

    // Apply a split and see the slices appear.
    c.goto(&format!("{}/items/web%2F412", w.web)).await.unwrap();
    wait_for(&c, ".best-mark").await;
    assert!(
        c.find(Locator::Id("children")).await.is_err(),
        "no slices yet"
    );
    c.find(Locator::Id("apply-task"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#applied").await;
    let slices = c.find_all(Locator::Css("#children a.child")).await.unwrap();
    assert!(slices.len() >= 2, "the slices are listed");
    let first = slices[0].text().await.unwrap();
    assert_eq!(first, "web/412-s1");
    assert!(get_item(&w.s, "web/412-s1").await.is_ok(), "and stored");
    screenshot(&c, "item-split").await;
    assert_no_console_errors(&c, "the split item").await;

    // Who asked for it: the demo's dark mode, asked for by three customers
    // and serving no hypothesis.
    c.goto(&format!("{}/items/web%2F462", w.web)).await.unwrap();
    let demand = wait_for(&c, "#demand").await.text().await.unwrap();
    assert!(
        demand.starts_with("3 customers in 2 segments, at most nice_to_have."),
        "{demand}"
    );
    assert!(c.find(Locator::Id("asked-for-not-aligned")).await.is_ok());
    let quotes = c
        .find_all(Locator::Css("#insights .insight blockquote"))
        .await
        .unwrap();
    assert_eq!(quotes.len(), 3, "one entry per insight");
    let mut texts = Vec::new();
    for q in quotes {
        texts.push(q.text().await.unwrap());
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Could the admin have a dark mode?")),
        "{texts:?}"
    );
    screenshot(&c, "item-insights").await;
    assert_no_console_errors(&c, "an item's insights").await;

    // Goals.
    c.goto(&format!("{}/goals", w.web)).await.unwrap();
    wait_for(&c, "#goals tr[data-goal]").await;
    screenshot(&c, "goals").await;
    assert_no_console_errors(&c, "the goals").await;

    // Segments: gaps and opportunity scores, underserved marked, coverage
    // bars, the unserved segment listed.
    c.goto(&format!("{}/segments", w.web)).await.unwrap();
    wait_for(&c, "section.segment[data-segment]").await;
    let underserved = c
        .find_all(Locator::Css("tr.underserved[data-outcome]"))
        .await
        .unwrap();
    let mut marked = Vec::new();
    for e in underserved {
        marked.push(e.attr("data-outcome").await.unwrap().unwrap_or_default());
    }
    assert_eq!(marked, ["pay-on-phone", "first-api-call"]);
    let unserved = c
        .find(Locator::Css("#unserved"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(unserved.contains("partner-devs"), "{unserved}");
    assert_eq!(
        c.find_all(Locator::Css("section.segment .bar[role=img]"))
            .await
            .unwrap()
            .len(),
        2
    );
    screenshot(&c, "segments").await;
    assert_no_console_errors(&c, "the segments").await;

    // Metrics (server-drawn SVG trends) and hypotheses.
    c.goto(&format!("{}/metrics", w.web)).await.unwrap();
    wait_for(&c, ".chart svg polyline").await;
    screenshot(&c, "metrics").await;
    assert_no_console_errors(&c, "the metrics").await;
    // As the demo does: the release whose window has closed is validated.
    plumbline::proto::validation_service_client::ValidationServiceClient::new(w.s.channel.clone())
        .validate_releases(plumbline::proto::ValidateReleasesRequest::default())
        .await
        .expect("ValidateReleases");
    c.goto(&format!("{}/hypotheses", w.web)).await.unwrap();
    wait_for(&c, "table.evidence").await;
    c.execute(
        "document.querySelector('table.evidence').closest('section').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    screenshot(&c, "hypotheses").await;
    assert_no_console_errors(&c, "the hypotheses").await;

    // Live: an observation through gRPC reorders the open page, no reload.
    c.goto(&format!("{}/", w.web)).await.unwrap();
    wait_for(&c, "body[data-live=on]").await;
    c.execute("window.notReloaded = true;", vec![])
        .await
        .unwrap();
    let before = row_keys(&c).await;
    // Conversion reaches its target: H-1's gap closes, its items sink.
    record(&w.s, vec![observation("checkout-conversion", 3.0, None)]).await;
    let now = ranked(&w, "").await;
    assert_ne!(before, now, "the observation moves the ranking");
    wait_for(&c, "#rows tr.moved").await;
    c.wait()
        .at_most(PAGE_WAIT)
        .for_element(Locator::Css(&format!(
            "#rows tr[data-key='{}'][data-rank='1']",
            now[0]
        )))
        .await
        .expect("the new first item on top");
    assert_eq!(row_keys(&c).await, now);
    let same_page = c
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, Value::Bool(true), "updated without a reload");
    screenshot(&c, "backlog-live").await;
    assert_no_console_errors(&c, "the live backlog").await;

    // Since the last refinement: loading the demo product ended with a
    // snapshot (the shutdown's, the ranking having changed); the
    // observation above moved items in and out of its top 10.
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    c.goto(&format!("{}/since?date={at}&top=10", w.web))
        .await
        .unwrap();
    wait_for(&c, "#against").await;
    wait_for(&c, "#moved tr[data-key], #left tr[data-key]").await;
    screenshot(&c, "since").await;
    assert_no_console_errors(&c, "since the last refinement").await;
    // The backlog's navigation leads there.
    c.goto(&format!("{}/", w.web)).await.unwrap();
    c.find(Locator::Css("nav a[href='/since']"))
        .await
        .expect("a Since link in the navigation")
        .click()
        .await
        .unwrap();
    wait_for(&c, "#since-form").await;
    assert_no_console_errors(&c, "the since page without a date").await;

    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_signs_in_and_is_refused_the_split_in_chromium() {
    let Some(d) = driver().await else { return };
    let w = demo_server(true, |_| {}).await;
    let c = browser(&d).await;

    c.goto(&format!("{}/", w.web)).await.unwrap();
    let token = wait_for(&c, "#token").await;
    screenshot(&c, "signin").await;
    assert_no_console_errors(&c, "the sign-in page").await;
    token.send_keys(&w.read).await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(&c, "#rows tr[data-key]").await;
    assert_no_console_errors(&c, "the backlog, signed in").await;

    c.goto(&format!("{}/items/web%2F412", w.web)).await.unwrap();
    wait_for(&c, "#apply-task").await.click().await.unwrap();
    let msg = wait_for(&c, "#message").await.text().await.unwrap();
    assert!(msg.contains("needs the write role"), "{msg}");
    assert!(msg.contains("read role"), "{msg}");
    assert_eq!(
        c.find(Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Refused: a read token cannot split"
    );
    let engine = w.s.server().engine();
    assert!(
        engine.item_title("web/412-s1").is_empty(),
        "nothing was split"
    );
    screenshot(&c, "refused").await;
    // The only error is the refusal's own status.
    let errors = console_errors(&c).await;
    assert!(
        errors.iter().all(|e| e.contains("403")),
        "console errors beyond the refusal: {errors:?}"
    );
    c.close().await.unwrap();
}
