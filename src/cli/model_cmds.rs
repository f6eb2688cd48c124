//! `plumbline goals|metrics|hypotheses [list|get|add|update|remove]`: the
//! value model one resource at a time, for a team that has no product file
//! (or wants to change one thing). The bare command still lists, as it did
//! before the subcommands came. An update sends an AIP-134 update mask with
//! exactly the fields whose flags were given, so that nothing else changes
//! and a flag given an empty value clears its field.

use anyhow::Result;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::Conn;
use super::args;
use super::client::{self, connect, rpc_error};
use super::json;
use super::output::{self, clip, print_one};
use crate::proto as pb;
use pb::value_model_service_client::ValueModelServiceClient;

// ----- goals -----

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GoalsArgs {
    #[command(subcommand)]
    command: Option<GoalsCommand>,
    #[command(flatten)]
    list: GoalsList,
}

#[derive(Debug, Args)]
struct GoalsList {
    /// Draw the tree with coverage bars, serving items, unserved goals
    /// and unaligned items.
    #[arg(long)]
    tree: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum GoalsCommand {
    /// The goal tree with effective weights (what `plumbline goals` alone
    /// prints); --tree shows coverage.
    List(GoalsList),
    /// One goal.
    Get {
        /// Goal id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// One goal's roll-up: its weighted gap, how much of it open linked
    /// items address, and the best of them.
    Rollup {
        /// Goal id.
        id: String,
        /// How many serving items to show (at most 1000).
        #[arg(long, default_value_t = 10)]
        items: i32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a goal, e.g. `plumbline goals add grow --title "Grow revenue"`.
    Add(GoalAdd),
    /// Change a goal; only the flags given change, e.g.
    /// `plumbline goals update grow --weight 2`.
    Update(GoalUpdate),
    /// Delete a goal (refused while it has child goals or hypotheses).
    Remove {
        /// Goal id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LevelArg {
    /// Long-range; a root of the tree.
    Strategic,
    /// A measurable step towards a strategic goal.
    Intermediate,
    /// Something a team can test in weeks.
    Tactical,
}

impl From<LevelArg> for pb::GoalLevel {
    fn from(l: LevelArg) -> Self {
        match l {
            LevelArg::Strategic => pb::GoalLevel::Strategic,
            LevelArg::Intermediate => pb::GoalLevel::Intermediate,
            LevelArg::Tactical => pb::GoalLevel::Tactical,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AreaArg {
    CurrentValue,
    UnrealizedValue,
    TimeToMarket,
    AbilityToInnovate,
}

impl From<AreaArg> for pb::KeyValueArea {
    fn from(a: AreaArg) -> Self {
        match a {
            AreaArg::CurrentValue => pb::KeyValueArea::CurrentValue,
            AreaArg::UnrealizedValue => pb::KeyValueArea::UnrealizedValue,
            AreaArg::TimeToMarket => pb::KeyValueArea::TimeToMarket,
            AreaArg::AbilityToInnovate => pb::KeyValueArea::AbilityToInnovate,
        }
    }
}

#[derive(Debug, Args)]
struct GoalAdd {
    /// Goal id: 1-64 letters, digits, '.', '_' or '-' (e.g. grow).
    id: String,
    /// One line saying what the goal is (e.g. "Grow revenue").
    #[arg(long)]
    title: String,
    /// Longer text.
    #[arg(long, default_value = "")]
    description: String,
    /// Level in the goal tree [default: strategic without --parent, one
    /// level below the parent with it].
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// Parent goal id (a strategic goal's child is intermediate, an
    /// intermediate goal's child tactical).
    #[arg(long, default_value = "")]
    parent: String,
    /// Evidence-Based Management Key Value Area.
    #[arg(long, value_enum)]
    area: Option<AreaArg>,
    /// Weight among its siblings, in [0, 1e6] (e.g. 3) [default: 1].
    #[arg(long)]
    weight: Option<f64>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["title", "description", "level", "parent", "area", "weight"])))]
struct GoalUpdate {
    /// Goal id.
    id: String,
    /// New title (e.g. "Grow revenue in Europe").
    #[arg(long)]
    title: Option<String>,
    /// New description ("" clears it).
    #[arg(long)]
    description: Option<String>,
    /// New level.
    #[arg(long, value_enum)]
    level: Option<LevelArg>,
    /// New parent goal id ("" makes it a root, for a strategic goal).
    #[arg(long)]
    parent: Option<String>,
    /// New Key Value Area.
    #[arg(long, value_enum)]
    area: Option<AreaArg>,
    /// New weight among its siblings, in [0, 1e6] (e.g. 2).
    #[arg(long)]
    weight: Option<f64>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn goals(a: GoalsArgs) -> Result<()> {
    let cmd = a.command.unwrap_or(GoalsCommand::List(a.list));
    match cmd {
        GoalsCommand::List(l) if l.tree => client::goal_tree(&l.conn).await,
        GoalsCommand::List(l) => client::goals(&l.conn).await,
        GoalsCommand::Get { id, conn } => {
            let g = model(&conn)
                .await?
                .get_goal(pb::GetGoalRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .goal
                .unwrap_or_default();
            print_goal(&conn, &g);
            Ok(())
        }
        GoalsCommand::Rollup { id, items, conn } => rollup(&conn, id, items).await,
        GoalsCommand::Add(a) => add_goal(a).await,
        GoalsCommand::Update(a) => update_goal(a).await,
        GoalsCommand::Remove { id, conn } => {
            model(&conn)
                .await?
                .delete_goal(pb::DeleteGoalRequest { id: id.clone() })
                .await
                .map_err(rpc_error)?;
            removed(&conn, "goal", &id);
            Ok(())
        }
    }
}

async fn model(conn: &Conn) -> Result<ValueModelServiceClient<client::Client>> {
    Ok(ValueModelServiceClient::new(connect(&conn.server).await?))
}

fn removed(conn: &Conn, kind: &str, id: &str) {
    if conn.json {
        println!("{}", json!({ "removed": id, "kind": kind }));
    } else {
        println!("removed {kind} {id}");
    }
}

fn print_goal(conn: &Conn, g: &pb::Goal) {
    print_one(
        conn.json,
        &client::goal_row(0, g, conn.json),
        client::GOAL_COLUMNS,
    );
}

async fn add_goal(a: GoalAdd) -> Result<()> {
    let mut c = model(&a.conn).await?;
    let level = match (a.level, a.parent.as_str()) {
        (Some(l), _) => pb::GoalLevel::from(l),
        (None, "") => pb::GoalLevel::Strategic,
        // One level below the parent; a tactical parent has none, which
        // the server says in its own words.
        (None, parent) => {
            let p = c
                .get_goal(pb::GetGoalRequest {
                    id: parent.to_string(),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .goal
                .unwrap_or_default();
            match p.level() {
                pb::GoalLevel::Strategic => pb::GoalLevel::Intermediate,
                _ => pb::GoalLevel::Tactical,
            }
        }
    };
    let g = c
        .create_goal(pb::CreateGoalRequest {
            goal: Some(pb::Goal {
                id: a.id,
                title: a.title,
                description: a.description,
                level: level as i32,
                parent_id: a.parent,
                key_value_area: a.area.map_or(0, |k| pb::KeyValueArea::from(k) as i32),
                weight: a.weight,
                ..Default::default()
            }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .goal
        .unwrap_or_default();
    print_goal(&a.conn, &g);
    Ok(())
}

/// The mask paths of the flags given: `(path, given)` in message order.
fn mask(fields: &[(&str, bool)]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: fields
            .iter()
            .filter(|(_, given)| *given)
            .map(|(p, _)| p.to_string())
            .collect(),
    })
}

async fn update_goal(a: GoalUpdate) -> Result<()> {
    let update_mask = mask(&[
        ("title", a.title.is_some()),
        ("description", a.description.is_some()),
        ("level", a.level.is_some()),
        ("parent_id", a.parent.is_some()),
        ("key_value_area", a.area.is_some()),
        ("weight", a.weight.is_some()),
    ]);
    let g = model(&a.conn)
        .await?
        .update_goal(pb::UpdateGoalRequest {
            goal: Some(pb::Goal {
                id: a.id,
                title: a.title.unwrap_or_default(),
                description: a.description.unwrap_or_default(),
                level: a.level.map_or(0, |l| pb::GoalLevel::from(l) as i32),
                parent_id: a.parent.unwrap_or_default(),
                key_value_area: a.area.map_or(0, |k| pb::KeyValueArea::from(k) as i32),
                weight: a.weight,
                ..Default::default()
            }),
            update_mask,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .goal
        .unwrap_or_default();
    print_goal(&a.conn, &g);
    Ok(())
}

async fn rollup(conn: &Conn, goal_id: String, items: i32) -> Result<()> {
    let mut c = pb::rollup_service_client::RollupServiceClient::new(connect(&conn.server).await?);
    let r = c
        .get_goal_rollup(pb::GetGoalRollupRequest {
            goal_id,
            item_limit: items,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .rollup
        .unwrap_or_default();
    if conn.json {
        let out = json::message("GoalRollup", &r);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{} {}: coverage {} {:.0}% (addresses {} of weighted gap {}), effective weight {}, {} open items serve it{}",
        r.goal_id,
        r.title,
        client::bar(r.coverage, 20),
        r.coverage * 100.0,
        output::format_number(r.addressed),
        output::format_number(r.weighted_gap),
        output::format_number(r.effective_weight),
        r.item_count,
        if r.unserved { " (UNSERVED)" } else { "" }
    );
    if r.items.is_empty() {
        println!(
            "no open item serves it: link one to a hypothesis under it (plumbline link ITEM HYPOTHESIS)"
        );
        return Ok(());
    }
    let rows: Vec<Value> = r
        .items
        .iter()
        .map(|i| {
            let mut row = json::message("ServingItem", i);
            row["title"] = Value::String(clip(&i.title, 56));
            row
        })
        .collect();
    println!(
        "{}",
        output::table(
            &rows,
            &[
                ("item", "item_key"),
                ("value for goal", "value_for_goal"),
                ("value/size", "value_density"),
                ("title", "title"),
            ],
        )
    );
    Ok(())
}

// ----- metrics -----

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MetricsArgs {
    #[command(subcommand)]
    command: Option<MetricsCommand>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum MetricsCommand {
    /// Key Value Measures with their current value, gap, staleness, source
    /// kind and the freshness of its pulls (what `plumbline metrics` alone
    /// prints).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// One metric.
    Get {
        /// Metric id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a metric, e.g. `plumbline metrics add conv --name "Checkout
    /// conversion" --unit % --baseline 2.1 --target 3.5 --cadence 7d`.
    Add(MetricAdd),
    /// Change a metric; only the flags given change, e.g.
    /// `plumbline metrics update conv --target 4`.
    Update(MetricUpdate),
    /// Pull observations from metric sources now: one metric, or every
    /// metric with a source; prints each pull's progress and result, e.g.
    /// `plumbline metrics pull conv`.
    Pull {
        /// Metric id; all metrics with a source when omitted.
        id: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a metric and its observations (refused while a hypothesis
    /// measures it).
    Remove {
        /// Metric id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DirectionArg {
    /// Higher values are better (e.g. conversion).
    Higher,
    /// Lower values are better (e.g. lead time).
    Lower,
}

impl From<DirectionArg> for pb::MetricDirection {
    fn from(d: DirectionArg) -> Self {
        match d {
            DirectionArg::Higher => pb::MetricDirection::HigherIsBetter,
            DirectionArg::Lower => pb::MetricDirection::LowerIsBetter,
        }
    }
}

#[derive(Debug, Args)]
struct MetricAdd {
    /// Metric id: 1-64 letters, digits, '.', '_' or '-' (e.g. conv).
    id: String,
    /// One line naming the measure (e.g. "Checkout conversion").
    #[arg(long)]
    name: String,
    /// Unit of its values (e.g. %, EUR, days).
    #[arg(long, default_value = "")]
    unit: String,
    /// The value when the work started (e.g. 2.1).
    #[arg(long, allow_negative_numbers = true)]
    baseline: f64,
    /// The value the product aims for, not the baseline (e.g. 3.5).
    #[arg(long, allow_negative_numbers = true)]
    target: f64,
    /// Which way is better [default: from baseline to target].
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// How often it is measured (e.g. 7d, 24h); older observations are
    /// stale [default: never stale].
    #[arg(long, value_parser = args::duration)]
    cadence: Option<prost_types::Duration>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["name", "unit", "baseline", "target", "direction", "cadence"])))]
struct MetricUpdate {
    /// Metric id.
    id: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New unit ("" clears it).
    #[arg(long)]
    unit: Option<String>,
    /// New baseline (e.g. 2.4).
    #[arg(long, allow_negative_numbers = true)]
    baseline: Option<f64>,
    /// New target (e.g. 4).
    #[arg(long, allow_negative_numbers = true)]
    target: Option<f64>,
    /// New direction; it must agree with baseline and target.
    #[arg(long, value_enum)]
    direction: Option<DirectionArg>,
    /// New cadence (e.g. 30d).
    #[arg(long, value_parser = args::duration)]
    cadence: Option<prost_types::Duration>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn metrics(a: MetricsArgs) -> Result<()> {
    match a.command {
        None => client::metrics(&a.conn).await,
        Some(MetricsCommand::List { conn }) => client::metrics(&conn).await,
        Some(MetricsCommand::Get { id, conn }) => {
            let m = model(&conn)
                .await?
                .get_metric(pb::GetMetricRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .metric
                .unwrap_or_default();
            print_metric(&conn, &m);
            Ok(())
        }
        Some(MetricsCommand::Add(a)) => {
            let m = model(&a.conn)
                .await?
                .create_metric(pb::CreateMetricRequest {
                    metric: Some(pb::Metric {
                        id: a.id,
                        name: a.name,
                        unit: a.unit,
                        direction: a
                            .direction
                            .map_or(0, |d| pb::MetricDirection::from(d) as i32),
                        baseline: a.baseline,
                        target: a.target,
                        cadence: a.cadence,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .metric
                .unwrap_or_default();
            print_metric(&a.conn, &m);
            Ok(())
        }
        Some(MetricsCommand::Update(a)) => {
            let update_mask = mask(&[
                ("name", a.name.is_some()),
                ("unit", a.unit.is_some()),
                ("direction", a.direction.is_some()),
                ("baseline", a.baseline.is_some()),
                ("target", a.target.is_some()),
                ("cadence", a.cadence.is_some()),
            ]);
            let m = model(&a.conn)
                .await?
                .update_metric(pb::UpdateMetricRequest {
                    metric: Some(pb::Metric {
                        id: a.id,
                        name: a.name.unwrap_or_default(),
                        unit: a.unit.unwrap_or_default(),
                        direction: a
                            .direction
                            .map_or(0, |d| pb::MetricDirection::from(d) as i32),
                        baseline: a.baseline.unwrap_or_default(),
                        target: a.target.unwrap_or_default(),
                        cadence: a.cadence,
                        ..Default::default()
                    }),
                    update_mask,
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .metric
                .unwrap_or_default();
            print_metric(&a.conn, &m);
            Ok(())
        }
        Some(MetricsCommand::Pull { id, conn }) => crate::cli::pull::pull(id, &conn).await,
        Some(MetricsCommand::Remove { id, conn }) => {
            model(&conn)
                .await?
                .delete_metric(pb::DeleteMetricRequest { id: id.clone() })
                .await
                .map_err(rpc_error)?;
            removed(&conn, "metric", &id);
            Ok(())
        }
    }
}

fn print_metric(conn: &Conn, m: &pb::Metric) {
    print_one(conn.json, &client::metric_row(m), client::METRIC_COLUMNS);
}

// ----- hypotheses -----

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HypothesesArgs {
    #[command(subcommand)]
    command: Option<HypothesesCommand>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum HypothesesCommand {
    /// Value hypotheses with their status and value (what `plumbline
    /// hypotheses` alone prints).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// One hypothesis.
    Get {
        /// Hypothesis id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create a hypothesis, e.g. `plumbline hypotheses add H-1 --goal grow
    /// --metric conv --effect 0.3 --statement "We believe one-click checkout
    /// will move conversion from 2.1 % toward 3.5 %"`.
    Add(HypothesisAdd),
    /// Change a hypothesis; only the flags given change, e.g.
    /// `plumbline hypotheses update H-1 --confidence 0.7`.
    Update(HypothesisUpdate),
    /// Delete a hypothesis (refused while items link to it, unless --force).
    Remove {
        /// Hypothesis id.
        id: String,
        /// Also delete the links to it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusArg {
    Proposed,
    Testing,
    Validated,
    Invalidated,
}

impl From<StatusArg> for pb::HypothesisStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Proposed => pb::HypothesisStatus::Proposed,
            StatusArg::Testing => pb::HypothesisStatus::Testing,
            StatusArg::Validated => pb::HypothesisStatus::Validated,
            StatusArg::Invalidated => pb::HypothesisStatus::Invalidated,
        }
    }
}

#[derive(Debug, Args)]
struct HypothesisAdd {
    /// Hypothesis id: 1-64 letters, digits, '.', '_' or '-' (e.g. H-1).
    id: String,
    /// "We believe <change> for <who> will move <metric> from <baseline>
    /// toward <target>."
    #[arg(long)]
    statement: String,
    /// The goal it serves (e.g. grow).
    #[arg(long)]
    goal: String,
    /// The metric it moves (e.g. conv).
    #[arg(long)]
    metric: String,
    /// Share of the metric's gap the change should close, in (0, 1] (e.g. 0.3).
    #[arg(long)]
    effect: f64,
    /// How sure the team is, in [0, 1] (e.g. 0.6) [default: 0.5].
    #[arg(long)]
    confidence: Option<f64>,
    /// Lifecycle status [default: proposed].
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// When the team expects to know, RFC 3339 or a date (e.g. 2027-01-31).
    #[arg(long, value_parser = args::time)]
    check: Option<prost_types::Timestamp>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["statement", "goal", "metric", "effect", "confidence", "status", "check"])))]
struct HypothesisUpdate {
    /// Hypothesis id.
    id: String,
    /// New statement.
    #[arg(long)]
    statement: Option<String>,
    /// New goal id.
    #[arg(long)]
    goal: Option<String>,
    /// New metric id.
    #[arg(long)]
    metric: Option<String>,
    /// New expected effect, in (0, 1] (e.g. 0.25).
    #[arg(long)]
    effect: Option<f64>,
    /// New confidence, in [0, 1] (e.g. 0.7).
    #[arg(long)]
    confidence: Option<f64>,
    /// New status.
    #[arg(long, value_enum)]
    status: Option<StatusArg>,
    /// New check time, RFC 3339 or a date (e.g. 2027-02-28).
    #[arg(long, value_parser = args::time)]
    check: Option<prost_types::Timestamp>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn hypotheses(a: HypothesesArgs) -> Result<()> {
    match a.command {
        None => client::hypotheses(&a.conn).await,
        Some(HypothesesCommand::List { conn }) => client::hypotheses(&conn).await,
        Some(HypothesesCommand::Get { id, conn }) => {
            let h = model(&conn)
                .await?
                .get_hypothesis(pb::GetHypothesisRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .hypothesis
                .unwrap_or_default();
            print_hypothesis(&conn, &h);
            Ok(())
        }
        Some(HypothesesCommand::Add(a)) => {
            let h = model(&a.conn)
                .await?
                .create_hypothesis(pb::CreateHypothesisRequest {
                    hypothesis: Some(pb::Hypothesis {
                        id: a.id,
                        statement: a.statement,
                        goal_id: a.goal,
                        metric_id: a.metric,
                        expected_effect: a.effect,
                        confidence: a.confidence,
                        status: a.status.map_or(0, |s| pb::HypothesisStatus::from(s) as i32),
                        check_time: a.check,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .hypothesis
                .unwrap_or_default();
            print_hypothesis(&a.conn, &h);
            Ok(())
        }
        Some(HypothesesCommand::Update(a)) => {
            let update_mask = mask(&[
                ("statement", a.statement.is_some()),
                ("goal_id", a.goal.is_some()),
                ("metric_id", a.metric.is_some()),
                ("expected_effect", a.effect.is_some()),
                ("confidence", a.confidence.is_some()),
                ("status", a.status.is_some()),
                ("check_time", a.check.is_some()),
            ]);
            let h = model(&a.conn)
                .await?
                .update_hypothesis(pb::UpdateHypothesisRequest {
                    hypothesis: Some(pb::Hypothesis {
                        id: a.id,
                        statement: a.statement.unwrap_or_default(),
                        goal_id: a.goal.unwrap_or_default(),
                        metric_id: a.metric.unwrap_or_default(),
                        expected_effect: a.effect.unwrap_or_default(),
                        confidence: a.confidence,
                        status: a.status.map_or(0, |s| pb::HypothesisStatus::from(s) as i32),
                        check_time: a.check,
                        ..Default::default()
                    }),
                    update_mask,
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .hypothesis
                .unwrap_or_default();
            print_hypothesis(&a.conn, &h);
            Ok(())
        }
        Some(HypothesesCommand::Remove { id, force, conn }) => {
            model(&conn)
                .await?
                .delete_hypothesis(pb::DeleteHypothesisRequest {
                    id: id.clone(),
                    force,
                })
                .await
                .map_err(rpc_error)?;
            removed(&conn, "hypothesis", &id);
            Ok(())
        }
    }
}

fn print_hypothesis(conn: &Conn, h: &pb::Hypothesis) {
    print_one(
        conn.json,
        &client::hypothesis_row(h, conn.json),
        client::HYPOTHESIS_COLUMNS,
    );
}
