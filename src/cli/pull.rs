//! `plumbline metrics pull [METRIC]`: pull metric sources now, with each
//! pull's progress as the server streams it (`PullMetric`).

use anyhow::Result;
use serde_json::json;

use super::Conn;
use super::client::{self, connect, rpc_error};
use super::json;
use crate::proto as pb;
use pb::value_model_service_client::ValueModelServiceClient;

/// Pulls one metric, or every metric with a source; fails if any pull did.
pub async fn pull(id: Option<String>, conn: &Conn) -> Result<()> {
    let mut c = ValueModelServiceClient::new(connect(&conn.server).await?);
    let ids = match id {
        Some(id) => vec![id],
        None => {
            let metrics = client::all_pages(
                0,
                |page_token| {
                    let mut c = c.clone();
                    let req = pb::ListMetricsRequest {
                        page_size: 1000,
                        page_token,
                    };
                    async move { c.list_metrics(req).await }
                },
                |r: pb::ListMetricsResponse| (r.metrics, r.next_page_token),
            )
            .await?;
            let ids: Vec<String> = metrics
                .into_iter()
                .filter(|m| m.source.is_some())
                .map(|m| m.id)
                .collect();
            if ids.is_empty() && !conn.json {
                println!(
                    "no metric has a source: give one a [metrics.source] in the product file (README, \"Metrics that flow in\")"
                );
            }
            ids
        }
    };
    let mut failed = Vec::new();
    for id in &ids {
        if let Err(e) = pull_one(&mut c, id, conn.json).await {
            if ids.len() == 1 {
                return Err(e);
            }
            eprintln!("{id}: {e:#}");
            failed.push(id.clone());
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} pulls failed: {}",
            failed.len(),
            ids.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

async fn pull_one(
    c: &mut ValueModelServiceClient<client::Client>,
    id: &str,
    as_json: bool,
) -> Result<()> {
    use pb::pull_metric_response::Event;
    let mut stream = c
        .pull_metric(pb::PullMetricRequest {
            metric_id: id.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    loop {
        let Some(msg) = stream.message().await.map_err(rpc_error)? else {
            anyhow::bail!("the sidecar ended the pull stream without a result");
        };
        match msg.event {
            Some(Event::Fetched(f)) => {
                if as_json {
                    println!(
                        "{}",
                        json::with(
                            json::message("PullFetched", &f),
                            json!({"event": "fetched", "metric": id})
                        )
                    );
                } else {
                    eprintln!("{id}: fetched {} points", f.point_count);
                    for r in &f.refused {
                        eprintln!("{id}: refused: {r}");
                    }
                    if f.refused_count as usize > f.refused.len() {
                        eprintln!(
                            "{id}: ... and {} more refused",
                            f.refused_count as usize - f.refused.len()
                        );
                    }
                }
            }
            Some(Event::Done(d)) => {
                if as_json {
                    println!(
                        "{}",
                        json::with(
                            json::message("PullDone", &d),
                            json!({"event": "done", "metric": id})
                        )
                    );
                } else {
                    let current = d
                        .metric
                        .as_ref()
                        .and_then(|m| m.current_value)
                        .map(super::output::format_number)
                        .unwrap_or_else(|| "none".into());
                    println!(
                        "{id}: {} points stored, {} refused; current value {current}",
                        d.stored_count, d.refused_count
                    );
                }
                return Ok(());
            }
            None => {}
        }
    }
}
