//! `GET /segments`: who the value is for. Each segment with its share, the
//! coverage of its weighted gap by the open backlog (a bar), its desired
//! outcomes with importance, satisfaction, gap and opportunity score
//! (underserved ones marked), the items serving it, and the segments no
//! item serves; from the engine's roll-up by segment.

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::response::Response;

use super::WebState;
use super::pages::percent_path;
use super::session::Viewer;
use super::view::{html, num, width};
use crate::chart::format_number;

struct OutcomeRow {
    id: String,
    statement: String,
    importance: String,
    satisfaction: String,
    gap: String,
    opportunity: String,
    underserved: bool,
    waves: usize,
}

struct SegmentRow {
    id: String,
    name: String,
    description: String,
    share: String,
    coverage: String,
    coverage_width: String,
    weighted_gap: String,
    unserved: bool,
    item_count: usize,
    outcomes: Vec<OutcomeRow>,
    /// Key, path, title.
    items: Vec<(String, String, String)>,
}

#[derive(Template)]
#[template(path = "segments.html")]
struct SegmentsPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    segments: Vec<SegmentRow>,
    /// Id, name.
    unserved: Vec<(String, String)>,
}

fn figure(x: Option<f64>) -> String {
    x.map_or_else(|| "–".to_string(), format_number)
}

/// `GET /segments`.
pub(crate) async fn segments(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let tree = state.engine.segment_rollup(5);
    let segments: Vec<SegmentRow> = tree
        .segments
        .iter()
        .map(|r| SegmentRow {
            id: r.segment.id.clone(),
            name: r.segment.name.clone(),
            description: r.segment.description.clone(),
            share: format!("{:.0}%", r.share * 100.0),
            coverage: format!("{:.0}%", r.coverage.clamp(0.0, 1.0) * 100.0),
            coverage_width: width(r.coverage),
            weighted_gap: num(r.weighted_gap),
            unserved: r.unserved,
            item_count: r.item_count,
            outcomes: r
                .outcomes
                .iter()
                .map(|o| OutcomeRow {
                    id: o.outcome.id.clone(),
                    statement: o.outcome.statement.clone(),
                    importance: figure(o.figures.map(|f| f.importance)),
                    satisfaction: figure(o.figures.map(|f| f.satisfaction)),
                    gap: figure(o.figures.map(|f| f.gap)),
                    opportunity: figure(o.figures.map(|f| f.opportunity)),
                    underserved: o.figures.is_some_and(|f| f.underserved),
                    waves: o.waves.len(),
                })
                .collect(),
            items: r
                .items
                .iter()
                .zip(&r.item_titles)
                .map(|(i, t)| (i.key.clone(), percent_path(&i.key), t.clone()))
                .collect(),
        })
        .collect();
    let unserved = segments
        .iter()
        .filter(|s| s.unserved)
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    html(
        SegmentsPage {
            signed_in: viewer.signed_in(),
            csrf: &viewer.csrf,
            segments,
            unserved,
        }
        .render(),
    )
}
