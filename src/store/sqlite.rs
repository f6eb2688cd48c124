//! The embedded SQLite backend: one file, WAL journal, migrations applied at
//! open, one driver (rusqlite). Times are stored as Unix nanoseconds and
//! enums as their snake_case names, so rows are readable with the `sqlite3`
//! shell.
//!
//! rusqlite rather than an async driver: start-up reads every item and link
//! and a sync writes every item it fetches, and through an async driver
//! each row cost a round trip to the driver's thread and a copy per column,
//! several times SQLite's own work; here a row binds and reads borrowed
//! values in place, with statements prepared once. Every call runs on a
//! blocking thread (see [`conn`]).

mod conn;
mod customers;
mod history;
mod insights;
mod load;
mod migrate;
mod tokens;
mod write;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde::de::DeserializeOwned;

use super::{ItemFilter, Load, ModelWrite, Result, SnapshotRetention, Store, WriteHealth};
use crate::config::{Config, StoreConfig};
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Insight, Item, ItemSplit, Link, Metric, Observation,
    ObservationSummary, PullStatus, Release, Removal, Source, SyncCursor, SyncState, Time,
};
use conn::{Attempt, Connections, Fail, Settings};
use write::ItemWrite;

/// SQLite-backed [`Store`]; clones share the connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Connections>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file with the default
    /// `[store]` settings and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, &StoreConfig::default()).await
    }

    /// Opens (creating if needed) the database file with these settings
    /// and applies migrations.
    pub async fn open_with(path: &Path, config: &StoreConfig) -> Result<Self> {
        Self::open_settings(path, Settings::new(config)).await
    }

    async fn open_settings(path: &Path, settings: Settings) -> Result<Self> {
        let path = path.to_path_buf();
        let opened =
            tokio::task::spawn_blocking(move || Connections::open(&path, settings, migrate::run))
                .await
                .unwrap_or_else(|e| Err(Fail::Thread(e)));
        Ok(SqliteStore {
            db: Arc::new(opened.map_err(|e| e.during("open the SQLite database"))?),
        })
    }

    /// Closes every connection, checkpointing the WAL.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

use super::codec::{enum_str, json, nanos, opt_time, time};

fn parse_enum<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_enum(s).map_err(Fail::Corrupt)
}

fn parse_json<T: DeserializeOwned>(s: &str) -> Attempt<T> {
    super::codec::parse_json(s).map_err(Fail::Corrupt)
}

fn text<'r>(r: &'r Row<'_>, column: &str) -> Attempt<&'r str> {
    Ok(r.get_ref(column)?.as_str()?)
}

fn item_from_row(r: &Row<'_>) -> Attempt<Item> {
    Ok(Item {
        source_id: r.get("source_id")?,
        external_id: r.get("external_id")?,
        title: r.get("title")?,
        body: r.get("body")?,
        url: r.get("url")?,
        state: parse_enum(text(r, "state")?)?,
        labels: parse_json(text(r, "labels")?)?,
        estimate: r.get("estimate")?,
        parent_key: r.get("parent_key")?,
        create_time: opt_time(r.get("create_time")?),
        update_time: opt_time(r.get("update_time")?),
        close_time: opt_time(r.get("close_time")?),
        votes: r
            .get::<_, Option<i64>>("votes")?
            .map(|v| u64::try_from(v).unwrap_or(0)),
    })
}

fn hypothesis_from_row(r: &Row<'_>) -> Attempt<Hypothesis> {
    Ok(Hypothesis {
        id: r.get("id")?,
        statement: r.get("statement")?,
        goal_id: r.get("goal_id")?,
        metric_id: r.get("metric_id")?,
        expected_effect: r.get("expected_effect")?,
        confidence: r.get("confidence")?,
        status: parse_enum(text(r, "status")?)?,
        check_time: opt_time(r.get("check_time")?),
        create_time: time(r.get("create_time")?),
        update_time: time(r.get("update_time")?),
    })
}

fn evidence_from_row(r: &Row<'_>) -> Attempt<Evidence> {
    Ok(Evidence {
        hypothesis_id: r.get("hypothesis_id")?,
        subject_id: r.get("subject_id")?,
        method: parse_enum(text(r, "method")?)?,
        outcome: parse_enum(text(r, "outcome")?)?,
        realized_effect: r.get("realized_effect")?,
        expected_effect: r.get("expected_effect")?,
        confounded: r.get("confounded")?,
        step: r.get("step")?,
        step_se: r.get("step_se")?,
        delivered: r.get("delivered")?,
        log_likelihood_ratio: r.get("log_likelihood_ratio")?,
        points_before: r.get("points_before")?,
        points_after: r.get("points_after")?,
        confidence_before: r.get("confidence_before")?,
        confidence_after: r.get("confidence_after")?,
        status_after: parse_enum(text(r, "status_after")?)?,
        reason: r.get("reason")?,
        record_time: time(r.get("record_time")?),
    })
}

/// Runs `sql` with `params` and reads every row with `f`.
fn query_all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    f: impl Fn(&Row<'_>) -> Attempt<T>,
) -> Attempt<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

fn observation_summary(conn: &Connection, metric_id: &str) -> Attempt<ObservationSummary> {
    let latest = conn
        .prepare_cached(
            "SELECT observe_time, value FROM observations WHERE metric_id = ?1 \
             ORDER BY observe_time DESC LIMIT 1",
        )?
        .query_row([metric_id], |r| Ok((time(r.get(0)?), r.get(1)?)))
        .optional()?;
    let count: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM observations WHERE metric_id = ?1")?
        .query_row([metric_id], |r| r.get(0))?;
    Ok(ObservationSummary { latest, count })
}

fn put_hypothesis(conn: &Connection, h: &Hypothesis) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO hypotheses (id, statement, goal_id, metric_id, expected_effect, confidence, status, check_time, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET statement = excluded.statement, goal_id = excluded.goal_id, \
         metric_id = excluded.metric_id, expected_effect = excluded.expected_effect, confidence = excluded.confidence, \
         status = excluded.status, check_time = excluded.check_time, update_time = excluded.update_time",
    )?
    .execute(params![
        h.id,
        h.statement,
        h.goal_id,
        h.metric_id,
        h.expected_effect,
        h.confidence,
        enum_str(&h.status),
        h.check_time.as_ref().map(nanos),
        nanos(&h.create_time),
        nanos(&h.update_time),
    ])?;
    Ok(())
}

fn put_source(conn: &Connection, s: &Source) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO sources (id, kind, base_url, project_key, token_env, link_rules, estimate_field, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url, \
         project_key = excluded.project_key, token_env = excluded.token_env, link_rules = excluded.link_rules, \
         estimate_field = excluded.estimate_field, update_time = excluded.update_time",
    )?
    .execute(params![
        s.id,
        enum_str(&s.kind),
        s.base_url,
        s.project_key,
        s.token_env,
        json(&s.link_rules),
        s.estimate_field,
        nanos(&s.create_time),
        nanos(&s.update_time),
    ])?;
    Ok(())
}

fn put_goal(conn: &Connection, g: &Goal) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO goals (id, title, description, level, parent_id, key_value_area, weight, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
         ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description, level = excluded.level, \
         parent_id = excluded.parent_id, key_value_area = excluded.key_value_area, weight = excluded.weight, \
         update_time = excluded.update_time",
    )?
    .execute(params![
        g.id,
        g.title,
        g.description,
        enum_str(&g.level),
        g.parent_id,
        enum_str(&g.key_value_area),
        g.weight,
        nanos(&g.create_time),
        nanos(&g.update_time),
    ])?;
    Ok(())
}

fn put_metric(conn: &Connection, m: &Metric) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO metrics (id, name, unit, direction, baseline, target, cadence_nanos, create_time, update_time, source) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, unit = excluded.unit, direction = excluded.direction, \
         baseline = excluded.baseline, target = excluded.target, cadence_nanos = excluded.cadence_nanos, \
         update_time = excluded.update_time, source = excluded.source",
    )?
    .execute(params![
        m.id,
        m.name,
        m.unit,
        enum_str(&m.direction),
        m.baseline,
        m.target,
        m.cadence.and_then(|c| c.num_nanoseconds()),
        nanos(&m.create_time),
        nanos(&m.update_time),
        m.source.as_ref().and_then(|s| serde_json::to_string(s).ok()),
    ])?;
    Ok(())
}

/// Upserts a metric's pull status.
fn put_metric_pull(conn: &Connection, p: &PullStatus) -> Attempt<()> {
    conn.prepare_cached(
        "INSERT INTO metric_pulls (metric_id, last_pull_time, last_success_time, last_stored, last_refused, last_error) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (metric_id) DO UPDATE SET last_pull_time = excluded.last_pull_time, \
         last_success_time = excluded.last_success_time, last_stored = excluded.last_stored, \
         last_refused = excluded.last_refused, last_error = excluded.last_error",
    )?
    .execute(params![
        p.metric_id,
        p.last_pull_time.as_ref().map(nanos),
        p.last_success_time.as_ref().map(nanos),
        p.last_stored,
        p.last_refused,
        p.last_error,
    ])?;
    Ok(())
}

/// Writes a whole [`ModelWrite`] inside `tx` (the caller commits): puts
/// first, in reference order, then deletes, dependents first.
fn write_model(
    tx: &rusqlite::Transaction<'_>,
    w: &ModelWrite,
) -> Attempt<Vec<(String, ObservationSummary)>> {
    for s in &w.sources {
        put_source(tx, s)?;
    }
    for g in &w.goals {
        put_goal(tx, g)?;
    }
    for m in &w.metrics {
        put_metric(tx, m)?;
    }
    let mut touched: BTreeMap<&str, ()> = BTreeMap::new();
    {
        let mut put = tx.prepare_cached(
            "INSERT INTO observations (metric_id, observe_time, value) VALUES (?1, ?2, ?3) \
             ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = excluded.value",
        )?;
        for o in &w.observations {
            put.execute(params![o.metric_id, nanos(&o.observe_time), o.value])?;
            touched.insert(&o.metric_id, ());
        }
    }
    for s in &w.segments {
        customers::put_segment(tx, s)?;
    }
    for o in &w.outcomes {
        customers::put_outcome(tx, o)?;
    }
    let waves_touched = customers::put_waves(tx, &w.waves)?;
    for h in &w.hypotheses {
        put_hypothesis(tx, h)?;
    }
    let items = ItemWrite {
        items: w.items.clone(),
        remove_links: w.remove_links.clone(),
        put_links: w.links.clone(),
        sync_state: None,
        split: None,
        restore: Vec::new(),
        remove: Vec::new(),
    };
    write::write_items(tx, &items)?;
    for id in &w.delete_hypotheses {
        tx.execute("DELETE FROM links WHERE hypothesis_id = ?1", [id])?;
        tx.execute("DELETE FROM hypotheses WHERE id = ?1", [id])?;
    }
    for id in &w.delete_outcomes {
        customers::delete_outcome(tx, id)?;
    }
    for id in &w.delete_segments {
        tx.execute("DELETE FROM segments WHERE id = ?1", [id])?;
    }
    for id in &w.delete_metrics {
        tx.execute("DELETE FROM metrics WHERE id = ?1", [id])?;
    }
    for id in &w.delete_goals {
        tx.execute("DELETE FROM goals WHERE id = ?1", [id])?;
    }
    for id in &w.delete_sources {
        tx.execute("DELETE FROM items WHERE source_id = ?1", [id])?;
        tx.execute("DELETE FROM sources WHERE id = ?1", [id])?;
    }
    for m in &waves_touched {
        touched.insert(m, ());
    }
    if !w.insights.is_empty() {
        insights::put(tx, &w.insights, &chrono::Utc::now())?;
    }
    let mut out = Vec::with_capacity(touched.len());
    for m in touched.keys() {
        out.push((m.to_string(), observation_summary(tx, m)?));
    }
    Ok(out)
}

#[async_trait]
impl Store for SqliteStore {
    async fn open(config: &Config) -> Result<Self> {
        SqliteStore::open_with(&config.db, &config.store).await
    }

    async fn close(&self) {
        self.db.close().await;
    }

    fn write_health(&self) -> tokio::sync::watch::Receiver<WriteHealth> {
        self.db.health()
    }

    async fn check_health(&self) {
        self.db.check().await;
    }

    async fn load(&self) -> Result<Load> {
        // The scans start first, so that reading them overlaps with the model.
        let batches = load::read_rows(self.db.path(), self.db.settings());
        let (model, hint) = self
            .db
            .read("read the model at start-up", |c| {
                Ok((load::model(c)?, load::item_count_hint(c)?))
            })
            .await?;
        Ok(Load::new(model, hint, batches))
    }

    async fn put_source(&self, s: &Source) -> Result<()> {
        let s = s.clone();
        self.db
            .write("store a source", move |tx| put_source(tx, &s))
            .await
    }

    async fn delete_source(&self, id: &str) -> Result<u64> {
        let id = id.to_string();
        self.db
            .write("delete a source", move |tx| {
                let n = tx.execute("DELETE FROM items WHERE source_id = ?1", [&id])?;
                tx.execute("DELETE FROM sources WHERE id = ?1", [&id])?;
                Ok(n as u64)
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
            items,
            remove_links: remove_links.to_vec(),
            put_links: put_links.to_vec(),
            sync_state: sync_state.cloned(),
            restore: restore.to_vec(),
            remove: remove.to_vec(),
            split: None,
        };
        self.db
            .write("upsert items", move |tx| Ok(write::write_items(tx, &w)?))
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
            items,
            remove_links: remove_links.to_vec(),
            put_links: put_links.to_vec(),
            sync_state: None,
            restore: Vec::new(),
            remove: Vec::new(),
            split: Some(split.clone()),
        };
        self.db
            .write("apply a split", move |tx| Ok(write::write_items(tx, &w)?))
            .await
    }

    async fn list_item_splits(&self) -> Result<Vec<ItemSplit>> {
        self.db
            .read("list item splits", |c| {
                query_all(
                    c,
                    "SELECT item_key, plan_kind, hypothesis_ids, create_time FROM item_splits \
                     ORDER BY item_key",
                    [],
                    |r| {
                        // Sorted for `ItemSplit::moved`, whatever order
                        // the migration's JSON aggregate kept.
                        let mut hypothesis_ids: Vec<String> =
                            parse_json(text(r, "hypothesis_ids")?)?;
                        hypothesis_ids.sort();
                        hypothesis_ids.dedup();
                        Ok(ItemSplit {
                            item_key: r.get("item_key")?,
                            plan_kind: r.get("plan_kind")?,
                            hypothesis_ids,
                            create_time: time(r.get("create_time")?),
                        })
                    },
                )
            })
            .await
    }

    async fn record_insights(&self, insights: &[Insight], now: Time) -> Result<()> {
        let insights = insights.to_vec();
        self.db
            .write("record insights", move |tx| {
                insights::put(tx, &insights, &now)
            })
            .await
    }

    async fn get_insights(&self, keys: &[(String, String)]) -> Result<Vec<Insight>> {
        let keys = keys.to_vec();
        self.db
            .read("read insights", move |c| insights::get(c, &keys))
            .await
    }

    async fn list_all_insights(&self) -> Result<Vec<Insight>> {
        self.db.read("list insights", insights::all).await
    }

    async fn forget_customer(&self, customer: &str) -> Result<u64> {
        let customer = customer.to_string();
        self.db
            .write("forget a customer's insights", move |tx| {
                insights::forget(tx, &customer)
            })
            .await
    }

    async fn put_release(&self, rel: &Release) -> Result<()> {
        let rel = rel.clone();
        self.db
            .write("store a release", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO releases (id, release_time, item_keys, origin, note, create_time) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    rel.id,
                    nanos(&rel.time),
                    json(&rel.item_keys),
                    enum_str(&rel.origin),
                    rel.note,
                    nanos(&chrono::Utc::now()),
                ])?;
                Ok(())
            })
            .await
    }

    async fn list_releases(&self) -> Result<Vec<Release>> {
        self.db
            .read("list releases", |c| {
                query_all(
                    c,
                    "SELECT * FROM releases ORDER BY release_time, id",
                    [],
                    |r| {
                        Ok(Release {
                            id: r.get("id")?,
                            time: time(r.get("release_time")?),
                            item_keys: parse_json(text(r, "item_keys")?)?,
                            origin: parse_enum(text(r, "origin")?)?,
                            note: r.get("note")?,
                        })
                    },
                )
            })
            .await
    }

    async fn closed_items(&self) -> Result<Vec<(String, Time)>> {
        self.db
            .read("list closed items", |c| {
                query_all(
                    c,
                    "SELECT key, close_time FROM items WHERE state = 'closed' AND close_time IS NOT NULL ORDER BY key",
                    [],
                    |r| Ok((r.get(0)?, time(r.get(1)?))),
                )
            })
            .await
    }

    async fn put_experiment(&self, e: &Experiment) -> Result<()> {
        let e = e.clone();
        self.db
            .write("store an experiment", move |tx| {
                tx.prepare_cached(
                    "INSERT INTO experiments (id, hypothesis_id, lift, ci_low, ci_high, result_time, source) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    e.id,
                    e.hypothesis_id,
                    e.lift,
                    e.ci_low,
                    e.ci_high,
                    nanos(&e.time),
                    e.source,
                ])?;
                Ok(())
            })
            .await
    }

    async fn list_experiments(&self) -> Result<Vec<Experiment>> {
        self.db
            .read("list experiments", |c| {
                query_all(
                    c,
                    "SELECT * FROM experiments ORDER BY result_time, id",
                    [],
                    |r| {
                        Ok(Experiment {
                            id: r.get("id")?,
                            hypothesis_id: r.get("hypothesis_id")?,
                            lift: r.get("lift")?,
                            ci_low: r.get("ci_low")?,
                            ci_high: r.get("ci_high")?,
                            time: time(r.get("result_time")?),
                            source: r.get("source")?,
                        })
                    },
                )
            })
            .await
    }

    async fn list_observations(&self, metric_id: &str) -> Result<Vec<(Time, f64)>> {
        let metric_id = metric_id.to_string();
        self.db
            .read("list observations", move |c| {
                query_all(
                    c,
                    "SELECT observe_time, value FROM observations WHERE metric_id = ?1 ORDER BY observe_time",
                    [&metric_id],
                    |r| Ok((time(r.get(0)?), r.get(1)?)),
                )
            })
            .await
    }

    async fn record_evidence(
        &self,
        evidence: &[Evidence],
        hypotheses: &[Hypothesis],
    ) -> Result<()> {
        let (evidence, hypotheses) = (evidence.to_vec(), hypotheses.to_vec());
        self.db
            .write("record evidence", move |tx| {
                let mut put = tx.prepare_cached(
                    "INSERT INTO evidence (hypothesis_id, subject_id, method, outcome, realized_effect, expected_effect, \
                     confounded, step, points_before, points_after, confidence_before, confidence_after, status_after, \
                     reason, record_time, step_se, delivered, log_likelihood_ratio) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
                     ON CONFLICT (hypothesis_id, subject_id) DO UPDATE SET method = excluded.method, \
                     outcome = excluded.outcome, realized_effect = excluded.realized_effect, \
                     expected_effect = excluded.expected_effect, confounded = excluded.confounded, step = excluded.step, \
                     points_before = excluded.points_before, points_after = excluded.points_after, \
                     confidence_before = excluded.confidence_before, confidence_after = excluded.confidence_after, \
                     status_after = excluded.status_after, reason = excluded.reason, record_time = excluded.record_time, \
                     step_se = excluded.step_se, delivered = excluded.delivered, \
                     log_likelihood_ratio = excluded.log_likelihood_ratio",
                )?;
                for e in &evidence {
                    put.execute(params![
                        e.hypothesis_id,
                        e.subject_id,
                        enum_str(&e.method),
                        enum_str(&e.outcome),
                        e.realized_effect,
                        e.expected_effect,
                        e.confounded,
                        e.step,
                        e.points_before,
                        e.points_after,
                        e.confidence_before,
                        e.confidence_after,
                        enum_str(&e.status_after),
                        e.reason,
                        nanos(&e.record_time),
                        e.step_se,
                        e.delivered,
                        e.log_likelihood_ratio,
                    ])?;
                }
                for h in &hypotheses {
                    put_hypothesis(tx, h)?;
                }
                Ok(())
            })
            .await
    }

    async fn list_evidence(&self, hypothesis_id: Option<&str>) -> Result<Vec<Evidence>> {
        let hypothesis_id = hypothesis_id.map(str::to_string);
        self.db
            .read("list evidence", move |c| match &hypothesis_id {
                Some(h) => query_all(
                    c,
                    "SELECT * FROM evidence WHERE hypothesis_id = ?1 ORDER BY record_time DESC, subject_id",
                    [h],
                    evidence_from_row,
                ),
                None => query_all(
                    c,
                    "SELECT * FROM evidence ORDER BY record_time DESC, hypothesis_id, subject_id",
                    [],
                    evidence_from_row,
                ),
            })
            .await
    }

    async fn get_sync_state(&self, source_id: &str) -> Result<Option<SyncState>> {
        let source_id = source_id.to_string();
        self.db
            .read("read a sync state", move |c| {
                let mut stmt = c.prepare_cached("SELECT * FROM sync_state WHERE source_id = ?1")?;
                let mut rows = stmt.query([&source_id])?;
                let Some(r) = rows.next()? else {
                    return Ok(None);
                };
                Ok(Some(SyncState {
                    source_id: r.get("source_id")?,
                    cursor: SyncCursor {
                        time: opt_time(r.get("cursor_time")?),
                        ids: parse_json(text(r, "cursor_ids")?)?,
                    },
                    etag: r.get("etag")?,
                    etag_url: r.get("etag_url")?,
                    state: parse_enum(text(r, "state")?)?,
                    last_start_time: opt_time(r.get("last_start_time")?),
                    last_finish_time: opt_time(r.get("last_finish_time")?),
                    last_error: r.get("last_error")?,
                    last_request_count: r.get("last_request_count")?,
                    last_upserted_count: r.get("last_upserted_count")?,
                }))
            })
            .await
    }

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        let state = state.clone();
        self.db
            .write("store a sync state", move |tx| {
                Ok(write::put_sync_state(tx, &state)?)
            })
            .await
    }

    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>> {
        let keys = keys.to_vec();
        self.db
            .read("read items", move |c| {
                let mut found: BTreeMap<String, Item> = BTreeMap::new();
                // Chunked to stay under SQLite's bound-parameter limit.
                for chunk in keys.chunks(500) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!("SELECT * FROM items WHERE key IN ({marks})");
                    for item in query_all(c, &sql, params_from_iter(chunk), item_from_row)? {
                        found.insert(item.key(), item);
                    }
                }
                Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
            })
            .await
    }

    async fn links_of_items(&self, keys: &[String]) -> Result<Vec<Link>> {
        let keys = keys.to_vec();
        self.db
            .read("read the links of items", move |c| {
                let mut out = Vec::new();
                // Chunked to stay under SQLite's bound-parameter limit.
                for chunk in keys.chunks(500) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT {} FROM links WHERE item_key IN ({marks})",
                        load::LINK_COLUMNS
                    );
                    out.extend(query_all(c, &sql, params_from_iter(chunk), load::link)?);
                }
                Ok(out)
            })
            .await
    }

    async fn item_removals(&self, keys: &[String]) -> Result<Vec<(String, Removal)>> {
        let keys = keys.to_vec();
        self.db
            .read("read item removals", move |c| {
                let mut out = Vec::new();
                // Chunked to stay under SQLite's bound-parameter limit.
                for chunk in keys.chunks(500) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT item_key, remove_time, reason, detail FROM item_removals \
                         WHERE item_key IN ({marks})"
                    );
                    out.extend(query_all(c, &sql, params_from_iter(chunk), |r| {
                        Ok((
                            r.get(0)?,
                            Removal {
                                remove_time: time(r.get(1)?),
                                reason: parse_enum(text(r, "reason")?)?,
                                detail: r.get(3)?,
                            },
                        ))
                    })?);
                }
                Ok(out)
            })
            .await
    }

    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>> {
        let (source_id, needle) = (source_id.to_string(), text.to_string());
        self.db
            .read("search item bodies", move |c| {
                query_all(
                    c,
                    "SELECT * FROM items WHERE source_id = ?1 AND instr(body, ?2) > 0 ORDER BY key",
                    [&source_id, &needle],
                    item_from_row,
                )
            })
            .await
    }

    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Item>> {
        let mut sql = String::from("SELECT * FROM items WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = &filter.source_id {
            sql.push_str(" AND source_id = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(st) = &filter.state {
            sql.push_str(" AND state = ?");
            args.push(Value::Text(enum_str(st)));
        }
        if let Some(l) = &filter.label {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(items.labels) WHERE json_each.value = ?)",
            );
            args.push(Value::Text(l.clone()));
        }
        if !filter.include_removed {
            sql.push_str(
                " AND NOT EXISTS (SELECT 1 FROM item_removals r WHERE r.item_key = items.key)",
            );
        }
        if let Some(a) = after {
            sql.push_str(" AND key > ?");
            args.push(Value::Text(a.to_string()));
        }
        sql.push_str(" ORDER BY key LIMIT ?");
        args.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        self.db
            .read("list items", move |c| {
                let mut stmt = c.prepare_cached(&sql)?;
                let mut rows = stmt.query(params_from_iter(args))?;
                let (mut out, mut bytes) = (Vec::new(), 0usize);
                while bytes < max_bytes
                    && let Some(r) = rows.next()?
                {
                    let item = item_from_row(r)?;
                    bytes = bytes.saturating_add(item.text_len());
                    out.push(item);
                }
                Ok(out)
            })
            .await
    }

    async fn put_goal(&self, g: &Goal) -> Result<()> {
        let g = g.clone();
        self.db
            .write("store a goal", move |tx| put_goal(tx, &g))
            .await
    }

    async fn delete_goal(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write("delete a goal", move |tx| {
                tx.execute("DELETE FROM goals WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn put_metric(&self, m: &Metric) -> Result<()> {
        let m = m.clone();
        self.db
            .write("store a metric", move |tx| put_metric(tx, &m))
            .await
    }

    async fn delete_metric(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write("delete a metric", move |tx| {
                tx.execute("DELETE FROM metrics WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        let observations = observations.to_vec();
        self.db
            .write("record observations", move |tx| {
                let mut touched: BTreeMap<&str, ()> = BTreeMap::new();
                let mut put = tx.prepare_cached(
                    "INSERT INTO observations (metric_id, observe_time, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = excluded.value",
                )?;
                for o in &observations {
                    put.execute(params![o.metric_id, nanos(&o.observe_time), o.value])?;
                    touched.insert(&o.metric_id, ());
                }
                let mut out = Vec::with_capacity(touched.len());
                for m in touched.keys() {
                    out.push((m.to_string(), observation_summary(tx, m)?));
                }
                Ok(out)
            })
            .await
    }

    async fn record_pull(
        &self,
        observations: &[Observation],
        status: &PullStatus,
    ) -> Result<Option<ObservationSummary>> {
        let observations = observations.to_vec();
        let status = status.clone();
        self.db
            .write("store a metric pull", move |tx| {
                let mut put = tx.prepare_cached(
                    "INSERT INTO observations (metric_id, observe_time, value) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = excluded.value",
                )?;
                for o in &observations {
                    put.execute(params![o.metric_id, nanos(&o.observe_time), o.value])?;
                }
                put_metric_pull(tx, &status)?;
                if observations.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(observation_summary(tx, &status.metric_id)?))
                }
            })
            .await
    }

    async fn list_metric_pulls(&self) -> Result<Vec<PullStatus>> {
        self.db
            .read("read metric pulls", move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT metric_id, last_pull_time, last_success_time, last_stored, last_refused, last_error \
                     FROM metric_pulls ORDER BY metric_id",
                )?;
                let mut rows = stmt.query([])?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    let pull: Option<i64> = r.get(1)?;
                    let success: Option<i64> = r.get(2)?;
                    out.push(PullStatus {
                        metric_id: r.get(0)?,
                        last_pull_time: pull.map(time),
                        last_success_time: success.map(time),
                        last_stored: r.get(3)?,
                        last_refused: r.get(4)?,
                        last_error: r.get(5)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn apply_model(&self, w: &ModelWrite) -> Result<Vec<(String, ObservationSummary)>> {
        let w = w.clone();
        self.db
            .write("apply a value model", move |tx| write_model(tx, &w))
            .await
    }

    async fn put_hypothesis(&self, h: &Hypothesis) -> Result<()> {
        let h = h.clone();
        self.db
            .write("store a hypothesis", move |tx| put_hypothesis(tx, &h))
            .await
    }

    async fn delete_hypothesis(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.db
            .write("delete a hypothesis", move |tx| {
                tx.execute("DELETE FROM links WHERE hypothesis_id = ?1", [&id])?;
                tx.execute("DELETE FROM hypotheses WHERE id = ?1", [&id])?;
                Ok(())
            })
            .await
    }

    async fn put_link(&self, l: &Link) -> Result<()> {
        let l = l.clone();
        self.db
            .write("store a link", move |tx| {
                Ok(write::put_links(tx, std::slice::from_ref(&l))?)
            })
            .await
    }

    async fn delete_link(&self, item_key: &str, hypothesis_id: &str) -> Result<()> {
        let (item_key, hypothesis_id) = (item_key.to_string(), hypothesis_id.to_string());
        self.db
            .write("delete a link", move |tx| {
                tx.execute(
                    "DELETE FROM links WHERE item_key = ?1 AND hypothesis_id = ?2",
                    [&item_key, &hypothesis_id],
                )?;
                Ok(())
            })
            .await
    }

    async fn put_ranking_snapshot(
        &self,
        snapshot: &RankingSnapshot,
        keep: &SnapshotRetention,
    ) -> Result<SnapshotSummary> {
        let (snapshot, keep) = (snapshot.clone(), keep.clone());
        self.db
            .write("store a ranking snapshot", move |tx| {
                history::put(tx, &snapshot, &keep)
            })
            .await
    }

    async fn prune_ranking_snapshots(&self, keep: &SnapshotRetention) -> Result<usize> {
        let keep = keep.clone();
        self.db
            .write("prune ranking snapshots", move |tx| {
                history::prune(tx, &keep)
            })
            .await
    }

    async fn list_ranking_snapshots(
        &self,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SnapshotSummary>> {
        self.db
            .read("list ranking snapshots", move |c| {
                history::list(c, before_id, limit)
            })
            .await
    }

    async fn ranking_snapshot_at(&self, at: Option<Time>) -> Result<Option<RankingSnapshot>> {
        self.db
            .read("read a ranking snapshot", move |c| history::at(c, at))
            .await
    }

    async fn earliest_ranking_snapshot(&self) -> Result<Option<SnapshotSummary>> {
        self.db
            .read("read the earliest ranking snapshot", history::earliest)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Direction, GoalLevel, HypothesisStatus, ItemState, KeyValueArea, LinkOrigin, LinkRules,
        TrackerKind,
    };
    use std::collections::HashMap;

    /// Doubles whose decimal forms are awkward: long expansions, the
    /// smallest and largest, and the tiny ones SQLite cannot convert exactly.
    fn awkward(rng: &mut fastrand::Rng) -> Vec<f64> {
        let mut v = vec![
            0.1 + 0.2,
            1.0 / 3.0,
            2.0 / 3.0,
            7.0 / 9.0,
            0.30000000000000004,
            1e-300,
            5e-324,
            f64::MIN_POSITIVE,
            1e-7,
            1e-6,
            1e15,
            1e300,
            f64::MAX,
            2.5,
            13.0,
        ];
        v.extend((0..500).map(|_| rng.f64()));
        v.extend((0..500).map(|_| rng.f64() * 40.0));
        v.extend((0..200).map(|_| (1.0 + rng.f64()) * 2f64.powi(rng.i32(-1070..1000))));
        v
    }

    #[tokio::test]
    async fn start_up_reads_back_every_real_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.sqlite"))
            .await
            .unwrap();
        let t = chrono::Utc::now();
        store
            .put_source(&Source {
                id: "s".into(),
                kind: TrackerKind::Github,
                base_url: String::new(),
                project_key: String::new(),
                token_env: String::new(),
                link_rules: LinkRules::default(),
                estimate_field: String::new(),
                create_time: t,
                update_time: t,
            })
            .await
            .unwrap();
        store
            .put_goal(&Goal {
                id: "G".into(),
                title: String::new(),
                description: String::new(),
                level: GoalLevel::Strategic,
                parent_id: String::new(),
                key_value_area: KeyValueArea::CurrentValue,
                weight: 1.0,
                create_time: t,
                update_time: t,
            })
            .await
            .unwrap();
        store
            .put_metric(&Metric {
                id: "m".into(),
                name: String::new(),
                unit: String::new(),
                direction: Direction::HigherIsBetter,
                baseline: 0.0,
                target: 1.0,
                cadence: None,
                source: None,
                create_time: t,
                update_time: t,
            })
            .await
            .unwrap();
        store
            .put_hypothesis(&Hypothesis {
                id: "H".into(),
                statement: String::new(),
                goal_id: "G".into(),
                metric_id: "m".into(),
                expected_effect: 0.5,
                confidence: 0.5,
                status: HypothesisStatus::Testing,
                check_time: None,
                create_time: t,
                update_time: t,
            })
            .await
            .unwrap();
        let values = awkward(&mut fastrand::Rng::with_seed(5));
        let items: Vec<Item> = values
            .iter()
            .enumerate()
            .map(|(i, &x)| Item {
                source_id: "s".into(),
                external_id: i.to_string(),
                title: format!("tab\there \"quoted\" \\ é {i}"),
                body: String::new(),
                url: String::new(),
                state: ItemState::Open,
                labels: vec!["a\"b".into()],
                estimate: (i % 5 != 0).then_some(x),
                parent_key: String::new(),
                create_time: Some(t),
                update_time: None,
                close_time: None,
                votes: None,
            })
            .collect();
        let links: Vec<Link> = items
            .iter()
            .zip(&values)
            .map(|(it, &x)| Link {
                item_key: it.key(),
                hypothesis_id: "H".into(),
                contribution: x,
                origin: LinkOrigin::Api,
                rationale: "why".into(),
                create_time: t,
                update_time: t,
            })
            .collect();
        store
            .upsert_items(items.clone(), &[], &links, None)
            .await
            .unwrap();

        let (_, loaded_items, loaded_links) =
            store.load().await.unwrap().collect_all().await.unwrap();
        let loaded: HashMap<&str, &crate::store::ItemRow> =
            loaded_items.iter().map(|r| (r.key.as_str(), r)).collect();
        for it in &items {
            let f = loaded[it.key().as_str()];
            assert_eq!(f.estimate.map(f64::to_bits), it.estimate.map(f64::to_bits));
            assert_eq!((&f.title, &f.labels), (&it.title, &it.labels));
        }
        let contributions: HashMap<&str, f64> = loaded_links
            .iter()
            .map(|l| (l.item_key.as_str(), l.contribution))
            .collect();
        for l in &links {
            assert_eq!(
                contributions[l.item_key.as_str()].to_bits(),
                l.contribution.to_bits(),
                "{}",
                l.contribution
            );
        }
        assert_eq!(loaded_links.len(), links.len());
    }
}

/// Databases written before the move to rusqlite were migrated by sqlx.
#[cfg(test)]
mod sqlx_adoption {
    use super::*;

    const STEPS: [(i64, &str, &str); 4] = [
        (
            1,
            "initial",
            include_str!("../../migrations/sqlite/0001_initial.sql"),
        ),
        (
            2,
            "sync state",
            include_str!("../../migrations/sqlite/0002_sync_state.sql"),
        ),
        (
            3,
            "releases evidence",
            include_str!("../../migrations/sqlite/0003_releases_evidence.sql"),
        ),
        (
            4,
            "drop links by hypothesis",
            include_str!("../../migrations/sqlite/0004_drop_links_by_hypothesis.sql"),
        ),
    ];

    /// A database as sqlx left it after applying the first `applied` steps
    /// (its table and rows as sqlx 0.9 writes them), with one source in it.
    fn migrated_by_sqlx(path: &Path, applied: usize) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE _sqlx_migrations (
                 version BIGINT PRIMARY KEY,
                 description TEXT NOT NULL,
                 installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
                 success BOOLEAN NOT NULL,
                 checksum BLOB NOT NULL,
                 execution_time BIGINT NOT NULL
             );",
        )
        .unwrap();
        for (version, description, sql) in &STEPS[..applied] {
            conn.execute_batch(sql).unwrap();
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (?1, ?2, TRUE, ?3, 1000)",
                params![version, description, vec![0u8; 48]],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO sources (id, kind, base_url, project_key, token_env, link_rules, \
             estimate_field, create_time, update_time) \
             VALUES ('gh', 'github', '', 'acme/app', '', ?1, '', 1, 2)",
            [json(&crate::domain::LinkRules::default())],
        )
        .unwrap();
    }

    fn user_version(path: &Path) -> i64 {
        Connection::open(path)
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_database_migrated_by_sqlx_opens_with_its_data_and_nothing_reapplied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        migrated_by_sqlx(&path, 4);
        // Step 1 creates tables without IF NOT EXISTS: applied again, the
        // open would fail.
        let store = SqliteStore::open(&path).await.unwrap();
        let (model, _, _) = store.load().await.unwrap().collect_all().await.unwrap();
        assert_eq!(model.sources.len(), 1, "the source is still there");
        assert_eq!(model.sources[0].project_key, "acme/app");
        store.close().await;
        // Adopted at sqlx's last step, then brought up to date.
        assert_eq!(user_version(&path), migrate::latest());
        // And it opens again, now by its user_version.
        let store = SqliteStore::open(&path).await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn a_database_sqlx_migrated_part_way_gets_the_remaining_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        migrated_by_sqlx(&path, 2);
        let store = SqliteStore::open(&path).await.unwrap();
        // Step 3 made the releases table.
        assert!(store.list_releases().await.unwrap().is_empty());
        let (model, _, _) = store.load().await.unwrap().collect_all().await.unwrap();
        assert_eq!(model.sources.len(), 1);
        store.close().await;
        // Adopted at sqlx's last step, then brought up to date.
        assert_eq!(user_version(&path), migrate::latest());
    }

    #[tokio::test]
    async fn a_failed_sqlx_step_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        migrated_by_sqlx(&path, 3);
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE _sqlx_migrations SET success = FALSE WHERE version = 3",
                [],
            )
            .unwrap();
        let err = SqliteStore::open(&path).await.unwrap_err();
        assert!(
            matches!(err, crate::store::StoreError::Migrate { .. }),
            "{err:?}"
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("migration 3 as failed"), "{cause}");
    }
}

/// Whether writes can succeed: each failure by its meaning, health that
/// follows, and no write acknowledged into a file that is gone.
#[cfg(test)]
mod write_health {
    use super::*;
    use crate::domain::{GoalLevel, ItemState, KeyValueArea, LinkRules, TrackerKind};
    use crate::store::StoreError;

    fn goal(id: &str) -> Goal {
        let t = chrono::Utc::now();
        Goal {
            id: id.into(),
            title: String::new(),
            description: String::new(),
            level: GoalLevel::Strategic,
            parent_id: String::new(),
            key_value_area: KeyValueArea::CurrentValue,
            weight: 1.0,
            create_time: t,
            update_time: t,
        }
    }

    fn remove_database(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("rm {p:?}: {e}"));
        }
    }

    #[tokio::test]
    async fn a_deleted_file_refuses_every_write_even_once_a_file_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = SqliteStore::open(&path).await.unwrap();
        let health = store.write_health();
        store.put_goal(&goal("before")).await.unwrap();
        assert_eq!(*health.borrow(), WriteHealth::Writable);

        remove_database(&path);
        let err = store.put_goal(&goal("after")).await.unwrap_err();
        assert!(matches!(err, StoreError::Gone { .. }), "{err:?}");
        assert!(err.to_string().contains("s.sqlite"), "{err}");
        assert_eq!(*health.borrow(), WriteHealth::Gone);

        // A file back at the path (an empty one here) is not the one the
        // index follows: still refused, the check does not clear it.
        SqliteStore::open(&path).await.unwrap().close().await;
        let err = store.put_goal(&goal("later")).await.unwrap_err();
        assert!(matches!(err, StoreError::Gone { .. }), "{err:?}");
        store.check_health().await;
        assert_eq!(*health.borrow(), WriteHealth::Gone);
        store.close().await;

        let reopened = SqliteStore::open(&path).await.unwrap();
        let (model, _, _) = reopened.load().await.unwrap().collect_all().await.unwrap();
        assert!(
            model.goals.is_empty(),
            "no write after the deletion went into the new file: {:?}",
            model.goals
        );
    }

    #[tokio::test]
    async fn the_check_notices_a_deleted_or_replaced_file_without_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let store = SqliteStore::open(&path).await.unwrap();
        let health = store.write_health();
        store.check_health().await;
        assert_eq!(*health.borrow(), WriteHealth::Writable);

        // Replaced: another database renamed over the path.
        let other = dir.path().join("other.sqlite");
        SqliteStore::open(&other).await.unwrap().close().await;
        std::fs::rename(&other, &path).unwrap();
        store.check_health().await;
        assert_eq!(*health.borrow(), WriteHealth::Gone);
        let err = store.put_goal(&goal("G")).await.unwrap_err();
        assert!(matches!(err, StoreError::Gone { .. }), "{err:?}");
        store.close().await;
    }

    #[tokio::test]
    async fn a_read_only_database_fails_writes_as_read_only_until_it_is_writable() {
        // chmod does not stop root; a write connection that SQLite opened
        // read-only is what a read-only file or mount gives.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        SqliteStore::open(&path).await.unwrap().close().await;
        let settings = Settings::default();
        let read_only = settings.read_only_writer.clone();
        read_only.store(true, std::sync::atomic::Ordering::Relaxed);
        let store = SqliteStore::open_settings(&path, settings).await.unwrap();
        let health = store.write_health();
        let err = store.put_goal(&goal("G")).await.unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err:?}");
        assert_eq!(*health.borrow(), WriteHealth::ReadOnly);
        store.check_health().await;
        assert_eq!(
            *health.borrow(),
            WriteHealth::ReadOnly,
            "the probe fails too"
        );

        // Writable again: the check's probe reconnects and succeeds.
        read_only.store(false, std::sync::atomic::Ordering::Relaxed);
        store.check_health().await;
        assert_eq!(*health.borrow(), WriteHealth::Writable);
        store.put_goal(&goal("G")).await.unwrap();
        store.close().await;
    }

    #[tokio::test]
    async fn a_full_database_is_full_until_a_write_succeeds_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let config = StoreConfig {
            max_size_mib: 1,
            ..StoreConfig::default()
        };
        let store = SqliteStore::open_with(&path, &config).await.unwrap();
        let health = store.write_health();
        let t = chrono::Utc::now();
        store
            .put_source(&Source {
                id: "s".into(),
                kind: TrackerKind::Github,
                base_url: String::new(),
                project_key: String::new(),
                token_env: String::new(),
                link_rules: LinkRules::default(),
                estimate_field: String::new(),
                create_time: t,
                update_time: t,
            })
            .await
            .unwrap();
        let item = |i: usize| Item {
            source_id: "s".into(),
            external_id: i.to_string(),
            title: String::new(),
            body: "x".repeat(100 << 10),
            url: String::new(),
            state: ItemState::Open,
            labels: Vec::new(),
            estimate: None,
            parent_key: String::new(),
            create_time: None,
            update_time: None,
            close_time: None,
            votes: None,
        };
        let mut written = 0;
        let err = loop {
            assert!(written < 20, "1 MiB holds fewer than 20 bodies of 100 KiB");
            match store
                .upsert_items(vec![item(written)], &[], &[], None)
                .await
            {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
        };
        assert!(written > 0);
        assert!(matches!(err, StoreError::Full { .. }), "{err:?}");
        assert_eq!(*health.borrow(), WriteHealth::Full);
        store.check_health().await;
        assert_eq!(*health.borrow(), WriteHealth::Full);

        // Freeing space is a write that succeeds, and so are the next.
        store.delete_source("s").await.unwrap();
        assert_eq!(*health.borrow(), WriteHealth::Writable);
        store.put_goal(&goal("G")).await.unwrap();
    }
}
