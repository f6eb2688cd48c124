//! The PostgreSQL backend: one database shared by any number of sidecars.
//! The same tables, values and semantics as the SQLite backend (see
//! [`codec`](super::codec)): every call is one transaction, the same bad
//! input gives the same error, and a restart reads back what was written
//! bit for bit. Connections come from a pool ([`conn`]); the schema is
//! migrated at open under an advisory lock ([`migrate`]).

mod conn;
mod customers;
mod history;
mod insights;
mod load;
mod migrate;
mod replica;
mod tokens;
mod validation;
mod write;

use std::borrow::Cow;
use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{
    Changed, ItemFilter, Load, ModelWrite, Result, SnapshotRetention, Store, StoreError,
    WriteHealth,
};
use crate::config::Config;
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Insight, Item, ItemSplit, Link, Metric, Observation,
    ObservationSummary, PullStatus, Release, Removal, Source, SyncCursor, SyncState, Time,
};
use conn::{Attempt, Connections, Fail, Settings, Shared, Tx};
use write::ItemWrite;

/// PostgreSQL-backed [`Store`]; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    db: Shared,
    /// Wakes followers when another sidecar commits.
    listener: std::sync::Arc<replica::Listener>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("replica", &self.db.replica())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database `dsn` names and brings its schema up to
    /// date. Errors never hold the DSN.
    pub async fn open_dsn(dsn: &str, config: &crate::config::StoreConfig) -> Result<Self> {
        let settings = Settings {
            max_connections: config.max_connections,
            wait: std::time::Duration::from_millis(config.busy_timeout_ms.max(1)),
        };
        let db = Connections::new(dsn, &settings).map_err(|message| StoreError::Unavailable {
            doing: "open the PostgreSQL database".into(),
            source: message.into(),
        })?;
        let migrated: Attempt<()> = async {
            let mut client = db.client().await?;
            migrate::run(&mut client).await
        }
        .await;
        migrated.map_err(|e| e.during("open the PostgreSQL database"))?;
        let db = std::sync::Arc::new(db);
        Ok(PostgresStore {
            listener: std::sync::Arc::new(replica::Listener::start(db.clone())),
            db,
        })
    }
}

pub(super) use super::codec::{enum_str, json, nanos, opt_time, time};

/// A string for a TEXT column: PostgreSQL's TEXT cannot hold the NUL
/// character (SQLite's can), so each is written as U+FFFD, the replacement
/// character, rather than failing the write. Every string that can come
/// from a tracker or a caller goes through here, and so does every key
/// looked up by such a string, so that what was written is found again.
pub(super) fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn parse_enum<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_enum(s).map_err(Fail::Corrupt)
}

fn parse_json<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_json(s).map_err(Fail::Corrupt)
}

/// Labels as their JSON text, each through [`pg_text`]: JSON escapes a NUL
/// as `\u0000`, which PostgreSQL's JSON functions (the label filter of
/// `list_items`) refuse to turn back into text.
fn pg_labels(labels: &[String]) -> String {
    if labels.iter().any(|l| l.contains('\0')) {
        json(&labels.iter().map(|l| pg_text(l)).collect::<Vec<_>>())
    } else {
        json(&labels)
    }
}

fn item_from_row(r: &Row) -> Attempt<Item> {
    Ok(Item {
        source_id: r.try_get("source_id")?,
        external_id: r.try_get("external_id")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        url: r.try_get("url")?,
        state: parse_enum(r.try_get("state")?)?,
        labels: parse_json(r.try_get("labels")?)?,
        estimate: r.try_get("estimate")?,
        parent_key: r.try_get("parent_key")?,
        create_time: opt_time(r.try_get("create_time")?),
        update_time: opt_time(r.try_get("update_time")?),
        close_time: opt_time(r.try_get("close_time")?),
        votes: r
            .try_get::<_, Option<i64>>("votes")?
            .map(|v| u64::try_from(v).unwrap_or(0)),
    })
}

fn hypothesis_from_row(r: &Row) -> Attempt<Hypothesis> {
    Ok(Hypothesis {
        id: r.try_get("id")?,
        statement: r.try_get("statement")?,
        goal_id: r.try_get("goal_id")?,
        metric_id: r.try_get("metric_id")?,
        expected_effect: r.try_get("expected_effect")?,
        confidence: r.try_get("confidence")?,
        status: parse_enum(r.try_get("status")?)?,
        check_time: opt_time(r.try_get("check_time")?),
        create_time: time(r.try_get("create_time")?),
        update_time: time(r.try_get("update_time")?),
    })
}

/// A metric's latest observation and how many it has.
pub(super) async fn observation_summary(
    tx: &Tx<'_>,
    metric_id: &str,
) -> Attempt<ObservationSummary> {
    let latest = tx
        .prepare_cached(
            "SELECT observe_time, value FROM observations WHERE metric_id = $1 \
             ORDER BY observe_time DESC LIMIT 1",
        )
        .await?;
    let latest = match tx.query_opt(&latest, &[&metric_id]).await? {
        Some(r) => Some((time(r.try_get(0)?), r.try_get(1)?)),
        None => None,
    };
    let count = tx
        .prepare_cached("SELECT COUNT(*) FROM observations WHERE metric_id = $1")
        .await?;
    let count: i64 = tx.query_one(&count, &[&metric_id]).await?.try_get(0)?;
    Ok(ObservationSummary { latest, count })
}

/// The summaries of `metrics`, in id order (the order of the set).
async fn summaries(
    tx: &Tx<'_>,
    metrics: &BTreeSet<String>,
) -> Attempt<Vec<(String, ObservationSummary)>> {
    let mut out = Vec::with_capacity(metrics.len());
    for m in metrics {
        out.push((m.clone(), observation_summary(tx, m).await?));
    }
    Ok(out)
}

/// Stores or replaces a hypothesis (its create time is kept).
pub(super) async fn put_hypothesis(tx: &Tx<'_>, h: &Hypothesis) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO hypotheses (id, statement, goal_id, metric_id, expected_effect, \
             confidence, status, check_time, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET statement = EXCLUDED.statement, \
             goal_id = EXCLUDED.goal_id, metric_id = EXCLUDED.metric_id, \
             expected_effect = EXCLUDED.expected_effect, confidence = EXCLUDED.confidence, \
             status = EXCLUDED.status, check_time = EXCLUDED.check_time, \
             update_time = EXCLUDED.update_time",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &h.id,
            &pg_text(&h.statement),
            &h.goal_id,
            &h.metric_id,
            &h.expected_effect,
            &h.confidence,
            &enum_str(&h.status),
            &h.check_time.as_ref().map(nanos),
            &nanos(&h.create_time),
            &nanos(&h.update_time),
        ],
    )
    .await?;
    Ok(())
}

async fn put_source(tx: &Tx<'_>, s: &Source) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO sources (id, kind, base_url, project_key, token_env, link_rules, \
             estimate_field, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET kind = EXCLUDED.kind, base_url = EXCLUDED.base_url, \
             project_key = EXCLUDED.project_key, token_env = EXCLUDED.token_env, \
             link_rules = EXCLUDED.link_rules, estimate_field = EXCLUDED.estimate_field, \
             update_time = EXCLUDED.update_time",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &s.id,
            &enum_str(&s.kind),
            &pg_text(&s.base_url),
            &pg_text(&s.project_key),
            &pg_text(&s.token_env),
            &json(&s.link_rules),
            &pg_text(&s.estimate_field),
            &nanos(&s.create_time),
            &nanos(&s.update_time),
        ],
    )
    .await?;
    Ok(())
}

async fn put_goal(tx: &Tx<'_>, g: &Goal) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO goals (id, title, description, level, parent_id, key_value_area, \
             weight, create_time, update_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO UPDATE SET title = EXCLUDED.title, \
             description = EXCLUDED.description, level = EXCLUDED.level, \
             parent_id = EXCLUDED.parent_id, key_value_area = EXCLUDED.key_value_area, \
             weight = EXCLUDED.weight, update_time = EXCLUDED.update_time",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &g.id,
            &pg_text(&g.title),
            &pg_text(&g.description),
            &enum_str(&g.level),
            &g.parent_id,
            &enum_str(&g.key_value_area),
            &g.weight,
            &nanos(&g.create_time),
            &nanos(&g.update_time),
        ],
    )
    .await?;
    Ok(())
}

/// Stores or replaces a metric (its create time is kept).
pub(super) async fn put_metric(tx: &Tx<'_>, m: &Metric) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO metrics (id, name, unit, direction, baseline, target, cadence_nanos, \
             create_time, update_time, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, unit = EXCLUDED.unit, \
             direction = EXCLUDED.direction, baseline = EXCLUDED.baseline, \
             target = EXCLUDED.target, cadence_nanos = EXCLUDED.cadence_nanos, \
             update_time = EXCLUDED.update_time, source = EXCLUDED.source",
        )
        .await?;
    let source = m
        .source
        .as_ref()
        .and_then(|s| serde_json::to_string(s).ok());
    tx.execute(
        &stmt,
        &[
            &m.id,
            &pg_text(&m.name),
            &pg_text(&m.unit),
            &enum_str(&m.direction),
            &m.baseline,
            &m.target,
            &m.cadence.and_then(|c| c.num_nanoseconds()),
            &nanos(&m.create_time),
            &nanos(&m.update_time),
            &source.as_deref().map(pg_text),
        ],
    )
    .await?;
    Ok(())
}

/// Upserts a metric's pull status.
async fn put_metric_pull(tx: &Tx<'_>, p: &PullStatus) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO metric_pulls (metric_id, last_pull_time, last_success_time, \
             last_stored, last_refused, last_error) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (metric_id) DO UPDATE SET last_pull_time = EXCLUDED.last_pull_time, \
             last_success_time = EXCLUDED.last_success_time, \
             last_stored = EXCLUDED.last_stored, last_refused = EXCLUDED.last_refused, \
             last_error = EXCLUDED.last_error",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &p.metric_id,
            &p.last_pull_time.as_ref().map(nanos),
            &p.last_success_time.as_ref().map(nanos),
            &i64::from(p.last_stored),
            &i64::from(p.last_refused),
            &pg_text(&p.last_error),
        ],
    )
    .await?;
    Ok(())
}

/// Runs a statement of one text parameter (a delete by id); answers how
/// many rows it touched.
async fn execute_by(tx: &Tx<'_>, sql: &str, id: &str) -> Attempt<u64> {
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.execute(&stmt, &[&id]).await?)
}

async fn delete_hypothesis(tx: &Tx<'_>, id: &str) -> Attempt<()> {
    execute_by(tx, "DELETE FROM links WHERE hypothesis_id = $1", id).await?;
    execute_by(tx, "DELETE FROM hypotheses WHERE id = $1", id).await?;
    Ok(())
}

/// Deletes a source with its items (their links, splits and removals go
/// with them); answers how many items.
async fn delete_source(tx: &Tx<'_>, id: &str) -> Attempt<u64> {
    let n = execute_by(tx, "DELETE FROM items WHERE source_id = $1", id).await?;
    execute_by(tx, "DELETE FROM sources WHERE id = $1", id).await?;
    Ok(n)
}

/// Writes a whole [`ModelWrite`] inside `tx` (the caller commits): puts
/// first, in reference order, then deletes, dependents first, as SQLite's
/// `write_model` does.
async fn write_model(tx: &Tx<'_>, w: &ModelWrite) -> Attempt<Vec<(String, ObservationSummary)>> {
    for s in &w.sources {
        put_source(tx, s).await?;
    }
    for g in &w.goals {
        put_goal(tx, g).await?;
    }
    for m in &w.metrics {
        put_metric(tx, m).await?;
    }
    write::put_observations(tx, &w.observations).await?;
    let mut touched: BTreeSet<String> =
        w.observations.iter().map(|o| o.metric_id.clone()).collect();
    for s in &w.segments {
        customers::put_segment(tx, s).await?;
    }
    for o in &w.outcomes {
        customers::put_outcome(tx, o).await?;
    }
    // Only when there are waves, so that a model without customers does
    // not depend on the customer tables' code.
    let waves_touched = if w.waves.is_empty() {
        BTreeSet::new()
    } else {
        customers::put_waves(tx, &w.waves).await?
    };
    for h in &w.hypotheses {
        put_hypothesis(tx, h).await?;
    }
    let items = ItemWrite {
        items: &w.items,
        remove_links: &w.remove_links,
        put_links: &w.links,
        ..ItemWrite::default()
    };
    write::write_items(tx, &items).await?;
    for id in &w.delete_hypotheses {
        delete_hypothesis(tx, id).await?;
    }
    for id in &w.delete_outcomes {
        customers::delete_outcome(tx, id).await?;
    }
    for id in &w.delete_segments {
        execute_by(tx, "DELETE FROM segments WHERE id = $1", id).await?;
    }
    for id in &w.delete_metrics {
        execute_by(tx, "DELETE FROM metrics WHERE id = $1", id).await?;
    }
    for id in &w.delete_goals {
        execute_by(tx, "DELETE FROM goals WHERE id = $1", id).await?;
    }
    for id in &w.delete_sources {
        delete_source(tx, id).await?;
    }
    touched.extend(waves_touched);
    if !w.insights.is_empty() {
        insights::put(tx, &w.insights, &chrono::Utc::now()).await?;
    }
    summaries(tx, &touched).await
}

/// Runs `sql` with `params` and reads every row with `f`.
async fn query_all<T>(
    tx: &Tx<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: impl Fn(&Row) -> Attempt<T>,
) -> Attempt<Vec<T>> {
    let stmt = tx.prepare_cached(sql).await?;
    tx.query(&stmt, params).await?.iter().map(f).collect()
}

async fn items_with_body_text(tx: &Tx<'_>, source_id: &str, text: &str) -> Attempt<Vec<Item>> {
    query_all(
        tx,
        "SELECT * FROM items WHERE source_id = $1 AND strpos(body, $2) > 0 \
         ORDER BY key COLLATE \"C\"",
        &[&source_id, &text],
        item_from_row,
    )
    .await
}

async fn get_items(tx: &Tx<'_>, keys: &[String]) -> Attempt<Vec<Option<Item>>> {
    let mut found: std::collections::HashMap<String, Item> =
        std::collections::HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(1000) {
        let items = query_all(
            tx,
            "SELECT * FROM items WHERE key = ANY($1::text[])",
            &[&chunk],
            item_from_row,
        )
        .await?;
        found.extend(items.into_iter().map(|it| (it.key(), it)));
    }
    Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
}

async fn links_of_items(tx: &Tx<'_>, keys: &[String]) -> Attempt<Vec<Link>> {
    let sql = format!(
        "SELECT {} FROM links WHERE item_key = ANY($1::text[]) \
         ORDER BY item_key COLLATE \"C\", hypothesis_id COLLATE \"C\"",
        load::LINK_COLUMNS
    );
    let mut out = Vec::new();
    for chunk in keys.chunks(1000) {
        out.extend(query_all(tx, &sql, &[&chunk], load::link).await?);
    }
    Ok(out)
}

/// A `list_items` query: its SQL and parameters.
struct ItemPage {
    sql: String,
    params: Vec<Box<dyn ToSql + Sync + Send>>,
    max_bytes: usize,
}

impl ItemPage {
    fn new(filter: &ItemFilter, after: Option<&str>, limit: usize, max_bytes: usize) -> Self {
        let mut sql = String::from("SELECT * FROM items WHERE TRUE");
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let next = |params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
                    v: Box<dyn ToSql + Sync + Send>| {
            params.push(v);
            params.len()
        };
        if let Some(s) = &filter.source_id {
            let n = next(&mut params, Box::new(s.clone()));
            sql.push_str(&format!(" AND source_id = ${n}"));
        }
        if let Some(st) = &filter.state {
            let n = next(&mut params, Box::new(enum_str(st)));
            sql.push_str(&format!(" AND state = ${n}"));
        }
        if let Some(l) = &filter.label {
            let n = next(&mut params, Box::new(pg_text(l).into_owned()));
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_array_elements_text(items.labels::json) AS l (v) \
                 WHERE l.v = ${n})"
            ));
        }
        if !filter.include_removed {
            sql.push_str(
                " AND NOT EXISTS (SELECT 1 FROM item_removals r WHERE r.item_key = items.key)",
            );
        }
        if let Some(a) = after {
            let n = next(&mut params, Box::new(a.to_string()));
            sql.push_str(&format!(" AND key COLLATE \"C\" > ${n}"));
        }
        let n = next(
            &mut params,
            Box::new(i64::try_from(limit).unwrap_or(i64::MAX)),
        );
        sql.push_str(&format!(" ORDER BY key COLLATE \"C\" LIMIT ${n}"));
        ItemPage {
            sql,
            params,
            max_bytes,
        }
    }
}

/// Rows a page reads at a time: a page stops at `max_bytes`, so its rows
/// come a few at a time rather than all that `limit` allows.
const PAGE_FETCH: usize = 16;

async fn list_items(tx: &Tx<'_>, page: &ItemPage) -> Attempt<Vec<Item>> {
    let stmt = tx.prepare_cached(&page.sql).await?;
    let params: Vec<&(dyn ToSql + Sync)> = page
        .params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let portal = tx.bind(&stmt, &params).await?;
    let (mut out, mut bytes) = (Vec::new(), 0usize);
    let fetch = i32::try_from(PAGE_FETCH).unwrap_or(i32::MAX);
    while bytes < page.max_bytes {
        let rows = tx.query_portal(&portal, fetch).await?;
        for r in &rows {
            if bytes >= page.max_bytes {
                break;
            }
            let item = item_from_row(r)?;
            bytes = bytes.saturating_add(item.text_len());
            out.push(item);
        }
        if rows.len() < PAGE_FETCH {
            break;
        }
    }
    Ok(out)
}

async fn list_item_splits(tx: &Tx<'_>) -> Attempt<Vec<ItemSplit>> {
    query_all(
        tx,
        "SELECT item_key, plan_kind, hypothesis_ids, create_time FROM item_splits \
         ORDER BY item_key COLLATE \"C\"",
        &[],
        |r| {
            let mut hypothesis_ids: Vec<String> = parse_json(r.try_get("hypothesis_ids")?)?;
            hypothesis_ids.sort();
            hypothesis_ids.dedup();
            Ok(ItemSplit {
                item_key: r.try_get("item_key")?,
                plan_kind: r.try_get("plan_kind")?,
                hypothesis_ids,
                create_time: time(r.try_get("create_time")?),
            })
        },
    )
    .await
}

async fn record_observations(
    tx: &Tx<'_>,
    observations: &[Observation],
) -> Attempt<Vec<(String, ObservationSummary)>> {
    write::put_observations(tx, observations).await?;
    let touched: BTreeSet<String> = observations.iter().map(|o| o.metric_id.clone()).collect();
    summaries(tx, &touched).await
}

async fn record_pull(
    tx: &Tx<'_>,
    observations: &[Observation],
    status: &PullStatus,
) -> Attempt<Option<ObservationSummary>> {
    write::put_observations(tx, observations).await?;
    put_metric_pull(tx, status).await?;
    if observations.is_empty() {
        Ok(None)
    } else {
        Ok(Some(observation_summary(tx, &status.metric_id).await?))
    }
}

async fn list_metric_pulls(tx: &Tx<'_>) -> Attempt<Vec<PullStatus>> {
    query_all(
        tx,
        "SELECT metric_id, last_pull_time, last_success_time, last_stored, last_refused, \
         last_error FROM metric_pulls ORDER BY metric_id COLLATE \"C\"",
        &[],
        |r| {
            let count = |i: usize| -> Attempt<u32> {
                let n: i64 = r.try_get(i)?;
                u32::try_from(n).map_err(|e| Fail::Corrupt(Box::new(e)))
            };
            Ok(PullStatus {
                metric_id: r.try_get(0)?,
                last_pull_time: opt_time(r.try_get(1)?),
                last_success_time: opt_time(r.try_get(2)?),
                last_stored: count(3)?,
                last_refused: count(4)?,
                last_error: r.try_get(5)?,
            })
        },
    )
    .await
}

async fn get_sync_state(tx: &Tx<'_>, source_id: &str) -> Attempt<Option<SyncState>> {
    let stmt = tx
        .prepare_cached("SELECT * FROM sync_state WHERE source_id = $1")
        .await?;
    let Some(r) = tx.query_opt(&stmt, &[&source_id]).await? else {
        return Ok(None);
    };
    Ok(Some(SyncState {
        source_id: r.try_get("source_id")?,
        cursor: SyncCursor {
            time: opt_time(r.try_get("cursor_time")?),
            ids: parse_json(r.try_get("cursor_ids")?)?,
        },
        etag: r.try_get("etag")?,
        etag_url: r.try_get("etag_url")?,
        state: parse_enum(r.try_get("state")?)?,
        last_start_time: opt_time(r.try_get("last_start_time")?),
        last_finish_time: opt_time(r.try_get("last_finish_time")?),
        last_error: r.try_get("last_error")?,
        last_request_count: r.try_get("last_request_count")?,
        last_upserted_count: r.try_get("last_upserted_count")?,
    }))
}

#[async_trait]
impl Store for PostgresStore {
    async fn open(config: &Config) -> Result<Self> {
        let dsn = config
            .postgres_dsn()
            .map_err(|e| StoreError::Unavailable {
                doing: "open the PostgreSQL database".into(),
                source: e.to_string().into(),
            })?
            .ok_or_else(|| StoreError::Unavailable {
                doing: "open the PostgreSQL database".into(),
                source: "the configuration names no PostgreSQL database".into(),
            })?;
        PostgresStore::open_dsn(&dsn, &config.store).await
    }

    async fn close(&self) {
        self.listener.stop();
        self.db.close();
    }

    fn write_health(&self) -> tokio::sync::watch::Receiver<WriteHealth> {
        self.db.health()
    }

    async fn check_health(&self) {
        self.db.check().await;
    }

    // ---- items, links, the value model (load, write) ----

    async fn load(&self) -> Result<Load> {
        load::start(self.db.clone()).await
    }

    async fn put_source(&self, s: &Source) -> Result<()> {
        self.db
            .write_logged("store a source", &Changed::model(), s, |tx, s| {
                Box::pin(put_source(tx, s))
            })
            .await
    }

    async fn delete_source(&self, id: &str) -> Result<u64> {
        self.db
            .write_logged("delete a source", &Changed::model(), id, |tx, id| {
                Box::pin(delete_source(tx, id))
            })
            .await
    }

    async fn upsert_and_remove_items(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        sync_state: Option<&SyncState>,
        restore: &[String],
        remove: &[(String, Removal)],
    ) -> Result<()> {
        let w = ItemWrite {
            items: &items,
            remove_links,
            put_links,
            sync_state,
            split: None,
            restore,
            remove,
        };
        self.db
            .write_logged("upsert items", &w.changed(), w, |tx, w| {
                Box::pin(write::write_items(tx, w))
            })
            .await
    }

    async fn apply_split(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        split: &ItemSplit,
    ) -> Result<()> {
        let w = ItemWrite {
            items: &items,
            remove_links,
            put_links,
            split: Some(split),
            ..ItemWrite::default()
        };
        self.db
            .write_logged("apply a split", &Changed::model(), w, |tx, w| {
                Box::pin(write::write_items(tx, w))
            })
            .await
    }

    async fn list_item_splits(&self) -> Result<Vec<ItemSplit>> {
        self.db
            .read("list item splits", (), |tx, ()| {
                Box::pin(list_item_splits(tx))
            })
            .await
    }

    async fn links_of_items(&self, keys: &[String]) -> Result<Vec<Link>> {
        self.db
            .read("read the links of items", keys, |tx, k| {
                Box::pin(links_of_items(tx, k))
            })
            .await
    }

    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>> {
        self.db
            .read("read items", keys, |tx, k| Box::pin(get_items(tx, k)))
            .await
    }

    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>> {
        // Bodies are stored through `pg_text`; so is what is looked for.
        let needle = pg_text(text);
        self.db
            .read(
                "search item bodies",
                (source_id, needle.as_ref()),
                |tx, (s, t)| Box::pin(items_with_body_text(tx, s, t)),
            )
            .await
    }

    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>> {
        let page = ItemPage::new(filter, after, limit, max_bytes);
        self.db
            .read("list items", page, |tx, p| Box::pin(list_items(tx, p)))
            .await
    }

    async fn put_goal(&self, g: &Goal) -> Result<()> {
        self.db
            .write_logged("store a goal", &Changed::model(), g, |tx, g| {
                Box::pin(put_goal(tx, g))
            })
            .await
    }

    async fn delete_goal(&self, id: &str) -> Result<()> {
        self.db
            .write_logged("delete a goal", &Changed::model(), id, |tx, id| {
                Box::pin(async move {
                    execute_by(tx, "DELETE FROM goals WHERE id = $1", id).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn put_metric(&self, m: &Metric) -> Result<()> {
        self.db
            .write_logged("store a metric", &Changed::model(), m, |tx, m| {
                Box::pin(put_metric(tx, m))
            })
            .await
    }

    async fn delete_metric(&self, id: &str) -> Result<()> {
        self.db
            .write_logged("delete a metric", &Changed::model(), id, |tx, id| {
                Box::pin(async move {
                    execute_by(tx, "DELETE FROM metrics WHERE id = $1", id).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        self.db
            .write_logged(
                "record observations",
                &Changed::model(),
                observations,
                |tx, o| Box::pin(record_observations(tx, o)),
            )
            .await
    }

    async fn record_pull(
        &self,
        observations: &[Observation],
        status: &PullStatus,
    ) -> Result<Option<ObservationSummary>> {
        self.db
            .write_logged(
                "store a metric pull",
                &Changed::model(),
                (observations, status),
                |tx, (o, s)| Box::pin(record_pull(tx, o, s)),
            )
            .await
    }

    async fn list_metric_pulls(&self) -> Result<Vec<PullStatus>> {
        self.db
            .read("read metric pulls", (), |tx, ()| {
                Box::pin(list_metric_pulls(tx))
            })
            .await
    }

    async fn apply_model(&self, w: &ModelWrite) -> Result<Vec<(String, ObservationSummary)>> {
        self.db
            .write_logged("apply a value model", &Changed::model(), w, |tx, w| {
                Box::pin(write_model(tx, w))
            })
            .await
    }

    async fn put_hypothesis(&self, h: &Hypothesis) -> Result<()> {
        self.db
            .write_logged("store a hypothesis", &Changed::model(), h, |tx, h| {
                Box::pin(put_hypothesis(tx, h))
            })
            .await
    }

    async fn delete_hypothesis(&self, id: &str) -> Result<()> {
        self.db
            .write_logged("delete a hypothesis", &Changed::model(), id, |tx, id| {
                Box::pin(delete_hypothesis(tx, id))
            })
            .await
    }

    async fn put_link(&self, l: &Link) -> Result<()> {
        self.db
            .write_logged(
                "store a link",
                &Changed::items([&l.item_key]),
                l,
                |tx, l| Box::pin(write::put_links(tx, std::slice::from_ref(*l))),
            )
            .await
    }

    async fn delete_link(&self, item_key: &str, hypothesis_id: &str) -> Result<()> {
        self.db
            .write_logged(
                "delete a link",
                &Changed::items([&item_key.to_string()]),
                (item_key, hypothesis_id),
                |tx, (i, h)| {
                    Box::pin(async move {
                        let stmt = tx
                            .prepare_cached(
                                "DELETE FROM links WHERE item_key = $1 AND hypothesis_id = $2",
                            )
                            .await?;
                        tx.execute(&stmt, &[i, h]).await?;
                        Ok(())
                    })
                },
            )
            .await
    }

    async fn get_sync_state(&self, source_id: &str) -> Result<Option<SyncState>> {
        self.db
            .read("read a sync state", source_id, |tx, s| {
                Box::pin(get_sync_state(tx, s))
            })
            .await
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        self.db
            .write("store a sync state", state, |tx, s| {
                Box::pin(write::put_sync_state(tx, s))
            })
            .await
    }

    // ---- insights (insights.rs) ----

    async fn record_insights(&self, insights: &[Insight], now: Time) -> Result<()> {
        self.db
            .write_logged(
                "record insights",
                &super::Changed::model(),
                (insights, now),
                |tx, (i, now)| Box::pin(insights::put(tx, i, now)),
            )
            .await
    }

    async fn get_insights(&self, keys: &[(String, String)]) -> Result<Vec<Insight>> {
        self.db
            .read("read insights", keys, |tx, k| {
                Box::pin(insights::get(tx, k))
            })
            .await
    }

    async fn list_all_insights(&self) -> Result<Vec<Insight>> {
        self.db
            .read("list insights", (), |tx, ()| Box::pin(insights::all(tx)))
            .await
    }

    async fn forget_customer(&self, customer: &str) -> Result<u64> {
        self.db
            .write_logged(
                "forget a customer",
                &super::Changed::model(),
                customer,
                |tx, c| Box::pin(insights::forget(tx, c)),
            )
            .await
    }

    // ---- releases, experiments, evidence (validation.rs) ----

    async fn put_release(&self, r: &Release) -> Result<()> {
        self.db
            .write("store a release", r, |tx, r| {
                Box::pin(validation::put_release(tx, r))
            })
            .await
    }

    async fn list_releases(&self) -> Result<Vec<Release>> {
        self.db
            .read("list releases", (), |tx, ()| {
                Box::pin(validation::list_releases(tx))
            })
            .await
    }

    async fn closed_items(&self) -> Result<Vec<(String, Time)>> {
        self.db
            .read("list closed items", (), |tx, ()| {
                Box::pin(validation::closed_items(tx))
            })
            .await
    }

    async fn put_experiment(&self, e: &Experiment) -> Result<()> {
        self.db
            .write("store an experiment", e, |tx, e| {
                Box::pin(validation::put_experiment(tx, e))
            })
            .await
    }

    async fn list_experiments(&self) -> Result<Vec<Experiment>> {
        self.db
            .read("list experiments", (), |tx, ()| {
                Box::pin(validation::list_experiments(tx))
            })
            .await
    }

    async fn list_observations(&self, metric_id: &str) -> Result<Vec<(Time, f64)>> {
        self.db
            .read("list observations", metric_id, |tx, m| {
                Box::pin(validation::list_observations(tx, m))
            })
            .await
    }

    async fn record_evidence(
        &self,
        evidence: &[Evidence],
        hypotheses: &[Hypothesis],
    ) -> Result<()> {
        // Evidence is read from the store when asked for; the hypotheses it
        // moved are the model's, which the other sidecars read back.
        let changed = if hypotheses.is_empty() {
            super::Changed::default()
        } else {
            super::Changed::model()
        };
        self.db
            .write_logged(
                "record evidence",
                &changed,
                (evidence, hypotheses),
                |tx, (e, h)| Box::pin(validation::record_evidence(tx, e, h)),
            )
            .await
    }

    async fn list_evidence(&self, hypothesis_id: Option<&str>) -> Result<Vec<Evidence>> {
        self.db
            .read("list evidence", hypothesis_id, |tx, h| {
                Box::pin(validation::list_evidence(tx, *h))
            })
            .await
    }

    // ---- ranking snapshots (history.rs) ----

    async fn put_ranking_snapshot(
        &self,
        snapshot: &RankingSnapshot,
        keep: &SnapshotRetention,
    ) -> Result<SnapshotSummary> {
        self.db
            .write(
                "store a ranking snapshot",
                (snapshot, keep),
                |tx, (s, k)| Box::pin(history::put(tx, s, k)),
            )
            .await
    }

    async fn prune_ranking_snapshots(&self, keep: &SnapshotRetention) -> Result<usize> {
        self.db
            .write("prune ranking snapshots", keep, |tx, k| {
                Box::pin(history::prune(tx, k))
            })
            .await
    }

    async fn list_ranking_snapshots(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotSummary>> {
        self.db
            .read(
                "list ranking snapshots",
                (before_id, limit),
                |tx, (b, l)| Box::pin(history::list(tx, *b, *l)),
            )
            .await
    }

    async fn ranking_snapshot_at(&self, at: Option<Time>) -> Result<Option<RankingSnapshot>> {
        self.db
            .read("read a ranking snapshot", at, |tx, at| {
                Box::pin(history::at(tx, *at))
            })
            .await
    }

    async fn earliest_ranking_snapshot(&self) -> Result<Option<SnapshotSummary>> {
        self.db
            .read("read the earliest ranking snapshot", (), |tx, ()| {
                Box::pin(history::earliest(tx))
            })
            .await
    }

    // ---- many sidecars (replica.rs) ----

    async fn item_removals(&self, keys: &[String]) -> Result<Vec<(String, Removal)>> {
        self.db
            .read("read item removals", keys, |tx, keys| {
                Box::pin(async move {
                    let stmt = tx
                        .prepare_cached(
                            "SELECT item_key, remove_time, reason, detail FROM item_removals \
                             WHERE item_key = ANY($1)",
                        )
                        .await?;
                    let rows = tx.query(&stmt, &[keys]).await?;
                    rows.iter()
                        .map(|r| {
                            Ok((
                                r.get(0),
                                Removal {
                                    remove_time: time(r.get(1)),
                                    reason: parse_enum(r.get(2))?,
                                    detail: r.get(3),
                                },
                            ))
                        })
                        .collect()
                })
            })
            .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn replica_id(&self) -> &str {
        self.db.replica()
    }

    async fn changes_after(&self, seq: i64, limit: usize) -> Result<Vec<super::ChangeRecord>> {
        replica::changes_after(&self.db, seq, limit).await
    }

    async fn last_change(&self) -> Result<i64> {
        replica::last_change(&self.db).await
    }

    async fn prune_changes(&self, keep_for: std::time::Duration, keep_last: i64) -> Result<u64> {
        replica::prune_changes(&self.db, keep_for, keep_last).await
    }

    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.listener.signal.subscribe())
    }

    async fn write_turn(&self) -> Result<super::WriteTurn> {
        replica::write_turn(&self.db).await
    }

    async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool> {
        replica::lease(&self.db, name, ttl).await
    }

    async fn release_lease(&self, name: &str) -> Result<()> {
        replica::release_lease(&self.db, name).await
    }
}
