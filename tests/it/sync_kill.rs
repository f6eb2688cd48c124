//! A sync killed with SIGKILL in the middle resumes after a restart on the
//! same SQLite file, losing and duplicating nothing. The server runs as a
//! real process; the tracker is a GitHub-shaped mock on 127.0.0.1 that
//! answers `since` and `page` like GitHub does.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plumbline::proto as pb;
use tonic::transport::Channel;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub(crate) const TOTAL: usize = 500;

fn updated(n: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
    (base + chrono::Duration::minutes(n as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// GitHub's issues list: ascending by update time, `since` inclusive,
/// 100 per page, `Link` to the next page; each page takes 300 ms.
pub(crate) fn github_like(uri: String) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync {
    move |req: &Request| {
        let q: std::collections::HashMap<String, String> =
            req.url.query_pairs().into_owned().collect();
        let since = q.get("since").cloned().unwrap_or_default();
        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let matching: Vec<usize> = (1..=TOTAL).filter(|n| updated(*n) >= since).collect();
        let chunk: Vec<serde_json::Value> = matching
            .iter()
            .skip((page - 1) * 100)
            .take(100)
            .map(|n| {
                serde_json::json!({
                    "number": n, "title": format!("Issue {n}"), "body": null,
                    "html_url": format!("https://github.com/acme/shop/issues/{n}"),
                    "state": "open", "labels": [], "created_at": updated(0),
                    "updated_at": updated(*n), "closed_at": null
                })
            })
            .collect();
        let mut resp = ResponseTemplate::new(200)
            .set_delay(Duration::from_millis(300))
            .set_body_json(chunk);
        if page * 100 < matching.len() {
            let mut next = format!(
                "{uri}/repos/acme/shop/issues?state=all&sort=updated&direction=asc&per_page=100&page={}",
                page + 1
            );
            if !since.is_empty() {
                next.push_str(&format!("&since={since}"));
            }
            resp = resp.insert_header("link", format!("<{next}>; rel=\"next\"").as_str());
        }
        resp
    }
}

/// Starts `plumbline serve` as a child process and returns it with its URL.
pub(crate) fn spawn_server(db: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plumbline"))
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(["--log-format", "json"])
        .env("PLUMBLINE_SYNC__INTERVAL_SECS", "0")
        .env("PLUMBLINE_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("server log").expect("readable log");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "plumbline serving" {
            break v["fields"]["addr"].as_str().expect("addr").to_string();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_mid_way_resumes_after_restart() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/shop/issues"))
        .respond_with(github_like(mock.uri()))
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plumbline.sqlite");

    let (mut first, url) = tokio::task::block_in_place(|| spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    pb::source_service_client::SourceServiceClient::new(channel.clone())
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source {
                id: "gh".into(),
                kind: pb::TrackerKind::Github as i32,
                base_url: mock.uri(),
                project_key: "acme/shop".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut stream = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .sync_source(pb::SyncSourceRequest {
            source_id: "gh".into(),
            full: false,
        })
        .await
        .unwrap()
        .into_inner();
    // Two pages in, kill the server hard.
    let mut pages = 0;
    while pages < 2 {
        if let Some(pb::sync_source_response::Event::PageFetched(_)) =
            stream.message().await.unwrap().unwrap().event
        {
            pages += 1;
        }
    }
    first.kill().unwrap();
    first.wait().unwrap();
    drop(stream);

    let (mut second, url) = tokio::task::block_in_place(|| spawn_server(&db));
    let channel = Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut backlog = pb::backlog_service_client::BacklogServiceClient::new(channel.clone());
    let stored = backlog
        .list_items(pb::ListItemsRequest {
            source_id: "gh".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items
        .len();
    assert!(
        (200..TOTAL).contains(&stored),
        "whole pages were kept: {stored}"
    );
    let status = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .get_sync_status(pb::GetSyncStatusRequest {
            source_id: "gh".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(
        status.state,
        pb::SyncState::Failed as i32,
        "an interrupted sync is not shown as running"
    );
    assert!(
        status.last_error.contains("interrupted"),
        "{}",
        status.last_error
    );

    let mut stream = pb::sync_service_client::SyncServiceClient::new(channel.clone())
        .sync_source(pb::SyncSourceRequest {
            source_id: "gh".into(),
            full: false,
        })
        .await
        .unwrap()
        .into_inner();
    let done = loop {
        match stream.message().await.unwrap().expect("a done event").event {
            Some(pb::sync_source_response::Event::Done(d)) => break d,
            _ => continue,
        }
    };
    assert_eq!(
        done.upserted_count as usize,
        TOTAL - stored,
        "nothing stored twice, nothing lost"
    );
    let items = backlog
        .list_items(pb::ListItemsRequest {
            source_id: "gh".into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(items.len(), TOTAL);
    second.kill().unwrap();
    second.wait().unwrap();
}
