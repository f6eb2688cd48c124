//! A slow GitHub-shaped tracker on 127.0.0.1 for the tests that stop a
//! real server process in the middle of a sync (shutdown): it answers `since`
//! and `page` as GitHub does, 100 issues a page, each page after 300 ms.

use std::time::Duration;

use wiremock::{Request, ResponseTemplate};

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
