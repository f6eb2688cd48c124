//! A local GitHub for the sync benchmark: `GET /repos/acme/bench/issues`
//! and the `/repositories/42/issues?page=K` pages its `Link` headers point
//! to, 100 synthetic issues per page, with GitHub's headers. Served by hyper
//! on 127.0.0.1 only.
//!
//! Pages are rendered once up front when they fit in memory (so the
//! benchmark times the client, not the mock), and on demand beyond that.
//!
//! [`GitHubMock::start_slow`] is the failover figure's tracker: each page
//! after a delay, and `since` answered as GitHub does (issues updated at or
//! after it, the synthetic issues being one minute apart in update order),
//! so that a sync resumed from its cursor asks for the rest only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::synth;
use plumbline::sync::PAGE_SIZE;

/// Rendered pages kept in memory up to this many bytes (estimated).
const PRERENDER_LIMIT: u64 = 600 * 1024 * 1024;
/// Rough size of one rendered issue, for that estimate.
const ISSUE_BYTES: u64 = 2_300;

struct Pages {
    seed: u64,
    items: u64,
    base: String,
    rendered: Vec<Bytes>,
    /// How long each answer waits.
    delay: Duration,
}

/// The first of `n` synthetic issues updated at or after `since` (an
/// RFC 3339 time): issue `i` is updated `n - i` minutes before the
/// synthetic epoch.
fn first_since(since: &str, n: u64) -> u64 {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(since) else {
        return 0;
    };
    let before = (synth::epoch() - t.with_timezone(&chrono::Utc)).num_seconds();
    if before < 0 {
        return n;
    }
    n.saturating_sub((before / 60) as u64)
}

impl Pages {
    /// Pages of the issues from `first` on.
    fn count(&self, first: u64) -> u64 {
        (self.items - first.min(self.items))
            .div_ceil(PAGE_SIZE as u64)
            .max(1)
    }

    /// Page `p` (1-based) of the issue list from issue `first` on.
    fn body(&self, p: u64, first: u64) -> Bytes {
        if first == 0
            && let Some(b) = self.rendered.get((p - 1) as usize)
        {
            return b.clone();
        }
        let from = (first + (p - 1) * PAGE_SIZE as u64).min(self.items);
        let to = (from + PAGE_SIZE as u64).min(self.items);
        Bytes::from(synth::github_page(self.seed, from, to, self.items))
    }

    fn page_url(&self, p: u64, since: Option<&str>) -> String {
        let since = since.map(|s| format!("&since={s}")).unwrap_or_default();
        format!(
            "{}/repositories/42/issues?state=all&sort=updated&direction=asc&per_page={PAGE_SIZE}{since}&page={p}",
            self.base
        )
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let param = |name: &str| {
            req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_string)
            })
        };
        // As sent (percent-encoded), for the next pages' links.
        let since = param("since");
        let first = since.as_deref().map_or(0, |s| {
            first_since(&s.replace("%3A", ":").replace("%2B", "+"), self.items)
        });
        let page = match path {
            "/repos/acme/bench/issues" => Some(1),
            "/repositories/42/issues" => param("page").and_then(|v| v.parse::<u64>().ok()),
            _ => None,
        };
        let Some(p) = page.filter(|p| (1..=self.count(first)).contains(p)) else {
            return plain(StatusCode::NOT_FOUND, r#"{"message":"Not Found"}"#);
        };
        let mut b = Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json; charset=utf-8")
            .header("x-github-api-version-selected", "2022-11-28")
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", "4999")
            .header("x-ratelimit-reset", "4102444800")
            .header("x-ratelimit-used", "1")
            .header("x-ratelimit-resource", "core")
            .header("etag", format!("W/\"bench-page-{p}\""));
        let last = self.count(first);
        let url = |p| self.page_url(p, since.as_deref());
        let mut links = Vec::new();
        if p < last {
            links.push(format!("<{}>; rel=\"next\"", url(p + 1)));
            links.push(format!("<{}>; rel=\"last\"", url(last)));
        }
        if p > 1 {
            links.push(format!("<{}>; rel=\"prev\"", url(p - 1)));
            links.push(format!("<{}>; rel=\"first\"", url(1)));
        }
        if !links.is_empty() {
            b = b.header("link", links.join(", "));
        }
        b.body(Full::new(self.body(p, first)))
            .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "bad response"))
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r
}

/// A running mock; stops when dropped.
pub struct GitHubMock {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl GitHubMock {
    /// Renders (when they fit) and serves the `items` issues of `seed`.
    pub async fn start(seed: u64, items: u64) -> std::io::Result<GitHubMock> {
        Self::start_with(seed, items, Duration::ZERO).await
    }

    /// Serves the `items` issues of `seed`, each answer after `delay`
    /// (rendered on demand: the delay dwarfs the rendering).
    pub async fn start_slow(seed: u64, items: u64, delay: Duration) -> std::io::Result<GitHubMock> {
        Self::start_with(seed, items, delay).await
    }

    async fn start_with(seed: u64, items: u64, delay: Duration) -> std::io::Result<GitHubMock> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let mut pages = Pages {
            seed,
            items,
            base: format!("http://{addr}"),
            rendered: Vec::new(),
            delay,
        };
        if delay.is_zero() && items * ISSUE_BYTES <= PRERENDER_LIMIT {
            pages.rendered = (1..=pages.count(0)).map(|p| pages.body(p, 0)).collect();
        }
        let pages = Arc::new(pages);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let pages = pages.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let r = pages.respond(&req);
                        let delay = pages.delay;
                        async move {
                            if !delay.is_zero() {
                                tokio::time::sleep(delay).await;
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(GitHubMock { addr, task })
    }

    /// `http://127.0.0.1:PORT`, the base URL of a GitHub source.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for GitHubMock {
    fn drop(&mut self) {
        self.task.abort();
    }
}
