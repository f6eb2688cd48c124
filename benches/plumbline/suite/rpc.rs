//! The gRPC figures, on a server holding the synthetic product: `RankItems`
//! latency and throughput against `Health/Check` on the same server (the
//! floor every RPC pays), and an observation reaching 10 % of the items
//! followed by a fresh ranking, against one reaching none.
//!
//! Baseline and measured calls alternate in blocks, so that a noisy
//! neighbour slows both alike.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::{BenchError, Figure, Options, Result, Target, ms, synth};
use plumbline::proto as pb;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;

/// Calls per block before switching between baseline and measured calls.
const BLOCK: usize = 50;
/// Concurrent clients of the throughput figure.
const CLIENTS: usize = 16;
/// Alternations of baseline and measured blocks in the throughput figure.
const THROUGHPUT_ROUNDS: usize = 8;

pub(super) async fn connect(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_string())
        .map_err(|e| BenchError::Check(format!("bad server URL {url}: {e}")))?
        .connect()
        .await?)
}

pub(super) fn rank_request() -> pb::RankItemsRequest {
    pb::RankItemsRequest {
        page_size: 50,
        ..Default::default()
    }
}

async fn health_call(c: &mut HealthClient<Channel>) -> Result<()> {
    let r = c.check(HealthCheckRequest::default()).await?.into_inner();
    if r.status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(BenchError::Check("the server is not SERVING".into()));
    }
    Ok(())
}

async fn rank_call(c: &mut ScoringServiceClient<Channel>) -> Result<usize> {
    Ok(c.rank_items(rank_request()).await?.into_inner().items.len())
}

pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Figures 1, 2 and 5.
pub async fn measure(
    opts: &Options,
    url: &str,
    keys: &[String],
) -> Result<(Vec<Figure>, Figure, Figure)> {
    let n = opts.items;
    let channel = connect(url).await?;
    let mut health = HealthClient::new(channel.clone());
    let mut scoring = ScoringServiceClient::new(channel.clone());

    // 1. Latency, one client.
    for _ in 0..(opts.samples / 10).max(20) {
        health_call(&mut health).await?;
        rank_call(&mut scoring).await?;
    }
    let want = 50.min(n as usize);
    let (mut h, mut r) = (Vec::new(), Vec::new());
    while r.len() < opts.samples {
        for _ in 0..BLOCK {
            let t = Instant::now();
            health_call(&mut health).await?;
            h.push(t.elapsed());
        }
        for _ in 0..BLOCK {
            let t = Instant::now();
            let got = rank_call(&mut scoring).await?;
            r.push(t.elapsed());
            if got > want || got == 0 {
                return Err(BenchError::Check(format!("RankItems returned {got} items")));
            }
        }
    }
    h.sort();
    r.sort();
    let latency = vec![
        Figure::new(
            "rank_top50_p50",
            ms(percentile(&r, 0.5)),
            "ms",
            ms(percentile(&h, 0.5)),
            "Health/Check p50",
            Target::RatioAtMost(1.5),
            n,
        ),
        Figure::new(
            "rank_top50_p99",
            ms(percentile(&r, 0.99)),
            "ms",
            ms(percentile(&h, 0.99)),
            "Health/Check p99",
            Target::None,
            n,
        ),
    ];

    // 2. Throughput, 16 clients on their own connections.
    let per_client = (opts.samples / 2 / THROUGHPUT_ROUNDS).max(10);
    let mut channels = Vec::new();
    for _ in 0..CLIENTS {
        channels.push(connect(url).await?);
    }
    let (mut hc, mut ht, mut rc, mut rt) = (0usize, Duration::ZERO, 0usize, Duration::ZERO);
    for _ in 0..THROUGHPUT_ROUNDS {
        let (calls, took) = concurrent(&channels, per_client, false).await?;
        hc += calls;
        ht += took;
        let (calls, took) = concurrent(&channels, per_client, true).await?;
        rc += calls;
        rt += took;
    }
    let throughput = Figure::new(
        "rank_top50_throughput_16_clients",
        rc as f64 / rt.as_secs_f64(),
        "calls/s",
        hc as f64 / ht.as_secs_f64(),
        "Health/Check, 16 clients",
        Target::RatioAtLeast(0.6),
        n,
    );

    // 5. An observation reaching 10 % of the items, then a fresh ranking.
    let observe = observe_figure(opts, channel, keys).await?;
    Ok((latency, throughput, observe))
}

/// `per_client` calls on each channel at once; returns calls and wall time.
async fn concurrent(
    channels: &[Channel],
    per_client: usize,
    rank: bool,
) -> Result<(usize, Duration)> {
    let mut set = JoinSet::new();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(channels.len() + 1));
    for ch in channels {
        let ch = ch.clone();
        let start = start.clone();
        set.spawn(async move {
            let mut health = HealthClient::new(ch.clone());
            let mut scoring = ScoringServiceClient::new(ch);
            start.wait().await;
            for _ in 0..per_client {
                if rank {
                    rank_call(&mut scoring).await?;
                } else {
                    health_call(&mut health).await?;
                }
            }
            Ok::<_, BenchError>(())
        });
    }
    start.wait().await;
    let t = Instant::now();
    while let Some(done) = set.join_next().await {
        done.map_err(|e| BenchError::Check(format!("a client task failed: {e}")))??;
    }
    Ok((channels.len() * per_client, t.elapsed()))
}

/// Figure 5: `RecordObservations` on the hot metric then `RankItems`,
/// against the same on the cold metric; checks that the ranking served
/// after the write reflects it.
async fn observe_figure(opts: &Options, channel: Channel, keys: &[String]) -> Result<Figure> {
    let n = opts.items;
    let model = synth::model(opts.seed);
    let bounds = |id: &str| {
        model
            .metrics
            .iter()
            .find(|m| m.id == id)
            .map(|m| (m.baseline, m.target))
            .ok_or_else(|| BenchError::Check(format!("no metric {id}")))
    };
    let hot = bounds(synth::HOT_METRIC)?;
    let cold = bounds(synth::COLD_METRIC)?;
    let mut values = ValueModelServiceClient::new(channel.clone());
    let mut scoring = ScoringServiceClient::new(channel);
    // Fewer rounds on big products: each one rescores N / 10 items.
    let rounds =
        ((opts.samples / 10).clamp(10, 200) as u64).min((20_000_000 / n.max(1)).max(20)) as usize;
    let mut minute = 0i64;
    let mut observe = |metric: &'static str, (b, t): (f64, f64), i: usize| {
        minute += 1;
        let value = b + (t - b) * if i.is_multiple_of(2) { 0.4 } else { 0.5 };
        let at = synth::epoch() + chrono::Duration::minutes(minute);
        (
            pb::RecordObservationsRequest {
                observations: vec![pb::Observation {
                    metric_id: metric.to_string(),
                    value,
                    observe_time: Some(prost_types::Timestamp {
                        seconds: at.timestamp(),
                        nanos: 0,
                    }),
                }],
            },
            value,
        )
    };
    let (mut hot_t, mut cold_t) = (Vec::new(), Vec::new());
    let mut last_hot = None;
    for i in 0..rounds {
        for (metric, bounds, into) in [
            (synth::COLD_METRIC, cold, &mut cold_t),
            (synth::HOT_METRIC, hot, &mut hot_t),
        ] {
            let (req, value) = observe(metric, bounds, i);
            let t = Instant::now();
            values.record_observations(req).await?;
            rank_call(&mut scoring).await?;
            into.push(t.elapsed());
            if metric == synth::HOT_METRIC {
                last_hot = Some(value);
            }
        }
    }
    // The first item serves a hypothesis on the hot metric (one in ten do).
    if let (Some(key), Some(value)) = (keys.first(), last_hot) {
        let score = scoring
            .get_item_score(pb::GetItemScoreRequest {
                item_key: key.clone(),
            })
            .await?
            .into_inner()
            .score
            .ok_or_else(|| BenchError::Check("GetItemScore without a score".into()))?;
        let want = plumbline::score::gap(hot.0, hot.1, Some(value));
        let got = score
            .terms
            .iter()
            .find(|t| t.metric_id == synth::HOT_METRIC)
            .map(|t| t.gap);
        if got != Some(want) {
            return Err(BenchError::Check(format!(
                "{key}: the score shows gap {got:?} of {}, not {want} after the observation",
                synth::HOT_METRIC
            )));
        }
    }
    Ok(Figure::new(
        "observe_then_rank_p50",
        ms(super::median(hot_t)),
        "ms",
        ms(super::median(cold_t)),
        "the same on a metric no item depends on",
        Target::Below(5.0),
        n,
    ))
}

/// Figure 9: `RankItems` on a server with `[auth] enabled` sending a read
/// token, against the same call on a server without auth, both in this
/// process on the same database; alternating blocks, p50 of each. What it
/// costs is the auth layer: parse the header, hash the secret, one map
/// lookup, a constant-time compare.
pub async fn auth_figure(
    opts: &Options,
    plain_url: &str,
    authed_url: &str,
    token: &str,
) -> Result<Figure> {
    use tonic::service::interceptor::InterceptedService;
    let value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| BenchError::Check("the token is not a header value".into()))?;
    let bearer = move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", value.clone());
        Ok(req)
    };
    let mut plain = ScoringServiceClient::new(connect(plain_url).await?);
    let mut authed =
        ScoringServiceClient::new(InterceptedService::new(connect(authed_url).await?, bearer));
    // Without the token the authed server must refuse: the figure measures
    // a check that happens.
    let mut refused = ScoringServiceClient::new(connect(authed_url).await?);
    match refused.rank_items(rank_request()).await {
        Err(s) if s.code() == tonic::Code::Unauthenticated => {}
        other => {
            return Err(BenchError::Check(format!(
                "the server with auth answered a call without a token: {other:?}"
            )));
        }
    }
    for _ in 0..(opts.samples / 10).max(20) {
        rank_call(&mut plain).await?;
        authed.rank_items(rank_request()).await?;
    }
    let (mut p, mut a) = (Vec::new(), Vec::new());
    while a.len() < opts.samples {
        for _ in 0..BLOCK {
            let t = Instant::now();
            rank_call(&mut plain).await?;
            p.push(t.elapsed());
        }
        for _ in 0..BLOCK {
            let t = Instant::now();
            authed.rank_items(rank_request()).await?;
            a.push(t.elapsed());
        }
    }
    Ok(Figure::new(
        "rank_top50_auth_p50",
        ms(super::median(a)),
        "ms",
        ms(super::median(p)),
        "the same call without auth",
        Target::RatioAtMost(1.1),
        opts.items,
    ))
}
