//! `plumbline segments` and `plumbline outcomes`: who the value is for.
//! Segments with their weights and the roll-up by segment (gaps,
//! opportunity scores, coverage, the items serving each, the unserved);
//! desired outcomes with their survey waves (`outcomes wave`).

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Conn;
use super::args;
use super::client::{self, connect, rpc_error};
use super::json;
use super::output::{self, clip, format_number, print_one, print_rows_or};
use crate::proto as pb;
use pb::customer_service_client::CustomerServiceClient;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SegmentsArgs {
    #[command(subcommand)]
    command: Option<SegmentsCommand>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum SegmentsCommand {
    /// The roll-up by segment (what `plumbline segments` alone prints):
    /// each segment's outcomes with gap and opportunity (underserved
    /// marked), its weighted gap, coverage by the open backlog, the items
    /// serving it, and the segments no item serves.
    Rollup {
        /// How many serving items per segment (at most 100).
        #[arg(long, default_value_t = 3)]
        items: i32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Segments with their weights, in id order.
    List(ListArgs),
    /// One segment.
    Get {
        /// Segment id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create or replace a segment, e.g.
    /// `plumbline segments add mobile --name "Mobile shoppers" --weight 60`.
    Add {
        /// Segment id: 1-64 letters, digits, '.', '_' or '-'.
        id: String,
        /// One line naming the segment.
        #[arg(long)]
        name: String,
        /// Its share of customers (or revenue, as the team decides),
        /// relative to the other segments, in (0, 1e6].
        #[arg(long)]
        weight: f64,
        /// Longer text.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a segment (refused while desired outcomes belong to it).
    Remove {
        /// Segment id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OutcomesArgs {
    #[command(subcommand)]
    command: Option<OutcomesCommand>,
    #[command(flatten)]
    list: OutcomesList,
}

#[derive(Debug, Args)]
struct OutcomesList {
    /// Only this segment's outcomes.
    #[arg(long)]
    segment: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
enum OutcomesCommand {
    /// Desired outcomes with importance, satisfaction, gap and opportunity
    /// (what `plumbline outcomes` alone prints).
    List(OutcomesList),
    /// One desired outcome with its survey waves.
    Get {
        /// Outcome id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create or replace a desired outcome (and the metric of the same id
    /// that backs it), e.g. `plumbline outcomes add pay-fast --segment
    /// mobile --statement "Minimize the time it takes to pay on a phone"`.
    Add {
        /// Outcome id (also its metric's id, for hypotheses).
        id: String,
        /// The segment that wants it.
        #[arg(long)]
        segment: String,
        /// The outcome statement, one line.
        #[arg(long)]
        statement: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Record a survey wave of an outcome, e.g. `plumbline outcomes wave
    /// pay-fast --importance 8.5 --satisfaction 3.2 --respondents 140
    /// --at 2026-11-01`. The same outcome and time again replaces it.
    Wave {
        /// Outcome id.
        id: String,
        /// Importance, 0 to 10.
        #[arg(long)]
        importance: f64,
        /// Satisfaction, 0 to 10.
        #[arg(long)]
        satisfaction: f64,
        /// How many answered, at least 1.
        #[arg(long)]
        respondents: i32,
        /// When the survey ran (RFC 3339 or a date) [default: now].
        #[arg(long, value_parser = args::time)]
        at: Option<prost_types::Timestamp>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a desired outcome with its waves and metric (refused while a
    /// hypothesis measures it).
    Remove {
        /// Outcome id.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
}

async fn customers(conn: &Conn) -> Result<CustomerServiceClient<client::Client>> {
    Ok(CustomerServiceClient::new(connect(&conn.server).await?))
}

const SEGMENT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("name", "name"),
    ("weight", "weight"),
    ("description", "description"),
];

fn segment_row(s: &pb::Segment, full: bool) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "weight": s.weight,
        "description": if full { s.description.clone() } else { clip(&s.description, 40) },
    })
}

const OUTCOME_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("segment", "segment_id"),
    ("statement", "statement"),
    ("importance", "importance"),
    ("satisfaction", "satisfaction"),
    ("gap", "gap"),
    ("opportunity", "opportunity"),
    ("underserved", "underserved"),
    ("waves", "waves"),
];

fn outcome_row(o: &pb::DesiredOutcome, json: bool) -> Value {
    json!({
        "id": o.id,
        "segment_id": o.segment_id,
        "statement": if json { o.statement.clone() } else { clip(&o.statement, 48) },
        "importance": o.importance,
        "satisfaction": o.satisfaction,
        "gap": o.gap,
        "opportunity": o.opportunity,
        "underserved": o.underserved,
        "waves": o.wave_count,
    })
}

pub async fn segments(a: SegmentsArgs) -> Result<()> {
    let cmd = a.command.unwrap_or(SegmentsCommand::Rollup {
        items: 3,
        conn: a.conn,
    });
    match cmd {
        SegmentsCommand::Rollup { items, conn } => rollup(&conn, items).await,
        SegmentsCommand::List(ListArgs { conn }) => {
            let mut c = customers(&conn).await?;
            let mut rows = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_segments(pb::ListSegmentsRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                rows.extend(r.segments.iter().map(|s| segment_row(s, conn.json)));
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            print_rows_or(
                conn.json,
                &rows,
                SEGMENT_COLUMNS,
                "no segments yet: add one with `plumbline segments add ID --name NAME --weight W`",
            );
            Ok(())
        }
        SegmentsCommand::Get { id, conn } => {
            let s = customers(&conn)
                .await?
                .get_segment(pb::GetSegmentRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .segment
                .unwrap_or_default();
            print_one(conn.json, &segment_row(&s, true), SEGMENT_COLUMNS);
            Ok(())
        }
        SegmentsCommand::Add {
            id,
            name,
            weight,
            description,
            conn,
        } => {
            let s = customers(&conn)
                .await?
                .upsert_segment(pb::UpsertSegmentRequest {
                    segment: Some(pb::Segment {
                        id,
                        name,
                        description,
                        weight,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .segment
                .unwrap_or_default();
            print_one(conn.json, &segment_row(&s, true), SEGMENT_COLUMNS);
            Ok(())
        }
        SegmentsCommand::Remove { id, conn } => {
            customers(&conn)
                .await?
                .delete_segment(pb::DeleteSegmentRequest { id: id.clone() })
                .await
                .map_err(rpc_error)?;
            removed(&conn, "segment", &id);
            Ok(())
        }
    }
}

fn removed(conn: &Conn, kind: &str, id: &str) {
    if conn.json {
        println!("{}", json!({ "removed": id, "kind": kind }));
    } else {
        println!("removed {kind} {id}");
    }
}

async fn rollup(conn: &Conn, items: i32) -> Result<()> {
    let t = customers(conn)
        .await?
        .roll_up_by_segment(pb::RollUpBySegmentRequest {
            items_per_segment: items,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if conn.json {
        let out = json::message("RollUpBySegmentResponse", &t);
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if t.segments.is_empty() {
        println!(
            "no segments yet: add one with `plumbline segments add ID --name NAME --weight W`"
        );
        return Ok(());
    }
    print_segment_rollup(&t);
    Ok(())
}

/// The roll-up by segment: coverage bars, outcomes with gap and
/// opportunity (underserved marked), serving items, unserved segments.
pub fn print_segment_rollup(t: &pb::RollUpBySegmentResponse) {
    println!(
        "coverage = share of the segment's weighted gap that open items on its outcomes address\n\
         gap = max(importance - satisfaction, 0); opportunity = importance + gap; >= 10 underserved\n"
    );
    for r in &t.segments {
        let s = r.segment.clone().unwrap_or_default();
        let label = clip(&format!("{} {}", s.id, s.name), 40);
        println!(
            "{label:<40} share {:>4.0}%  {} {:>4.0}%  gap {:<6}  {} items{}",
            r.share * 100.0,
            client::bar(r.coverage, 20),
            r.coverage * 100.0,
            format_number(r.weighted_gap),
            r.item_count,
            if r.unserved { "  UNSERVED" } else { "" }
        );
        for o in &r.outcomes {
            let figures = match (o.importance, o.satisfaction, o.gap, o.opportunity) {
                (Some(i), Some(sat), Some(g), Some(opp)) => format!(
                    "imp {:<4} sat {:<4} gap {:<4} opp {:<5}{}",
                    format_number(i),
                    format_number(sat),
                    format_number(g),
                    format_number(opp),
                    if o.underserved { " UNDERSERVED" } else { "" }
                ),
                _ => "no survey wave yet".to_string(),
            };
            println!(
                "    ◦ {:<44} {figures}",
                clip(&format!("{} {}", o.id, o.statement), 44)
            );
        }
        for i in &r.items {
            println!("    · {} {}", i.item_key, clip(&i.title, 50));
        }
    }
    if !t.unserved_segment_ids.is_empty() {
        println!(
            "\nsegments no open item serves: {}",
            t.unserved_segment_ids.join(", ")
        );
    }
}

pub async fn outcomes(a: OutcomesArgs) -> Result<()> {
    let cmd = a.command.unwrap_or(OutcomesCommand::List(a.list));
    match cmd {
        OutcomesCommand::List(OutcomesList { segment, conn }) => {
            let mut c = customers(&conn).await?;
            let mut rows = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = c
                    .list_desired_outcomes(pb::ListDesiredOutcomesRequest {
                        segment_id: segment.clone().unwrap_or_default(),
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                rows.extend(r.outcomes.iter().map(|o| outcome_row(o, conn.json)));
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            print_rows_or(
                conn.json,
                &rows,
                OUTCOME_COLUMNS,
                "no desired outcomes yet: add one with \
                 `plumbline outcomes add ID --segment SEGMENT --statement TEXT`",
            );
            Ok(())
        }
        OutcomesCommand::Get { id, conn } => {
            let o = customers(&conn)
                .await?
                .get_desired_outcome(pb::GetDesiredOutcomeRequest { id })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .outcome
                .unwrap_or_default();
            print_outcome(&conn, &o);
            Ok(())
        }
        OutcomesCommand::Add {
            id,
            segment,
            statement,
            conn,
        } => {
            let o = customers(&conn)
                .await?
                .upsert_desired_outcome(pb::UpsertDesiredOutcomeRequest {
                    outcome: Some(pb::DesiredOutcome {
                        id,
                        segment_id: segment,
                        statement,
                        ..Default::default()
                    }),
                })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .outcome
                .unwrap_or_default();
            print_outcome(&conn, &o);
            Ok(())
        }
        OutcomesCommand::Wave {
            id,
            importance,
            satisfaction,
            respondents,
            at,
            conn,
        } => {
            let now = chrono::Utc::now();
            let at = at.unwrap_or(prost_types::Timestamp {
                seconds: now.timestamp(),
                nanos: 0,
            });
            let r = customers(&conn)
                .await?
                .record_survey_wave(pb::RecordSurveyWaveRequest {
                    waves: vec![pb::SurveyWave {
                        outcome_id: id,
                        survey_time: Some(at),
                        importance,
                        satisfaction,
                        respondents,
                    }],
                })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if conn.json {
                let out = json::message("RecordSurveyWaveResponse", &r);
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            println!("stored {} wave(s)", r.stored);
            let rows: Vec<Value> = r.outcomes.iter().map(|o| outcome_row(o, false)).collect();
            print_rows_or(false, &rows, OUTCOME_COLUMNS, "");
            Ok(())
        }
        OutcomesCommand::Remove { id, conn } => {
            customers(&conn)
                .await?
                .delete_desired_outcome(pb::DeleteDesiredOutcomeRequest { id: id.clone() })
                .await
                .map_err(rpc_error)?;
            removed(&conn, "desired outcome", &id);
            Ok(())
        }
    }
}

fn print_outcome(conn: &Conn, o: &pb::DesiredOutcome) {
    if conn.json {
        let out = json::message("DesiredOutcome", o);
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return;
    }
    print_one(false, &outcome_row(o, false), OUTCOME_COLUMNS);
    if !o.waves.is_empty() {
        let rows: Vec<Value> = o
            .waves
            .iter()
            .map(|w| {
                json!({
                    "at": output::time(w.survey_time.as_ref()),
                    "importance": w.importance,
                    "satisfaction": w.satisfaction,
                    "respondents": w.respondents,
                })
            })
            .collect();
        output::print_rows(
            false,
            &rows,
            &[
                ("survey time", "at"),
                ("importance", "importance"),
                ("satisfaction", "satisfaction"),
                ("respondents", "respondents"),
            ],
        );
    }
}
