//! Start-up's read of the whole model: the small tables at once, and items
//! and links in chunks, each table on its own read connection on a
//! blocking thread, so that reading the next chunks overlaps with the
//! engine indexing this one.
//!
//! A row costs about as much as its data here: columns are read as
//! borrowed text and parsed in place, in rowid order (the index does not
//! need key order). A WAL database gives each scan a consistent snapshot;
//! both run before the server takes writes.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::Connection;
use tokio::sync::mpsc;

use super::conn::{Attempt, Role, Settings, connect};
use super::{hypothesis_from_row, parse_enum, parse_json, time};
use crate::domain::{Goal, Link, Metric, ObservationSummary, Removal, Source};
use crate::store::{Batch, ItemRow, Model, Result};

/// Rows per chunk when reading the big tables.
const CHUNK: usize = 8192;

/// What the load reports when it fails.
const DOING: &str = "read the model at start-up";

#[derive(Debug, Clone, Copy)]
enum Table {
    Items,
    Links,
}

/// Starts reading items and links side by side; their chunks arrive on the
/// receiver, which closes after the last (or after an error, which it
/// carries).
pub(super) fn read_rows(path: &Path, settings: &Settings) -> mpsc::Receiver<Result<Batch>> {
    let (tx, rx) = mpsc::channel(4);
    for table in [Table::Items, Table::Links] {
        let (path, tx, settings) = (path.to_path_buf(), tx.clone(), settings.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = scan(&path, &settings, table, &tx) {
                let _ = tx.blocking_send(Err(e.during(DOING)));
            }
        });
    }
    rx
}

/// Reads one table in chunks onto `tx`.
fn scan(
    path: &Path,
    settings: &Settings,
    table: Table,
    tx: &mpsc::Sender<Result<Batch>>,
) -> Attempt<()> {
    let conn = connect(path, Role::Read, settings)?;
    let sql = match table {
        // Removed items and their links stay out of the index.
        Table::Items => {
            "SELECT key, source_id, title, state, labels, estimate, parent_key, votes FROM items \
             WHERE NOT EXISTS (SELECT 1 FROM item_removals r WHERE r.item_key = items.key)"
        }
        Table::Links => {
            "SELECT item_key, hypothesis_id, contribution, origin, rationale, create_time, \
             update_time FROM links \
             WHERE NOT EXISTS (SELECT 1 FROM item_removals r WHERE r.item_key = links.item_key)"
        }
    };
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let (mut items, mut links) = (Vec::new(), Vec::new());
    loop {
        let row = rows.next()?;
        if let Some(r) = row {
            match table {
                Table::Items => items.push(item_row(r)?),
                Table::Links => links.push(link(r)?),
            }
        }
        let full = items.len() >= CHUNK || links.len() >= CHUNK;
        if full || row.is_none() {
            let chunk = match table {
                Table::Items => Batch::Items(std::mem::take(&mut items)),
                Table::Links => Batch::Links(std::mem::take(&mut links)),
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

fn item_row(r: &rusqlite::Row<'_>) -> Attempt<ItemRow> {
    Ok(ItemRow {
        key: r.get(0)?,
        source_id: r.get(1)?,
        title: r.get(2)?,
        state: parse_enum(r.get_ref(3)?.as_str()?)?,
        labels: parse_json(r.get_ref(4)?.as_str()?)?,
        estimate: r.get(5)?,
        parent_key: r.get(6)?,
        votes: r
            .get::<_, Option<i64>>(7)?
            .map(|v| u64::try_from(v).unwrap_or(0)),
    })
}

/// The columns [`link`] reads, in its order.
pub(super) const LINK_COLUMNS: &str =
    "item_key, hypothesis_id, contribution, origin, rationale, create_time, update_time";

pub(super) fn link(r: &rusqlite::Row<'_>) -> Attempt<Link> {
    Ok(Link {
        item_key: r.get(0)?,
        hypothesis_id: r.get(1)?,
        contribution: r.get(2)?,
        origin: parse_enum(r.get_ref(3)?.as_str()?)?,
        rationale: r.get(4)?,
        create_time: time(r.get(5)?),
        update_time: time(r.get(6)?),
    })
}

/// About how many items there are: the rowid range, read off the b-tree's
/// ends without a scan.
pub(super) fn item_count_hint(conn: &Connection) -> Attempt<usize> {
    let (lo, hi): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT min(rowid), max(rowid) FROM items", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    Ok(match (lo, hi) {
        (Some(lo), Some(hi)) => {
            usize::try_from(hi.saturating_sub(lo).saturating_add(1)).unwrap_or(0)
        }
        _ => 0,
    })
}

/// The value model without items and links.
pub(super) fn model(conn: &Connection) -> Attempt<Model> {
    let mut model = Model::default();
    let mut stmt = conn.prepare("SELECT * FROM sources ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        model.sources.push(Source {
            id: r.get("id")?,
            kind: parse_enum(r.get_ref("kind")?.as_str()?)?,
            base_url: r.get("base_url")?,
            project_key: r.get("project_key")?,
            token_env: r.get("token_env")?,
            link_rules: parse_json(r.get_ref("link_rules")?.as_str()?)?,
            estimate_field: r.get("estimate_field")?,
            create_time: time(r.get("create_time")?),
            update_time: time(r.get("update_time")?),
        });
    }
    let mut stmt = conn.prepare("SELECT * FROM goals ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        model.goals.push(Goal {
            id: r.get("id")?,
            title: r.get("title")?,
            description: r.get("description")?,
            level: parse_enum(r.get_ref("level")?.as_str()?)?,
            parent_id: r.get("parent_id")?,
            key_value_area: parse_enum(r.get_ref("key_value_area")?.as_str()?)?,
            weight: r.get("weight")?,
            create_time: time(r.get("create_time")?),
            update_time: time(r.get("update_time")?),
        });
    }
    let mut summaries: BTreeMap<String, ObservationSummary> = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT o.metric_id, o.observe_time, o.value, c.n FROM observations o \
         JOIN (SELECT metric_id, MAX(observe_time) AS t, COUNT(*) AS n FROM observations GROUP BY metric_id) c \
         ON o.metric_id = c.metric_id AND o.observe_time = c.t",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        summaries.insert(
            r.get("metric_id")?,
            ObservationSummary {
                latest: Some((time(r.get("observe_time")?), r.get("value")?)),
                count: r.get("n")?,
            },
        );
    }
    let mut stmt = conn.prepare("SELECT * FROM metrics ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get("id")?;
        let cadence: Option<i64> = r.get("cadence_nanos")?;
        let summary = summaries.remove(&id).unwrap_or_default();
        model.metrics.push((
            Metric {
                id,
                name: r.get("name")?,
                unit: r.get("unit")?,
                direction: parse_enum(r.get_ref("direction")?.as_str()?)?,
                baseline: r.get("baseline")?,
                target: r.get("target")?,
                cadence: cadence.map(chrono::Duration::nanoseconds),
                source: metric_source(r.get("source")?)?,
                create_time: time(r.get("create_time")?),
                update_time: time(r.get("update_time")?),
            },
            summary,
        ));
    }
    let mut stmt = conn.prepare("SELECT * FROM hypotheses ORDER BY id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        model.hypotheses.push(hypothesis_from_row(r)?);
    }
    let mut stmt =
        conn.prepare("SELECT item_key, remove_time, reason, detail FROM item_removals")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        model.removed.push((
            r.get(0)?,
            Removal {
                remove_time: time(r.get(1)?),
                reason: parse_enum(r.get_ref(2)?.as_str()?)?,
                detail: r.get(3)?,
            },
        ));
    }
    Ok(model)
}

/// A metric's stored source settings (JSON), read back.
fn metric_source(
    json: Option<String>,
) -> std::result::Result<Option<crate::domain::MetricSource>, rusqlite::Error> {
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    })
    .transpose()
}
