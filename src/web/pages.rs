//! The pages: the backlog (and its table alone, for the live script), an
//! item with its explanation, links, hypotheses and split plans, the goal
//! tree; and applying a split. Each reads the engine with the calls the
//! gRPC services make and hands a template plain, formatted values.

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::WebState;
use super::session::{Viewer, bad_csrf, check_csrf, refuse};
use super::view::{cents, cents_str, html, num, num2, width};
use crate::auth::Role;
use crate::domain::{ItemState, TrackerKind};
use crate::engine::{Error, Narrow, RankOrder, RankRequest};
use crate::refine::split::{DEFAULT_SIZE_THRESHOLD, PlanKind};
use crate::sync::SyncError;

/// Rows of one backlog page.
pub const PAGE_SIZE: usize = 50;
/// Longest text search, in characters.
const MAX_SEARCH: usize = 200;
/// Longest filter value (source id, label, goal id), in characters.
const MAX_FILTER: usize = 256;

/// The CSS, compiled in.
const CSS: &str = include_str!("../../assets/web/app.css");
/// The one script, compiled in.
const JS: &str = include_str!("../../assets/web/app.js");

pub(crate) async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
        .into_response()
}

pub(crate) async fn not_found(viewer: Option<Extension<Viewer>>) -> Response {
    // `/assets/*` passes the gate without a viewer.
    let viewer = viewer.map_or_else(
        || Viewer {
            caller: None,
            csrf: String::new(),
        },
        |Extension(v)| v,
    );
    message(
        &viewer,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address. The backlog is at /.",
    )
}

fn message(viewer: &Viewer, status: StatusCode, title: &str, detail: &str) -> Response {
    let page = super::view::Message {
        title,
        detail,
        signed_in: viewer.signed_in(),
        csrf: &viewer.csrf,
    };
    (status, html(page.render())).into_response()
}

/// An engine error as a page with the status that matches its gRPC code.
pub(crate) fn engine_error(viewer: &Viewer, e: &Error) -> Response {
    let (status, title) = match e {
        Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, "Invalid request"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        Error::AlreadyExists(_) | Error::FailedPrecondition(_) => {
            (StatusCode::CONFLICT, "Cannot do that now")
        }
        Error::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "The database failed"),
    };
    if let Error::Store(e) = e {
        tracing::warn!(error = %e, "a web page could not read the store");
    }
    message(viewer, status, title, &e.to_string())
}

// ----- backlog -----

/// The backlog's filters, as the form and the links send them.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BacklogQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    label: String,
    /// `open` (the default), `closed` or `all`.
    #[serde(default)]
    state: String,
    #[serde(default)]
    goal: String,
    /// Text in the key or title, case-insensitive.
    #[serde(default)]
    q: String,
    /// `density` (the default) or `value`.
    #[serde(default)]
    order: String,
    /// From 1.
    #[serde(default)]
    page: Option<usize>,
}

/// The filters checked and normalised.
struct Filters {
    source: Option<String>,
    label: Option<String>,
    state: StateFilter,
    goal: Option<String>,
    q: Option<String>,
    order: RankOrder,
    page: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum StateFilter {
    Open,
    Closed,
    All,
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

impl BacklogQuery {
    fn check(&self) -> Result<Filters, Error> {
        for (field, v, max) in [
            ("source", &self.source, MAX_FILTER),
            ("label", &self.label, MAX_FILTER),
            ("goal", &self.goal, MAX_FILTER),
            ("q", &self.q, MAX_SEARCH),
        ] {
            if v.chars().count() > max {
                return Err(Error::invalid(
                    field,
                    format!("is longer than {max} characters"),
                ));
            }
        }
        let state = match self.state.as_str() {
            "" | "open" => StateFilter::Open,
            "closed" => StateFilter::Closed,
            "all" => StateFilter::All,
            _ => return Err(Error::invalid("state", "must be open, closed or all")),
        };
        let order = match self.order.as_str() {
            "" | "density" => RankOrder::ValueDensity,
            "value" => RankOrder::Value,
            _ => return Err(Error::invalid("order", "must be density or value")),
        };
        let page = self.page.unwrap_or(1);
        if page == 0 || page > 1_000_000 {
            return Err(Error::invalid("page", "must be from 1 to 1000000"));
        }
        Ok(Filters {
            source: opt(&self.source),
            label: opt(&self.label),
            state,
            goal: opt(&self.goal),
            q: opt(&self.q).map(|q| q.to_lowercase()),
            order,
            page,
        })
    }
}

/// One row of the backlog table.
pub(crate) struct Row {
    rank: u32,
    key: String,
    /// `key` as a path segment.
    path: String,
    url: String,
    title: String,
    value: String,
    size: String,
    density: String,
    flags: Vec<&'static str>,
}

/// One page of rows and whether another follows.
struct Rows {
    rows: Vec<Row>,
    more: bool,
}

async fn rows(state: &WebState, f: &Filters) -> Result<Rows, Error> {
    let engine = &state.engine;
    let offset = (f.page - 1) * PAGE_SIZE;
    // Every filter is checked as the index walks the ranking, so a page
    // builds only the rows up to its own (a goal's items are worked out
    // first, from the roll-up).
    let keys = match &f.goal {
        Some(g) => Some(std::sync::Arc::new(
            engine
                .goal_rollup(g, usize::MAX)?
                .map(|v| v.rollup.items.into_iter().map(|s| s.key).collect())
                .unwrap_or_default(),
        )),
        None => None,
    };
    let ranked = engine.rank(&RankRequest {
        order: f.order,
        source_id: f.source.clone(),
        label: f.label.clone(),
        include_closed: f.state != StateFilter::Open,
        after: None,
        limit: offset + PAGE_SIZE + 1,
        with_terms: false,
        narrow: Narrow {
            text: f.q.clone(),
            closed_only: f.state == StateFilter::Closed,
            keys,
        },
    })?;
    let mut kept = ranked.items.into_iter();
    let page: Vec<_> = kept.by_ref().skip(offset).take(PAGE_SIZE).collect();
    let more = kept.next().is_some();
    let keys: Vec<String> = page.iter().map(|r| r.score.item_key.clone()).collect();
    let urls: HashMap<String, String> = engine
        .get_items(&keys)
        .await?
        .into_iter()
        .map(|i| (i.key(), i.url))
        .collect();
    let rows = page
        .into_iter()
        .map(|r| {
            let s = r.score;
            let mut flags = Vec::new();
            if s.unaligned {
                flags.push("unaligned");
            }
            if s.unestimated {
                flags.push("unestimated");
            }
            if s.stale_metric {
                flags.push("stale metric");
            }
            Row {
                rank: r.rank,
                url: urls
                    .get(&s.item_key)
                    .map(|u| web_url(u).to_owned())
                    .unwrap_or_default(),
                path: percent_path(&s.item_key),
                key: s.item_key,
                title: s.title,
                value: num(s.value),
                size: num2(s.size),
                density: num(s.value_density),
                flags,
            }
        })
        .collect();
    Ok(Rows { rows, more })
}

#[derive(Template)]
#[template(path = "backlog.html")]
struct BacklogPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    q: &'a BacklogQuery,
    sources: Vec<String>,
    goals: Vec<(String, String)>,
    rows: Vec<Row>,
    page: usize,
    prev_link: Option<String>,
    next_link: Option<String>,
}

#[derive(Template)]
#[template(path = "backlog_rows.html")]
struct BacklogRows {
    rows: Vec<Row>,
}

/// The query string of `q` at another page.
fn page_link(q: &BacklogQuery, page: usize) -> String {
    let mut s = form_urlencoded_pairs(&[
        ("source", &q.source),
        ("label", &q.label),
        ("state", &q.state),
        ("goal", &q.goal),
        ("q", &q.q),
        ("order", &q.order),
    ]);
    if !s.is_empty() {
        s.push('&');
    }
    format!("/?{s}page={page}")
}

fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// `GET /`: the ranking.
pub(crate) async fn backlog(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<BacklogQuery>,
) -> Response {
    let f = match q.check() {
        Ok(f) => f,
        Err(e) => return engine_error(&viewer, &e),
    };
    let Rows { rows, more } = match rows(&state, &f).await {
        Ok(r) => r,
        Err(e) => return engine_error(&viewer, &e),
    };
    let page = BacklogPage {
        signed_in: viewer.signed_in(),
        csrf: &viewer.csrf,
        sources: state
            .engine
            .list_sources(None, 1000)
            .into_iter()
            .map(|s| s.id)
            .collect(),
        goals: state
            .engine
            .list_goals(None, None, 1000)
            .into_iter()
            .map(|g| (g.goal.id, g.goal.title))
            .collect(),
        rows,
        page: f.page,
        prev_link: (f.page > 1).then(|| page_link(&q, f.page - 1)),
        next_link: more.then(|| page_link(&q, f.page + 1)),
        q: &q,
    };
    html(page.render())
}

/// `GET /fragments/backlog`: the table's rows alone, for the live script.
pub(crate) async fn backlog_rows(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Query(q): Query<BacklogQuery>,
) -> Response {
    let f = match q.check() {
        Ok(f) => f,
        Err(e) => return engine_error(&viewer, &e),
    };
    match rows(&state, &f).await {
        Ok(Rows { rows, .. }) => html(BacklogRows { rows }.render()),
        Err(e) => engine_error(&viewer, &e),
    }
}

// ----- item -----

/// One term of an item's value, as drawn.
struct TermRow {
    hypothesis_id: String,
    goal_id: String,
    metric_id: String,
    /// The engine's number, exactly (shortest round trip).
    exact: String,
    /// Two decimals, rounded so that the terms add up to the value shown.
    shown: String,
    width: String,
    stale: bool,
    /// Neither insights nor observations behind the hypothesis.
    unsupported: bool,
}

struct LinkRow {
    hypothesis_id: String,
    statement: String,
    status: String,
    confidence: String,
    contribution: String,
    origin: &'static str,
    rationale: String,
}

struct SliceRow {
    key: String,
    title: String,
    value: String,
    size: String,
    density: String,
    best: bool,
}

struct PlanRow {
    kind: &'static str,
    concentration: String,
    slices: Vec<SliceRow>,
    /// BY_CHILD plans are made of existing children: nothing to apply.
    applicable: bool,
}

struct ChildRow {
    key: String,
    path: String,
    title: String,
}

/// One insight behind the item: who said what.
struct InsightRow {
    kind: &'static str,
    customer: String,
    segment: String,
    importance: &'static str,
    date: String,
    text: String,
    url: String,
}

/// Most insights an item's page lists (the CLI and API list them all).
const PAGE_INSIGHTS: usize = 50;

#[derive(Template)]
#[template(path = "item.html")]
struct ItemPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    key: String,
    path: String,
    title: String,
    url: String,
    state: &'static str,
    labels: Vec<String>,
    value_exact: String,
    value_shown: String,
    size: String,
    density: String,
    terms: Vec<TermRow>,
    links: Vec<LinkRow>,
    plans: Vec<PlanRow>,
    oversized: bool,
    children: Vec<ChildRow>,
    may_write: bool,
    /// The tracker the slices can be created in, when the item's source
    /// writes back and the viewer may (admin): the apply forms offer it.
    write_back_to: Option<&'static str>,
    applied: Option<String>,
    customers: u32,
    segments: u32,
    highest_importance: &'static str,
    votes: Option<u64>,
    asked_for_not_aligned: bool,
    insights: Vec<InsightRow>,
    more_insights: bool,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ItemQuery {
    #[serde(default)]
    applied: String,
}

/// `GET /items/{key}`.
pub(crate) async fn item(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(key): Path<String>,
    Query(iq): Query<ItemQuery>,
) -> Response {
    match item_page(&state, &viewer, &key, &iq).await {
        Ok(r) => r,
        Err(e) => engine_error(&viewer, &e),
    }
}

async fn item_page(
    state: &WebState,
    viewer: &Viewer,
    key: &str,
    iq: &ItemQuery,
) -> Result<Response, Error> {
    let engine = &state.engine;
    if key.chars().count() > 2 * MAX_FILTER {
        return Err(Error::invalid("key", "is too long to be an item key"));
    }
    let score = engine.item_score(key)?;
    let item = engine
        .get_items(&[key.to_owned()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::NotFound(format!("item {} not found", crate::engine::quote(key))))?;
    let values: Vec<f64> = score.terms.iter().map(|t| t.term.value).collect();
    let (total, shown) = cents(score.value, &values);
    let terms = score
        .terms
        .iter()
        .zip(&shown)
        .map(|(t, c)| TermRow {
            hypothesis_id: t.term.hypothesis_id.clone(),
            goal_id: t.term.goal_id.clone(),
            metric_id: t.term.metric_id.clone(),
            exact: format!("{:?}", t.term.value),
            shown: cents_str(*c),
            width: width(if score.value > 0.0 {
                t.term.value / score.value
            } else {
                0.0
            }),
            stale: t.metric_stale,
            unsupported: t.hypothesis_unsupported,
        })
        .collect();
    let insight_keys = engine.insight_keys(
        &crate::engine::InsightFilter {
            item_key: Some(key.to_owned()),
            ..Default::default()
        },
        None,
        PAGE_INSIGHTS + 1,
    );
    let more_insights = insight_keys.len() > PAGE_INSIGHTS;
    let insights = engine
        .get_insights(&insight_keys[..insight_keys.len().min(PAGE_INSIGHTS)])
        .await?
        .into_iter()
        .map(|i| InsightRow {
            kind: i.kind.as_str(),
            customer: i.customer,
            segment: i.segment_id,
            importance: i.importance.map_or("", |v| v.as_str()),
            date: i
                .time
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            text: i.text,
            url: web_url(&i.url).to_owned(),
        })
        .collect();
    let links = engine
        .list_links(
            &crate::engine::LinkFilter {
                item_key: Some(key),
                hypothesis_id: None,
            },
            None,
            1000,
        )
        .into_iter()
        .map(|l| {
            let h = engine.get_hypothesis(&l.hypothesis_id).ok();
            LinkRow {
                statement: h.as_ref().map(|h| h.statement.clone()).unwrap_or_default(),
                status: h
                    .as_ref()
                    .map(|h| format!("{:?}", h.status).to_lowercase())
                    .unwrap_or_default(),
                confidence: h.as_ref().map(|h| num2(h.confidence)).unwrap_or_default(),
                contribution: num2(l.contribution),
                origin: match l.origin {
                    crate::domain::LinkOrigin::Api => "set by hand",
                    crate::domain::LinkOrigin::Rule => "by a rule",
                },
                rationale: l.rationale,
                hypothesis_id: l.hypothesis_id,
            }
        })
        .collect();
    let (plans, oversized) = match engine.propose_splits(key, DEFAULT_SIZE_THRESHOLD).await {
        Ok(p) => (
            p.plans
                .iter()
                .map(|plan| PlanRow {
                    kind: plan.kind.as_str(),
                    concentration: num2(plan.value_concentration),
                    applicable: plan.kind != PlanKind::ByChild,
                    slices: plan
                        .slices
                        .iter()
                        .enumerate()
                        .map(|(i, s)| SliceRow {
                            key: s.item_key.clone(),
                            title: s.title.clone(),
                            value: num(s.value),
                            size: num2(s.size),
                            density: num(s.value_density),
                            best: i == plan.best_slice_index,
                        })
                        .collect(),
                })
                .collect(),
            p.oversized,
        ),
        // A closed item has a score but no plans worth showing.
        Err(Error::FailedPrecondition(_)) => (Vec::new(), false),
        Err(e) => return Err(e),
    };
    let children = {
        let ix = engine.read();
        ix.children_of(key)
            .into_iter()
            .map(|k| ChildRow {
                title: ix.item(&k).map(|f| f.title.clone()).unwrap_or_default(),
                path: percent_path(&k),
                key: k,
            })
            .collect()
    };
    let page = ItemPage {
        signed_in: viewer.signed_in(),
        csrf: &viewer.csrf,
        key: key.to_owned(),
        path: percent_path(key),
        title: score.title.clone(),
        url: web_url(&item.url).to_owned(),
        state: match item.state {
            ItemState::Open => "open",
            ItemState::Closed => "closed",
        },
        labels: item.labels.clone(),
        value_exact: format!("{:?}", score.value),
        value_shown: cents_str(total),
        size: num2(score.size),
        density: num(score.value_density),
        terms,
        links,
        plans,
        oversized,
        children,
        may_write: viewer.may(Role::Write),
        write_back_to: engine
            .get_source(&item.source_id)
            .ok()
            .filter(|s| {
                s.kind != TrackerKind::Push && !s.token_env.is_empty() && viewer.may(Role::Admin)
            })
            .map(|s| tracker_name(s.kind)),
        applied: PlanKind::parse(&iq.applied).map(|k| k.as_str().to_owned()),
        customers: score.demand.customers,
        segments: score.demand.segments,
        highest_importance: score.demand.highest_importance.map_or("", |v| v.as_str()),
        votes: score.demand.votes,
        asked_for_not_aligned: score.asked_for_not_aligned,
        insights,
        more_insights,
    };
    Ok(html(page.render()))
}

#[derive(Deserialize)]
pub(crate) struct SplitForm {
    kind: String,
    csrf: String,
    /// A checked "also create the slices in the tracker" box.
    #[serde(default)]
    write_back: String,
}

fn tracker_name(kind: TrackerKind) -> &'static str {
    match kind {
        TrackerKind::Github => "GitHub",
        TrackerKind::Gitlab => "GitLab",
        TrackerKind::Jira => "Jira",
        TrackerKind::Redmine => "Redmine",
        TrackerKind::Push => "its integration",
    }
}

/// A failed split as a page: the engine's errors as every page words them,
/// the tracker's as ApplySplit does (the message is already scrubbed of
/// secrets by the syncer).
fn split_error(viewer: &Viewer, e: SyncError) -> Response {
    let (status, title) = match &e {
        SyncError::Engine(e) => return engine_error(viewer, e),
        SyncError::SplitRunning(_) | SyncError::AlreadyRunning(_) => {
            (StatusCode::CONFLICT, "Cannot do that now")
        }
        SyncError::Interrupted { .. }
        | SyncError::Transport { .. }
        | SyncError::RateLimited { .. }
        | SyncError::Malformed { .. } => (StatusCode::BAD_GATEWAY, "The tracker did not answer"),
        SyncError::Client(_) => (StatusCode::INTERNAL_SERVER_ERROR, "The split failed"),
        _ => (StatusCode::CONFLICT, "The tracker refused the slices"),
    };
    message(viewer, status, title, &e.to_string())
}

/// `POST /items/{key}/split`: applies a plan (write needed), creating its
/// slices in the tracker too when the form asks and the viewer is an admin
/// (as ApplySplit with write_back), then shows the item with its slices.
pub(crate) async fn apply_split(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
    Path(key): Path<String>,
    Form(form): Form<SplitForm>,
) -> Response {
    if !check_csrf(&viewer, &form.csrf) {
        return bad_csrf();
    }
    if let Some(c) = viewer.caller.as_ref().filter(|c| c.role < Role::Write) {
        let detail = format!(
            "Applying a split changes the backlog, so it needs the write role; you signed in with the token {:?}, which has the {} role. Sign in with a write token to apply it.",
            &*c.name,
            c.role.as_str()
        );
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: a read token cannot split",
            &detail,
        );
    }
    let Some(kind) = PlanKind::parse(&form.kind).filter(|k| *k != PlanKind::ByChild) else {
        return message(
            &viewer,
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "kind: must be hypothesis or task",
        );
    };
    let write_back = !form.write_back.is_empty();
    if write_back && let Some(c) = viewer.caller.as_ref().filter(|c| c.role < Role::Admin) {
        let detail = format!(
            "Creating the slices in the tracker writes to it with the server's token, so it needs the admin role, as ApplySplit with write_back does; you signed in with the token {:?}, which has the {} role. Apply the split without it, or ask an admin.",
            &*c.name,
            c.role.as_str()
        );
        return refuse(
            StatusCode::FORBIDDEN,
            "Refused: writing back needs an admin token",
            &detail,
        );
    }
    match state.syncer.apply_split(&key, kind, write_back).await {
        Ok(applied) => {
            if let Some(c) = &viewer.caller {
                tracing::info!(token = %c.name, item = %key, plan = kind.as_str(), write_back, created = applied.created.len(), "split applied from the web");
            }
            let to = format!("/items/{}?applied={}", percent_path(&key), kind.as_str());
            Redirect::to(&to).into_response()
        }
        Err(e) => split_error(&viewer, e),
    }
}

/// An item's tracker URL as a page may link it: only `http(s)://`, so that
/// a `javascript:` URL pushed by a client never becomes a link to click.
fn web_url(url: &str) -> &str {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        url
    } else {
        ""
    }
}

/// An item key as one path segment (keys hold `:` and `#`).
pub(crate) fn percent_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ----- goals -----

struct GoalRow {
    id: String,
    title: String,
    depth: usize,
    indent: usize,
    coverage: String,
    coverage_width: String,
    weighted_gap: String,
    item_count: usize,
    unserved: bool,
}

#[derive(Template)]
#[template(path = "goals.html")]
struct GoalsPage<'a> {
    signed_in: bool,
    csrf: &'a str,
    goals: Vec<GoalRow>,
    unserved: Vec<(String, String)>,
    /// Key, path, title.
    unaligned: Vec<(String, String, String)>,
}

/// `GET /goals`: the goal tree with coverage, unserved goals and unaligned
/// items.
pub(crate) async fn goals(
    State(state): State<WebState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let tree = state.engine.goal_tree(0);
    let titles: HashMap<String, String> = tree
        .goals
        .iter()
        .map(|g| (g.rollup.goal_id.clone(), g.title.clone()))
        .collect();
    let goals = tree
        .goals
        .iter()
        .map(|g| GoalRow {
            id: g.rollup.goal_id.clone(),
            title: g.title.clone(),
            depth: g.rollup.depth,
            indent: g.rollup.depth * 2,
            coverage: format!("{:.0}%", g.rollup.coverage.clamp(0.0, 1.0) * 100.0),
            coverage_width: width(g.rollup.coverage),
            weighted_gap: num(g.rollup.weighted_gap),
            item_count: g.item_count,
            unserved: g.rollup.unserved,
        })
        .collect();
    let unserved = tree
        .unserved_goal_ids
        .iter()
        .map(|id| (id.clone(), titles.get(id).cloned().unwrap_or_default()))
        .collect();
    let unaligned = tree
        .unaligned_item_keys
        .iter()
        .take(500)
        .map(|k| (k.clone(), percent_path(k), state.engine.item_title(k)))
        .collect();
    html(
        GoalsPage {
            signed_in: viewer.signed_in(),
            csrf: &viewer.csrf,
            goals,
            unserved,
            unaligned,
        }
        .render(),
    )
}
