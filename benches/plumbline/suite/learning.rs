//! Does validating value after release make the next ranking better? A
//! seeded simulation of issue 17: products with known true effects, driven
//! through the real server's gRPC API, once with learning (`ValidateReleases`
//! before every re-ranking), once without (the same loop re-ranking on the
//! fresh observations alone) and once as an *oracle* (the ceiling: instead
//! of validating, every hypothesis released so far is told its truth,
//! confidence 1 if right and 0 if wrong, through `UpdateHypothesis`), with
//! the same product, release timing and noise draws. Only the ratios travel:
//! they measure the rule, not the machine.
//!
//! # The product ([`Product::draw`])
//!
//! Everything is drawn from the seed, and nothing is tuned to any rule:
//! 2-4 metrics (each under its own strategic goal of random weight; higher
//! or lower is better), each with a baseline, a target and a weekly noise
//! whose size is drawn per metric: about half are *noisy* (noise as large as
//! a typical release's step), the rest *quiet*. Each metric has 2-5
//! hypotheses with an expected effect (share of the gap) and a prior
//! confidence; about 30 % are *wrong* (true effect 0), the others have a
//! true effect near, never equal to, the expected one (0.6-1.4 times it).
//! Items (1.5-3 per hypothesis, sizes 1-13) link to 1-3 hypotheses each;
//! the contributions to one hypothesis add up to at most 1, so the recorded
//! contribution is the one the score uses.
//!
//! # The loop ([`simulate`])
//!
//! A fresh in-process server on 127.0.0.1:0. The timeline lies in the past
//! (ending a week before now), so every after-window has closed: 5-8 weeks of
//! observations at the baseline, then per round: `RankItems`; ship the
//! not-yet-shipped items in ranking order that fit a size budget of
//! `0.6 / rounds` of the backlog's total size (30 % a round at 2 rounds, so
//! both loops ship 60 % of the backlog in all) as one `RecordRelease`, 1-6
//! days after the last observation; the simulator moves each metric by the
//! true effects of the shipped items, `Σ true_effect × delivered share` of
//! the gap open at the release (at most the whole gap), and records 5-8
//! weekly observations with noise (`RecordObservations`); with learning,
//! `ValidateReleases`; as the oracle, `UpdateHypothesis` sets the
//! confidence of every hypothesis linked to an item shipped so far to its
//! truth (1 right, 0 wrong; the API takes [0, 1]), the most any learning
//! could know from the releases. Shipped items are skipped by the simulator, not
//! closed: closing them would record a second release (`close:KEY`) beside
//! the named one.
//!
//! # What it reports ([`figures`])
//!
//! True value delivered in rounds 2..N (the weighted share of the gap the
//! shipped items truly closed; round 1 is the same in both loops) with
//! learning against without, at 2 and 6 rounds; the mean effective
//! confidence (what the score uses) of wrong and right hypotheses after the
//! last round against the same without learning (the priors); and the
//! stored verdicts by outcome; and the ceiling: the oracle's true value
//! against not learning, and the share of the oracle's gain that learning
//! captures, `(learning - none) / (oracle - none)` (left out, with a note,
//! when the oracle gains nothing).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;
use tonic::transport::Channel;

use super::{BenchError, Figure, Result, Target, config};
use plumbline::proto as pb;
use plumbline::proto::backlog_service_client::BacklogServiceClient;
use plumbline::proto::scoring_service_client::ScoringServiceClient;
use plumbline::proto::source_service_client::SourceServiceClient;
use plumbline::proto::validation_service_client::ValidationServiceClient;
use plumbline::proto::value_model_service_client::ValueModelServiceClient;

/// The round counts the issue asks about.
pub const ROUNDS: [usize; 2] = [2, 6];
/// The share of the backlog's total size both loops ship over all rounds.
pub const SHIPPED_SHARE: f64 = 0.6;
/// Learning must not deliver less true value, summed over the seeds, than
/// the same loop without it. The "clear margin" the issue asks for is held
/// by the sign test ([`SIGN_TEST_AT_MOST`]): a margin in size is bounded by
/// the oracle, whose ceiling at 6 rounds is itself about 1.05x (see
/// BENCHMARKS.md), so a size target would measure the generator, not the rule.
pub const VALUE_TARGET: f64 = 1.0;
/// The one-sided sign test's p at most which learning's wins over the seeds
/// are more than chance.
pub const SIGN_TEST_AT_MOST: f64 = 0.05;

/// The names of every learning figure, in order.
pub const FIGURES: [&str; 16] = [
    "learning_value_2_rounds",
    "learning_value_6_rounds",
    "learning_sign_test_2_rounds",
    "learning_sign_test_6_rounds",
    "wrong_confidence_2_rounds",
    "right_confidence_2_rounds",
    "wrong_confidence_6_rounds",
    "right_confidence_6_rounds",
    "verdicts_supports_6_rounds",
    "verdicts_refutes_6_rounds",
    "verdicts_inconclusive_6_rounds",
    "verdicts_insufficient_data_6_rounds",
    "oracle_value_2_rounds",
    "oracle_value_6_rounds",
    "learning_share_of_oracle_gain_2_rounds",
    "learning_share_of_oracle_gain_6_rounds",
];

/// The share figures, which [`figures`] leaves out (with a note) when the
/// oracle gains nothing over not learning: a share of nothing is no figure.
#[allow(dead_code, reason = "the integration test reads it")]
pub const SHARE_FIGURES: [&str; 2] = [
    "learning_share_of_oracle_gain_2_rounds",
    "learning_share_of_oracle_gain_6_rounds",
];

/// What a loop does after each round's observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Loop {
    /// Nothing: the next ranking sees the fresh observations alone.
    Without,
    /// `ValidateReleases`.
    Learning,
    /// `UpdateHypothesis`: every hypothesis released so far gets its true
    /// confidence (1 right, 0 wrong).
    Oracle,
}

impl Loop {
    fn name(self) -> &'static str {
        match self {
            Loop::Without => "off",
            Loop::Learning => "on",
            Loop::Oracle => "oracle",
        }
    }
}

/// Which metrics a product draws noisy: the mix (about half), or all
/// quiet / all noisy, to see how much of learning's reach the noise takes.
/// The draws are the same in every mix (the same coin is tossed and then
/// overruled), so a seed's product differs between mixes only in its noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
pub enum NoiseMix {
    /// About half the metrics noisy (noise as large as a typical step).
    #[default]
    Mixed,
    /// Every metric quiet (noise 2-20 % of a typical step).
    Quiet,
    /// Every metric noisy.
    Noisy,
}

/// A metric of the simulated product.
#[derive(Debug, Clone, Serialize)]
pub struct SimMetric {
    pub id: String,
    pub baseline: f64,
    pub target: f64,
    /// Weight of its strategic goal among the others (the score normalizes).
    pub goal_weight: f64,
    /// Standard deviation of the weekly noise, in the metric's unit.
    pub noise: f64,
}

impl SimMetric {
    /// The goal's id.
    pub fn goal_id(&self) -> String {
        format!("G-{}", self.id)
    }
}

/// A hypothesis with its truth.
#[derive(Debug, Clone, Serialize)]
pub struct SimHypothesis {
    pub id: String,
    /// Index into [`Product::metrics`].
    pub metric: usize,
    pub expected_effect: f64,
    /// The prior confidence.
    pub confidence: f64,
    /// The share of the gap it truly closes when wholly delivered; 0 when
    /// it is wrong.
    pub true_effect: f64,
}

impl SimHypothesis {
    pub fn is_right(&self) -> bool {
        self.true_effect > 0.0
    }
}

/// A backlog item.
#[derive(Debug, Clone, Serialize)]
pub struct SimItem {
    /// `sim/N`.
    pub key: String,
    pub external_id: String,
    pub size: f64,
    /// (index into [`Product::hypotheses`], contribution).
    pub links: Vec<(usize, f64)>,
}

/// A product with known true effects, its timeline and its noise.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub seed: u64,
    pub metrics: Vec<SimMetric>,
    pub hypotheses: Vec<SimHypothesis>,
    pub items: Vec<SimItem>,
    /// Weeks of observations before the first release.
    pub pre_weeks: usize,
    /// Per round (up to the largest of [`ROUNDS`]): days from the last
    /// observation to the release (1-6), and weeks observed after it.
    pub rounds: Vec<(i64, usize)>,
    /// Per metric, per week: the noise added to that week's observation
    /// (already scaled by the metric's noise).
    pub noise: Vec<Vec<f64>>,
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64(); // (0, 1]
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uniform(rng: &mut fastrand::Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.f64()
}

impl Product {
    /// The product of `seed`: the same seed gives the same product, timeline
    /// and noise.
    #[allow(dead_code, reason = "the integration test draws products")]
    pub fn draw(seed: u64) -> Product {
        Product::draw_with(seed, NoiseMix::Mixed)
    }

    /// The product of `seed` with its metrics' noise drawn as `mix` says.
    pub fn draw_with(seed: u64, mix: NoiseMix) -> Product {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed_1ea7_0000_0017);
        let mut metrics = Vec::new();
        let mut hypotheses = Vec::new();
        for m in 0..rng.usize(2..=4) {
            let baseline = uniform(&mut rng, 10.0, 100.0);
            let span = baseline * uniform(&mut rng, 0.2, 1.0);
            let target = if rng.f64() < 0.3 {
                baseline - span
            } else {
                baseline + span
            };
            // A typical release's step: an expected effect of about 0.2,
            // delivered by about half.
            let step = 0.1 * span;
            let noisy = match (mix, rng.bool()) {
                (NoiseMix::Mixed, coin) => coin,
                (NoiseMix::Quiet, _) => false,
                (NoiseMix::Noisy, _) => true,
            };
            let noise = if noisy {
                step * uniform(&mut rng, 0.5, 1.5)
            } else {
                step * uniform(&mut rng, 0.02, 0.2)
            };
            metrics.push(SimMetric {
                id: format!("m{m}"),
                baseline,
                target,
                goal_weight: uniform(&mut rng, 0.5, 3.0),
                noise,
            });
            for _ in 0..rng.usize(2..=5) {
                let expected_effect = uniform(&mut rng, 0.05, 0.4);
                let true_effect = if rng.f64() < 0.3 {
                    0.0
                } else {
                    // Near the expected effect, never equal to it.
                    let mut f = uniform(&mut rng, 0.6, 1.4);
                    while (f - 1.0).abs() < 0.02 {
                        f = uniform(&mut rng, 0.6, 1.4);
                    }
                    (expected_effect * f).min(1.0)
                };
                hypotheses.push(SimHypothesis {
                    id: format!("H-{}", hypotheses.len() + 1),
                    metric: m,
                    expected_effect,
                    confidence: uniform(&mut rng, 0.3, 0.9),
                    true_effect,
                });
            }
        }
        let n_items =
            ((hypotheses.len() as f64 * uniform(&mut rng, 1.5, 3.0)).round() as usize).max(6);
        let mut items: Vec<SimItem> = (0..n_items)
            .map(|i| {
                let k = match rng.f64() {
                    p if p < 0.5 => 1,
                    p if p < 0.85 => 2,
                    _ => 3,
                }
                .min(hypotheses.len());
                let mut hs: Vec<usize> = (0..hypotheses.len()).collect();
                rng.shuffle(&mut hs);
                hs.truncate(k);
                hs.sort_unstable();
                SimItem {
                    key: format!("sim/{}", i + 1),
                    external_id: (i + 1).to_string(),
                    size: [1.0, 2.0, 3.0, 5.0, 8.0, 13.0][rng.usize(0..6)],
                    links: hs
                        .into_iter()
                        .map(|h| (h, uniform(&mut rng, 0.1, 0.7)))
                        .collect(),
                }
            })
            .collect();
        // The contributions to one hypothesis add up to at most 1.
        let mut totals = vec![0.0; hypotheses.len()];
        for it in &items {
            for &(h, c) in &it.links {
                totals[h] += c;
            }
        }
        for it in &mut items {
            for (h, c) in &mut it.links {
                if totals[*h] > 1.0 {
                    // Rounded to what the API stores without loss.
                    *c = (*c / totals[*h] * 1e4).floor() / 1e4;
                }
            }
        }
        let pre_weeks = rng.usize(5..=8);
        let max_rounds = ROUNDS.iter().copied().max().unwrap_or(0);
        let rounds: Vec<(i64, usize)> = (0..max_rounds)
            .map(|_| (rng.i64(1..=6), rng.usize(5..=8)))
            .collect();
        let weeks = pre_weeks + rounds.iter().map(|r| r.1).sum::<usize>();
        let noise = metrics
            .iter()
            .map(|m| (0..weeks).map(|_| normal(&mut rng) * m.noise).collect())
            .collect();
        Product {
            seed,
            metrics,
            hypotheses,
            items,
            pre_weeks,
            rounds,
            noise,
        }
    }

    /// Effective goal weights (the strategic goals' weights normalized).
    pub fn effective_weights(&self) -> Vec<f64> {
        let total: f64 = self.metrics.iter().map(|m| m.goal_weight).sum();
        self.metrics.iter().map(|m| m.goal_weight / total).collect()
    }

    pub fn total_size(&self) -> f64 {
        self.items.iter().map(|i| i.size).sum()
    }

    /// What shipping `releases` (item keys, one list per round, in order)
    /// is truly worth, per round: the weighted share of the gap each
    /// release truly closes. Computed from the product alone, without a
    /// server; the test holds the simulation to it.
    pub fn worth(&self, releases: &[Vec<String>]) -> Vec<f64> {
        let weights = self.effective_weights();
        let mut level: Vec<f64> = self.metrics.iter().map(|m| m.baseline).collect();
        releases
            .iter()
            .map(|keys| {
                let shipped: Vec<&SimItem> = self
                    .items
                    .iter()
                    .filter(|i| keys.contains(&i.key))
                    .collect();
                let mut value = 0.0;
                for (m, metric) in self.metrics.iter().enumerate() {
                    let share: f64 = shipped
                        .iter()
                        .flat_map(|i| &i.links)
                        .filter(|(h, _)| self.hypotheses[*h].metric == m)
                        .map(|&(h, c)| c * self.hypotheses[h].true_effect)
                        .sum::<f64>()
                        .min(1.0);
                    let span = metric.target - metric.baseline;
                    let gap = (metric.target - level[m]) / span;
                    level[m] += share * (metric.target - level[m]);
                    value += weights[m] * share * gap;
                }
                value
            })
            .collect()
    }
}

/// One loop over one product.
#[derive(Debug, Clone, Serialize)]
pub struct SimRun {
    pub rounds: usize,
    /// `mode == Loop::Learning`.
    pub learning: bool,
    pub mode: Loop,
    /// The hypotheses (product order) whose confidence the oracle set, each
    /// once, in the order it first set them; empty in the other loops.
    pub oracle_set: Vec<usize>,
    /// The item keys shipped, per round.
    pub shipped: Vec<Vec<String>>,
    /// True value delivered per round (weighted share of the gap closed).
    pub values: Vec<f64>,
    /// Effective confidence per hypothesis (product order) before the first
    /// round and after the last.
    pub confidence_before: Vec<f64>,
    pub confidence_after: Vec<f64>,
    /// Status per hypothesis after the last round (VALIDATED, ...).
    pub status_after: Vec<String>,
    /// Stored evidence at the end, by outcome name (SUPPORTS, ...).
    pub verdicts: BTreeMap<String, usize>,
    /// Per metric, the observations the server holds at the end: (unix
    /// seconds, value).
    #[allow(dead_code, reason = "the integration test reads them back")]
    #[serde(skip)]
    pub observed: Vec<Vec<(i64, f64)>>,
    /// When the timeline's week 0 lies (unix seconds).
    pub start: i64,
}

impl SimRun {
    /// True value of rounds 2..N.
    pub fn value_after_first(&self) -> f64 {
        self.values.iter().skip(1).sum()
    }
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// The timeline's week 0 for a product whose loops start at `now`: the last
/// week of the longest loop ends a week before `now`.
pub fn start_of(product: &Product, now: DateTime<Utc>) -> DateTime<Utc> {
    let weeks = product.noise.first().map(Vec::len).unwrap_or(0) as i64;
    let day = Utc
        .timestamp_opt(now.timestamp() - now.timestamp() % 86_400, 0)
        .single()
        .unwrap_or(now);
    day - Duration::weeks(weeks + 1)
}

fn week_time(start: DateTime<Utc>, week: usize) -> DateTime<Utc> {
    start + Duration::weeks(week as i64)
}

fn effective(h: &pb::Hypothesis) -> f64 {
    use plumbline::domain::HypothesisStatus as S;
    let status = match pb::HypothesisStatus::try_from(h.status) {
        Ok(pb::HypothesisStatus::Validated) => S::Validated,
        Ok(pb::HypothesisStatus::Invalidated) => S::Invalidated,
        Ok(pb::HypothesisStatus::Testing) => S::Testing,
        _ => S::Proposed,
    };
    plumbline::score::effective_confidence(status, h.confidence.unwrap_or(0.5))
}

/// Clients of one in-process server.
struct Api {
    sources: SourceServiceClient<Channel>,
    model: ValueModelServiceClient<Channel>,
    backlog: BacklogServiceClient<Channel>,
    scoring: ScoringServiceClient<Channel>,
    validation: ValidationServiceClient<Channel>,
}

impl Api {
    async fn connect(url: &str) -> Result<Api> {
        let channel = Channel::from_shared(url.to_string())
            .map_err(|e| BenchError::Check(format!("bad server URL {url}: {e}")))?
            .connect()
            .await?;
        Ok(Api {
            sources: SourceServiceClient::new(channel.clone()),
            model: ValueModelServiceClient::new(channel.clone()),
            backlog: BacklogServiceClient::new(channel.clone()),
            scoring: ScoringServiceClient::new(channel.clone()),
            validation: ValidationServiceClient::new(channel),
        })
    }

    /// Writes the product: source, goals, metrics, hypotheses, items, links.
    async fn write(&mut self, p: &Product) -> Result<()> {
        self.sources
            .create_source(pb::CreateSourceRequest {
                source: Some(pb::Source {
                    id: "sim".into(),
                    kind: pb::TrackerKind::Github as i32,
                    base_url: "https://api.github.com".into(),
                    project_key: "acme/sim".into(),
                    token_env: "PLUMBLINE_SECRET_SIM".into(),
                    ..Default::default()
                }),
            })
            .await?;
        for m in &p.metrics {
            self.model
                .create_goal(pb::CreateGoalRequest {
                    goal: Some(pb::Goal {
                        id: m.goal_id(),
                        title: format!("Move {}", m.id),
                        level: pb::GoalLevel::Strategic as i32,
                        weight: Some(m.goal_weight),
                        ..Default::default()
                    }),
                })
                .await?;
            self.model
                .create_metric(pb::CreateMetricRequest {
                    metric: Some(pb::Metric {
                        id: m.id.clone(),
                        name: format!("Metric {}", m.id),
                        unit: "u".into(),
                        baseline: m.baseline,
                        target: m.target,
                        ..Default::default()
                    }),
                })
                .await?;
        }
        for h in &p.hypotheses {
            let m = &p.metrics[h.metric];
            self.model
                .create_hypothesis(pb::CreateHypothesisRequest {
                    hypothesis: Some(pb::Hypothesis {
                        id: h.id.clone(),
                        statement: format!("We believe {} will move {}.", h.id, m.id),
                        goal_id: m.goal_id(),
                        metric_id: m.id.clone(),
                        expected_effect: h.expected_effect,
                        confidence: Some(h.confidence),
                        ..Default::default()
                    }),
                })
                .await?;
        }
        self.backlog
            .upsert_items(pb::UpsertItemsRequest {
                items: p
                    .items
                    .iter()
                    .map(|i| pb::Item {
                        source_id: "sim".into(),
                        external_id: i.external_id.clone(),
                        title: format!("Item {}", i.external_id),
                        estimate: Some(i.size),
                        ..Default::default()
                    })
                    .collect(),
                update_mask: None,
            })
            .await?;
        for i in &p.items {
            for &(h, c) in &i.links {
                self.backlog
                    .link_item(pb::LinkItemRequest {
                        item_key: i.key.clone(),
                        hypothesis_id: p.hypotheses[h].id.clone(),
                        contribution: c,
                        rationale: String::new(),
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Every open item in ranking order (value density).
    async fn ranking(&mut self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut page_token = String::new();
        loop {
            let r = self
                .scoring
                .rank_items(pb::RankItemsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            keys.extend(
                r.items
                    .into_iter()
                    .filter_map(|i| i.score.map(|s| s.item_key)),
            );
            if r.next_page_token.is_empty() {
                return Ok(keys);
            }
            page_token = r.next_page_token;
        }
    }

    /// Effective confidence and status per hypothesis, in product order.
    async fn confidences(&mut self, p: &Product) -> Result<(Vec<f64>, Vec<String>)> {
        let mut out = Vec::with_capacity(p.hypotheses.len());
        let mut status = Vec::with_capacity(p.hypotheses.len());
        for h in &p.hypotheses {
            let got = self
                .model
                .get_hypothesis(pb::GetHypothesisRequest { id: h.id.clone() })
                .await?
                .into_inner()
                .hypothesis
                .ok_or_else(|| BenchError::Check(format!("no hypothesis {}", h.id)))?;
            out.push(effective(&got));
            status.push(
                pb::HypothesisStatus::try_from(got.status)
                    .map(|s| {
                        s.as_str_name()
                            .trim_start_matches("HYPOTHESIS_STATUS_")
                            .to_string()
                    })
                    .unwrap_or_else(|_| format!("status {}", got.status)),
            );
        }
        Ok((out, status))
    }

    /// The oracle: sets `h`'s confidence to its truth, 1 if right and 0 if
    /// wrong (the bounds the API takes), leaving its status alone.
    async fn tell_truth(&mut self, h: &SimHypothesis) -> Result<()> {
        self.model
            .update_hypothesis(pb::UpdateHypothesisRequest {
                hypothesis: Some(pb::Hypothesis {
                    id: h.id.clone(),
                    confidence: Some(if h.is_right() { 1.0 } else { 0.0 }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["confidence".into()],
                }),
            })
            .await?;
        Ok(())
    }

    async fn observe(&mut self, obs: Vec<pb::Observation>) -> Result<()> {
        if !obs.is_empty() {
            self.model
                .record_observations(pb::RecordObservationsRequest { observations: obs })
                .await?;
        }
        Ok(())
    }
}

/// Runs one loop of `rounds` rounds over `product` on a fresh in-process
/// server in `dir`, without learning, with it, or as the oracle. `now` fixes
/// the timeline, so that every loop of a product sees the same one.
pub async fn simulate(
    product: &Product,
    rounds: usize,
    mode: Loop,
    now: DateTime<Utc>,
    dir: &Path,
) -> Result<SimRun> {
    if rounds == 0 || rounds > product.rounds.len() {
        return Err(BenchError::Check(format!(
            "rounds must be 1..={}, not {rounds}",
            product.rounds.len()
        )));
    }
    let db = dir.join(format!(
        "learning-{}-{rounds}-{}.sqlite",
        product.seed,
        mode.name()
    ));
    let server = plumbline::server::start(&config(&db)).await?;
    let result = drive(product, rounds, mode, now, &server.url()).await;
    server.shutdown().await?;
    result
}

async fn drive(
    p: &Product,
    rounds: usize,
    mode: Loop,
    now: DateTime<Utc>,
    url: &str,
) -> Result<SimRun> {
    let mut api = Api::connect(url).await?;
    api.write(p).await?;
    let start = start_of(p, now);
    let weights = p.effective_weights();
    let mut level: Vec<f64> = p.metrics.iter().map(|m| m.baseline).collect();
    let observations = |week: usize, level: &[f64]| -> Vec<pb::Observation> {
        p.metrics
            .iter()
            .enumerate()
            .map(|(m, metric)| pb::Observation {
                metric_id: metric.id.clone(),
                value: level[m] + p.noise[m][week],
                observe_time: Some(ts(week_time(start, week))),
            })
            .collect()
    };
    let mut week = 0;
    let mut obs = Vec::new();
    while week < p.pre_weeks {
        obs.extend(observations(week, &level));
        week += 1;
    }
    api.observe(obs).await?;
    let (confidence_before, _) = api.confidences(p).await?;

    let budget = SHIPPED_SHARE * p.total_size() / rounds as f64;
    let sizes: BTreeMap<&str, f64> = p.items.iter().map(|i| (i.key.as_str(), i.size)).collect();
    let mut shipped_all: HashSet<String> = HashSet::new();
    let mut shipped = Vec::new();
    let mut values = Vec::new();
    let mut oracle_set: Vec<usize> = Vec::new();
    for (round, &(offset, weeks_after)) in p.rounds.iter().take(rounds).enumerate() {
        // Ship the top of the ranking under the budget.
        let mut left = budget;
        let mut release = Vec::new();
        for key in api.ranking().await? {
            if shipped_all.contains(&key) {
                continue;
            }
            let size = sizes.get(key.as_str()).copied().unwrap_or(f64::INFINITY);
            if size <= left {
                left -= size;
                release.push(key);
            }
        }
        let release_time = week_time(start, week - 1) + Duration::days(offset);
        if !release.is_empty() {
            api.validation
                .record_release(pb::RecordReleaseRequest {
                    release_id: format!("round-{}", round + 1),
                    item_keys: release.clone(),
                    release_time: Some(ts(release_time)),
                    note: String::new(),
                })
                .await?;
        }
        // The metrics move by the true effects of what shipped.
        let mut value = 0.0;
        for (m, metric) in p.metrics.iter().enumerate() {
            let mut share = 0.0;
            for i in p.items.iter().filter(|i| release.contains(&i.key)) {
                for &(h, c) in &i.links {
                    if p.hypotheses[h].metric == m {
                        share += c * p.hypotheses[h].true_effect;
                    }
                }
            }
            let share: f64 = f64::min(share, 1.0);
            let gap = (metric.target - level[m]) / (metric.target - metric.baseline);
            level[m] += share * (metric.target - level[m]);
            value += weights[m] * share * gap;
        }
        values.push(value);
        shipped_all.extend(release.iter().cloned());
        shipped.push(release);
        let mut obs = Vec::new();
        for _ in 0..weeks_after {
            obs.extend(observations(week, &level));
            week += 1;
        }
        api.observe(obs).await?;
        if mode == Loop::Oracle {
            // Every hypothesis an item shipped so far links to, and only
            // those: what the releases could at best have taught.
            for i in p.items.iter().filter(|i| shipped_all.contains(&i.key)) {
                for &(h, _) in &i.links {
                    if !oracle_set.contains(&h) {
                        api.tell_truth(&p.hypotheses[h]).await?;
                        oracle_set.push(h);
                    }
                }
            }
        }
        if mode == Loop::Learning {
            api.validation
                .validate_releases(pb::ValidateReleasesRequest {
                    include_open_windows: false,
                    // The timeline lies in the past: the server's clock.
                    as_of: None,
                    dry_run: false,
                })
                .await?;
        }
    }
    // The harness checks itself on every run: what it says was delivered
    // is what the generator says the shipped items are worth.
    let worth = p.worth(&shipped);
    if worth.iter().zip(&values).any(|(w, v)| (w - v).abs() > 1e-9) {
        return Err(BenchError::Check(format!(
            "seed {}: the simulator's values {values:?} differ from the product's worth {worth:?}",
            p.seed
        )));
    }
    let (confidence_after, status_after) = api.confidences(p).await?;
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for h in &p.hypotheses {
        let ev = api
            .validation
            .get_hypothesis_evidence(pb::GetHypothesisEvidenceRequest {
                hypothesis_id: h.id.clone(),
            })
            .await?
            .into_inner()
            .evidence;
        for e in ev {
            let name = pb::EvidenceOutcome::try_from(e.outcome)
                .map(|o| {
                    o.as_str_name()
                        .trim_start_matches("EVIDENCE_OUTCOME_")
                        .to_string()
                })
                .unwrap_or_else(|_| format!("outcome {}", e.outcome));
            *verdicts.entry(name).or_default() += 1;
        }
    }
    let mut observed = Vec::new();
    for m in &p.metrics {
        let trend = api
            .validation
            .get_metric_trend(pb::GetMetricTrendRequest {
                metric_id: m.id.clone(),
            })
            .await?
            .into_inner();
        observed.push(
            trend
                .points
                .into_iter()
                .map(|pt| (pt.observe_time.map(|t| t.seconds).unwrap_or(0), pt.value))
                .collect(),
        );
    }
    Ok(SimRun {
        rounds,
        learning: mode == Loop::Learning,
        mode,
        oracle_set,
        shipped,
        values,
        confidence_before,
        confidence_after,
        status_after,
        verdicts,
        observed,
        start: start.timestamp(),
    })
}

/// Both loops of one product at one round count.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub rounds: usize,
    pub learning: SimRun,
    pub without: SimRun,
    /// The ceiling: the same loop told the truth of what it released.
    pub oracle: SimRun,
    /// Learning's true value in rounds 2..N over the same without learning.
    pub ratio: f64,
    /// The oracle's true value in rounds 2..N over the same without learning.
    pub oracle_ratio: f64,
}

/// Every loop of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    pub seed: u64,
    pub metrics: usize,
    pub hypotheses: usize,
    pub wrong: usize,
    pub items: usize,
    pub pairs: Vec<Pair>,
    #[serde(skip)]
    pub product: Product,
}

impl SeedResult {
    pub fn pair(&self, rounds: usize) -> Option<&Pair> {
        self.pairs.iter().find(|p| p.rounds == rounds)
    }

    /// One line: the seed's product and its ratios.
    pub fn line(&self) -> String {
        let ratios: Vec<String> = self
            .pairs
            .iter()
            .map(|p| {
                format!(
                    "{} rounds {:.3}x ({:.4} vs {:.4}; oracle {:.3}x, {:.4})",
                    p.rounds,
                    p.ratio,
                    p.learning.value_after_first(),
                    p.without.value_after_first(),
                    p.oracle_ratio,
                    p.oracle.value_after_first()
                )
            })
            .collect();
        format!(
            "seed {}: {} metrics, {} hypotheses ({} wrong), {} items; {}",
            self.seed,
            self.metrics,
            self.hypotheses,
            self.wrong,
            self.items,
            ratios.join(", ")
        )
    }
}

/// Runs the three loops at each of `rounds` for one seed.
pub async fn run_seed(
    seed: u64,
    mix: NoiseMix,
    rounds: &[usize],
    now: DateTime<Utc>,
    dir: &Path,
) -> Result<SeedResult> {
    let product = Product::draw_with(seed, mix);
    let mut pairs = Vec::new();
    for &r in rounds {
        let learning = simulate(&product, r, Loop::Learning, now, dir).await?;
        let without = simulate(&product, r, Loop::Without, now, dir).await?;
        let oracle = simulate(&product, r, Loop::Oracle, now, dir).await?;
        pairs.push(Pair {
            rounds: r,
            ratio: learning.value_after_first() / without.value_after_first(),
            oracle_ratio: oracle.value_after_first() / without.value_after_first(),
            learning,
            without,
            oracle,
        });
    }
    Ok(SeedResult {
        seed,
        metrics: product.metrics.len(),
        hypotheses: product.hypotheses.len(),
        wrong: product.hypotheses.iter().filter(|h| !h.is_right()).count(),
        items: product.items.len(),
        pairs,
        product,
    })
}

/// The learning report: figures over all seeds, and each seed's line.
#[derive(Debug, Clone, Serialize)]
pub struct LearningReport {
    pub seeds: Vec<u64>,
    pub date: String,
    pub total_secs: f64,
    pub figures: Vec<Figure>,
    pub per_seed: Vec<SeedResult>,
    pub notes: Vec<String>,
}

/// Runs `seeds` at [`ROUNDS`] and aggregates.
pub async fn run(seeds: &[u64], mix: NoiseMix, progress: bool) -> Result<LearningReport> {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir()?;
    let now = Utc::now();
    let mut per_seed = Vec::new();
    for &seed in seeds {
        let r = run_seed(seed, mix, &ROUNDS, now, dir.path()).await?;
        if progress {
            eprintln!(
                "[{:>7.1}s] seed {seed} done",
                started.elapsed().as_secs_f64()
            );
        }
        per_seed.push(r);
    }
    let (figures, notes) = figures(&per_seed);
    Ok(LearningReport {
        seeds: seeds.to_vec(),
        date: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        total_secs: started.elapsed().as_secs_f64(),
        figures,
        per_seed,
        notes,
    })
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The figures of [`FIGURES`] over `results`, and notes.
pub fn figures(results: &[SeedResult]) -> (Vec<Figure>, Vec<String>) {
    let mut figures = Vec::new();
    let mut notes = Vec::new();
    let fig = |name, value, unit, baseline, baseline_name, target| {
        Figure::new(name, value, unit, baseline, baseline_name, target, 0)
    };
    for (rounds, name) in [
        (2, "learning_value_2_rounds"),
        (6, "learning_value_6_rounds"),
    ] {
        let pairs: Vec<&Pair> = results.iter().filter_map(|r| r.pair(rounds)).collect();
        let on: f64 = pairs.iter().map(|p| p.learning.value_after_first()).sum();
        let off: f64 = pairs.iter().map(|p| p.without.value_after_first()).sum();
        figures.push(fig(
            name,
            on,
            "gap closed",
            off,
            "the same loop without learning",
            Target::RatioAtLeast(VALUE_TARGET),
        ));
        let ratios: Vec<f64> = pairs.iter().map(|p| p.ratio).collect();
        let won = ratios.iter().filter(|r| **r > 1.0).count();
        let lost = ratios.iter().filter(|r| **r < 1.0).count();
        // "A clear margin over many seeds": learning wins in more seeds
        // than chance would give it if it made no difference.
        figures.push(fig(
            if rounds == 2 {
                "learning_sign_test_2_rounds"
            } else {
                "learning_sign_test_6_rounds"
            },
            sign_test(won, lost),
            "p",
            1.0,
            "learning changing nothing",
            Target::AtMost(SIGN_TEST_AT_MOST),
        ));
        notes.push(format!(
            "{rounds} rounds: learning delivered more true value in {won} of {} seeds, less in \
             {lost} (one-sided sign test over the seeds that differ: p = {:.2e}); per-seed \
             ratios from {:.3} to {:.3}, mean {:.3}",
            ratios.len(),
            sign_test(won, lost),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean(&ratios)
        ));
    }
    for rounds in ROUNDS {
        let mut conf = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        let mut before = [Vec::new(), Vec::new()];
        for r in results {
            let Some(p) = r.pair(rounds) else { continue };
            for (i, h) in r.product.hypotheses.iter().enumerate() {
                let k = usize::from(h.is_right());
                conf[k][0].push(p.learning.confidence_after[i]);
                conf[k][1].push(p.without.confidence_after[i]);
                before[k].push(p.learning.confidence_before[i]);
            }
        }
        let names = if rounds == 2 {
            ["wrong_confidence_2_rounds", "right_confidence_2_rounds"]
        } else {
            ["wrong_confidence_6_rounds", "right_confidence_6_rounds"]
        };
        for (k, name) in names.into_iter().enumerate() {
            let target = if k == 0 {
                Target::RatioAtMost(0.8)
            } else {
                Target::RatioAtLeast(1.1)
            };
            figures.push(fig(
                name,
                mean(&conf[k][0]),
                "mean effective confidence",
                mean(&conf[k][1]),
                "the same without learning (the priors)",
                target,
            ));
        }
        notes.push(format!(
            "{rounds} rounds: effective confidence, wrong hypotheses {:.3} -> {:.3} ({}), right \
             {:.3} -> {:.3} ({})",
            mean(&before[0]),
            mean(&conf[0][0]),
            conf[0][0].len(),
            mean(&before[1]),
            mean(&conf[1][0]),
            conf[1][0].len()
        ));
    }
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    // Final statuses, [wrong, right].
    let mut statuses: [BTreeMap<String, usize>; 2] = Default::default();
    for r in results {
        let Some(p) = r.pair(6) else { continue };
        for (k, n) in &p.learning.verdicts {
            *verdicts.entry(k.clone()).or_default() += n;
        }
        for (i, h) in r.product.hypotheses.iter().enumerate() {
            *statuses[usize::from(h.is_right())]
                .entry(p.learning.status_after[i].clone())
                .or_default() += 1;
        }
    }
    let all: usize = verdicts.values().sum();
    for (outcome, name) in [
        ("SUPPORTS", "verdicts_supports_6_rounds"),
        ("REFUTES", "verdicts_refutes_6_rounds"),
        ("INCONCLUSIVE", "verdicts_inconclusive_6_rounds"),
        ("INSUFFICIENT_DATA", "verdicts_insufficient_data_6_rounds"),
    ] {
        figures.push(fig(
            name,
            verdicts.get(outcome).copied().unwrap_or(0) as f64,
            "verdicts",
            all as f64,
            "all stored verdicts",
            Target::None,
        ));
    }
    for (rounds, value_name, share_name) in [
        (
            2,
            "oracle_value_2_rounds",
            "learning_share_of_oracle_gain_2_rounds",
        ),
        (
            6,
            "oracle_value_6_rounds",
            "learning_share_of_oracle_gain_6_rounds",
        ),
    ] {
        let pairs: Vec<&Pair> = results.iter().filter_map(|r| r.pair(rounds)).collect();
        let on: f64 = pairs.iter().map(|p| p.learning.value_after_first()).sum();
        let off: f64 = pairs.iter().map(|p| p.without.value_after_first()).sum();
        let oracle: f64 = pairs.iter().map(|p| p.oracle.value_after_first()).sum();
        figures.push(fig(
            value_name,
            if pairs.is_empty() { f64::NAN } else { oracle },
            "gap closed",
            if pairs.is_empty() { f64::NAN } else { off },
            "the same loop without learning",
            // The ceiling, no target: it measures the generator.
            Target::None,
        ));
        let gain = oracle - off;
        if pairs.is_empty() {
            // No loop at this round count: NaN, as the other figures say it.
            figures.push(fig(
                share_name,
                f64::NAN,
                "share",
                1.0,
                "all of the oracle's gain over not learning",
                Target::None,
            ));
        } else if gain > 1e-9 * off.abs().max(1e-9) {
            figures.push(fig(
                share_name,
                (on - off) / gain,
                "share",
                1.0,
                "all of the oracle's gain over not learning",
                Target::None,
            ));
        } else {
            notes.push(format!(
                "{rounds} rounds: {share_name} left out: the oracle gains nothing over not \
                 learning ({oracle:.4} vs {off:.4} gap closed), so there is no gain to share"
            ));
        }
        let ratios: Vec<f64> = pairs.iter().map(|p| p.oracle_ratio).collect();
        let won = ratios.iter().filter(|r| **r > 1.0).count();
        let lost = ratios.iter().filter(|r| **r < 1.0).count();
        let learned = pairs
            .iter()
            .filter(|p| p.learning.value_after_first() > p.without.value_after_first())
            .count();
        notes.push(format!(
            "{rounds} rounds: the oracle delivered more true value than not learning in {won} of \
             {} seeds (learning: {learned}), less in {lost}; per-seed oracle ratios from {:.3} to \
             {:.3}, mean {:.3}",
            ratios.len(),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            mean(&ratios)
        ));
    }
    let order = |f: &Figure| FIGURES.iter().position(|n| *n == f.name);
    figures.sort_by_key(order);
    let words = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(s, n)| format!("{n} {}", s.to_lowercase()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    notes.push(format!(
        "6 rounds with learning, final status: wrong hypotheses {}; right hypotheses {}",
        words(&statuses[0]),
        words(&statuses[1])
    ));
    (figures, notes)
}

/// One-sided sign test: the probability of `won` or more wins in
/// `won + lost` fair coin tosses, i.e. of learning winning this often if it
/// made no difference (ties, seeds where both loops ship the same, are left
/// out as the test does). 1 when nothing differs.
pub fn sign_test(won: usize, lost: usize) -> f64 {
    let n = won + lost;
    // ln C(n, k) by summing logs: n is a seed count, small.
    let ln_choose = |k: usize| -> f64 {
        (1..=k)
            .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
            .sum()
    };
    (won..=n)
        .map(|k| (ln_choose(k) - n as f64 * std::f64::consts::LN_2).exp())
        .sum::<f64>()
        .min(1.0)
}
