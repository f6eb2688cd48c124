//! Client commands: each makes one or a few gRPC calls to a running sidecar
//! and prints what came back.

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::json;
use super::output::{self, clip, enum_name, print_rows, print_rows_or};
use super::status::Doing;
pub use super::status::rpc_error;
use super::{Conn, ItemsArgs, LinkArgs, ObserveArgs, RankArgs, RankBy, StateArg};
use crate::proto as pb;
use pb::backlog_service_client::BacklogServiceClient;
use pb::scoring_service_client::ScoringServiceClient;
use pb::value_model_service_client::ValueModelServiceClient;

/// A connection to the sidecar that sends the API token, if one is given,
/// on every call (see [`super::credentials`]).
pub type Client = InterceptedService<Channel, super::credentials::Bearer>;

/// Connects to the sidecar at `url`, with an error that says what to do.
pub async fn connect(url: &str) -> Result<Client> {
    connect_for(url, Doing::Call).await
}

/// Connects to the sidecar at `url` for `doing`, whose words a sidecar that
/// cannot be reached is described in.
pub async fn connect_for(url: &str, doing: Doing<'_>) -> Result<Client> {
    let bearer = super::credentials::bearer()?;
    let endpoint = Channel::from_shared(url.to_string())
        .with_context(|| {
            format!(
                "{url:?} is not a valid server URL (expected e.g. http://127.0.0.1:50051 or https://plumbline.example:50051)"
            )
        })?
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(60));
    let endpoint = super::client_tls::apply(endpoint, url)?;
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| anyhow::anyhow!(super::status::unreachable(url, &e, doing)))?;
    Ok(InterceptedService::new(channel, bearer))
}

/// Follows page tokens to the last page (or until `at_least` entries when it
/// is not 0), collecting every entry. `fetch` asks for one page by token;
/// `split` takes a response apart into its entries and the next token.
pub async fn all_pages<T, R, Fut>(
    at_least: usize,
    mut fetch: impl FnMut(String) -> Fut,
    split: impl Fn(R) -> (Vec<T>, String),
) -> Result<Vec<T>>
where
    Fut: std::future::Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = split(fetch(token).await.map_err(rpc_error)?.into_inner());
        out.extend(page);
        if next.is_empty() || (at_least > 0 && out.len() >= at_least) {
            return Ok(out);
        }
        token = next;
    }
}

fn flags(s: &pb::ItemScore) -> Vec<String> {
    s.flags
        .iter()
        .map(|f| {
            pb::ScoreFlag::try_from(*f)
                .map(|f| enum_name(f.as_str_name(), "SCORE_FLAG_"))
                .unwrap_or_else(|_| f.to_string())
        })
        .collect()
}

/// One ranked row: the rank and every field of the item's score.
pub fn rank_row(r: &pb::RankedItem) -> Value {
    let s = r.score.clone().unwrap_or_default();
    json::with(json::message("ItemScore", &s), json!({ "rank": r.rank }))
}

pub const RANK_COLUMNS: &[(&str, &str)] = &[
    ("#", "rank"),
    ("item", "item_key"),
    ("title", "title_short"),
    ("value", "value"),
    ("size", "size"),
    ("value/size", "value_density"),
    ("demand", "demand_short"),
    ("flags", "flags"),
];

/// An item's demand in a few words: "4 cust / 2 seg, critical, 12 votes";
/// empty when nobody asked. Beside the score, never in it.
pub fn demand_short(s: &pb::ItemScore) -> String {
    let Some(d) = &s.demand else {
        return String::new();
    };
    let mut parts = Vec::new();
    if d.distinct_customers > 0 {
        parts.push(format!(
            "{} cust / {} seg",
            d.distinct_customers, d.distinct_segments
        ));
        if let Ok(i) = pb::Importance::try_from(d.highest_importance)
            && i != pb::Importance::Unspecified
        {
            parts.push(enum_name(i.as_str_name(), "IMPORTANCE_"));
        }
    }
    if let Some(v) = d.votes.filter(|v| *v > 0) {
        parts.push(format!("{v} votes"));
    }
    parts.join(", ")
}

/// Prints ranked rows as a table (titles shortened) or JSON.
pub fn print_ranking(json: bool, items: &[pb::RankedItem]) {
    let mut rows: Vec<Value> = items.iter().map(rank_row).collect();
    if !json {
        for r in &mut rows {
            r["title_short"] = Value::String(clip(r["title"].as_str().unwrap_or_default(), 48));
        }
        for (r, item) in rows.iter_mut().zip(items) {
            r["demand_short"] =
                Value::String(demand_short(&item.score.clone().unwrap_or_default()));
        }
    }
    print_rows(json, &rows, RANK_COLUMNS);
}

/// `rank --watch`: the ranking, then each change as it happens.
async fn watch(a: RankArgs) -> Result<()> {
    let mut c = ScoringServiceClient::new(connect(&a.conn.server).await?);
    let mut stream = c
        .watch_ranking(pb::WatchRankingRequest {
            page_size: a.top as i32,
            order: match a.by {
                RankBy::Density => pb::RankOrder::ValueDensity,
                RankBy::Value => pb::RankOrder::Value,
            } as i32,
            source_id: a.source.clone().unwrap_or_default(),
            label: a.label.clone().unwrap_or_default(),
            include_closed: a.include_closed,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    while let Some(msg) = stream.message().await.map_err(rpc_error)? {
        let at = chrono::Local::now().format("%H:%M:%S");
        if a.conn.json {
            let changes: Vec<Value> = msg
                .changes
                .iter()
                .map(|c| json::message("RankChange", c))
                .collect();
            let items: Vec<Value> = msg.items.iter().map(rank_row).collect();
            println!("{}", json!({"items": items, "changes": changes}));
            continue;
        }
        println!(
            "[{at}] top {} by {}:",
            a.top,
            if matches!(a.by, RankBy::Value) {
                "value"
            } else {
                "value density"
            }
        );
        print_ranking(false, &msg.items);
        for ch in &msg.changes {
            let line = match (ch.old_rank, ch.new_rank) {
                (0, n) => format!("{} entered at #{n}", ch.item_key),
                (o, 0) => format!("{} left the top {} (was #{o})", ch.item_key, a.top),
                (o, n) if o == n => format!(
                    "{} stays #{n}, value/size {} -> {}",
                    ch.item_key,
                    output::format_number(ch.old_value_density),
                    output::format_number(ch.new_value_density)
                ),
                (o, n) => format!("{} moved #{o} -> #{n}", ch.item_key),
            };
            println!("  {line}");
        }
        println!();
        use std::io::Write;
        std::io::stdout().flush()?;
    }
    Ok(())
}

pub async fn rank(a: RankArgs) -> Result<()> {
    if a.watch {
        return watch(a).await;
    }
    let mut c = ScoringServiceClient::new(connect(&a.conn.server).await?);
    let mut items = Vec::new();
    let mut token = String::new();
    let want = a.top as usize;
    while items.len() < want {
        let resp = c
            .rank_items(pb::RankItemsRequest {
                page_size: (want - items.len()).min(1000) as i32,
                page_token: token,
                order: match a.by {
                    RankBy::Density => pb::RankOrder::ValueDensity,
                    RankBy::Value => pb::RankOrder::Value,
                } as i32,
                source_id: a.source.clone().unwrap_or_default(),
                label: a.label.clone().unwrap_or_default(),
                include_closed: a.include_closed,
                view: pb::ScoreView::Basic as i32,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        items.extend(resp.items);
        if resp.next_page_token.is_empty() {
            break;
        }
        token = resp.next_page_token;
    }
    if items.is_empty() && !a.conn.json {
        println!("{NO_ITEMS}");
        return Ok(());
    }
    print_ranking(a.conn.json, &items);
    if !a.conn.json {
        println!("{VALUE_UNIT}");
    }
    Ok(())
}

/// The unit of value, stated once under the tables that show it.
pub const VALUE_UNIT: &str = "value: the share of the product's weighted unrealized value an item is \
expected to address (0.012 = 1.2 %); value/size: that per unit of size";

/// The explanation of one score as JSON: every field of the score.
pub fn explanation(s: &pb::ItemScore) -> Value {
    json::message("ItemScore", s)
}

/// Prints an explanation for people: the totals, then one row per term.
pub fn print_explanation(s: &pb::ItemScore) {
    let e = explanation(s);
    let fl = flags(s);
    println!("{}  {}", s.item_key, s.title);
    println!(
        "  value {} / size {} = value density {}{}",
        output::format_number(s.value),
        output::format_number(s.size),
        output::format_number(s.value_density),
        if fl.is_empty() {
            String::new()
        } else {
            format!("   flags: {}", fl.join(", "))
        }
    );
    let demand = demand_short(s);
    if !demand.is_empty() {
        println!("  asked for by: {demand} (beside the score, not in it)");
    }
    if s.terms.is_empty() {
        println!("  no link to any hypothesis: this item serves no known goal (unaligned)");
        return;
    }
    let rows: Vec<Value> = e["terms"].as_array().cloned().unwrap_or_default();
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|mut r| {
            if r["hypothesis_unsupported"].as_bool() == Some(true) {
                r["hypothesis_id"] = Value::String(format!(
                    "{} (unsupported)",
                    r["hypothesis_id"].as_str().unwrap_or_default()
                ));
            }
            if r["metric_stale"].as_bool() == Some(true) {
                r["metric_id"] = Value::String(format!(
                    "{} (stale)",
                    r["metric_id"].as_str().unwrap_or_default()
                ));
            }
            r
        })
        .collect();
    let t = output::table(
        &rows,
        &[
            ("hypothesis", "hypothesis_id"),
            ("goal", "goal_id"),
            ("goal weight", "goal_weight"),
            ("metric", "metric_id"),
            ("gap", "gap"),
            ("effect", "expected_effect"),
            ("confidence", "confidence"),
            ("contribution", "contribution"),
            ("used", "effective_contribution"),
            ("term value", "value"),
        ],
    );
    println!("{t}");
    println!(
        "  term value = goal weight × gap × effect × confidence × used contribution; value = sum of terms"
    );
}

pub async fn explain(conn: &Conn, item_key: &str) -> Result<()> {
    let mut c = ScoringServiceClient::new(connect(&conn.server).await?);
    let s = c
        .get_item_score(pb::GetItemScoreRequest {
            item_key: item_key.to_string(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .score
        .unwrap_or_default();
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&explanation(&s))?);
    } else {
        print_explanation(&s);
    }
    Ok(())
}

pub async fn items(a: ItemsArgs) -> Result<()> {
    let c = BacklogServiceClient::new(connect(&a.conn.server).await?);
    let state = match a.state {
        None => pb::ItemState::Unspecified,
        Some(StateArg::Open) => pb::ItemState::Open,
        Some(StateArg::Closed) => pb::ItemState::Closed,
    } as i32;
    let items = all_pages(
        a.limit,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListItemsRequest {
                source_id: a.source.clone().unwrap_or_default(),
                state,
                label: a.label.clone().unwrap_or_default(),
                page_size: 1000,
                page_token,
                include_removed: a.include_removed,
            };
            async move { c.list_items(req).await }
        },
        |r: pb::ListItemsResponse| (r.items, r.next_page_token),
    )
    .await?;
    let mut rows: Vec<Value> = items
        .iter()
        .map(|it| {
            let mut row = json::with(
                json::message("Item", it),
                json!({
                    "tasks_open": it.tasks.iter().filter(|t| !t.done).count(),
                    "removed": it.removal.as_ref().map(removal_json),
                }),
            );
            if !a.conn.json {
                row["title"] = Value::String(clip(&it.title, 56));
            }
            row
        })
        .collect();
    if a.limit > 0 {
        rows.truncate(a.limit);
    }
    if !a.conn.json && a.include_removed {
        // One readable cell: "moved 2026-12-05 (moved to ...)".
        for r in &mut rows {
            let cell = match &r["removed"] {
                Value::Null => String::new(),
                v => {
                    let why = v["reason"].as_str().unwrap_or_default().replace('_', " ");
                    let when = v["remove_time"].as_str().unwrap_or_default();
                    let when = when.get(..10).unwrap_or(when);
                    match v["detail"].as_str().unwrap_or_default() {
                        "" => format!("{why} {when}"),
                        d => format!("{why} {when} ({})", clip(d, 40)),
                    }
                }
            };
            r["removed"] = Value::String(cell);
        }
    }
    let mut columns = vec![("item", "key"), ("state", "state")];
    if a.include_removed {
        columns.push(("removed", "removed"));
    }
    columns.extend([
        ("estimate", "estimate"),
        ("labels", "labels"),
        ("title", "title"),
    ]);
    print_rows_or(a.conn.json, &rows, &columns, NO_ITEMS);
    Ok(())
}

/// What to do on a server (or filter) without items.
pub const NO_ITEMS: &str = "no items here yet: add a tracker with `plumbline sources add`, then \
`plumbline sync SOURCE` (or push items: plumbline items upsert SOURCE/ID --title ...)";

/// An item's removal as `--json` shows it.
fn removal_json(r: &pb::Removal) -> Value {
    json!({
        "reason": enum_name(r.reason().as_str_name(), "REMOVAL_REASON_"),
        "remove_time": super::output::time(r.remove_time.as_ref()),
        "detail": r.detail,
    })
}

pub async fn goals(conn: &Conn) -> Result<()> {
    let c = ValueModelServiceClient::new(connect(&conn.server).await?);
    let goals = all_pages(
        0,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListGoalsRequest {
                parent_id: String::new(),
                page_size: 1000,
                page_token,
            };
            async move { c.list_goals(req).await }
        },
        |r: pb::ListGoalsResponse| (r.goals, r.next_page_token),
    )
    .await?;
    // Tree order: each goal followed by its children, indented.
    fn walk(goals: &[pb::Goal], parent: &str, depth: usize, out: &mut Vec<(usize, pb::Goal)>) {
        for g in goals.iter().filter(|g| g.parent_id == parent) {
            out.push((depth, g.clone()));
            walk(goals, &g.id, depth + 1, out);
        }
    }
    let mut ordered = Vec::new();
    walk(&goals, "", 0, &mut ordered);
    let rows: Vec<Value> = ordered
        .iter()
        .map(|(depth, g)| goal_row(*depth, g, conn.json))
        .collect();
    print_rows_or(conn.json, &rows, GOAL_COLUMNS, NO_GOALS);
    Ok(())
}

/// What to do on a server without goals.
const NO_GOALS: &str = "no goals yet: write a product file with `plumbline init`, then `plumbline apply` \
(or add one: plumbline goals add grow --title \"Grow revenue\")";

/// A goal as a row, indented by its depth in the tree.
pub fn goal_row(depth: usize, g: &pb::Goal, json: bool) -> Value {
    let mut row = json::with(
        json::message("Goal", g),
        json!({
            "tree": format!("{}{}", "  ".repeat(depth), g.id),
            // Unset means the default weight, 1.
            "weight": g.weight.unwrap_or(1.0),
        }),
    );
    if !json {
        row["title"] = Value::String(clip(&g.title, 52));
    }
    row
}

pub const GOAL_COLUMNS: &[(&str, &str)] = &[
    ("goal", "tree"),
    ("level", "level"),
    ("key value area", "key_value_area"),
    ("weight", "weight"),
    ("effective", "effective_weight"),
    ("title", "title"),
];

/// A metric as a JSON row: every field of it.
pub fn metric_row(m: &pb::Metric) -> Value {
    json::with(json::message("Metric", m), metric_freshness(m))
}

/// A metric's source kind and the freshness of its pulls, as cells:
/// `pulled` the last pull's time, `pull_error` why it failed or what it
/// refused.
pub fn metric_freshness(m: &pb::Metric) -> Value {
    use pb::metric_source::Kind;
    let kind = match m.source.as_ref().and_then(|s| s.kind.as_ref()) {
        None => "",
        Some(Kind::HttpJson(_)) => "http_json",
        Some(Kind::Csv(_)) => "csv",
        Some(Kind::Posthog(_)) => "posthog",
        Some(Kind::Prometheus(_)) => "prometheus",
        Some(Kind::Sql(_)) => "sql",
    };
    let st = m.pull_status.as_ref();
    serde_json::json!({
        "source_kind": kind,
        "pulled": crate::cli::output::time(st.and_then(|s| s.last_pull_time.as_ref())),
        "pull_error": st.map(|s| s.last_error.clone()).unwrap_or_default(),
    })
}

pub const METRIC_COLUMNS: &[(&str, &str)] = &[
    ("metric", "id"),
    ("unit", "unit"),
    ("baseline", "baseline"),
    ("target", "target"),
    ("current", "current_value"),
    ("gap", "gap"),
    ("stale", "stale"),
    ("observed", "last_observe_time"),
    ("source", "source_kind"),
    ("pulled", "pulled"),
    ("pull error", "pull_error"),
];

pub async fn metrics(conn: &Conn) -> Result<()> {
    let c = ValueModelServiceClient::new(connect(&conn.server).await?);
    let metrics = all_pages(
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
    let rows: Vec<Value> = metrics.iter().map(metric_row).collect();
    print_rows_or(
        conn.json,
        &rows,
        METRIC_COLUMNS,
        "no metrics yet: write a product file with `plumbline init`, then `plumbline apply` \
(or add one: plumbline metrics add conversion --name \"Checkout conversion\" --unit % --baseline 2.1 --target 3.5)",
    );
    Ok(())
}

pub async fn hypotheses(conn: &Conn) -> Result<()> {
    let c = ValueModelServiceClient::new(connect(&conn.server).await?);
    let hypotheses = all_pages(
        0,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListHypothesesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            async move { c.list_hypotheses(req).await }
        },
        |r: pb::ListHypothesesResponse| (r.hypotheses, r.next_page_token),
    )
    .await?;
    let rows: Vec<Value> = hypotheses
        .iter()
        .map(|h| hypothesis_row(h, conn.json))
        .collect();
    print_rows_or(
        conn.json,
        &rows,
        HYPOTHESIS_COLUMNS,
        "no hypotheses yet: write a product file with `plumbline init`, then `plumbline apply` \
(or add one: plumbline hypotheses add H-1 --goal GOAL --metric METRIC --effect 0.3 --statement \"We believe ...\")",
    );
    Ok(())
}

/// A hypothesis as a row.
pub fn hypothesis_row(h: &pb::Hypothesis, json: bool) -> Value {
    let mut row = json::with(
        json::message("Hypothesis", h),
        // Unset means the default confidence, 0.5.
        json!({ "confidence": h.confidence.unwrap_or(0.5) }),
    );
    if !json {
        row["statement"] = Value::String(clip(&h.statement, 60));
        row["support"] = Value::String(if h.unsupported { "unsupported" } else { "" }.into());
    }
    row
}

pub const HYPOTHESIS_COLUMNS: &[(&str, &str)] = &[
    ("hypothesis", "id"),
    ("status", "status"),
    ("goal", "goal_id"),
    ("metric", "metric_id"),
    ("effect", "expected_effect"),
    ("confidence", "confidence"),
    ("value", "value"),
    ("flags", "support"),
    ("statement", "statement"),
];

pub async fn link(a: LinkArgs) -> Result<()> {
    let mut c = BacklogServiceClient::new(connect(&a.conn.server).await?);
    if a.remove {
        c.unlink_item(pb::UnlinkItemRequest {
            item_key: a.item_key.clone(),
            hypothesis_id: a.hypothesis_id.clone(),
        })
        .await
        .map_err(rpc_error)?;
        if a.conn.json {
            println!(
                "{}",
                json!({"removed": true, "item_key": a.item_key, "hypothesis_id": a.hypothesis_id})
            );
        } else {
            println!("unlinked {} from {}", a.item_key, a.hypothesis_id);
        }
        return Ok(());
    }
    let l = c
        .link_item(pb::LinkItemRequest {
            item_key: a.item_key,
            hypothesis_id: a.hypothesis_id,
            contribution: a.contribution,
            rationale: a.rationale,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .link
        .unwrap_or_default();
    let row = json::message("Link", &l);
    print_rows(
        a.conn.json,
        &[row],
        &[
            ("item", "item_key"),
            ("hypothesis", "hypothesis_id"),
            ("contribution", "contribution"),
            ("rationale", "rationale"),
        ],
    );
    Ok(())
}

pub async fn observe(a: ObserveArgs) -> Result<()> {
    // clap requires both unless --file is given, which does not come here.
    let (Some(metric_id), Some(value)) = (a.metric_id, a.value) else {
        super::args::usage_error(&["observe"], "give METRIC_ID VALUE, or --file FILE");
    };
    let mut c = ValueModelServiceClient::new(connect(&a.conn.server).await?);
    let resp = c
        .record_observations(pb::RecordObservationsRequest {
            observations: vec![pb::Observation {
                metric_id,
                value,
                observe_time: a.at,
            }],
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let rows: Vec<Value> = resp.metrics.iter().map(metric_row).collect();
    print_rows(a.conn.json, &rows, METRIC_COLUMNS);
    Ok(())
}

/// A coverage bar: `width` cells, filled in proportion to `share` (0..=1).
pub fn bar(share: f64, width: usize) -> String {
    let filled = ((share.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

pub async fn goal_tree(conn: &Conn) -> Result<()> {
    let mut c = pb::rollup_service_client::RollupServiceClient::new(connect(&conn.server).await?);
    let t = c
        .get_goal_tree(pb::GetGoalTreeRequest { items_per_goal: 3 })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if conn.json {
        let out = json::message("GetGoalTreeResponse", &t);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if t.goals.is_empty() {
        println!("{NO_GOALS}");
        return Ok(());
    }
    print_goal_tree(&t);
    Ok(())
}

/// The goal tree with coverage bars, serving items, unserved goals and
/// unaligned items.
pub fn print_goal_tree(t: &pb::GetGoalTreeResponse) {
    println!("coverage = share of the goal's weighted gap that open, linked items address\n");
    for g in &t.goals {
        let indent = "  ".repeat(g.depth.max(0) as usize);
        let label = clip(&format!("{indent}{} {}", g.goal_id, g.title), 56);
        println!(
            "{label:<56} {} {:>4.0}%  gap {:<6}  {} items{}",
            bar(g.coverage, 20),
            g.coverage * 100.0,
            output::format_number(g.weighted_gap),
            g.item_count,
            if g.unserved { "  UNSERVED" } else { "" }
        );
        for i in &g.items {
            println!("{indent}    · {} {}", i.item_key, clip(&i.title, 50));
        }
    }
    if !t.unserved_goal_ids.is_empty() {
        println!(
            "\ngoals no open item serves: {}",
            t.unserved_goal_ids.join(", ")
        );
    }
    if t.unaligned_item_count > 0 {
        println!(
            "items that serve no goal ({}): {}",
            t.unaligned_item_count,
            t.unaligned_item_keys
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
