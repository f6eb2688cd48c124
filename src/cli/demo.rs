//! `plumbline demo`: a sidecar on a temporary SQLite file, loaded with the
//! bundled "Shopfront" sample product through `ApplyValueModel` (the way a
//! team loads its own value model file), then the ranked, explained backlog.

use anyhow::{Context, Result};
use chrono::Utc;

use super::DemoArgs;
use super::client::{connect, print_explanation, print_ranking, rpc_error};
use crate::config::Config;
use crate::proto as pb;
use pb::scoring_service_client::ScoringServiceClient;

/// The bundled sample product.
pub const SAMPLE: &str = include_str!("../../demo/sample-product.toml");

/// The sample as a value model file: its relative times (`days_ago`,
/// `closed_days_ago`) made absolute against `now`, and each item's tracker
/// URL filled in. The sample keeps relative times so that the demo never
/// ages (metrics stay fresh, release windows stay where they are); the
/// public format takes only absolute times, so that applying a file twice
/// plans nothing.
pub fn sample_document(now: chrono::DateTime<Utc>) -> Result<String> {
    let mut doc: toml::Table =
        toml::from_str(SAMPLE).context("the bundled sample product does not parse")?;
    let at = |days: f64| -> toml::Value {
        let t = now - chrono::Duration::seconds((days * 86_400.0) as i64);
        toml::Value::Datetime(crate::model::datetime(&t))
    };
    let days = |v: Option<toml::Value>| -> Option<f64> {
        match v? {
            toml::Value::Integer(i) => Some(i as f64),
            toml::Value::Float(f) => Some(f),
            _ => None,
        }
    };
    let sources: Vec<(String, String, String, String)> = doc
        .get("sources")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let f = |k: &str| s.get(k)?.as_str().map(str::to_string);
            Some((f("id")?, f("kind")?, f("base_url")?, f("project_key")?))
        })
        .collect();
    for m in tables(&mut doc, "metrics") {
        for o in tables(m, "observations") {
            if let Some(d) = days(o.remove("days_ago")) {
                o.insert("at".into(), at(d));
            }
        }
    }
    for o in tables(&mut doc, "outcomes") {
        for w in tables(o, "waves") {
            if let Some(d) = days(w.remove("days_ago")) {
                w.insert("at".into(), at(d));
            }
        }
    }
    for i in tables(&mut doc, "insights") {
        if let Some(d) = days(i.remove("days_ago")) {
            i.insert("date".into(), at(d));
        }
    }
    for it in tables(&mut doc, "items") {
        if let Some(d) = days(it.remove("closed_days_ago")) {
            it.insert("closed_at".into(), at(d));
        }
        let (source, id) = (
            it.get("source")
                .and_then(|v| v.as_str())
                .unwrap_or_default(),
            it.get("id").and_then(|v| v.as_str()).unwrap_or_default(),
        );
        let url = match sources.iter().find(|s| s.0 == source) {
            Some((_, kind, base, _)) if kind == "jira" => format!("{base}/browse/{id}"),
            Some((_, _, _, project)) => format!("https://github.com/{project}/issues/{id}"),
            None => String::new(),
        };
        it.entry("url").or_insert(toml::Value::String(url));
    }
    toml::to_string(&doc).context("cannot write the sample product as TOML")
}

/// The tables of the array `key` of `t`, for editing in place.
fn tables<'a>(t: &'a mut toml::Table, key: &str) -> impl Iterator<Item = &'a mut toml::Table> {
    t.get_mut(key)
        .and_then(|v| v.as_array_mut())
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_table_mut())
}

/// Loads the bundled sample product into the sidecar at `url` (with auth
/// off), as `plumbline demo` does: for tests of the web view.
pub async fn load_sample(url: &str) -> Result<()> {
    load(url, &sample_document(Utc::now())?).await
}

/// Loads the sample product into the sidecar at `url` the way a team loads
/// its own: the model (sources, goals, metrics, hypotheses) in one
/// `ApplyValueModel` call with the file, and the items the way the
/// trackers' integrations bring them, `UpsertItems` and `LinkItem` (a
/// value model file lists items of push sources only; the sample's sources
/// are a GitHub repository and a Jira project, never synced by the demo).
pub async fn load(url: &str, document: &str) -> Result<()> {
    let mut doc: toml::Table =
        toml::from_str(document).context("the sample product does not parse")?;
    let items = doc.remove("items");
    // Insights name items, so they are applied once the items are in.
    let insights = doc.remove("insights");
    let model = toml::to_string(&doc).context("cannot write the sample product as TOML")?;
    pb::model_file_service_client::ModelFileServiceClient::new(connect(url).await?)
        .apply_value_model(pb::ApplyValueModelRequest {
            document: model,
            file_name: "sample-product.toml".into(),
            ..Default::default()
        })
        .await
        .map_err(rpc_error)
        .context("loading the sample product")?;
    let Some(items) = items else { return Ok(()) };
    let mut only_items = toml::Table::new();
    only_items.insert("items".into(), items);
    let file = crate::model::parse(
        &toml::to_string(&only_items).context("cannot write the sample's items as TOML")?,
    )
    .map_err(|e| anyhow::anyhow!("the sample's items do not parse: {}", e.message))?;
    let mut links = Vec::new();
    let pushed: Vec<pb::Item> = file
        .items
        .iter()
        .map(|it| {
            for l in &it.links {
                links.push(pb::LinkItemRequest {
                    item_key: format!("{}/{}", it.source, it.id),
                    hypothesis_id: l.hypothesis.clone(),
                    contribution: l.contribution,
                    rationale: l.rationale.clone(),
                });
            }
            pb::Item {
                source_id: it.source.clone(),
                external_id: it.id.clone(),
                title: it.title.clone(),
                body: it.body.clone(),
                url: it.url.clone(),
                state: if it.state == "closed" {
                    pb::ItemState::Closed
                } else {
                    pb::ItemState::Open
                } as i32,
                labels: it.labels.clone(),
                estimate: it.estimate,
                parent_key: it.parent.clone(),
                close_time: it.closed_at.as_ref().and_then(crate::model::time).map(|t| {
                    prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: t.timestamp_subsec_nanos() as i32,
                    }
                }),
                ..Default::default()
            }
        })
        .collect();
    let channel = connect(url).await?;
    let mut backlog = pb::backlog_service_client::BacklogServiceClient::new(channel);
    backlog
        .upsert_items(pb::UpsertItemsRequest {
            items: pushed,
            update_mask: None,
        })
        .await
        .map_err(rpc_error)
        .context("loading the sample's items")?;
    for l in links {
        backlog
            .link_item(l)
            .await
            .map_err(rpc_error)
            .context("linking the sample's items")?;
    }
    if let Some(insights) = insights {
        let mut only = toml::Table::new();
        only.insert("insights".into(), insights);
        pb::model_file_service_client::ModelFileServiceClient::new(connect(url).await?)
            .apply_value_model(pb::ApplyValueModelRequest {
                document: toml::to_string(&only)
                    .context("cannot write the sample's insights as TOML")?,
                file_name: "sample-product.toml".into(),
                ..Default::default()
            })
            .await
            .map_err(rpc_error)
            .context("loading the sample's insights")?;
    }
    Ok(())
}

pub async fn run(a: DemoArgs) -> Result<()> {
    let document = sample_document(Utc::now())?;
    let sample = crate::model::parse(&document)
        .map_err(|e| anyhow::anyhow!("the bundled sample product does not parse: {}", e.message))?;
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
    load(&url, &document).await?;
    // Releases whose after-window has closed are validated before ranking,
    // so what was learned already moves the scores.
    let evidence =
        pb::validation_service_client::ValidationServiceClient::new(connect(&url).await?)
            .validate_releases(pb::ValidateReleasesRequest {
                include_open_windows: false,
                as_of: None,
                dry_run: false,
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .evidence;

    println!(
        "plumbline demo: sample product \"Shopfront\" with {} items from {} sources, {} goals, {} metrics, {} hypotheses, {} customer segments with {} desired outcomes, {} customer insights",
        sample.items.len(),
        sample.sources.len(),
        sample.goals.len(),
        sample.metrics.len(),
        sample.hypotheses.len(),
        sample.segments.len(),
        sample.outcomes.len(),
        sample.insights.len()
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
        "value = share of the product's weighted unrealized value the item addresses; demand = distinct customers / \
         segments who asked for it and the highest importance they gave (beside the score, never in it); flags: \
         unaligned = serves no hypothesis, unestimated = default size {} used, stale_metric = a linked metric has no \
         recent observation, asked_for_not_aligned = 3 or more customers asked but it serves no hypothesis\n",
        config.default_size
    );
    let whole = scoring
        .rank_items(pb::RankItemsRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let asked: Vec<&pb::ItemScore> = whole
        .items
        .iter()
        .filter_map(|r| r.score.as_ref())
        .filter(|s| {
            s.flags
                .contains(&(pb::ScoreFlag::AskedForNotAligned as i32))
        })
        .collect();
    if !asked.is_empty() {
        println!(
            "Asked for, not aligned (customers want it; no hypothesis says which outcome it moves):"
        );
        for s in asked {
            println!(
                "  {}  {}  ({})",
                s.item_key,
                s.title,
                super::client::demand_short(s)
            );
        }
        println!();
    }
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

    // Who the value is for: the roll-up by segment.
    let segments = pb::customer_service_client::CustomerServiceClient::new(connect(&url).await?)
        .roll_up_by_segment(pb::RollUpBySegmentRequest {
            items_per_segment: 2,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    println!("Segment roll-up:");
    super::customer::print_segment_rollup(&segments);
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
        // Listening before saying so: a Ctrl-C right after the message
        // stops the server cleanly.
        let stop = crate::server::shutdown_signal();
        println!("Still serving on {url}. Try:");
        println!("  plumbline rank --server {url}");
        println!("  plumbline explain web/418 --server {url}");
        if let Some(web) = server.web_url() {
            println!("The refinement room (web view): {web}/");
        }
        println!("Stop with Ctrl-C.");
        server.run_until(stop).await?;
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
    fn the_sample_document_is_a_value_model_file_with_absolute_times() {
        let doc = sample_document(Utc::now()).unwrap();
        let f = crate::model::parse(&doc).unwrap();
        assert_eq!(f.items.len(), SAMPLE.matches("[[items]]").count());
        assert!(f.items.iter().all(|i| !i.url.is_empty()));
        assert!(f.items.iter().any(|i| i.closed_at.is_some()));
        assert!(f.metrics.iter().all(|m| !m.observations.is_empty()));
        assert_eq!(f.segments.len(), 2);
        assert!(f.outcomes.iter().all(|o| o.waves.len() == 2));
    }

    #[test]
    fn the_bundled_sample_parses_and_is_big_enough() {
        let s = crate::model::parse(&sample_document(Utc::now()).unwrap()).unwrap();
        assert_eq!(s.sources.len(), 2);
        assert!(s.goals.iter().filter(|g| g.level == "strategic").count() >= 2);
        assert!(s.metrics.len() >= 4);
        assert!(s.hypotheses.len() >= 6);
        assert!(s.items.len() >= 30);
        assert!(s.items.iter().any(|i| i.links.is_empty()));
        assert!(s.items.iter().any(|i| i.estimate.is_none()));
    }
}
