//! Ranking snapshots on PostgreSQL (see the SQLite backend's `history.rs`):
//! one row per snapshot, its items one JSON array, thinned by the retention
//! rules in the transaction that adds a snapshot.

use tokio_postgres::Row;

use super::conn::{Attempt, Fail, Tx};
use super::{enum_str, json, nanos, parse_enum, parse_json, pg_text, time};
use crate::domain::Time;
use crate::domain::history::{RankingSnapshot, SnapshotSummary};
use crate::store::SnapshotRetention;

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

const SUMMARY_COLUMNS: &str = "id, take_time, origin, note, top_n, item_count";

/// A count column as the model's `u32`.
fn count(r: &Row, column: &str) -> Attempt<u32> {
    let n: i64 = r.try_get(column)?;
    u32::try_from(n)
        .map_err(|_| Fail::Corrupt(format!("a ranking snapshot's {column} is {n}").into()))
}

fn summary_from_row(r: &Row) -> Attempt<SnapshotSummary> {
    Ok(SnapshotSummary {
        id: r.try_get("id")?,
        take_time: time(r.try_get("take_time")?),
        origin: parse_enum(r.try_get("origin")?)?,
        note: r.try_get("note")?,
        top_n: count(r, "top_n")?,
        item_count: count(r, "item_count")?,
    })
}

/// Adds `snapshot` (its id is assigned) and [`prune`]s; answers the stored
/// summary.
pub(super) async fn put(
    tx: &Tx<'_>,
    snapshot: &RankingSnapshot,
    keep: &SnapshotRetention,
) -> Attempt<SnapshotSummary> {
    let s = &snapshot.summary;
    let item_count = u32::try_from(snapshot.items.len())
        .map_err(|_| Fail::Corrupt("a ranking snapshot of more than 2^32 items".into()))?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO ranking_snapshots (take_time, origin, note, top_n, item_count, items) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &stmt,
            &[
                &nanos(&s.take_time),
                &enum_str(&s.origin),
                &pg_text(&s.note),
                &i64::from(s.top_n),
                &i64::from(item_count),
                &json(&snapshot.items),
            ],
        )
        .await?;
    let id: i64 = row.try_get(0)?;
    prune(tx, keep).await?;
    Ok(SnapshotSummary {
        id,
        item_count,
        note: pg_text(&s.note).into_owned(),
        ..s.clone()
    })
}

/// Applies the retention rules `keep`: past `daily_before`, only one
/// snapshot of each UTC day stays, the day's last one taken on purpose (a
/// refinement meeting's) if any, else its last; then the oldest go until at
/// most `max_snapshots` remain. Answers how many went.
pub(super) async fn prune(tx: &Tx<'_>, keep: &SnapshotRetention) -> Attempt<usize> {
    // Integer division truncates toward zero on both engines, so the days
    // before 1970 are grouped alike.
    let thin = tx
        .prepare_cached(
            "DELETE FROM ranking_snapshots WHERE id IN ( \
               SELECT id FROM ( \
                 SELECT id, ROW_NUMBER() OVER ( \
                   PARTITION BY take_time / $2 \
                   ORDER BY origin = 'explicit' DESC, take_time DESC, id DESC) AS nth \
                 FROM ranking_snapshots WHERE take_time < $1) AS days \
               WHERE nth > 1)",
        )
        .await?;
    let thinned = tx
        .execute(&thin, &[&nanos(&keep.daily_before), &NANOS_PER_DAY])
        .await?;
    let trim = tx
        .prepare_cached(
            "DELETE FROM ranking_snapshots WHERE id IN ( \
               SELECT id FROM ranking_snapshots ORDER BY take_time DESC, id DESC OFFSET $1)",
        )
        .await?;
    let max = i64::try_from(keep.max_snapshots.max(1)).unwrap_or(i64::MAX);
    let over = tx.execute(&trim, &[&max]).await?;
    // Both are at most the table's row count, which fits a usize.
    Ok(usize::try_from(thinned + over).unwrap_or(usize::MAX))
}

/// Newest first, after (older than) the snapshot `before_id` when given.
pub(super) async fn list(
    tx: &Tx<'_>,
    before_id: Option<i64>,
    limit: usize,
) -> Attempt<Vec<SnapshotSummary>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM ranking_snapshots WHERE id < $1 \
             ORDER BY id DESC LIMIT $2"
        ))
        .await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    tx.query(&stmt, &[&before_id.unwrap_or(i64::MAX), &limit])
        .await?
        .iter()
        .map(summary_from_row)
        .collect()
}

/// The last snapshot taken at or before `at` (the newest when `None`).
pub(super) async fn at(tx: &Tx<'_>, at: Option<Time>) -> Attempt<Option<RankingSnapshot>> {
    let at = at.as_ref().map_or(i64::MAX, nanos);
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS}, items FROM ranking_snapshots WHERE take_time <= $1 \
             ORDER BY take_time DESC, id DESC LIMIT 1"
        ))
        .await?;
    let Some(r) = tx.query_opt(&stmt, &[&at]).await? else {
        return Ok(None);
    };
    Ok(Some(RankingSnapshot {
        summary: summary_from_row(&r)?,
        items: parse_json(r.try_get("items")?)?,
    }))
}

/// The oldest snapshot kept.
pub(super) async fn earliest(tx: &Tx<'_>) -> Attempt<Option<SnapshotSummary>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM ranking_snapshots ORDER BY take_time, id LIMIT 1"
        ))
        .await?;
    tx.query_opt(&stmt, &[])
        .await?
        .as_ref()
        .map(summary_from_row)
        .transpose()
}
