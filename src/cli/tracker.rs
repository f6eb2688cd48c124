//! `plumbline sources ...` and `plumbline sync`: manage tracker sources and
//! pull from them, with a progress bar on a terminal and plain lines (or JSON
//! lines with --json) otherwise.

use std::io::IsTerminal;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::{all_pages, connect, connect_for, rpc_error};
use super::json;
use super::output::{enum_name, print_rows_or, time};
use super::status::{Doing, sync_error};
use super::{Conn, KindArg, SourceAddArgs, SyncArgs};
use crate::proto as pb;
use pb::source_service_client::SourceServiceClient;
use pb::sync_service_client::SyncServiceClient;

pub async fn add_source(a: SourceAddArgs) -> Result<()> {
    let mut c = SourceServiceClient::new(connect(&a.conn.server).await?);
    let created = c
        .create_source(pb::CreateSourceRequest {
            source: Some(pb::Source {
                id: a.id,
                kind: match a.kind {
                    KindArg::Github => pb::TrackerKind::Github,
                    KindArg::Gitlab => pb::TrackerKind::Gitlab,
                    KindArg::Jira => pb::TrackerKind::Jira,
                    KindArg::Redmine => pb::TrackerKind::Redmine,
                    KindArg::Push => pb::TrackerKind::Push,
                } as i32,
                base_url: a.url,
                project_key: a.project,
                token_env: a.token_env,
                link_rules: Some(pb::LinkRules {
                    label_prefix: a.label_prefix,
                    body_keyword: a.body_keyword,
                    disabled: a.no_link_rules,
                }),
                estimate_field: a.estimate_field,
                ..Default::default()
            }),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    for w in &created.warnings {
        eprintln!("warning: {w}");
    }
    let s = created.source.unwrap_or_default();
    if a.conn.json {
        let row = json::with(
            source_row(&s, None),
            json!({ "warnings": created.warnings }),
        );
        println!("{row}");
    } else if s.kind == pb::TrackerKind::Push as i32 {
        println!(
            "added push source {}; send its items with UpsertItems (source_id {:?}), plumbline does not sync it",
            s.id, s.id
        );
    } else {
        println!(
            "added source {} ({}); sync it with: plumbline sync {}",
            s.id, s.base_url, s.id
        );
    }
    Ok(())
}

pub const SOURCE_COLUMNS: &[(&str, &str)] = &[
    ("source", "id"),
    ("kind", "kind"),
    ("project", "project_key"),
    ("token env", "token_env"),
    ("sync", "sync_state"),
    ("synced up to", "cursor_time"),
    ("last error", "last_error"),
];

/// Every field of a source, its whole sync status under `sync_status`, and
/// the status fields the table shows at the top level.
pub fn source_row(s: &pb::Source, status: Option<&pb::SyncStatus>) -> Value {
    json::with(
        json::message("Source", s),
        json!({
            "sync_status": status.map(|st| json::message("SyncStatus", st)),
            "sync_state": status.map(|st| enum_name(st.state().as_str_name(), "SYNC_STATE_")),
            "cursor_time": status.map_or(Value::Null, |st| time(st.cursor_time.as_ref())),
            "last_finish_time": status.map_or(Value::Null, |st| time(st.last_finish_time.as_ref())),
            "last_error": status.map(|st| st.last_error.clone()).unwrap_or_default(),
        }),
    )
}

pub async fn list_sources(conn: &Conn) -> Result<()> {
    let channel = connect(&conn.server).await?;
    let c = SourceServiceClient::new(channel.clone());
    let mut sync = SyncServiceClient::new(channel);
    let sources = all_pages(
        0,
        |page_token| {
            let mut c = c.clone();
            let req = pb::ListSourcesRequest {
                page_size: 1000,
                page_token,
            };
            async move { c.list_sources(req).await }
        },
        |r: pb::ListSourcesResponse| (r.sources, r.next_page_token),
    )
    .await?;
    let mut rows = Vec::with_capacity(sources.len());
    for s in &sources {
        let st = sync
            .get_sync_status(pb::GetSyncStatusRequest {
                source_id: s.id.clone(),
            })
            .await
            .map_err(rpc_error)?
            .into_inner()
            .status;
        rows.push(source_row(s, st.as_ref()));
    }
    print_rows_or(
        conn.json,
        &rows,
        SOURCE_COLUMNS,
        "no sources yet: add a tracker project with `plumbline sources add ID --kind github --url https://api.github.com --project OWNER/REPO`",
    );
    Ok(())
}

pub async fn remove_source(conn: &Conn, id: &str, force: bool) -> Result<()> {
    let mut c = SourceServiceClient::new(connect(&conn.server).await?);
    let r = c
        .delete_source(pb::DeleteSourceRequest {
            id: id.to_string(),
            force,
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    if conn.json {
        println!(
            "{}",
            json!({"removed": id, "deleted_item_count": r.deleted_item_count})
        );
    } else {
        println!("removed source {id} and {} items", r.deleted_item_count);
    }
    Ok(())
}

/// Where progress goes: a bar on a terminal, lines otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { json: bool },
}

impl Progress {
    fn new(json: bool) -> Self {
        if !json && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            Progress::Bar(bar)
        } else {
            Progress::Lines { json }
        }
    }

    fn page(&self, p: &pb::PageFetched) {
        match self {
            Progress::Bar(bar) => {
                if p.expected_total > 0 {
                    if bar.length().is_none() {
                        bar.set_length(p.expected_total as u64);
                        bar.set_style(
                            ProgressStyle::with_template(
                                "{bar:30} {pos}/{len} items {msg} [{elapsed_precise}]",
                            )
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                        );
                    }
                    bar.inc(p.item_count as u64);
                }
                bar.set_message(format!(
                    "page {}: {} new or changed so far, {} requests",
                    p.page, p.total_upserted, p.total_requests
                ));
            }
            Progress::Lines { json: true } => println!(
                "{}",
                json::with(
                    json::message("PageFetched", p),
                    json!({"event": "page", "items": p.item_count, "upserted": p.upserted_count,
                           "requests": p.total_requests})
                )
            ),
            Progress::Lines { json: false } => println!(
                "page {}: {} items, {} new or changed (total {}, {} requests)",
                p.page, p.item_count, p.upserted_count, p.total_upserted, p.total_requests
            ),
        }
    }

    fn wait(&self, w: &pb::RateLimitWait) {
        let until = time(w.until.as_ref());
        let until = until.as_str().unwrap_or("later");
        match self {
            Progress::Bar(bar) => bar.set_message(format!(
                "waiting on the rate limit until {until} ({})",
                w.reason
            )),
            Progress::Lines { json: true } => {
                println!(
                    "{}",
                    json::with(
                        json::message("RateLimitWait", w),
                        json!({"event": "rate_limit_wait"})
                    )
                )
            }
            Progress::Lines { json: false } => {
                println!("waiting on the rate limit until {until} ({})", w.reason)
            }
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

pub async fn sync(a: SyncArgs) -> Result<()> {
    use pb::sync_source_response::Event;
    let doing = Doing::Sync {
        source: &a.source,
        full: a.full,
    };
    let mut c = SyncServiceClient::new(connect_for(&a.conn.server, doing).await?);
    let mut stream = c
        .sync_source(pb::SyncSourceRequest {
            source_id: a.source.clone(),
            full: a.full,
        })
        .await
        .map_err(|s| sync_error(s, &a.source, a.full))?
        .into_inner();
    let progress = Progress::new(a.conn.json);
    loop {
        let msg = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                progress.finish();
                anyhow::bail!("the sidecar ended the sync stream without a result");
            }
            Err(status) => {
                progress.finish();
                return Err(sync_error(status, &a.source, a.full));
            }
        };
        match msg.event {
            Some(Event::PageFetched(p)) => progress.page(&p),
            Some(Event::RateLimitWait(w)) => progress.wait(&w),
            Some(Event::Done(d)) => {
                progress.finish();
                for w in &d.warnings {
                    eprintln!("warning: {w}");
                }
                if a.conn.json {
                    println!(
                        "{}",
                        json::with(
                            json::message("SyncDone", &d),
                            json!({"event": "done", "source": a.source, "upserted": d.upserted_count,
                                   "removed": d.removed_count})
                        )
                    );
                } else if d.not_modified {
                    println!(
                        "{}: nothing changed ({} request, answered 304 Not Modified)",
                        a.source, d.requests
                    );
                } else {
                    println!(
                        "{}: synced {} pages in {} requests; {} items new or changed",
                        a.source, d.pages, d.requests, d.upserted_count
                    );
                    if d.removed_count > 0 {
                        println!(
                            "{}: {} items no longer in the tracker, marked removed (plumbline items --include-removed shows them)",
                            a.source, d.removed_count
                        );
                    }
                }
                return Ok(());
            }
            None => {}
        }
    }
}
