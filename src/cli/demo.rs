//! `plumbline demo`: a sidecar on a temporary SQLite file, loaded with the
//! bundled "Shopfront" sample product through the public gRPC API (the way a
//! tracker plugin would load it), then the ranked, explained backlog.

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Deserialize;

use super::DemoArgs;
use super::client::{connect, print_explanation, print_ranking, rpc_error};
use crate::config::Config;
use crate::proto as pb;
use pb::backlog_service_client::BacklogServiceClient;
use pb::scoring_service_client::ScoringServiceClient;
use pb::source_service_client::SourceServiceClient;
use pb::value_model_service_client::ValueModelServiceClient;

/// The bundled sample product.
pub const SAMPLE: &str = include_str!("../../demo/sample-product.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub sources: Vec<SampleSource>,
    pub goals: Vec<SampleGoal>,
    pub metrics: Vec<SampleMetric>,
    pub hypotheses: Vec<SampleHypothesis>,
    pub items: Vec<SampleItem>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSource {
    pub id: String,
    pub kind: String,
    pub base_url: String,
    pub project_key: String,
    pub token_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleGoal {
    pub id: String,
    pub title: String,
    pub description: String,
    pub level: String,
    pub parent: String,
    pub key_value_area: String,
    pub weight: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleObservation {
    pub days_ago: f64,
    pub value: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleMetric {
    pub id: String,
    pub name: String,
    pub unit: String,
    pub baseline: f64,
    pub target: f64,
    pub cadence_days: i64,
    pub observations: Vec<SampleObservation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleHypothesis {
    pub id: String,
    pub statement: String,
    pub goal: String,
    pub metric: String,
    pub expected_effect: f64,
    pub confidence: f64,
    pub status: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleLink {
    pub hypothesis: String,
    pub contribution: f64,
    pub rationale: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleItem {
    pub source: String,
    pub id: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
    pub estimate: Option<f64>,
    pub state: String,
    /// For closed items: when the tracker closed them (a release).
    #[serde(default)]
    pub closed_days_ago: Option<f64>,
    pub links: Vec<SampleLink>,
}

fn proto_enum(name: &str, prefix: &str, parse: impl Fn(&str) -> Option<i32>) -> Result<i32> {
    let full = format!("{prefix}{}", name.to_ascii_uppercase());
    parse(&full).with_context(|| {
        format!("sample product: unknown value {name:?} (expected a {prefix}* name)")
    })
}

/// Loads the bundled sample product into the sidecar at `url` (with auth
/// off), as `plumbline demo` does: for tests of the web view.
pub async fn load_sample(url: &str) -> Result<()> {
    let sample: Sample =
        toml::from_str(SAMPLE).context("the bundled sample product does not parse")?;
    load(url, &sample).await
}

/// Loads `sample` into the sidecar at `url` through the gRPC API.
pub async fn load(url: &str, sample: &Sample) -> Result<()> {
    let channel = connect(url).await?;
    let mut sources = SourceServiceClient::new(channel.clone());
    let mut model = ValueModelServiceClient::new(channel.clone());
    let mut backlog = BacklogServiceClient::new(channel);
    let now = Utc::now();

    for s in &sample.sources {
        sources
            .create_source(pb::CreateSourceRequest {
                source: Some(pb::Source {
                    id: s.id.clone(),
                    kind: proto_enum(&s.kind, "TRACKER_KIND_", |n| {
                        pb::TrackerKind::from_str_name(n).map(|v| v as i32)
                    })?,
                    base_url: s.base_url.clone(),
                    project_key: s.project_key.clone(),
                    token_env: s.token_env.clone(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc_error)
            .with_context(|| format!("creating source {}", s.id))?;
    }
    for g in &sample.goals {
        model
            .create_goal(pb::CreateGoalRequest {
                goal: Some(pb::Goal {
                    id: g.id.clone(),
                    title: g.title.clone(),
                    description: g.description.clone(),
                    level: proto_enum(&g.level, "GOAL_LEVEL_", |n| {
                        pb::GoalLevel::from_str_name(n).map(|v| v as i32)
                    })?,
                    parent_id: g.parent.clone(),
                    key_value_area: proto_enum(&g.key_value_area, "KEY_VALUE_AREA_", |n| {
                        pb::KeyValueArea::from_str_name(n).map(|v| v as i32)
                    })?,
                    weight: Some(g.weight),
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc_error)
            .with_context(|| format!("creating goal {}", g.id))?;
    }
    let mut observations = Vec::new();
    for m in &sample.metrics {
        model
            .create_metric(pb::CreateMetricRequest {
                metric: Some(pb::Metric {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    unit: m.unit.clone(),
                    baseline: m.baseline,
                    target: m.target,
                    cadence: Some(prost_types::Duration {
                        seconds: m.cadence_days * 86_400,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc_error)
            .with_context(|| format!("creating metric {}", m.id))?;
        for o in &m.observations {
            let at = now - chrono::Duration::seconds((o.days_ago * 86_400.0) as i64);
            observations.push(pb::Observation {
                metric_id: m.id.clone(),
                value: o.value,
                observe_time: Some(prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }),
            });
        }
    }
    model
        .record_observations(pb::RecordObservationsRequest { observations })
        .await
        .map_err(rpc_error)
        .context("recording observations")?;
    for h in &sample.hypotheses {
        model
            .create_hypothesis(pb::CreateHypothesisRequest {
                hypothesis: Some(pb::Hypothesis {
                    id: h.id.clone(),
                    statement: h.statement.clone(),
                    goal_id: h.goal.clone(),
                    metric_id: h.metric.clone(),
                    expected_effect: h.expected_effect,
                    confidence: Some(h.confidence),
                    status: proto_enum(&h.status, "HYPOTHESIS_STATUS_", |n| {
                        pb::HypothesisStatus::from_str_name(n).map(|v| v as i32)
                    })?,
                    ..Default::default()
                }),
            })
            .await
            .map_err(rpc_error)
            .with_context(|| format!("creating hypothesis {}", h.id))?;
    }
    let mut items = Vec::new();
    for it in &sample.items {
        let url = match sample.sources.iter().find(|s| s.id == it.source) {
            Some(s) if s.kind == "jira" => format!("{}/browse/{}", s.base_url, it.id),
            Some(s) => format!("https://github.com/{}/issues/{}", s.project_key, it.id),
            None => String::new(),
        };
        items.push(pb::Item {
            source_id: it.source.clone(),
            external_id: it.id.clone(),
            title: it.title.clone(),
            body: it.body.clone(),
            url,
            state: proto_enum(&it.state, "ITEM_STATE_", |n| {
                pb::ItemState::from_str_name(n).map(|v| v as i32)
            })?,
            labels: it.labels.clone(),
            estimate: it.estimate,
            close_time: it.closed_days_ago.map(|d| {
                let at = now - chrono::Duration::seconds((d * 86_400.0) as i64);
                prost_types::Timestamp {
                    seconds: at.timestamp(),
                    nanos: 0,
                }
            }),
            ..Default::default()
        });
    }
    backlog
        .upsert_items(pb::UpsertItemsRequest {
            items,
            update_mask: None,
        })
        .await
        .map_err(rpc_error)
        .context("upserting items")?;
    for it in &sample.items {
        for l in &it.links {
            backlog
                .link_item(pb::LinkItemRequest {
                    item_key: format!("{}/{}", it.source, it.id),
                    hypothesis_id: l.hypothesis.clone(),
                    contribution: l.contribution,
                    rationale: l.rationale.clone(),
                })
                .await
                .map_err(rpc_error)
                .with_context(|| format!("linking {}/{} to {}", it.source, it.id, l.hypothesis))?;
        }
    }
    Ok(())
}

pub async fn run(a: DemoArgs) -> Result<()> {
    let sample: Sample =
        toml::from_str(SAMPLE).context("the bundled sample product does not parse")?;
    let dir =
        tempfile::tempdir().context("cannot create a temporary folder for the demo database")?;
    // The sample's sources name real trackers: never sync them.
    let config = Config {
        listen: a.listen,
        db: dir.path().join("demo.sqlite"),
        default_size: 3.0,
        store: crate::config::StoreConfig::default(),
        sync: crate::config::SyncConfig::manual(),
        validation: crate::config::ValidationConfig::manual(),
        insecure: a.insecure,
        // A free port: the web view is there for `--keep-serving`.
        web: crate::web::WebConfig::on_free_port(),
        ..Config::default()
    };
    let server = crate::server::start(&config).await?;
    let url = server.url();
    load(&url, &sample).await?;
    // Releases whose after-window has closed are validated before ranking,
    // so what was learned already moves the scores.
    let evidence =
        pb::validation_service_client::ValidationServiceClient::new(connect(&url).await?)
            .validate_releases(pb::ValidateReleasesRequest {
                include_open_windows: false,
                as_of: None,
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .evidence;

    println!(
        "plumbline demo: sample product \"Shopfront\" with {} items from {} sources, {} goals, {} metrics, {} hypotheses",
        sample.items.len(),
        sample.sources.len(),
        sample.goals.len(),
        sample.metrics.len(),
        sample.hypotheses.len()
    );
    println!("sidecar on {url}, database {}\n", config.db.display());

    let mut scoring = ScoringServiceClient::new(connect(&url).await?);
    let ranked = scoring
        .rank_items(pb::RankItemsRequest {
            page_size: a.top as i32,
            ..Default::default()
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!(
        "Ranked backlog (open items, by value per unit of size; top {}):",
        a.top
    );
    print_ranking(false, &ranked.items);
    println!(
        "value = share of the product's weighted unrealized value the item addresses; flags: unaligned = serves no \
         hypothesis, unestimated = default size {} used, stale_metric = a linked metric has no recent observation\n",
        config.default_size
    );
    for r in ranked.items.iter().take(a.explain as usize) {
        let key = r
            .score
            .as_ref()
            .map(|s| s.item_key.clone())
            .unwrap_or_default();
        let s = scoring
            .get_item_score(pb::GetItemScoreRequest { item_key: key })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .score
            .unwrap_or_default();
        println!("Why #{}:", r.rank);
        print_explanation(&s);
        println!();
    }

    // Break a big item down: the most valuable slice first.
    let proposal = pb::split_service_client::SplitServiceClient::new(connect(&url).await?)
        .propose_splits(pb::ProposeSplitsRequest {
            item_key: "web/412".into(),
            ..Default::default()
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!("Splitting the biggest item:");
    super::split::print_proposal(&proposal);
    println!();

    // Zoom out: how much of each goal's gap the backlog addresses.
    let tree = pb::rollup_service_client::RollupServiceClient::new(connect(&url).await?)
        .get_goal_tree(pb::GetGoalTreeRequest { items_per_goal: 1 })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!("Goal roll-up:");
    super::client::print_goal_tree(&tree);
    println!();

    // Value validated after release.
    println!("Validated after release:");
    for e in evidence.iter().filter(|e| e.realized_effect.is_some()) {
        println!(
            "  {}: release {} closed {} of the gap (expected {}) -> {}; confidence {} -> {}, {}",
            e.hypothesis_id,
            e.subject_id,
            super::output::format_number(e.realized_effect.unwrap_or_default()),
            // What the release was expected to deliver: d x expected effect.
            super::output::format_number(e.delivered.unwrap_or(1.0) * e.expected_effect),
            super::output::enum_name(
                pb::EvidenceOutcome::try_from(e.outcome)
                    .unwrap_or_default()
                    .as_str_name(),
                "EVIDENCE_OUTCOME_"
            ),
            super::output::format_number(e.confidence_before),
            super::output::format_number(e.confidence_after),
            super::output::enum_name(&e.status_after, "HYPOTHESIS_STATUS_"),
        );
    }
    println!();

    if a.keep_serving {
        println!("Still serving on {url}. Try:");
        println!("  plumbline rank --server {url}");
        println!("  plumbline explain web/418 --server {url}");
        if let Some(web) = server.web_url() {
            println!("The refinement room (web view): {web}/");
        }
        println!("Stop with Ctrl-C.");
        server.run_until(crate::server::shutdown_signal()).await?;
    } else {
        server.shutdown().await?;
    }
    drop(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_sample_parses_and_is_big_enough() {
        let s: Sample = toml::from_str(SAMPLE).unwrap();
        assert_eq!(s.sources.len(), 2);
        assert!(s.goals.iter().filter(|g| g.level == "strategic").count() >= 2);
        assert!(s.metrics.len() >= 4);
        assert!(s.hypotheses.len() >= 6);
        assert!(s.items.len() >= 30);
        assert!(s.items.iter().any(|i| i.links.is_empty()));
        assert!(s.items.iter().any(|i| i.estimate.is_none()));
    }
}
