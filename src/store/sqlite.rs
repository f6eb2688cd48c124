//! The embedded SQLite backend: one file, WAL journal, migrations applied at
//! open. Times are stored as Unix nanoseconds and enums as their snake_case
//! names, so rows are readable with the `sqlite3` shell.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{ItemFilter, Result, Store, StoreError};
use crate::domain::{
    Evidence, Experiment, Goal, Hypothesis, Item, Link, LinkRules, Metric, Observation,
    ObservationSummary, Release, Source, SyncCursor, SyncState, Time,
};
use crate::index::{IndexBuilder, ItemFacts, Snapshot};

mod write;

use write::{ItemWrite, Writer};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The database file, which start-up also reads on its own connections.
    path: PathBuf,
    /// The connection that writes items in bulk (see [`write`]).
    writer: Writer,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_path_buf(),
            writer: Writer::new(path),
        })
    }

    /// Closes the write connection and the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.writer.close();
        self.pool.close().await;
    }

    /// The value model without items and links: sources, goals, metrics
    /// with their observation summaries, hypotheses.
    async fn load_model(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        for r in sqlx::query("SELECT * FROM sources ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            snap.sources.push(Source {
                id: r.try_get("id")?,
                kind: parse_enum(r.try_get("kind")?)?,
                base_url: r.try_get("base_url")?,
                project_key: r.try_get("project_key")?,
                token_env: r.try_get("token_env")?,
                link_rules: parse_json::<LinkRules>(r.try_get("link_rules")?)?,
                estimate_field: r.try_get("estimate_field")?,
                create_time: time(r.try_get("create_time")?),
                update_time: time(r.try_get("update_time")?),
            });
        }
        for r in sqlx::query("SELECT * FROM goals ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            snap.goals.push(Goal {
                id: r.try_get("id")?,
                title: r.try_get("title")?,
                description: r.try_get("description")?,
                level: parse_enum(r.try_get("level")?)?,
                parent_id: r.try_get("parent_id")?,
                key_value_area: parse_enum(r.try_get("key_value_area")?)?,
                weight: r.try_get("weight")?,
                create_time: time(r.try_get("create_time")?),
                update_time: time(r.try_get("update_time")?),
            });
        }
        let mut summaries: BTreeMap<String, ObservationSummary> = BTreeMap::new();
        let rows = sqlx::query(
            "SELECT o.metric_id, o.observe_time, o.value, c.n FROM observations o \
             JOIN (SELECT metric_id, MAX(observe_time) AS t, COUNT(*) AS n FROM observations GROUP BY metric_id) c \
             ON o.metric_id = c.metric_id AND o.observe_time = c.t",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in rows {
            summaries.insert(
                r.try_get("metric_id")?,
                ObservationSummary {
                    latest: Some((time(r.try_get("observe_time")?), r.try_get("value")?)),
                    count: r.try_get("n")?,
                },
            );
        }
        for r in sqlx::query("SELECT * FROM metrics ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            let id: String = r.try_get("id")?;
            let cadence: Option<i64> = r.try_get("cadence_nanos")?;
            let summary = summaries.remove(&id).unwrap_or_default();
            snap.metrics.push((
                Metric {
                    id,
                    name: r.try_get("name")?,
                    unit: r.try_get("unit")?,
                    direction: parse_enum(r.try_get("direction")?)?,
                    baseline: r.try_get("baseline")?,
                    target: r.try_get("target")?,
                    cadence: cadence.map(chrono::Duration::nanoseconds),
                    create_time: time(r.try_get("create_time")?),
                    update_time: time(r.try_get("update_time")?),
                },
                summary,
            ));
        }
        for r in sqlx::query("SELECT * FROM hypotheses ORDER BY id")
            .fetch_all(&self.pool)
            .await?
        {
            snap.hypotheses.push(Hypothesis {
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
            });
        }
        Ok(snap)
    }
}

fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("domain enums serialize to strings, got {other:?}"),
    }
}

fn parse_enum<T: DeserializeOwned>(s: &str) -> Result<T> {
    use serde::de::IntoDeserializer;
    let d: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = s.into_deserializer();
    T::deserialize(d).map_err(|_| StoreError::Corrupt(format!("unknown enum value {s:?}")))
}

fn nanos(t: &Time) -> i64 {
    // The API refuses times outside the i64-nanosecond range (1677..2262).
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn time(n: i64) -> Time {
    DateTime::from_timestamp_nanos(n)
}

fn opt_time(n: Option<i64>) -> Option<Time> {
    n.map(time)
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| unreachable!("plain data always serializes: {e}"))
}

fn parse_json<T: DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad JSON column: {e}")))
}

fn item_from_row(r: &SqliteRow) -> Result<Item> {
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
    })
}

/// Rows per chunk when loading the big tables at start-up.
const LOAD_CHUNK: usize = 8192;

/// Rows of the two big tables, read in chunks at start-up.
enum Rows {
    Items(Vec<(String, ItemFacts)>),
    Links(Vec<Link>),
}

/// Starts reading items and links side by side, each on its own read-only
/// connection on a blocking thread; their chunks arrive on the receiver,
/// which closes after the last (or after an error, which it carries).
///
/// Start-up reads every item and link, so these two scans bypass the async
/// driver: through it, a row costs about a microsecond and a copy per
/// column, several times what the data itself costs. Rows come in rowid
/// order; the index does not need key order. A WAL database gives each
/// scan a consistent snapshot; both run before the server takes writes.
fn read_rows(path: &Path) -> tokio::sync::mpsc::Receiver<Result<Rows>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    for table in [Table::Items, Table::Links] {
        let (path, tx) = (path.to_path_buf(), tx.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = scan(&path, table, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
    }
    rx
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Items,
    Links,
}

fn scan_error(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt(format!("cannot read the database at start-up: {e}"))
}

/// Reads one table in chunks onto `tx`.
fn scan(path: &Path, table: Table, tx: &tokio::sync::mpsc::Sender<Result<Rows>>) -> Result<()> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(scan_error)?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(scan_error)?;
    let sql = match table {
        Table::Items => {
            "SELECT key, source_id, title, state, labels, estimate, parent_key FROM items"
        }
        Table::Links => {
            "SELECT item_key, hypothesis_id, contribution, origin, rationale, create_time, \
             update_time FROM links"
        }
    };
    let mut stmt = conn.prepare(sql).map_err(scan_error)?;
    let mut rows = stmt.query([]).map_err(scan_error)?;
    let (mut items, mut links) = (Vec::new(), Vec::new());
    loop {
        let row = rows.next().map_err(scan_error)?;
        if let Some(r) = row {
            match table {
                Table::Items => items.push(item_facts_from_scan(r).map_err(scan_error)??),
                Table::Links => links.push(link_from_scan(r).map_err(scan_error)??),
            }
        }
        let full = items.len() >= LOAD_CHUNK || links.len() >= LOAD_CHUNK;
        if full || row.is_none() {
            let chunk = match table {
                Table::Items => Rows::Items(std::mem::take(&mut items)),
                Table::Links => Rows::Links(std::mem::take(&mut links)),
            };
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Ok(()); // the reader gave up
            }
        }
        if row.is_none() {
            return Ok(());
        }
    }
}

fn item_facts_from_scan(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<(String, ItemFacts)>> {
    let state = r.get_ref(3)?.as_str()?;
    let labels = r.get_ref(4)?.as_str()?;
    let (state, labels) = match (parse_enum(state), parse_json(labels)) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    Ok(Ok((
        r.get(0)?,
        ItemFacts {
            source_id: r.get(1)?,
            title: r.get(2)?,
            state,
            labels,
            estimate: r.get(5)?,
            parent_key: r.get(6)?,
        },
    )))
}

fn link_from_scan(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Link>> {
    let origin = match parse_enum(r.get_ref(3)?.as_str()?) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(Link {
        item_key: r.get(0)?,
        hypothesis_id: r.get(1)?,
        contribution: r.get(2)?,
        origin,
        rationale: r.get(4)?,
        create_time: time(r.get(5)?),
        update_time: time(r.get(6)?),
    }))
}

async fn observation_summary(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    metric_id: &str,
) -> Result<ObservationSummary> {
    let latest = sqlx::query(
        "SELECT observe_time, value FROM observations WHERE metric_id = ? ORDER BY observe_time DESC LIMIT 1",
    )
    .bind(metric_id)
    .fetch_optional(&mut **tx)
    .await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM observations WHERE metric_id = ?")
        .bind(metric_id)
        .fetch_one(&mut **tx)
        .await?;
    let latest = match latest {
        Some(r) => Some((time(r.try_get("observe_time")?), r.try_get("value")?)),
        None => None,
    };
    Ok(ObservationSummary { latest, count })
}

async fn put_link(conn: &mut sqlx::SqliteConnection, l: &Link) -> Result<()> {
    sqlx::query(
        "INSERT INTO links (item_key, hypothesis_id, contribution, origin, rationale, create_time, update_time) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (item_key, hypothesis_id) DO UPDATE SET contribution = excluded.contribution, \
         origin = excluded.origin, rationale = excluded.rationale, update_time = excluded.update_time",
    )
    .bind(&l.item_key)
    .bind(&l.hypothesis_id)
    .bind(l.contribution)
    .bind(enum_str(&l.origin))
    .bind(&l.rationale)
    .bind(nanos(&l.create_time))
    .bind(nanos(&l.update_time))
    .execute(conn)
    .await?;
    Ok(())
}

async fn put_sync_state(conn: &mut sqlx::SqliteConnection, st: &SyncState) -> Result<()> {
    sqlx::query(
        "INSERT INTO sync_state (source_id, cursor_time, cursor_ids, etag, etag_url, state, last_start_time, \
         last_finish_time, last_error, last_request_count, last_upserted_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (source_id) DO UPDATE SET cursor_time = excluded.cursor_time, cursor_ids = excluded.cursor_ids, \
         etag = excluded.etag, etag_url = excluded.etag_url, state = excluded.state, \
         last_start_time = excluded.last_start_time, last_finish_time = excluded.last_finish_time, \
         last_error = excluded.last_error, last_request_count = excluded.last_request_count, \
         last_upserted_count = excluded.last_upserted_count",
    )
    .bind(&st.source_id)
    .bind(st.cursor.time.as_ref().map(nanos))
    .bind(json(&st.cursor.ids))
    .bind(&st.etag)
    .bind(&st.etag_url)
    .bind(enum_str(&st.state))
    .bind(st.last_start_time.as_ref().map(nanos))
    .bind(st.last_finish_time.as_ref().map(nanos))
    .bind(&st.last_error)
    .bind(st.last_request_count)
    .bind(st.last_upserted_count)
    .execute(conn)
    .await?;
    Ok(())
}

async fn put_hypothesis(conn: &mut sqlx::SqliteConnection, h: &Hypothesis) -> Result<()> {
    sqlx::query(
        "INSERT INTO hypotheses (id, statement, goal_id, metric_id, expected_effect, confidence, status, check_time, create_time, update_time) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET statement = excluded.statement, goal_id = excluded.goal_id, \
         metric_id = excluded.metric_id, expected_effect = excluded.expected_effect, confidence = excluded.confidence, \
         status = excluded.status, check_time = excluded.check_time, update_time = excluded.update_time",
    )
    .bind(&h.id)
    .bind(&h.statement)
    .bind(&h.goal_id)
    .bind(&h.metric_id)
    .bind(h.expected_effect)
    .bind(h.confidence)
    .bind(enum_str(&h.status))
    .bind(h.check_time.as_ref().map(nanos))
    .bind(nanos(&h.create_time))
    .bind(nanos(&h.update_time))
    .execute(conn)
    .await?;
    Ok(())
}

fn evidence_from_row(r: &SqliteRow) -> Result<Evidence> {
    Ok(Evidence {
        hypothesis_id: r.try_get("hypothesis_id")?,
        subject_id: r.try_get("subject_id")?,
        method: parse_enum(r.try_get("method")?)?,
        outcome: parse_enum(r.try_get("outcome")?)?,
        realized_effect: r.try_get("realized_effect")?,
        expected_effect: r.try_get("expected_effect")?,
        confounded: r.try_get("confounded")?,
        step: r.try_get("step")?,
        points_before: r.try_get("points_before")?,
        points_after: r.try_get("points_after")?,
        confidence_before: r.try_get("confidence_before")?,
        confidence_after: r.try_get("confidence_after")?,
        status_after: parse_enum(r.try_get("status_after")?)?,
        reason: r.try_get("reason")?,
        record_time: time(r.try_get("record_time")?),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn load(&self) -> Result<Snapshot> {
        let mut snap = self.load_model().await?;
        let mut rows = read_rows(&self.path);
        while let Some(chunk) = rows.recv().await {
            match chunk? {
                Rows::Items(v) => snap.items.extend(v),
                Rows::Links(v) => snap.links.extend(v),
            }
        }
        Ok(snap)
    }

    async fn load_into(&self, index: &mut IndexBuilder) -> Result<()> {
        let mut rows = read_rows(&self.path);
        let model = self.load_model().await?;
        index.model(model.sources, model.goals, model.metrics, model.hypotheses);
        // About how many items come: the rowid range, read off the b-tree's
        // ends without a scan.
        let (lo, hi): (Option<i64>, Option<i64>) =
            sqlx::query_as("SELECT min(rowid), max(rowid) FROM items")
                .fetch_one(&self.pool)
                .await?;
        if let (Some(lo), Some(hi)) = (lo, hi) {
            index.reserve(usize::try_from(hi.saturating_sub(lo).saturating_add(1)).unwrap_or(0));
        }
        // Indexing one chunk while the next ones are read and parsed.
        while let Some(chunk) = rows.recv().await {
            match chunk? {
                Rows::Items(v) => index.items(v),
                Rows::Links(v) => index.links(v),
            }
        }
        Ok(())
    }

    async fn put_source(&self, s: &Source) -> Result<()> {
        sqlx::query(
            "INSERT INTO sources (id, kind, base_url, project_key, token_env, link_rules, estimate_field, create_time, update_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url, \
             project_key = excluded.project_key, token_env = excluded.token_env, link_rules = excluded.link_rules, \
             estimate_field = excluded.estimate_field, update_time = excluded.update_time",
        )
        .bind(&s.id)
        .bind(enum_str(&s.kind))
        .bind(&s.base_url)
        .bind(&s.project_key)
        .bind(&s.token_env)
        .bind(json(&s.link_rules))
        .bind(&s.estimate_field)
        .bind(nanos(&s.create_time))
        .bind(nanos(&s.update_time))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_source(&self, id: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("DELETE FROM items WHERE source_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sources WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn upsert_items(
        &self,
        items: Vec<Item>,
        remove_links: &[(String, String)],
        put_links: &[Link],
        sync_state: Option<&SyncState>,
    ) -> Result<()> {
        self.writer
            .write(ItemWrite {
                items,
                remove_links: remove_links.to_vec(),
                put_links: put_links.to_vec(),
                sync_state: sync_state.cloned(),
            })
            .await
    }

    async fn put_release(&self, rel: &Release) -> Result<()> {
        sqlx::query(
            "INSERT INTO releases (id, release_time, item_keys, origin, note, create_time) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&rel.id)
        .bind(nanos(&rel.time))
        .bind(json(&rel.item_keys))
        .bind(enum_str(&rel.origin))
        .bind(&rel.note)
        .bind(nanos(&chrono::Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_releases(&self) -> Result<Vec<Release>> {
        sqlx::query("SELECT * FROM releases ORDER BY release_time, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Release {
                    id: r.try_get("id")?,
                    time: time(r.try_get("release_time")?),
                    item_keys: parse_json(r.try_get("item_keys")?)?,
                    origin: parse_enum(r.try_get("origin")?)?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    async fn closed_items(&self) -> Result<Vec<(String, Time)>> {
        sqlx::query("SELECT key, close_time FROM items WHERE state = 'closed' AND close_time IS NOT NULL ORDER BY key")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("key")?, time(r.try_get("close_time")?))))
            .collect()
    }

    async fn put_experiment(&self, e: &Experiment) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiments (id, hypothesis_id, lift, ci_low, ci_high, result_time, source) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.hypothesis_id)
        .bind(e.lift)
        .bind(e.ci_low)
        .bind(e.ci_high)
        .bind(nanos(&e.time))
        .bind(&e.source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_experiments(&self) -> Result<Vec<Experiment>> {
        sqlx::query("SELECT * FROM experiments ORDER BY result_time, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(Experiment {
                    id: r.try_get("id")?,
                    hypothesis_id: r.try_get("hypothesis_id")?,
                    lift: r.try_get("lift")?,
                    ci_low: r.try_get("ci_low")?,
                    ci_high: r.try_get("ci_high")?,
                    time: time(r.try_get("result_time")?),
                    source: r.try_get("source")?,
                })
            })
            .collect()
    }

    async fn list_observations(&self, metric_id: &str) -> Result<Vec<(Time, f64)>> {
        sqlx::query("SELECT observe_time, value FROM observations WHERE metric_id = ? ORDER BY observe_time")
            .bind(metric_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((time(r.try_get("observe_time")?), r.try_get("value")?)))
            .collect()
    }

    async fn record_evidence(
        &self,
        evidence: &[Evidence],
        hypotheses: &[Hypothesis],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for e in evidence {
            sqlx::query(
                "INSERT INTO evidence (hypothesis_id, subject_id, method, outcome, realized_effect, expected_effect, \
                 confounded, step, points_before, points_after, confidence_before, confidence_after, status_after, \
                 reason, record_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (hypothesis_id, subject_id) DO UPDATE SET method = excluded.method, \
                 outcome = excluded.outcome, realized_effect = excluded.realized_effect, \
                 expected_effect = excluded.expected_effect, confounded = excluded.confounded, step = excluded.step, \
                 points_before = excluded.points_before, points_after = excluded.points_after, \
                 confidence_before = excluded.confidence_before, confidence_after = excluded.confidence_after, \
                 status_after = excluded.status_after, reason = excluded.reason, record_time = excluded.record_time",
            )
            .bind(&e.hypothesis_id)
            .bind(&e.subject_id)
            .bind(enum_str(&e.method))
            .bind(enum_str(&e.outcome))
            .bind(e.realized_effect)
            .bind(e.expected_effect)
            .bind(e.confounded)
            .bind(e.step)
            .bind(e.points_before)
            .bind(e.points_after)
            .bind(e.confidence_before)
            .bind(e.confidence_after)
            .bind(enum_str(&e.status_after))
            .bind(&e.reason)
            .bind(nanos(&e.record_time))
            .execute(&mut *tx)
            .await?;
        }
        for h in hypotheses {
            put_hypothesis(&mut tx, h).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_evidence(&self, hypothesis_id: Option<&str>) -> Result<Vec<Evidence>> {
        let rows = match hypothesis_id {
            Some(h) => {
                sqlx::query("SELECT * FROM evidence WHERE hypothesis_id = ? ORDER BY record_time DESC, subject_id")
                    .bind(h)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM evidence ORDER BY record_time DESC, hypothesis_id, subject_id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(evidence_from_row).collect()
    }

    async fn get_sync_state(&self, source_id: &str) -> Result<Option<SyncState>> {
        let Some(r) = sqlx::query("SELECT * FROM sync_state WHERE source_id = ?")
            .bind(source_id)
            .fetch_optional(&self.pool)
            .await?
        else {
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

    async fn put_sync_state(&self, state: &SyncState) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        put_sync_state(&mut conn, state).await
    }

    async fn get_items(&self, keys: &[String]) -> Result<Vec<Option<Item>>> {
        let mut found: BTreeMap<String, Item> = BTreeMap::new();
        // Chunked to stay under SQLite's bound-parameter limit.
        for chunk in keys.chunks(500) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT * FROM items WHERE key IN (");
            let mut sep = qb.separated(", ");
            for k in chunk {
                sep.push_bind(k);
            }
            qb.push(")");
            for r in qb.build().fetch_all(&self.pool).await? {
                let item = item_from_row(&r)?;
                found.insert(item.key(), item);
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn items_with_body_text(&self, source_id: &str, text: &str) -> Result<Vec<Item>> {
        sqlx::query("SELECT * FROM items WHERE source_id = ? AND instr(body, ?) > 0 ORDER BY key")
            .bind(source_id)
            .bind(text)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(item_from_row)
            .collect()
    }

    async fn list_items(
        &self,
        filter: &ItemFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM items WHERE 1 = 1");
        if let Some(s) = &filter.source_id {
            qb.push(" AND source_id = ").push_bind(s);
        }
        if let Some(st) = &filter.state {
            qb.push(" AND state = ").push_bind(enum_str(st));
        }
        if let Some(l) = &filter.label {
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(items.labels) WHERE json_each.value = ")
                .push_bind(l)
                .push(")");
        }
        if let Some(a) = after {
            qb.push(" AND key > ").push_bind(a);
        }
        qb.push(" ORDER BY key LIMIT ").push_bind(limit as i64);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(item_from_row)
            .collect()
    }

    async fn put_goal(&self, g: &Goal) -> Result<()> {
        sqlx::query(
            "INSERT INTO goals (id, title, description, level, parent_id, key_value_area, weight, create_time, update_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description, level = excluded.level, \
             parent_id = excluded.parent_id, key_value_area = excluded.key_value_area, weight = excluded.weight, \
             update_time = excluded.update_time",
        )
        .bind(&g.id)
        .bind(&g.title)
        .bind(&g.description)
        .bind(enum_str(&g.level))
        .bind(&g.parent_id)
        .bind(enum_str(&g.key_value_area))
        .bind(g.weight)
        .bind(nanos(&g.create_time))
        .bind(nanos(&g.update_time))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_goal(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM goals WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn put_metric(&self, m: &Metric) -> Result<()> {
        sqlx::query(
            "INSERT INTO metrics (id, name, unit, direction, baseline, target, cadence_nanos, create_time, update_time) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, unit = excluded.unit, direction = excluded.direction, \
             baseline = excluded.baseline, target = excluded.target, cadence_nanos = excluded.cadence_nanos, \
             update_time = excluded.update_time",
        )
        .bind(&m.id)
        .bind(&m.name)
        .bind(&m.unit)
        .bind(enum_str(&m.direction))
        .bind(m.baseline)
        .bind(m.target)
        .bind(m.cadence.and_then(|c| c.num_nanoseconds()))
        .bind(nanos(&m.create_time))
        .bind(nanos(&m.update_time))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_metric(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM metrics WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_observations(
        &self,
        observations: &[Observation],
    ) -> Result<Vec<(String, ObservationSummary)>> {
        let mut tx = self.pool.begin().await?;
        let mut touched: BTreeMap<&str, ()> = BTreeMap::new();
        for o in observations {
            sqlx::query(
                "INSERT INTO observations (metric_id, observe_time, value) VALUES (?, ?, ?) \
                 ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = excluded.value",
            )
            .bind(&o.metric_id)
            .bind(nanos(&o.observe_time))
            .bind(o.value)
            .execute(&mut *tx)
            .await?;
            touched.insert(&o.metric_id, ());
        }
        let mut out = Vec::with_capacity(touched.len());
        for m in touched.keys() {
            out.push((m.to_string(), observation_summary(&mut tx, m).await?));
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn put_hypothesis(&self, h: &Hypothesis) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        put_hypothesis(&mut conn, h).await
    }

    async fn delete_hypothesis(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM links WHERE hypothesis_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM hypotheses WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn put_link(&self, l: &Link) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        put_link(&mut conn, l).await
    }

    async fn delete_link(&self, item_key: &str, hypothesis_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM links WHERE item_key = ? AND hypothesis_id = ?")
            .bind(item_key)
            .bind(hypothesis_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{
        Direction, GoalLevel, HypothesisStatus, ItemState, KeyValueArea, LinkOrigin, TrackerKind,
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

        let snap = store.load().await.unwrap();
        let loaded: HashMap<&str, &ItemFacts> =
            snap.items.iter().map(|(k, f)| (k.as_str(), f)).collect();
        for it in &items {
            let f = loaded[it.key().as_str()];
            assert_eq!(f.estimate.map(f64::to_bits), it.estimate.map(f64::to_bits));
            assert_eq!((&f.title, &f.labels), (&it.title, &it.labels));
        }
        let contributions: HashMap<&str, f64> = snap
            .links
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
        assert_eq!(snap.links.len(), links.len());
    }
}
