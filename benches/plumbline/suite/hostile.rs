//! The hostile-watchers figures (issue 15): many `WatchRanking` streams
//! whose client never reads (raw HTTP/2 that sends no window update, spread
//! over connections within the server's stream cap) while writes keep
//! changing the ranking, against a normal client's `RankItems`.
//!
//! Measured on a child `plumbline serve` with its default `[limits]`, so
//! that its resident set is the server's alone: the normal client's p50
//! against the same with the writes and no watchers, and the server's peak
//! resident set with the watchers open, against its resident set before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tokio::net::TcpStream;
use tonic::codegen::http;
use tonic::transport::Channel;

use super::{BenchError, Figure, Options, Result, Target, child, median, ms, synth};
use plumbline::proto as pb;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;

/// Streams per hostile connection: the server's default cap
/// (`[limits] max_concurrent_streams`).
const STREAMS_PER_CONNECTION: usize = 100;
/// Items each hostile watcher watches.
const WATCHED: i32 = 100;

/// The open hostile streams; dropping it closes them.
struct Hostile {
    _streams: Vec<(http::Response<h2::RecvStream>, h2::SendStream<Bytes>)>,
    _connections: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        for c in &self._connections {
            c.abort();
        }
    }
}

fn watch_frame() -> Bytes {
    let msg = pb::WatchRankingRequest {
        page_size: WATCHED,
        ..Default::default()
    }
    .encode_to_vec();
    let mut b = BytesMut::new();
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(&msg);
    b.freeze()
}

/// Opens `count` watches that never read a byte: the client keeps h2's
/// default windows and never releases them.
async fn open_watchers(addr: &str, count: usize) -> Result<Hostile> {
    let check = |e: h2::Error| BenchError::Check(format!("hostile watcher: {e}"));
    let mut hostile = Hostile {
        _streams: Vec::new(),
        _connections: Vec::new(),
    };
    let uri = format!("http://{addr}/plumbline.v1.ScoringService/WatchRanking");
    while hostile._streams.len() < count {
        let tcp = TcpStream::connect(addr).await?;
        let (mut send, conn) = h2::client::handshake(tcp).await.map_err(check)?;
        hostile._connections.push(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let here = STREAMS_PER_CONNECTION.min(count - hostile._streams.len());
        let mut pending = Vec::new();
        for _ in 0..here {
            send = send.ready().await.map_err(check)?;
            let req = http::Request::post(&uri)
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .map_err(|e| BenchError::Check(e.to_string()))?;
            let (response, mut stream) = send.send_request(req, false).map_err(check)?;
            stream.send_data(watch_frame(), true).map_err(check)?;
            pending.push((response, stream));
        }
        for (response, stream) in pending {
            let response = response.await.map_err(check)?;
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                return Err(BenchError::Check(format!(
                    "a hostile watch was refused: {status:?}"
                )));
            }
            hostile._streams.push((response, stream));
        }
    }
    Ok(hostile)
}

/// Writes observations of the hot metric (10 % of the items depend on it),
/// each moving the ranking, until `stop`.
async fn write_until(channel: Channel, seed: u64, stop: Arc<AtomicBool>) -> Result<usize> {
    let model = synth::model(seed);
    let (b, t) = model
        .metrics
        .iter()
        .find(|m| m.id == synth::HOT_METRIC)
        .map(|m| (m.baseline, m.target))
        .ok_or_else(|| BenchError::Check("no hot metric".into()))?;
    let mut values = ValueModelServiceClient::new(channel);
    let mut writes = 0;
    while !stop.load(Ordering::Relaxed) {
        writes += 1;
        let at = synth::epoch() + chrono::Duration::days(400) + chrono::Duration::minutes(writes);
        let value = b + (t - b) * if writes % 2 == 0 { 0.2 } else { 0.7 };
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(writes as usize)
}

async fn rank_p50(scoring: &mut ScoringServiceClient<Channel>, samples: usize) -> Result<Duration> {
    let mut took = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        scoring
            .rank_items(pb::RankItemsRequest {
                page_size: 50,
                ..Default::default()
            })
            .await?;
        took.push(t.elapsed());
    }
    Ok(median(took))
}

/// The two figures, and a note of what memory the server kept after the
/// watchers closed.
pub async fn figures(opts: &Options, db: &std::path::Path) -> Result<(Figure, Figure, String)> {
    let n = opts.items;
    let (server, _) = child::start(&opts.exe, db).await?;
    let pid = server.child.id();
    let addr = server.url.trim_start_matches("http://").to_string();
    let channel = Channel::from_shared(server.url.clone())
        .map_err(|e| BenchError::Check(e.to_string()))?
        .connect()
        .await?;
    let mut scoring = ScoringServiceClient::new(channel.clone());
    let samples = (opts.samples / 4).max(20);
    rank_p50(&mut scoring, samples / 4).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(channel.clone(), opts.seed, stop.clone()));
    let quiet = rank_p50(&mut scoring, samples).await?;
    let before = child::rss(pid)?;

    let hostile = open_watchers(&addr, opts.watchers).await?;
    // Let the writes reach every watcher and its window fill.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = rank_p50(&mut scoring, samples).await?;
    let with_watchers = child::rss(pid)?;
    let peak = child::peak_rss(pid)?;

    stop.store(true, Ordering::Relaxed);
    let writes = writer
        .await
        .map_err(|e| BenchError::Check(format!("the writer failed: {e}")))??;
    drop(hostile);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // mimalloc hands freed pages back as its threads allocate again.
    rank_p50(&mut scoring, 200).await?;
    let after = child::rss(pid)?;
    drop(server);

    let mb = |b: u64| b as f64 / 1e6;
    let note = format!(
        "hostile_watchers_*: {} WatchRanking streams (top {WATCHED}) that never read, on {} \
         connections, and {writes} observations moving the ranking; a child `plumbline serve` \
         with default [limits]; resident set {:.1} MB before the watchers, {:.1} MB with them \
         (peak {:.1} MB), {:.1} MB once they closed and 200 more RankItems were served",
        opts.watchers,
        opts.watchers.div_ceil(STREAMS_PER_CONNECTION),
        mb(before),
        mb(with_watchers),
        mb(peak),
        mb(after)
    );
    Ok((
        Figure::new(
            "hostile_watchers_rank_p50",
            ms(loaded),
            "ms",
            ms(quiet),
            "the same with the writes and no watchers",
            Target::RatioAtMost(2.0),
            n,
        ),
        Figure::new(
            "hostile_watchers_peak_rss",
            mb(peak),
            "MB",
            mb(before),
            "the resident set before the watchers",
            Target::Below(200.0),
            n,
        ),
        note,
    ))
}
