//! Insights in SQLite: one row per (source, external id), its targets as
//! JSON arrays in the row, so that a customer's erasure is one DELETE and
//! nothing of theirs stays in another table.

use rusqlite::{Connection, Row, Transaction, params};

use super::conn::Attempt;
use super::{enum_str, json, nanos, opt_time, parse_enum, parse_json, query_all, text};
use crate::domain::{Insight, Time};

/// Inserts or replaces each insight by its key (the caller commits).
pub(super) fn put(tx: &Transaction<'_>, insights: &[Insight], now: &Time) -> Attempt<()> {
    let mut put = tx.prepare_cached(
        "INSERT INTO insights (source, external_id, kind, text, insight_time, url, customer, \
         segment_id, importance, item_keys, hypothesis_ids, outcome_ids, record_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
         ON CONFLICT (source, external_id) DO UPDATE SET kind = excluded.kind, text = excluded.text, \
         insight_time = excluded.insight_time, url = excluded.url, customer = excluded.customer, \
         segment_id = excluded.segment_id, importance = excluded.importance, \
         item_keys = excluded.item_keys, hypothesis_ids = excluded.hypothesis_ids, \
         outcome_ids = excluded.outcome_ids, record_time = excluded.record_time",
    )?;
    for i in insights {
        put.execute(params![
            i.source,
            i.external_id,
            enum_str(&i.kind),
            i.text,
            i.time.as_ref().map(nanos),
            i.url,
            i.customer,
            i.segment_id,
            i.importance.map(|v| enum_str(&v)).unwrap_or_default(),
            json(&i.item_keys),
            json(&i.hypothesis_ids),
            json(&i.outcome_ids),
            nanos(now),
        ])?;
    }
    Ok(())
}

fn from_row(r: &Row<'_>) -> Attempt<Insight> {
    let importance = text(r, "importance")?;
    Ok(Insight {
        source: r.get("source")?,
        external_id: r.get("external_id")?,
        kind: parse_enum(text(r, "kind")?)?,
        text: r.get("text")?,
        time: opt_time(r.get("insight_time")?),
        url: r.get("url")?,
        customer: r.get("customer")?,
        segment_id: r.get("segment_id")?,
        importance: if importance.is_empty() {
            None
        } else {
            Some(parse_enum(importance)?)
        },
        item_keys: parse_json(text(r, "item_keys")?)?,
        hypothesis_ids: parse_json(text(r, "hypothesis_ids")?)?,
        outcome_ids: parse_json(text(r, "outcome_ids")?)?,
    })
}

/// Every insight, by key.
pub(super) fn all(c: &Connection) -> Attempt<Vec<Insight>> {
    query_all(
        c,
        "SELECT * FROM insights ORDER BY source, external_id",
        [],
        from_row,
    )
}

/// The insights of these keys that exist, in key order.
pub(super) fn get(c: &Connection, keys: &[(String, String)]) -> Attempt<Vec<Insight>> {
    let mut out = Vec::with_capacity(keys.len());
    let mut stmt =
        c.prepare_cached("SELECT * FROM insights WHERE source = ?1 AND external_id = ?2")?;
    for (s, e) in keys {
        let mut rows = stmt.query(params![s, e])?;
        if let Some(r) = rows.next()? {
            out.push(from_row(r)?);
        }
    }
    Ok(out)
}

/// Deletes a customer's insights; answers how many. With `secure_delete`
/// on for the delete, SQLite overwrites the freed content with zeros, so
/// the customer's words do not stay in free pages of the file (the WAL's
/// old frames are overwritten as it is checkpointed).
pub(super) fn forget(tx: &Transaction<'_>, customer: &str) -> Attempt<u64> {
    tx.pragma_update(None, "secure_delete", true)?;
    let n = tx
        .prepare_cached("DELETE FROM insights WHERE customer = ?1")?
        .execute([customer]);
    tx.pragma_update(None, "secure_delete", false)?;
    Ok(n? as u64)
}
