//! A local GitHub for the sync benchmark: `GET /repos/acme/bench/issues`
//! and the `/repositories/42/issues?page=K` pages its `Link` headers point
//! to, 100 synthetic issues per page, with GitHub's headers. Served by hyper
//! on 127.0.0.1 only.
//!
//! Pages are rendered once up front when they fit in memory (so the
//! benchmark times the client, not the mock), and on demand beyond that.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

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
}

impl Pages {
    fn count(&self) -> u64 {
        self.items.div_ceil(PAGE_SIZE as u64).max(1)
    }

    /// Page `p` (1-based) of the issue list.
    fn body(&self, p: u64) -> Bytes {
        if let Some(b) = self.rendered.get((p - 1) as usize) {
            return b.clone();
        }
        let from = (p - 1) * PAGE_SIZE as u64;
        let to = (from + PAGE_SIZE as u64).min(self.items);
        Bytes::from(synth::github_page(self.seed, from, to, self.items))
    }

    fn page_url(&self, p: u64) -> String {
        format!(
            "{}/repositories/42/issues?state=all&sort=updated&direction=asc&per_page={PAGE_SIZE}&page={p}",
            self.base
        )
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let page = match path {
            "/repos/acme/bench/issues" => Some(1),
            "/repositories/42/issues" => req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("page="))
                    .and_then(|v| v.parse::<u64>().ok())
            }),
            _ => None,
        };
        let Some(p) = page.filter(|p| (1..=self.count()).contains(p)) else {
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
        let last = self.count();
        let mut links = Vec::new();
        if p < last {
            links.push(format!("<{}>; rel=\"next\"", self.page_url(p + 1)));
            links.push(format!("<{}>; rel=\"last\"", self.page_url(last)));
        }
        if p > 1 {
            links.push(format!("<{}>; rel=\"prev\"", self.page_url(p - 1)));
            links.push(format!("<{}>; rel=\"first\"", self.page_url(1)));
        }
        if !links.is_empty() {
            b = b.header("link", links.join(", "));
        }
        b.body(Full::new(self.body(p)))
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
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let mut pages = Pages {
            seed,
            items,
            base: format!("http://{addr}"),
            rendered: Vec::new(),
        };
        if items * ISSUE_BYTES <= PRERENDER_LIMIT {
            pages.rendered = (1..=pages.count()).map(|p| pages.body(p)).collect();
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
                        async move { Ok::<_, Infallible>(r) }
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
