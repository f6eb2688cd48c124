//! `plumbline since DATE` and `plumbline history snapshot|list`: what
//! entered, left or moved in the top N since a date (the last refinement),
//! each with the term that changed most, and the snapshots behind it.

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Conn;
use super::args;
use super::client::{connect, rpc_error};
use super::json;
use super::output::{clip, format_number, print_rows, print_rows_or, time};
use crate::proto as pb;
use pb::history_service_client::HistoryServiceClient;

#[derive(Debug, Args)]
pub struct SinceArgs {
    /// Compare with the ranking as it stood then: RFC 3339
    /// (2026-11-20T09:00:00Z) or a date (2026-11-20, meaning that day's
    /// start, 00:00 UTC). The last snapshot taken at or before it is used.
    #[arg(value_parser = args::time, value_name = "DATE")]
    date: prost_types::Timestamp,
    /// How many places of the ranking to compare (1..1000; at most the
    /// snapshot's own top N).
    #[arg(long, short = 'n', default_value_t = 20)]
    top: i32,
    /// Only items of this source.
    #[arg(long)]
    source: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, Subcommand)]
pub enum HistoryCommand {
    /// Take a snapshot of the ranking now (e.g. at the end of a
    /// refinement meeting), whether it changed or not.
    Snapshot {
        /// A note kept with it (e.g. "refinement 2026-12-06").
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The snapshots kept, newest first.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i32,
        #[command(flatten)]
        conn: Conn,
    },
}

const SNAPSHOT_COLUMNS: &[(&str, &str)] = &[
    ("id", "id"),
    ("taken", "take_time"),
    ("origin", "origin"),
    ("items", "item_count"),
    ("top n", "top_n"),
    ("note", "note"),
];

const CHANGE_COLUMNS: &[(&str, &str)] = &[
    ("", "change"),
    ("item", "item_key"),
    ("title", "title_clip"),
    ("rank", "ranks"),
    ("density", "densities"),
    ("why", "why"),
];

fn snapshot_row(s: &pb::RankingSnapshot) -> Value {
    json::message("RankingSnapshot", s)
}

pub async fn history(c: HistoryCommand) -> Result<()> {
    match c {
        HistoryCommand::Snapshot { note, conn } => {
            let s = HistoryServiceClient::new(connect(&conn.server).await?)
                .take_ranking_snapshot(pb::TakeRankingSnapshotRequest { note })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .snapshot
                .unwrap_or_default();
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&snapshot_row(&s))?);
            } else {
                println!(
                    "snapshot {} taken at {}: the top {} items; `plumbline since {}` compares with it later",
                    s.id,
                    time(s.take_time.as_ref()).as_str().unwrap_or(""),
                    s.item_count,
                    time(s.take_time.as_ref()).as_str().unwrap_or("DATE"),
                );
            }
            Ok(())
        }
        HistoryCommand::List { limit, conn } => {
            let mut client = HistoryServiceClient::new(connect(&conn.server).await?);
            let limit = usize::try_from(limit.max(1)).unwrap_or(1);
            let mut rows = Vec::new();
            let mut token = String::new();
            loop {
                let page = client
                    .list_ranking_snapshots(pb::ListRankingSnapshotsRequest {
                        page_size: i32::try_from(limit - rows.len()).unwrap_or(1000),
                        page_token: token,
                    })
                    .await
                    .map_err(rpc_error)?
                    .into_inner();
                rows.extend(page.snapshots.iter().map(snapshot_row));
                token = page.next_page_token;
                if token.is_empty() || rows.len() >= limit {
                    break;
                }
            }
            print_rows_or(
                conn.json,
                &rows,
                SNAPSHOT_COLUMNS,
                "no ranking snapshot yet: the server takes one every [history] interval_secs when the ranking changed; `plumbline history snapshot` takes one now",
            );
            Ok(())
        }
    }
}

pub async fn since(a: SinceArgs) -> Result<()> {
    let r = HistoryServiceClient::new(connect(&a.conn.server).await?)
        .compare_ranking(pb::CompareRankingRequest {
            since: Some(a.date),
            top_n: a.top,
            source_id: a.source.unwrap_or_default(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if a.conn.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json::message("CompareRankingResponse", &r))?
        );
        return Ok(());
    }
    let snap = r.snapshot.clone().unwrap_or_default();
    println!(
        "top {} now against snapshot {} of {}{}",
        r.top_n,
        snap.id,
        time(snap.take_time.as_ref()).as_str().unwrap_or(""),
        if snap.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", snap.note)
        }
    );
    let rows: Vec<Value> = [
        ("entered", &r.entered),
        ("left", &r.left),
        ("moved", &r.moved),
    ]
    .into_iter()
    .flat_map(|(what, list)| list.iter().map(move |c| change_row(what, c)))
    .collect();
    if rows.is_empty() {
        println!("nothing entered, left or moved in the top {}", r.top_n);
        return Ok(());
    }
    print_rows(false, &rows, CHANGE_COLUMNS);
    Ok(())
}

fn rank_text(r: i32) -> String {
    if r == 0 { "-".into() } else { format!("#{r}") }
}

fn change_row(what: &str, c: &pb::RankingChange) -> Value {
    let densities = match what {
        "entered" => format_number(c.new_value_density),
        "left" if c.new_value == 0.0 && c.new_size == 0.0 => format_number(c.old_value_density),
        _ => format!(
            "{} -> {}",
            format_number(c.old_value_density),
            format_number(c.new_value_density)
        ),
    };
    json!({
        "change": what,
        "item_key": c.item_key,
        "title_clip": clip(&c.title, 40),
        "ranks": format!("{} -> {}", rank_text(c.old_rank), rank_text(c.new_rank)),
        "densities": densities,
        "why": c.why,
    })
}
