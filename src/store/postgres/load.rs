//! Start-up's read of the whole model on PostgreSQL: the small tables at
//! once, then items and links in chunks sent as they are read, so that
//! reading the next chunks overlaps with the engine indexing this one.
//!
//! Everything is read in one read-only REPEATABLE READ transaction on one
//! connection: other sidecars may be writing meanwhile, and one snapshot
//! means that no link comes without its item, nor a removed item without
//! its removal. The big tables are read through a portal [`CHUNK`] rows at
//! a time, so 100,000 items are never all in memory, and one table after
//! the other (one portal open at a time, which CockroachDB requires).

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{IsolationLevel, Row};

use super::conn::{Attempt, Shared, Tx};
use super::{hypothesis_from_row, parse_enum, parse_json, time};
use crate::domain::{Goal, Link, Metric, ObservationSummary, Removal, Source};
use crate::store::{Batch, ItemRow, Load, Model, Result, StoreError};

/// Rows per chunk when reading the big tables.
const CHUNK: usize = 8192;

/// What the load reports when it fails.
const DOING: &str = "read the model at start-up";

/// Reads the model, and starts streaming items then links onto the load's
/// receiver, which closes after the last chunk (or after an error, which
/// it carries).
pub(super) async fn start(db: Shared) -> Result<Load> {
    let (model_tx, model_rx) = oneshot::channel();
    let (batches, rx) = mpsc::channel(4);
    tokio::spawn(read_all(db, model_tx, batches));
    match model_rx.await {
        Ok(Ok((model, hint))) => Ok(Load::new(model, hint, rx)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Backend {
            doing: DOING.into(),
            source: "the reading task ended before the model was read".into(),
        }),
    }
}

type ModelSender = oneshot::Sender<Result<(Model, usize)>>;

async fn read_all(db: Shared, model_tx: ModelSender, batches: mpsc::Sender<Result<Batch>>) {
    let mut model_tx = Some(model_tx);
    let outcome = read_in_snapshot(&db, &mut model_tx, &batches).await;
    if let Err(e) = outcome {
        let e = e.during(DOING);
        match model_tx.take() {
            Some(m) => {
                let _ = m.send(Err(e));
            }
            None => {
                let _ = batches.send(Err(e)).await;
            }
        }
    }
}

async fn read_in_snapshot(
    db: &Shared,
    model_tx: &mut Option<ModelSender>,
    batches: &mpsc::Sender<Result<Batch>>,
) -> Attempt<()> {
    let mut client = db.client().await?;
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let model = model(&tx).await?;
    let hint: i64 = tx
        .query_one("SELECT count(*) FROM items", &[])
        .await?
        .try_get(0)?;
    let hint = usize::try_from(hint).unwrap_or(0);
    if let Some(m) = model_tx.take()
        && m.send(Ok((model, hint))).is_err()
    {
        return Ok(()); // the caller gave up
    }
    if scan(&tx, Table::Items, batches).await? {
        scan(&tx, Table::Links, batches).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Table {
    Items,
    Links,
}

/// Reads one table in chunks onto `batches`; false when the reader gave up.
async fn scan(tx: &Tx<'_>, table: Table, batches: &mpsc::Sender<Result<Batch>>) -> Attempt<bool> {
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
    let stmt = tx.prepare(sql).await?;
    let portal = tx.bind(&stmt, &[]).await?;
    let max_rows = i32::try_from(CHUNK).unwrap_or(i32::MAX);
    loop {
        let rows = tx.query_portal(&portal, max_rows).await?;
        let last = rows.len() < CHUNK;
        if !rows.is_empty() {
            let batch = match table {
                Table::Items => Batch::Items(rows.iter().map(item_row).collect::<Attempt<_>>()?),
                Table::Links => Batch::Links(rows.iter().map(link).collect::<Attempt<_>>()?),
            };
            drop(rows);
            if batches.send(Ok(batch)).await.is_err() {
                return Ok(false);
            }
        }
        if last {
            return Ok(true);
        }
    }
}

fn item_row(r: &Row) -> Attempt<ItemRow> {
    Ok(ItemRow {
        key: r.try_get(0)?,
        source_id: r.try_get(1)?,
        title: r.try_get(2)?,
        state: parse_enum(r.try_get(3)?)?,
        labels: parse_json(r.try_get(4)?)?,
        estimate: r.try_get(5)?,
        parent_key: r.try_get(6)?,
        votes: r
            .try_get::<_, Option<i64>>(7)?
            .map(|v| u64::try_from(v).unwrap_or(0)),
    })
}

/// The columns [`link`] reads, in its order.
pub(super) const LINK_COLUMNS: &str =
    "item_key, hypothesis_id, contribution, origin, rationale, create_time, update_time";

pub(super) fn link(r: &Row) -> Attempt<Link> {
    Ok(Link {
        item_key: r.try_get(0)?,
        hypothesis_id: r.try_get(1)?,
        contribution: r.try_get(2)?,
        origin: parse_enum(r.try_get(3)?)?,
        rationale: r.try_get(4)?,
        create_time: time(r.try_get(5)?),
        update_time: time(r.try_get(6)?),
    })
}

/// The value model without items and links, each table in id order
/// (bytewise, as SQLite orders).
async fn model(tx: &Tx<'_>) -> Attempt<Model> {
    let mut model = Model::default();
    for r in tx
        .query("SELECT * FROM sources ORDER BY id COLLATE \"C\"", &[])
        .await?
    {
        model.sources.push(Source {
            id: r.try_get("id")?,
            kind: parse_enum(r.try_get("kind")?)?,
            base_url: r.try_get("base_url")?,
            project_key: r.try_get("project_key")?,
            token_env: r.try_get("token_env")?,
            link_rules: parse_json(r.try_get("link_rules")?)?,
            estimate_field: r.try_get("estimate_field")?,
            create_time: time(r.try_get("create_time")?),
            update_time: time(r.try_get("update_time")?),
        });
    }
    for r in tx
        .query("SELECT * FROM goals ORDER BY id COLLATE \"C\"", &[])
        .await?
    {
        model.goals.push(Goal {
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
    for r in tx
        .query(
            "SELECT o.metric_id, o.observe_time, o.value, c.n FROM observations o \
             JOIN (SELECT metric_id, MAX(observe_time) AS t, COUNT(*) AS n FROM observations \
             GROUP BY metric_id) c ON o.metric_id = c.metric_id AND o.observe_time = c.t",
            &[],
        )
        .await?
    {
        summaries.insert(
            r.try_get("metric_id")?,
            ObservationSummary {
                latest: Some((time(r.try_get("observe_time")?), r.try_get("value")?)),
                count: r.try_get("n")?,
            },
        );
    }
    for r in tx
        .query("SELECT * FROM metrics ORDER BY id COLLATE \"C\"", &[])
        .await?
    {
        let id: String = r.try_get("id")?;
        let cadence: Option<i64> = r.try_get("cadence_nanos")?;
        let source: Option<&str> = r.try_get("source")?;
        let summary = summaries.remove(&id).unwrap_or_default();
        model.metrics.push((
            Metric {
                id,
                name: r.try_get("name")?,
                unit: r.try_get("unit")?,
                direction: parse_enum(r.try_get("direction")?)?,
                baseline: r.try_get("baseline")?,
                target: r.try_get("target")?,
                cadence: cadence.map(chrono::Duration::nanoseconds),
                source: source.map(parse_json).transpose()?,
                create_time: time(r.try_get("create_time")?),
                update_time: time(r.try_get("update_time")?),
            },
            summary,
        ));
    }
    for r in tx
        .query("SELECT * FROM hypotheses ORDER BY id COLLATE \"C\"", &[])
        .await?
    {
        model.hypotheses.push(hypothesis_from_row(&r)?);
    }
    for r in tx
        .query(
            "SELECT item_key, remove_time, reason, detail FROM item_removals \
             ORDER BY item_key COLLATE \"C\"",
            &[],
        )
        .await?
    {
        model.removed.push((
            r.try_get(0)?,
            Removal {
                remove_time: time(r.try_get(1)?),
                reason: parse_enum(r.try_get(2)?)?,
                detail: r.try_get(3)?,
            },
        ));
    }
    Ok(model)
}
