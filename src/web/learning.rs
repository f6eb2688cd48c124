//! The pages of what was learned: each metric's trend (the SVG chart of
//! `plumbline trend --out`, drawn on the server, with its releases and its
//! target line) and each hypothesis' confidence with the evidence that
//! moved it, release by release.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::WebState;
use super::pages::engine_error;
use super::session::Viewer;
use super::view::{html, num2};
use crate::chart::{Series, format_number, svg_chart};
use crate::engine::Error;

/// Metrics (and hypotheses) listed on one page, at most.
const MAX_LISTED: usize = 200;

struct MetricRow {
    id: String,
    name: String,
    unit: String,
    baseline: String,
    target: String,
    latest: String,
    gap: String,
    /// Drawn by [`svg_chart`], which escapes every text it draws.
    svg: String,
}

#[derive(Template)]
#[template(path = "metrics.html")]
struct MetricsPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    metrics: Vec<MetricRow>,
}

/// `GET /metrics`.
pub(crate) async fn metrics(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let mut rows = Vec::new();
    for entry in state.engine.list_metrics(None, MAX_LISTED) {
        let id = entry.metric.id.clone();
        let (entry, points, releases) = match state.engine.metric_trend(&id).await {
            Ok(t) => t,
            Err(e) => return engine_error(&viewer, &e),
        };
        let m = &entry.metric;
        let series = Series {
            points: points.iter().map(|(t, v)| (t.timestamp(), *v)).collect(),
            releases: releases
                .iter()
                .map(|r| (r.release.time.timestamp(), r.release.id.clone()))
                .collect(),
            baseline: m.baseline,
            target: m.target,
        };
        let title = format!(
            "{} ({}): {} observations, {} releases",
            m.id,
            m.unit,
            series.points.len(),
            series.releases.len()
        );
        rows.push(MetricRow {
            id: m.id.clone(),
            name: m.name.clone(),
            unit: m.unit.clone(),
            baseline: format_number(m.baseline),
            target: format_number(m.target),
            latest: entry
                .observations
                .latest
                .map_or_else(|| "none yet".into(), |(_, v)| format_number(v)),
            gap: num2(entry.gap),
            svg: if series.points.is_empty() {
                String::new()
            } else {
                svg_chart(&series, &title)
            },
        });
    }
    html(
        MetricsPage {
            signed_in: viewer.signed_in(),
            csrf: &viewer.csrf,
            metrics: rows,
        }
        .render(),
    )
}

struct EvidenceRow {
    subject: String,
    when: String,
    outcome: String,
    confidence_before: String,
    confidence_after: String,
    moved: &'static str,
    reason: String,
}

struct HypothesisRow {
    id: String,
    statement: String,
    goal_id: String,
    metric_id: String,
    status: String,
    confidence: String,
    expected_effect: String,
    value: String,
    evidence: Vec<EvidenceRow>,
    /// Neither insights nor observations behind it.
    unsupported: bool,
}

#[derive(Template)]
#[template(path = "hypotheses.html")]
struct HypothesesPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    hypotheses: Vec<HypothesisRow>,
}

/// `GET /hypotheses`.
pub(crate) async fn hypotheses(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    match hypothesis_rows(&state).await {
        Ok(hypotheses) => html(
            HypothesesPage {
                signed_in: viewer.signed_in(),
                csrf: &viewer.csrf,
                hypotheses,
            }
            .render(),
        ),
        Err(e) => engine_error(&viewer, &e),
    }
}

async fn hypothesis_rows(state: &WebState) -> Result<Vec<HypothesisRow>, Error> {
    let mut rows = Vec::new();
    for v in state.engine.list_hypotheses(None, None, None, MAX_LISTED) {
        let h = v.hypothesis;
        // Oldest first: the page reads as the story of the bet.
        let mut evidence = state.engine.hypothesis_evidence(&h.id).await?;
        evidence.reverse();
        rows.push(HypothesisRow {
            evidence: evidence
                .into_iter()
                .map(|e| EvidenceRow {
                    when: e.record_time.format("%Y-%m-%d").to_string(),
                    outcome: format!("{:?}", e.outcome)
                        .to_lowercase()
                        .replace("data", " data"),
                    confidence_before: num2(e.confidence_before),
                    confidence_after: num2(e.confidence_after),
                    moved: if e.confidence_after > e.confidence_before {
                        "up"
                    } else if e.confidence_after < e.confidence_before {
                        "down"
                    } else {
                        "unchanged"
                    },
                    reason: e.reason,
                    subject: e.subject_id,
                })
                .collect(),
            status: format!("{:?}", h.status).to_lowercase(),
            confidence: num2(h.confidence),
            expected_effect: num2(h.expected_effect),
            value: super::view::num(v.value),
            unsupported: v.unsupported,
            id: h.id,
            statement: h.statement,
            goal_id: h.goal_id,
            metric_id: h.metric_id,
        });
    }
    Ok(rows)
}
