//! The synthetic product the benchmarks run on: a goal tree, metrics with a
//! year of weekly observations, hypotheses and N backlog items whose labels
//! and body lines link them to hypotheses, all drawn from a seed so that a
//! run can be repeated exactly.
//!
//! Every item is drawn from `(seed, index)` alone, so the local GitHub mock
//! can render any page on its own and a sync of it produces the same items
//! and links that [`write_product`] stores directly. One item in ten serves a
//! hypothesis on the "hot" metric, so that an observation of it reaches 10 %
//! of the backlog.

use chrono::{DateTime, Duration};
use fastrand::Rng;

use plumbline::domain::{
    Direction, Goal, GoalLevel, Hypothesis, HypothesisStatus, Item, ItemState, KeyValueArea, Link,
    LinkOrigin, LinkRules, Metric, Observation, Source, Time, TrackerKind, rule_links,
};
use plumbline::store::{Store, StoreError};

/// The metric one item in ten depends on.
pub const HOT_METRIC: &str = "m-00";
/// A metric no hypothesis measures: observing it rescores nothing.
pub const COLD_METRIC: &str = "m-cold";
/// Hypotheses on the hot metric.
pub const HOT_HYPOTHESES: usize = 4;
/// All hypotheses.
const HYPOTHESES: usize = 120;
/// Metrics besides the cold one (the hot one included).
const METRICS: usize = 24;
/// Sources the directly written items are spread over.
pub const SOURCES: [&str; 4] = ["web", "app", "ops", "data"];
/// Items written per store transaction while generating.
const WRITE_BATCH: usize = 2_000;

const WORDS: [&str; 32] = [
    "checkout",
    "cart",
    "search",
    "filter",
    "payment",
    "address",
    "mobile",
    "tablet",
    "profile",
    "invoice",
    "refund",
    "shipping",
    "coupon",
    "wishlist",
    "review",
    "rating",
    "catalog",
    "banner",
    "login",
    "signup",
    "session",
    "export",
    "import",
    "report",
    "dashboard",
    "alert",
    "webhook",
    "cache",
    "latency",
    "timeout",
    "retry",
    "onboarding",
];
const VERBS: [&str; 12] = [
    "Speed up", "Simplify", "Fix", "Redesign", "Add", "Remove", "Explain", "Automate", "Measure",
    "Validate", "Keep", "Split",
];
const LABELS: [&str; 16] = [
    "bug",
    "feature",
    "ux",
    "perf",
    "a11y",
    "checkout",
    "mobile",
    "backend",
    "frontend",
    "infra",
    "security",
    "docs",
    "tech-debt",
    "growth",
    "retention",
    "ops",
];
const SIZES: [f64; 6] = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0];
const CONTRIBUTIONS: [&str; 6] = ["0.1", "0.2", "0.25", "0.3", "0.5", "0.75"];

/// The fixed "now" of the synthetic product, so that its data does not
/// depend on the day it is generated. In the past, with room after it: the
/// bench records observations up to 400 days later through the API, which
/// refuses any dated after the server's clock (beyond a small skew).
pub fn epoch() -> Time {
    DateTime::from_timestamp(1_735_689_600, 0).unwrap_or_default() // 2025-01-01T00:00:00Z
}

fn rng_for(seed: u64, stream: u64, index: u64) -> Rng {
    // SplitMix-style mixing keeps neighbouring indexes unrelated.
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    Rng::with_seed(z ^ (z >> 31))
}

fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.usize(..xs.len())]
}

/// Id of hypothesis `h` (`H-007`).
pub fn hypothesis_id(h: usize) -> String {
    format!("H-{h:03}")
}

/// One synthetic backlog item, as a tracker would hold it.
#[derive(Debug, Clone)]
pub struct SynthItem {
    /// 1-based; the tracker's issue number.
    pub number: u64,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub closed: bool,
    pub create_time: Time,
    pub update_time: Time,
}

/// Item `index` (0-based) of a backlog of `n`. Update times rise with the
/// index, one minute apart, ending at [`epoch`].
pub fn item(seed: u64, index: u64, n: u64) -> SynthItem {
    let mut rng = rng_for(seed, 1, index);
    let title = format!(
        "{} {} {} for {} users",
        pick(&mut rng, &VERBS),
        pick(&mut rng, &WORDS),
        pick(&mut rng, &WORDS),
        pick(&mut rng, &WORDS)
    );
    let mut labels: Vec<String> = Vec::new();
    for _ in 0..rng.usize(0..=2) {
        let l = pick(&mut rng, &LABELS).to_string();
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    if rng.f64() < 0.8 {
        labels.push(format!("size:{}", pick(&mut rng, &SIZES)));
    }
    let mut body = format!(
        "As a {} user I want the {} {} to {} so that {} stops getting in the way.\r\n\r\n",
        pick(&mut rng, &WORDS),
        pick(&mut rng, &WORDS),
        pick(&mut rng, &WORDS),
        pick(&mut rng, &VERBS).to_lowercase(),
        pick(&mut rng, &WORDS)
    );
    for _ in 0..rng.usize(0..=3) {
        let mark = if rng.bool() { 'x' } else { ' ' };
        body.push_str(&format!(
            "- [{mark}] {} the {}\r\n",
            pick(&mut rng, &VERBS).to_lowercase(),
            pick(&mut rng, &WORDS)
        ));
    }
    // Links: one item in ten serves a hypothesis on the hot metric; of the
    // rest, three in four serve one to three other hypotheses.
    let mut hyps: Vec<usize> = Vec::new();
    if index.is_multiple_of(10) {
        hyps.push(rng.usize(..HOT_HYPOTHESES));
        if rng.f64() < 0.3 {
            hyps.push(rng.usize(HOT_HYPOTHESES..HYPOTHESES));
        }
    } else if rng.f64() < 0.75 {
        for _ in 0..rng.usize(1..=3) {
            let h = rng.usize(HOT_HYPOTHESES..HYPOTHESES);
            if !hyps.contains(&h) {
                hyps.push(h);
            }
        }
    }
    for h in hyps {
        if rng.bool() {
            labels.push(format!("hypothesis:{}", hypothesis_id(h)));
        } else {
            body.push_str(&format!(
                "\r\nHypothesis: {} ({})",
                hypothesis_id(h),
                pick(&mut rng, &CONTRIBUTIONS)
            ));
        }
    }
    let update_time = epoch() - Duration::minutes((n - index) as i64);
    let create_time = update_time - Duration::hours(rng.i64(1..24 * 400));
    SynthItem {
        number: index + 1,
        title,
        body,
        labels,
        closed: rng.f64() < 0.15,
        create_time,
        update_time,
    }
}

impl SynthItem {
    /// The domain item as the GitHub connector maps it.
    pub fn to_item(&self, source_id: &str, url: String) -> Item {
        Item {
            source_id: source_id.to_string(),
            external_id: self.number.to_string(),
            title: self.title.clone(),
            body: self.body.clone(),
            url,
            state: if self.closed {
                ItemState::Closed
            } else {
                ItemState::Open
            },
            estimate: plumbline::sync::github::estimate_from_labels(&self.labels, "size:"),
            labels: self.labels.clone(),
            parent_key: String::new(),
            create_time: Some(self.create_time),
            update_time: Some(self.update_time),
            close_time: self.closed.then_some(self.update_time),
            votes: None,
        }
    }
}

/// The value model: goals, metrics (with observations) and hypotheses.
pub struct Model {
    pub goals: Vec<Goal>,
    pub metrics: Vec<Metric>,
    pub observations: Vec<Observation>,
    pub hypotheses: Vec<Hypothesis>,
}

/// The goal tree (4 strategic, 12 intermediate, 48 tactical goals), 25
/// metrics with 52 weekly observations each, and 120 hypotheses.
pub fn model(seed: u64) -> Model {
    let mut rng = rng_for(seed, 2, 0);
    let t0 = epoch() - Duration::days(400);
    let kvas = [
        KeyValueArea::CurrentValue,
        KeyValueArea::UnrealizedValue,
        KeyValueArea::TimeToMarket,
        KeyValueArea::AbilityToInnovate,
    ];
    let goal = |id: String, level, parent: String, weight, kva| Goal {
        title: format!("Goal {id}"),
        description: format!("Synthetic goal {id}"),
        id,
        level,
        parent_id: parent,
        key_value_area: kva,
        weight,
        create_time: t0,
        update_time: t0,
    };
    let mut goals = Vec::new();
    let mut tactical = Vec::new();
    for s in 1..=4 {
        let sid = format!("G{s}");
        goals.push(goal(
            sid.clone(),
            GoalLevel::Strategic,
            String::new(),
            [3.0, 2.0, 2.0, 1.0][s - 1],
            kvas[s - 1],
        ));
        for i in 1..=3 {
            let iid = format!("G{s}.{i}");
            let w = rng.usize(1..=3) as f64;
            goals.push(goal(
                iid.clone(),
                GoalLevel::Intermediate,
                sid.clone(),
                w,
                kvas[s - 1],
            ));
            for t in 1..=4 {
                let tid = format!("G{s}.{i}.{t}");
                let w = rng.usize(1..=4) as f64;
                goals.push(goal(
                    tid.clone(),
                    GoalLevel::Tactical,
                    iid.clone(),
                    w,
                    kvas[s - 1],
                ));
                tactical.push(tid);
            }
        }
    }

    let mut metrics = Vec::new();
    let mut observations = Vec::new();
    let ids = (0..METRICS)
        .map(|m| format!("m-{m:02}"))
        .chain([COLD_METRIC.to_string()]);
    for (m, id) in ids.enumerate() {
        let (baseline, target) = if m == 0 {
            (10.0, 20.0)
        } else {
            let b = (rng.f64() * 100.0 * 100.0).round() / 100.0;
            let span = 1.0 + (rng.f64() * 50.0 * 100.0).round() / 100.0;
            if rng.bool() {
                (b, b + span)
            } else {
                (b + span, b)
            }
        };
        metrics.push(Metric {
            name: format!("Metric {id}"),
            unit: "%".into(),
            direction: Direction::implied(baseline, target),
            baseline,
            target,
            cadence: (m % 2 == 0).then(|| Duration::days(7)),
            source: None,
            create_time: t0,
            update_time: t0,
            id: id.clone(),
        });
        // A year of weekly values creeping toward the target, never past it.
        for w in 0..52 {
            let progress = (w as f64 / 52.0) * 0.4 + rng.f64() * 0.05;
            let value = baseline + (target - baseline) * progress;
            observations.push(Observation {
                metric_id: id.clone(),
                value: (value * 1000.0).round() / 1000.0,
                observe_time: epoch() - Duration::weeks(52 - w),
            });
        }
    }

    let hypotheses = (0..HYPOTHESES)
        .map(|h| {
            let metric_id = if h < HOT_HYPOTHESES {
                HOT_METRIC.to_string()
            } else {
                format!("m-{:02}", 1 + rng.usize(..METRICS - 1))
            };
            let roll = rng.f64();
            let status = if roll < 0.15 {
                HypothesisStatus::Validated
            } else if roll < 0.2 {
                HypothesisStatus::Invalidated
            } else if roll < 0.6 {
                HypothesisStatus::Testing
            } else {
                HypothesisStatus::Proposed
            };
            Hypothesis {
                id: hypothesis_id(h),
                statement: format!("Change {h} moves {metric_id} toward its target"),
                goal_id: pick(&mut rng, &tactical).clone(),
                metric_id,
                expected_effect: 0.05 + (rng.f64() * 0.45 * 100.0).round() / 100.0,
                confidence: 0.2 + (rng.f64() * 0.7 * 100.0).round() / 100.0,
                status,
                check_time: None,
                create_time: t0,
                update_time: t0,
            }
        })
        .collect();
    Model {
        goals,
        metrics,
        observations,
        hypotheses,
    }
}

/// A GitHub source named `id` (items of a direct write, or a sync target).
pub fn source(id: &str, base_url: &str) -> Source {
    Source {
        id: id.to_string(),
        kind: TrackerKind::Github,
        base_url: base_url.to_string(),
        project_key: "acme/bench".into(),
        token_env: String::new(),
        link_rules: LinkRules::default(),
        estimate_field: String::new(),
        create_time: epoch(),
        update_time: epoch(),
    }
}

/// Writes the value model and `sources` through the store.
pub async fn write_model(
    store: &dyn Store,
    seed: u64,
    sources: &[Source],
) -> Result<(), StoreError> {
    let m = model(seed);
    for s in sources {
        store.put_source(s).await?;
    }
    for g in &m.goals {
        store.put_goal(g).await?;
    }
    for x in &m.metrics {
        store.put_metric(x).await?;
    }
    store.record_observations(&m.observations).await?;
    for h in &m.hypotheses {
        store.put_hypothesis(h).await?;
    }
    Ok(())
}

/// The rationale the engine gives rule links.
const RULE_RATIONALE: &str = "from the item's labels or body, by the source's link rules";

/// Writes the whole product (model, four sources, `n` items with the links
/// their rules ask for) through the store, `WRITE_BATCH` items per
/// transaction. Returns the item keys in generation order.
pub async fn write_product(
    store: &dyn Store,
    seed: u64,
    n: u64,
) -> Result<Vec<String>, StoreError> {
    let sources: Vec<Source> = SOURCES
        .iter()
        .map(|s| source(s, "http://127.0.0.1:9"))
        .collect();
    write_model(store, seed, &sources).await?;
    let rules = LinkRules::default();
    let mut keys = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let end = (start + WRITE_BATCH as u64).min(n);
        let mut items = Vec::with_capacity((end - start) as usize);
        let mut links = Vec::new();
        for i in start..end {
            let s = item(seed, i, n);
            let src = SOURCES[(i % SOURCES.len() as u64) as usize];
            let it = s.to_item(
                src,
                format!("https://github.com/acme/{src}/issues/{}", s.number),
            );
            let key = it.key();
            for (h, c) in rule_links(&rules, &it.labels, &it.body) {
                links.push(Link {
                    item_key: key.clone(),
                    hypothesis_id: h,
                    contribution: c,
                    origin: LinkOrigin::Rule,
                    rationale: RULE_RATIONALE.into(),
                    create_time: s.update_time,
                    update_time: s.update_time,
                });
            }
            keys.push(key);
            items.push(it);
        }
        store.upsert_items(items, &[], &links, None).await?;
        start = end;
    }
    Ok(keys)
}

/// One page of GitHub's `GET /repos/{owner}/{repo}/issues` for items
/// `[from, to)` of `n`, as compact JSON with the fields GitHub sends.
pub fn github_page(seed: u64, from: u64, to: u64, n: u64) -> String {
    let mut out = String::with_capacity(((to - from) * 2_400) as usize + 2);
    out.push('[');
    for i in from..to {
        if i > from {
            out.push(',');
        }
        github_issue(&mut out, &item(seed, i, n));
    }
    out.push(']');
    out
}

fn github_issue(out: &mut String, s: &SynthItem) {
    use std::fmt::Write;
    let n = s.number;
    let repo = "https://api.github.com/repos/acme/bench";
    let time = |t: &Time| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let labels: Vec<String> = s
        .labels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            format!(
                r#"{{"id":{},"node_id":"LA_{k}","url":"{repo}/labels/{}","name":{},"color":"ededed","default":false,"description":null}}"#,
                1000 + k,
                l,
                json_str(l)
            )
        })
        .collect();
    let closed_at = if s.closed {
        format!("\"{}\"", time(&s.update_time))
    } else {
        "null".into()
    };
    let _ = write!(
        out,
        r#"{{"url":"{repo}/issues/{n}","repository_url":"{repo}","labels_url":"{repo}/issues/{n}/labels{{/name}}","comments_url":"{repo}/issues/{n}/comments","events_url":"{repo}/issues/{n}/events","html_url":"https://github.com/acme/bench/issues/{n}","id":{},"node_id":"I_kwDOBench{n:08}","number":{n},"title":{},"user":{{"login":"octocat","id":1,"node_id":"MDQ6VXNlcjE=","avatar_url":"https://github.com/images/error/octocat_happy.gif","gravatar_id":"","url":"https://api.github.com/users/octocat","html_url":"https://github.com/octocat","type":"User","site_admin":false}},"labels":[{}],"state":"{}","locked":false,"assignee":null,"assignees":[],"milestone":null,"comments":{},"created_at":"{}","updated_at":"{}","closed_at":{},"author_association":"MEMBER","active_lock_reason":null,"body":{},"closed_by":null,"state_reason":{},"reactions":{{"url":"{repo}/issues/{n}/reactions","total_count":0,"+1":0,"-1":0,"laugh":0,"hooray":0,"confused":0,"heart":0,"rocket":0,"eyes":0}},"timeline_url":"{repo}/issues/{n}/timeline","performed_via_github_app":null}}"#,
        2_000_000_000 + n,
        json_str(&s.title),
        labels.join(","),
        if s.closed { "closed" } else { "open" },
        n % 7,
        time(&s.create_time),
        time(&s.update_time),
        closed_at,
        json_str(&s.body),
        if s.closed { "\"completed\"" } else { "null" },
    );
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}
