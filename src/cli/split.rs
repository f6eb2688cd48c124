//! `plumbline split`: show an item's split plans, each as a table of slices
//! with the best first slice marked and the value concentration, or apply
//! one (`--apply hypothesis|task`), in the tracker too with `--write-back`.

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use super::Conn;
use super::client::{connect, rpc_error};
use super::json;
use super::output::{self, clip, enum_name, print_rows};
use crate::proto as pb;
use pb::split_service_client::SplitServiceClient;

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Item key, SOURCE/EXTERNAL_ID (e.g. web/412).
    item_key: String,
    /// Create the slices of this plan as items and move the item's links to
    /// them (applying the same plan again creates nothing).
    #[arg(long, value_enum)]
    apply: Option<ApplyArg>,
    /// With --apply: first create each slice as an issue in the item's
    /// tracker (GitHub, GitLab, Redmine; Jira sub-tasks), with the source's
    /// token, and keep it under the tracker's id. Safe to run again: slices
    /// already created are found, and only missing ones are created.
    #[arg(long, requires = "apply")]
    write_back: bool,
    /// Flag the item as oversized when its size is above this [default: 8].
    #[arg(long, conflicts_with = "apply")]
    threshold: Option<f64>,
    #[command(flatten)]
    conn: Conn,
}

/// The plans that can be applied (children already exist as items).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ApplyArg {
    /// One slice per linked hypothesis.
    Hypothesis,
    /// One slice per open checklist task.
    Task,
}

/// `hypothesis`, `task` or `child`, as `--apply` spells them.
fn kind_name(kind: i32) -> String {
    pb::SplitPlanKind::try_from(kind)
        .map(|k| enum_name(k.as_str_name(), "SPLIT_PLAN_KIND_BY_"))
        .unwrap_or_else(|_| kind.to_string())
}

/// The proposal as JSON, every field of the answer; each plan's kind as
/// `--apply` spells it, and each slice's index and whether it is the best
/// first slice. The table view prints from the same rows.
fn proposal_json(p: &pb::ProposeSplitsResponse) -> Value {
    let mut out = json::message("ProposeSplitsResponse", p);
    for (plan, v) in p.plans.iter().zip(
        out["plans"]
            .as_array_mut()
            .map(|a| a.iter_mut())
            .into_iter()
            .flatten(),
    ) {
        v["kind"] = json!(kind_name(plan.kind));
        for (i, s) in v["slices"]
            .as_array_mut()
            .map(|a| a.iter_mut())
            .into_iter()
            .flatten()
            .enumerate()
        {
            s["index"] = json!(i);
            s["best"] = json!(i as i32 == plan.best_slice_index);
        }
    }
    out
}

const SLICE_COLUMNS: &[(&str, &str)] = &[
    ("#", "number"),
    ("best", "best_mark"),
    ("slice", "item_key"),
    ("title", "title_short"),
    ("value", "value"),
    ("size", "size"),
    ("value/size", "value_density"),
    ("links", "links_text"),
];

pub(super) fn print_proposal(p: &pb::ProposeSplitsResponse) {
    let n = output::format_number;
    println!("{}  {}", p.item_key, p.title);
    println!(
        "  value {} / size {} = value density {}{}",
        n(p.value),
        n(p.size),
        n(p.value_density),
        if p.oversized {
            format!("   OVERSIZED (size above {})", n(p.size_threshold))
        } else {
            String::new()
        }
    );
    if p.plans.is_empty() {
        println!(
            "  no split plan: fewer than 2 hypotheses, fewer than 2 open checklist tasks, and no child items"
        );
        return;
    }
    let all = proposal_json(p);
    for plan in all["plans"].as_array().into_iter().flatten() {
        let slices = plan["slices"].as_array().cloned().unwrap_or_default();
        let best = plan["best_slice_index"].as_u64().unwrap_or(0) as usize;
        println!(
            "\nby {}: {} slices; best first slice #{} (★), value concentration {:.1}%",
            plan["kind"].as_str().unwrap_or_default(),
            slices.len(),
            best + 1,
            plan["value_concentration"].as_f64().unwrap_or(0.0) * 100.0,
        );
        let rows: Vec<Value> = slices
            .into_iter()
            .map(|mut s| {
                let links: Vec<String> = s["links"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| {
                        format!(
                            "{} ×{}",
                            l["hypothesis_id"].as_str().unwrap_or_default(),
                            n(l["contribution"].as_f64().unwrap_or(0.0))
                        )
                    })
                    .collect();
                s["number"] = json!(s["index"].as_u64().unwrap_or(0) + 1);
                s["best_mark"] = json!(if s["best"].as_bool() == Some(true) {
                    "★"
                } else {
                    ""
                });
                s["title_short"] = json!(clip(s["title"].as_str().unwrap_or_default(), 48));
                s["links_text"] = json!(links.join(", "));
                s
            })
            .collect();
        print_rows(false, &rows, SLICE_COLUMNS);
    }
    let applicable: Vec<String> = p
        .plans
        .iter()
        .filter(|x| x.kind != pb::SplitPlanKind::ByChild as i32)
        .map(|x| kind_name(x.kind))
        .collect();
    if !applicable.is_empty() {
        println!(
            "\nvalue concentration = the best slice's share of the plan's value\ncreate the slices as items with: plumbline split {} --apply {}",
            p.item_key,
            applicable.join("|")
        );
    }
}

pub async fn split(a: SplitArgs) -> Result<()> {
    let mut c = SplitServiceClient::new(connect(&a.conn.server).await?);
    let Some(apply) = a.apply else {
        let p = c
            .propose_splits(pb::ProposeSplitsRequest {
                item_key: a.item_key,
                size_threshold: a.threshold,
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        if a.conn.json {
            println!("{}", serde_json::to_string_pretty(&proposal_json(&p))?);
        } else {
            print_proposal(&p);
        }
        return Ok(());
    };
    let kind = match apply {
        ApplyArg::Hypothesis => pb::SplitPlanKind::ByHypothesis,
        ApplyArg::Task => pb::SplitPlanKind::ByTask,
    };
    let r = c
        .apply_split(pb::ApplySplitRequest {
            item_key: a.item_key.clone(),
            plan_kind: kind as i32,
            write_back: a.write_back,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let rows: Vec<Value> = r
        .items
        .iter()
        .map(|it| {
            let mut row = json::with(
                json::message("Item", it),
                json!({ "new": r.created_item_keys.contains(&it.key) }),
            );
            if !a.conn.json {
                row["title"] = json!(clip(&it.title, 56));
            }
            row
        })
        .collect();
    if a.conn.json {
        let out = json::with(
            json::message("ApplySplitResponse", &r),
            json!({
                "item_key": a.item_key,
                "plan": kind_name(kind as i32),
                "write_back": a.write_back,
                "items": rows,
            }),
        );
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let kind_text = kind_name(kind as i32);
    let (total, created) = (r.items.len(), r.created_item_keys.len());
    let where_ = if a.write_back { " in the tracker" } else { "" };
    if created == 0 {
        println!(
            "{} was already split by {kind_text} into {total} items; nothing created. Its slices:",
            a.item_key
        );
    } else if created == total {
        println!(
            "split {} by {kind_text} into {total} items, created{where_}; its links moved to them:",
            a.item_key
        );
    } else {
        println!(
            "split {} by {kind_text} into {total} items: this call created {created}{where_} (marked new), \
             the other {} came from an earlier call that stopped partway; its links moved to them:",
            a.item_key,
            total - created
        );
    }
    let mut columns = vec![("item", "key")];
    if created > 0 && created < total {
        columns.push(("new", "new"));
    }
    columns.extend([("estimate", "estimate"), ("title", "title")]);
    if a.write_back {
        columns.push(("url", "url"));
    }
    print_rows(false, &rows, &columns);
    Ok(())
}
