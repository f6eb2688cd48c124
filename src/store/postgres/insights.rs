//! Insights on PostgreSQL (see the SQLite backend's `insights.rs`): one row
//! per (source, external id), its targets as JSON arrays in the row, so that
//! a customer's erasure is one DELETE and nothing of theirs stays in another
//! table.

use tokio_postgres::Row;

use super::conn::{Attempt, Tx};
use super::{enum_str, json, nanos, opt_time, parse_enum, parse_json, pg_text};
use crate::domain::{Insight, Time};

/// Inserts or replaces insights by (source, external id).
pub(super) async fn put(tx: &Tx<'_>, insights: &[Insight], now: &Time) -> Attempt<()> {
    let put = tx
        .prepare_cached(
            "INSERT INTO insights (source, external_id, kind, text, insight_time, url, customer, \
             segment_id, importance, item_keys, hypothesis_ids, outcome_ids, record_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (source, external_id) DO UPDATE SET kind = EXCLUDED.kind, \
             text = EXCLUDED.text, insight_time = EXCLUDED.insight_time, url = EXCLUDED.url, \
             customer = EXCLUDED.customer, segment_id = EXCLUDED.segment_id, \
             importance = EXCLUDED.importance, item_keys = EXCLUDED.item_keys, \
             hypothesis_ids = EXCLUDED.hypothesis_ids, outcome_ids = EXCLUDED.outcome_ids, \
             record_time = EXCLUDED.record_time",
        )
        .await?;
    let now = nanos(now);
    for i in insights {
        tx.execute(
            &put,
            &[
                &pg_text(&i.source),
                &pg_text(&i.external_id),
                &enum_str(&i.kind),
                &pg_text(&i.text),
                &i.time.as_ref().map(nanos),
                &pg_text(&i.url),
                &pg_text(&i.customer),
                &pg_text(&i.segment_id),
                &i.importance.map(|v| enum_str(&v)).unwrap_or_default(),
                &json(&i.item_keys),
                &json(&i.hypothesis_ids),
                &json(&i.outcome_ids),
                &now,
            ],
        )
        .await?;
    }
    Ok(())
}

fn from_row(r: &Row) -> Attempt<Insight> {
    let importance: &str = r.try_get("importance")?;
    Ok(Insight {
        source: r.try_get("source")?,
        external_id: r.try_get("external_id")?,
        kind: parse_enum(r.try_get("kind")?)?,
        text: r.try_get("text")?,
        time: opt_time(r.try_get("insight_time")?),
        url: r.try_get("url")?,
        customer: r.try_get("customer")?,
        segment_id: r.try_get("segment_id")?,
        importance: if importance.is_empty() {
            None
        } else {
            Some(parse_enum(importance)?)
        },
        item_keys: parse_json(r.try_get("item_keys")?)?,
        hypothesis_ids: parse_json(r.try_get("hypothesis_ids")?)?,
        outcome_ids: parse_json(r.try_get("outcome_ids")?)?,
    })
}

/// The insights of these keys that exist, in the keys' order.
pub(super) async fn get(tx: &Tx<'_>, keys: &[(String, String)]) -> Attempt<Vec<Insight>> {
    let mut out = Vec::with_capacity(keys.len());
    let stmt = tx
        .prepare_cached("SELECT * FROM insights WHERE source = $1 AND external_id = $2")
        .await?;
    for (s, e) in keys {
        if let Some(r) = tx.query_opt(&stmt, &[&pg_text(s), &pg_text(e)]).await? {
            out.push(from_row(&r)?);
        }
    }
    Ok(out)
}

/// Every insight, by key (bytewise, as SQLite orders text).
pub(super) async fn all(tx: &Tx<'_>) -> Attempt<Vec<Insight>> {
    let stmt = tx
        .prepare_cached(
            "SELECT * FROM insights ORDER BY source COLLATE \"C\", external_id COLLATE \"C\"",
        )
        .await?;
    tx.query(&stmt, &[]).await?.iter().map(from_row).collect()
}

/// Deletes a customer's insights; answers how many.
///
/// After the commit no SQL can read them (the customer's rows lived in this
/// table only). PostgreSQL has no `secure_delete`: the deleted rows' bytes
/// stay in the table's file (and the `insights_by_customer` index's), also
/// after a plain VACUUM, which frees their space without overwriting it,
/// and in the write-ahead log until its segments are recycled (seen on
/// PostgreSQL 15). Erasure from the disk is the operator's:
/// `VACUUM (FULL) insights` rewrites the table and its indexes into new
/// files, then a `CHECKPOINT`; backups and WAL archives keep what they hold
/// (see the README).
pub(super) async fn forget(tx: &Tx<'_>, customer: &str) -> Attempt<u64> {
    let stmt = tx
        .prepare_cached("DELETE FROM insights WHERE customer = $1")
        .await?;
    Ok(tx.execute(&stmt, &[&pg_text(customer)]).await?)
}
