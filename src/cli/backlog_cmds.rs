//! `plumbline items get|upsert`, `plumbline links` and `plumbline sources
//! get|update`: the backlog and source calls that the listing commands do
//! not make, so that every RPC of the API has a command.

use anyhow::Result;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::Conn;
use super::client::{all_pages, connect, rpc_error};
use super::json;
use super::output::{clip, print_rows, print_rows_or};
use super::tracker::{SOURCE_COLUMNS, source_row};
use crate::proto as pb;
use pb::backlog_service_client::BacklogServiceClient;
use pb::source_service_client::SourceServiceClient;

#[derive(Debug, Subcommand)]
pub enum ItemsCommand {
    /// Items by key, with every field (one key: GetItem; several:
    /// BatchGetItems), e.g. `plumbline items get web/412 web/415`.
    Get {
        /// Item keys, SOURCE/EXTERNAL_ID.
        #[arg(required = true, value_name = "ITEM")]
        keys: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Create or replace one item of a source, for a backlog no tracker
    /// holds, e.g. `plumbline items upsert web/412 --title "One-click
    /// checkout" --estimate 3 --label checkout`. The item becomes what the
    /// flags say: a label or estimate left out is removed.
    Upsert(ItemUpsert),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ItemStateArg {
    Open,
    Closed,
}

#[derive(Debug, Args)]
pub struct ItemUpsert {
    /// Item key, SOURCE/EXTERNAL_ID (e.g. web/412); the source must exist.
    key: String,
    /// One line saying what the item is (required unless --only leaves the
    /// title out).
    #[arg(long, required_unless_present = "only")]
    title: Option<String>,
    /// Longer text (e.g. the issue body).
    #[arg(long, default_value = "")]
    body: String,
    /// Link to the item in its tracker.
    #[arg(long, default_value = "")]
    url: String,
    /// Open or closed [default: open].
    #[arg(long, value_enum, default_value_t = ItemStateArg::Open)]
    state: ItemStateArg,
    /// A label; repeat for several (e.g. --label checkout --label ux).
    #[arg(long = "label", value_name = "LABEL")]
    labels: Vec<String>,
    /// Size estimate, in the team's unit (e.g. 3) [default: unestimated].
    #[arg(long)]
    estimate: Option<f64>,
    /// Key of the parent item (e.g. web/400).
    #[arg(long, default_value = "")]
    parent: String,
    /// Change only this field of the item and keep the rest (an update mask:
    /// title, body, url, state, labels, estimate, parent_key, create_time,
    /// update_time, close_time); repeat for several, e.g. `--only state
    /// --state closed` closes an item. Without it the item is replaced whole.
    #[arg(long, value_name = "FIELD")]
    only: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn items(cmd: ItemsCommand) -> Result<()> {
    match cmd {
        ItemsCommand::Get { keys, conn } => get_items(&conn, keys).await,
        ItemsCommand::Upsert(a) => upsert_item(a).await,
    }
}

const ITEM_COLUMNS: &[(&str, &str)] = &[
    ("item", "key"),
    ("state", "state"),
    ("estimate", "estimate"),
    ("labels", "labels"),
    ("open tasks", "tasks_open"),
    ("parent", "parent_key"),
    ("title", "title"),
];

fn item_row(it: &pb::Item, json: bool) -> Value {
    let mut row = json::message("Item", it);
    if !json {
        row["title"] = Value::String(clip(&it.title, 56));
        row["tasks_open"] = json!(it.tasks.iter().filter(|t| !t.done).count());
    }
    row
}

async fn get_items(conn: &Conn, keys: Vec<String>) -> Result<()> {
    let mut c = BacklogServiceClient::new(connect(&conn.server).await?);
    let items = if let [key] = keys.as_slice() {
        let it = c
            .get_item(pb::GetItemRequest { key: key.clone() })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .item
            .unwrap_or_default();
        vec![it]
    } else {
        c.batch_get_items(pb::BatchGetItemsRequest { keys })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .items
    };
    let rows: Vec<Value> = items.iter().map(|it| item_row(it, conn.json)).collect();
    print_rows(conn.json, &rows, ITEM_COLUMNS);
    if !conn.json {
        for it in &items {
            if !it.url.is_empty() {
                println!("{}: {}", it.key, it.url);
            }
        }
    }
    Ok(())
}

async fn upsert_item(a: ItemUpsert) -> Result<()> {
    let Some((source_id, external_id)) = a.key.split_once('/') else {
        super::args::usage_error(
            &["items", "upsert"],
            format!(
                "{:?} is not an item key SOURCE/EXTERNAL_ID (e.g. web/412)",
                a.key
            ),
        );
    };
    let item = pb::Item {
        source_id: source_id.to_string(),
        external_id: external_id.to_string(),
        title: a.title.unwrap_or_default(),
        body: a.body,
        url: a.url,
        state: match a.state {
            ItemStateArg::Open => pb::ItemState::Open,
            ItemStateArg::Closed => pb::ItemState::Closed,
        } as i32,
        labels: a.labels,
        estimate: a.estimate,
        parent_key: a.parent,
        ..Default::default()
    };
    let r = BacklogServiceClient::new(connect(&a.conn.server).await?)
        .upsert_items(pb::UpsertItemsRequest {
            items: vec![item],
            update_mask: (!a.only.is_empty()).then_some(prost_types::FieldMask { paths: a.only }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let what = if r.created_count > 0 {
        "created"
    } else if r.updated_count > 0 {
        "updated"
    } else {
        "unchanged"
    };
    if a.conn.json {
        let items: Vec<Value> = r.items.iter().map(|it| item_row(it, true)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "result": what, "items": items }))?
        );
    } else {
        let rows: Vec<Value> = r.items.iter().map(|it| item_row(it, false)).collect();
        println!("{what}:");
        print_rows(false, &rows, ITEM_COLUMNS);
    }
    Ok(())
}

/// `plumbline links`: which items serve which hypotheses.
#[derive(Debug, Args)]
pub struct LinksArgs {
    /// Only the links of this item (SOURCE/EXTERNAL_ID).
    #[arg(long)]
    item: Option<String>,
    /// Only the links to this hypothesis.
    #[arg(long)]
    hypothesis: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn links(a: LinksArgs) -> Result<()> {
    let c = BacklogServiceClient::new(connect(&a.conn.server).await?);
    let links = all_pages(
        0,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListLinksRequest {
                item_key: a.item.clone().unwrap_or_default(),
                hypothesis_id: a.hypothesis.clone().unwrap_or_default(),
                page_size: 1000,
                page_token,
            };
            async move { c.list_links(req).await }
        },
        |r: pb::ListLinksResponse| (r.links, r.next_page_token),
    )
    .await?;
    let rows: Vec<Value> = links
        .iter()
        .map(|l| {
            let mut row = json::message("Link", l);
            if !a.conn.json {
                row["rationale"] = Value::String(clip(&l.rationale, 48));
            }
            row
        })
        .collect();
    print_rows_or(
        a.conn.json,
        &rows,
        &[
            ("item", "item_key"),
            ("hypothesis", "hypothesis_id"),
            ("contribution", "contribution"),
            ("origin", "origin"),
            ("rationale", "rationale"),
        ],
        "no links yet: link an item to a hypothesis it serves with `plumbline link ITEM HYPOTHESIS`, \
or give the item a `hypothesis:ID` label in its tracker",
    );
    Ok(())
}

/// `plumbline sources update`: only the flags given change.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true)
    .args(["url", "project", "token_env", "estimate_field", "label_prefix", "body_keyword", "link_rules"])))]
pub struct SourceUpdateArgs {
    /// Source id.
    id: String,
    /// New API base URL (e.g. https://gitlab.example.com).
    #[arg(long)]
    url: Option<String>,
    /// New project (e.g. acme/shop).
    #[arg(long)]
    project: Option<String>,
    /// New NAME of the environment variable holding the token (e.g.
    /// PLUMBLINE_SECRET_GITHUB).
    #[arg(long)]
    token_env: Option<String>,
    /// New estimate field (e.g. label:size:).
    #[arg(long)]
    estimate_field: Option<String>,
    /// New label prefix that links to a hypothesis (e.g. hyp:); the other
    /// link rules are kept.
    #[arg(long)]
    label_prefix: Option<String>,
    /// New body keyword that links to a hypothesis (e.g. Serves); the other
    /// link rules are kept.
    #[arg(long)]
    body_keyword: Option<String>,
    /// Turn link rules on or off (links from labels and body lines).
    #[arg(long, value_name = "on|off", value_parser = ["on", "off"])]
    link_rules: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

pub async fn get_source(conn: &Conn, id: String) -> Result<()> {
    let channel = connect(&conn.server).await?;
    let s = SourceServiceClient::new(channel.clone())
        .get_source(pb::GetSourceRequest { id: id.clone() })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .source
        .unwrap_or_default();
    let status = pb::sync_service_client::SyncServiceClient::new(channel)
        .get_sync_status(pb::GetSyncStatusRequest { source_id: id })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .status;
    super::output::print_one(conn.json, &source_row(&s, status.as_ref()), SOURCE_COLUMNS);
    Ok(())
}

pub async fn update_source(a: SourceUpdateArgs) -> Result<()> {
    let mut c = SourceServiceClient::new(connect(&a.conn.server).await?);
    // The link rules are one field of the API: a change of one rule sends
    // the others as they are.
    let rules_given =
        a.label_prefix.is_some() || a.body_keyword.is_some() || a.link_rules.is_some();
    let link_rules = if rules_given {
        let now = c
            .get_source(pb::GetSourceRequest { id: a.id.clone() })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .source
            .unwrap_or_default()
            .link_rules
            .unwrap_or_default();
        Some(pb::LinkRules {
            label_prefix: a.label_prefix.unwrap_or(now.label_prefix),
            body_keyword: a.body_keyword.unwrap_or(now.body_keyword),
            disabled: a.link_rules.as_deref().map_or(now.disabled, |v| v == "off"),
        })
    } else {
        None
    };
    let paths: Vec<String> = [
        ("base_url", a.url.is_some()),
        ("project_key", a.project.is_some()),
        ("token_env", a.token_env.is_some()),
        ("link_rules", rules_given),
        ("estimate_field", a.estimate_field.is_some()),
    ]
    .iter()
    .filter(|(_, given)| *given)
    .map(|(p, _)| p.to_string())
    .collect();
    let r = c
        .update_source(pb::UpdateSourceRequest {
            source: Some(pb::Source {
                id: a.id,
                base_url: a.url.unwrap_or_default(),
                project_key: a.project.unwrap_or_default(),
                token_env: a.token_env.unwrap_or_default(),
                estimate_field: a.estimate_field.unwrap_or_default(),
                link_rules,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    let s = r.source.unwrap_or_default();
    if a.conn.json {
        let row = json::with(source_row(&s, None), json!({ "warnings": r.warnings }));
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        println!("updated source {}", s.id);
        print_rows(false, &[source_row(&s, None)], SOURCE_COLUMNS);
    }
    Ok(())
}
