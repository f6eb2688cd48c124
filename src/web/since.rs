//! `/since`: the refinement room's "since last refinement". Pick a date and
//! a top N; the page compares the ranking now with the last snapshot taken
//! at or before that date (the engine's `compare_ranking`, as
//! `CompareRanking` answers it) and shows what entered, left and moved, each
//! with the term that changed most.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use serde::Deserialize;

use super::WebState;
use super::pages::{engine_error, percent_path};
use super::session::Viewer;
use super::view::{html, num};
use crate::domain::Time;
use crate::engine::{Error, MAX_TOP_N};
use crate::refine::since::RankingChange;

/// Top N when the page is opened without one.
const DEFAULT_TOP: usize = 20;

#[derive(Debug, Deserialize)]
pub(crate) struct SinceQuery {
    #[serde(default)]
    date: String,
    #[serde(default)]
    top: String,
}

struct ChangeRow {
    key: String,
    path: String,
    title: String,
    old_rank: String,
    new_rank: String,
    old_density: String,
    new_density: String,
    why: String,
}

#[derive(Template)]
#[template(path = "since.html")]
struct SincePage<'a> {
    signed_in: bool,
    csrf: &'a str,
    /// The date input's value: a day (YYYY-MM-DD) or empty.
    date: String,
    top: usize,
    /// What the comparison is against, when one was made.
    against: String,
    /// Why no comparison was made (bad input, no snapshot that old).
    problem: String,
    compared: bool,
    entered: Vec<ChangeRow>,
    left: Vec<ChangeRow>,
    moved: Vec<ChangeRow>,
    /// Recent snapshots, as (date to ask for, when, note).
    recent: Vec<(String, String, String)>,
}

fn rank(r: u32) -> String {
    if r == 0 { "–".into() } else { r.to_string() }
}

fn rows(list: Vec<RankingChange>) -> Vec<ChangeRow> {
    list.into_iter()
        .map(|c| ChangeRow {
            why: c.why().replace(" -> ", " → "),
            path: percent_path(&c.item_key),
            old_rank: rank(c.old_rank),
            new_rank: rank(c.new_rank),
            old_density: c.old.map_or_else(String::new, |n| num(n.value_density)),
            new_density: c.new.map_or_else(String::new, |n| num(n.value_density)),
            key: c.item_key,
            title: c.title,
        })
        .collect()
}

/// A date as the page takes it: `YYYY-MM-DD` (that day's start, UTC) or
/// RFC 3339.
fn parse_date(s: &str) -> Option<Time> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)))
}

/// A time at most the allowed clock skew ahead of the server's clock is
/// "now", as the API takes it.
fn within_skew(t: Time) -> Time {
    let now = Utc::now();
    if t > now && t <= now + crate::domain::MAX_CLOCK_SKEW {
        now
    } else {
        t
    }
}

fn rfc3339(t: &Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `GET /since?date=YYYY-MM-DD&top=N`.
pub(crate) async fn since(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<SinceQuery>,
) -> Response {
    let recent = match state.engine.list_ranking_snapshots(None, 10).await {
        Ok(list) => list
            .iter()
            .map(|s| {
                let at = rfc3339(&s.take_time);
                (at.clone(), at, s.note.clone())
            })
            .collect(),
        Err(e) => return engine_error(&viewer, &e),
    };
    let mut page = SincePage {
        signed_in: viewer.signed_in(),
        csrf: &viewer.csrf,
        date: parse_date(&q.date).map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string()),
        top: DEFAULT_TOP,
        against: String::new(),
        problem: String::new(),
        compared: false,
        entered: Vec::new(),
        left: Vec::new(),
        moved: Vec::new(),
        recent,
    };
    let mut status = StatusCode::OK;
    if !q.top.is_empty() {
        match q.top.parse::<usize>() {
            Ok(n) if (1..=MAX_TOP_N).contains(&n) => page.top = n,
            _ => {
                page.problem = "top must be a whole number from 1 to 1000".into();
                status = StatusCode::BAD_REQUEST;
            }
        }
    }
    if status == StatusCode::OK && !q.date.is_empty() {
        match parse_date(&q.date) {
            None => {
                page.problem = "date must be a day such as 2026-11-20 or an RFC 3339 time".into();
                status = StatusCode::BAD_REQUEST;
            }
            Some(t) => match state
                .engine
                .compare_ranking(within_skew(t), page.top, None)
                .await
            {
                Ok(v) => {
                    page.against = format!(
                        "the top {} now against the snapshot of {}{}",
                        v.top_n,
                        rfc3339(&v.snapshot.take_time),
                        if v.snapshot.note.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", v.snapshot.note)
                        }
                    );
                    page.compared = true;
                    page.entered = rows(v.changes.entered);
                    page.left = rows(v.changes.left);
                    page.moved = rows(v.changes.moved);
                }
                Err(e @ (Error::InvalidArgument(_) | Error::FailedPrecondition(_))) => {
                    status = if matches!(e, Error::InvalidArgument(_)) {
                        StatusCode::BAD_REQUEST
                    } else {
                        StatusCode::CONFLICT
                    };
                    page.problem = e.to_string();
                }
                Err(e) => return engine_error(&viewer, &e),
            },
        }
    }
    (status, html(page.render())).into_response()
}
