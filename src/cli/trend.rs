//! `plumbline trend METRIC`: a metric's observations with releases marked,
//! drawn in the terminal and, with `--out FILE`, as an SVG chart.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;

use super::Conn;
use super::client::{connect, rpc_error};
use super::output::{format_number, time};
use crate::chart::{Series, svg_chart, terminal_chart};
use crate::proto as pb;

#[derive(Debug, Args)]
pub struct TrendArgs {
    /// Metric id.
    metric_id: String,
    /// Also write the chart as SVG to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Chart width in terminal columns.
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Chart height in terminal rows.
    #[arg(long, default_value_t = 12)]
    height: usize,
    #[command(flatten)]
    conn: Conn,
}

/// The series of a `GetMetricTrend` answer.
fn series_of(t: &pb::GetMetricTrendResponse) -> Series {
    Series {
        points: t
            .points
            .iter()
            .filter_map(|p| Some((p.observe_time.as_ref()?.seconds, p.value)))
            .collect(),
        releases: t
            .releases
            .iter()
            .filter_map(|r| {
                let rel = r.release.as_ref()?;
                Some((rel.release_time.as_ref()?.seconds, rel.id.clone()))
            })
            .collect(),
        baseline: t.baseline,
        target: t.target,
    }
}

pub async fn trend(a: TrendArgs) -> Result<()> {
    let mut c =
        pb::validation_service_client::ValidationServiceClient::new(connect(&a.conn.server).await?);
    let t = c
        .get_metric_trend(pb::GetMetricTrendRequest {
            metric_id: a.metric_id.clone(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let s = series_of(&t);
    if let Some(path) = &a.out {
        let title = format!(
            "{} ({}): {} observations, {} releases",
            t.metric_id,
            t.unit,
            s.points.len(),
            s.releases.len()
        );
        std::fs::write(path, svg_chart(&s, &title))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if a.conn.json {
        let mut out = super::json::message("GetMetricTrendResponse", &t);
        // The short names of earlier versions, next to every field.
        for (p, v) in t.points.iter().zip(
            out["points"]
                .as_array_mut()
                .map(|a| a.iter_mut())
                .into_iter()
                .flatten(),
        ) {
            v["time"] = time(p.observe_time.as_ref());
        }
        for (r, v) in t.releases.iter().zip(
            out["releases"]
                .as_array_mut()
                .map(|a| a.iter_mut())
                .into_iter()
                .flatten(),
        ) {
            let rel = r.release.clone().unwrap_or_default();
            v["id"] = json!(rel.id);
            v["time"] = time(rel.release_time.as_ref());
            v["item_keys"] = json!(rel.item_keys);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if s.points.is_empty() {
        println!("{}: no observations yet", t.metric_id);
        return Ok(());
    }
    println!(
        "{} ({}), baseline {}, target {}",
        t.metric_id,
        t.unit,
        format_number(t.baseline),
        format_number(t.target)
    );
    print!("{}", terminal_chart(&s, a.width, a.height));
    for r in &t.releases {
        let rel = r.release.clone().unwrap_or_default();
        println!(
            "  | {} at {}: {} (hypotheses {})",
            rel.id,
            time(rel.release_time.as_ref()).as_str().unwrap_or_default(),
            rel.item_keys.join(", "),
            r.hypothesis_ids.join(", ")
        );
    }
    if let Some(path) = &a.out {
        println!("chart written to {}", path.display());
    }
    Ok(())
}
