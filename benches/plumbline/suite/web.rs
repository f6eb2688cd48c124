//! The web view's figures: the backlog page's first 50 items (server time,
//! as a client on loopback sees it) against `RankItems` top 50 over gRPC,
//! measured interleaved in the same run on the same server; and the bytes
//! a first visit transfers (the page, its CSS and its script), against the
//! encoded `RankItems` answer it shows.
//! The two figures measured in the browser are in `browser.rs`.

use std::time::{Duration, Instant};

use prost::Message;

use super::rpc::{connect, percentile, rank_request};
use super::{BenchError, Figure, Options, Result, Target, ms};
use plumbline::proto::scoring_service_client::ScoringServiceClient;

/// Calls of each kind per block; blocks alternate, so that both see the
/// same machine.
const BLOCK: usize = 25;

/// How the figures were measured, for the report's notes.
pub const NOTE: &str = "web_backlog_top50_p50: GET / (first 50 rows, HTML) from one \
     keep-alive HTTP/1.1 client, interleaved with RankItems top 50 on one gRPC channel to the \
     same in-process server; web_backlog_bytes: the page, /assets/app.css and /assets/app.js \
     as sent (no compression), against the encoded RankItems top 50 answer; \
     web_backlog_search_p50: GET /?q= a text no item holds, so the search walks every item, \
     against the same RankItems top 50";

async fn get(client: &reqwest::Client, url: &str) -> Result<usize> {
    let r = client
        .get(url)
        .send()
        .await
        .map_err(|e| BenchError::Check(format!("GET {url}: {e}")))?;
    if !r.status().is_success() {
        return Err(BenchError::Check(format!("GET {url}: {}", r.status())));
    }
    let body = r
        .bytes()
        .await
        .map_err(|e| BenchError::Check(format!("GET {url}: {e}")))?;
    Ok(body.len())
}

/// A text no synthetic title or key holds: the search walks the whole
/// ranking, its worst case.
const NOWHERE: &str = "zq-nowhere";

/// `web_backlog_top50_p50`, `web_backlog_bytes` and
/// `web_backlog_search_p50`.
pub async fn figures(
    opts: &Options,
    grpc_url: &str,
    web_url: &str,
) -> Result<(Figure, Figure, Figure)> {
    let n = opts.items;
    let mut scoring = ScoringServiceClient::new(connect(grpc_url).await?);
    let client = reqwest::Client::new();
    let page = format!("{web_url}/");
    let search = format!("{web_url}/?q={NOWHERE}");
    for _ in 0..(opts.samples / 10).max(10) {
        scoring.rank_items(rank_request()).await?;
        get(&client, &page).await?;
        get(&client, &search).await?;
    }
    let (mut rank, mut web, mut searched) = (Vec::new(), Vec::new(), Vec::new());
    let mut rank_bytes = 0;
    while web.len() < opts.samples {
        for _ in 0..BLOCK {
            let t = Instant::now();
            let r = scoring.rank_items(rank_request()).await?.into_inner();
            rank.push(t.elapsed());
            rank_bytes = r.encoded_len();
        }
        for _ in 0..BLOCK {
            let t = Instant::now();
            get(&client, &page).await?;
            web.push(t.elapsed());
        }
        // Fewer: each walks every item.
        for _ in 0..BLOCK / 5 {
            let t = Instant::now();
            get(&client, &search).await?;
            searched.push(t.elapsed());
        }
    }
    rank.sort();
    web.sort();
    searched.sort();
    let p50 = |v: &[Duration]| ms(percentile(v, 0.5));
    let latency = Figure::new(
        "web_backlog_top50_p50",
        p50(&web),
        "ms",
        p50(&rank),
        "RankItems top 50 p50 over gRPC",
        Target::RatioAtMost(3.0),
        n,
    );
    let search = Figure::new(
        "web_backlog_search_p50",
        p50(&searched),
        "ms",
        p50(&rank),
        "RankItems top 50 p50 over gRPC",
        Target::None,
        n,
    );
    let mut bytes = 0;
    for path in ["/", "/assets/app.css", "/assets/app.js"] {
        bytes += get(&client, &format!("{web_url}{path}")).await?;
    }
    let kb = |b: usize| b as f64 / 1024.0;
    let size = Figure::new(
        "web_backlog_bytes",
        kb(bytes),
        "KB",
        kb(rank_bytes.max(1)),
        "RankItems top 50 answer, encoded",
        Target::Below(100.0),
        // Bytes do not grow with the product: held at 100 KB at any N.
        super::TARGET_ITEMS.min(n),
    );
    Ok((latency, size, search))
}
