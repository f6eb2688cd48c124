//! The bulk write path on PostgreSQL: items with their link changes (and a
//! sync's cursor, a split's record, removals and restores) in the caller's
//! transaction.
//!
//! A sync writes pages of about a hundred items and a bench ingests
//! 100,000, so a round trip per row would be most of the cost: each table
//! is written by one statement per [`ROWS`] rows, the rows bound as one
//! array per column and turned back into rows by `unnest` (plain SQL that
//! CockroachDB and YugabyteDB run too). Statements are prepared once per
//! connection.
//!
//! One `INSERT ... ON CONFLICT DO UPDATE` cannot touch the same row twice,
//! where SQLite's statement per row lets a later row of the same key
//! replace an earlier one; so rows are first folded by key here, the same
//! outcome: the last row's values, and the first row's create time where
//! the update keeps the stored one.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use super::conn::{Attempt, Tx};
use super::{enum_str, json, nanos, pg_labels, pg_text};
use crate::domain::{Item, ItemSplit, Link, Observation, Removal, SyncState};
use crate::store::Changed;

/// Rows per statement: big enough that a page is one statement, small
/// enough that one statement's arrays stay a few MiB.
const ROWS: usize = 1000;

/// One transaction's worth of item writes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ItemWrite<'a> {
    pub items: &'a [Item],
    pub remove_links: &'a [(String, String)],
    pub put_links: &'a [Link],
    pub sync_state: Option<&'a SyncState>,
    /// The record of a split these items are the slices of.
    pub split: Option<&'a ItemSplit>,
    /// Removed items the tracker returned again: active from now on.
    pub restore: &'a [String],
    /// Items the tracker no longer returns, by key.
    pub remove: &'a [(String, Removal)],
}

impl ItemWrite<'_> {
    /// The items this write changes, for the change log: their rows,
    /// links or removal.
    pub fn changed(&self) -> Changed {
        let keys: Vec<String> = self
            .items
            .iter()
            .map(Item::key)
            .chain(self.remove_links.iter().map(|(k, _)| k.clone()))
            .chain(self.put_links.iter().map(|l| l.item_key.clone()))
            .chain(self.restore.iter().cloned())
            .chain(self.remove.iter().map(|(k, _)| k.clone()))
            .collect();
        Changed::items(&keys)
    }
}

/// Writes `w` inside `tx` (the caller commits), in SQLite's order: items,
/// link removes, link puts, restores, removals, the sync state, the split.
pub(super) async fn write_items(tx: &Tx<'_>, w: &ItemWrite<'_>) -> Attempt<()> {
    put_items(tx, w.items).await?;
    remove_links(tx, w.remove_links).await?;
    put_links(tx, w.put_links).await?;
    if !w.restore.is_empty() {
        let stmt = tx
            .prepare_cached("DELETE FROM item_removals WHERE item_key = ANY($1::text[])")
            .await?;
        for chunk in w.restore.chunks(ROWS) {
            tx.execute(&stmt, &[&chunk]).await?;
        }
    }
    put_removals(tx, w.remove).await?;
    if let Some(st) = w.sync_state {
        put_sync_state(tx, st).await?;
    }
    if let Some(sp) = w.split {
        let stmt = tx
            .prepare_cached(
                "INSERT INTO item_splits (item_key, plan_kind, hypothesis_ids, create_time) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (item_key) DO UPDATE SET plan_kind = EXCLUDED.plan_kind, \
                 hypothesis_ids = EXCLUDED.hypothesis_ids, create_time = EXCLUDED.create_time",
            )
            .await?;
        tx.execute(
            &stmt,
            &[
                &sp.item_key,
                &pg_text(&sp.plan_kind),
                &json(&sp.hypothesis_ids),
                &nanos(&sp.create_time),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The rows of `rows` with one per key: where a key comes again, the
/// later row replaces the earlier in place (what a statement per row
/// would have left). The index of each kept row's first occurrence comes
/// with it.
fn last_by_key<'a, T, K: Eq + Hash>(
    rows: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<(&'a T, usize)> {
    let mut at: HashMap<K, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<(&T, usize)> = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        match at.entry(key(row)) {
            Entry::Occupied(slot) => out[*slot.get()].0 = row,
            Entry::Vacant(slot) => {
                slot.insert(out.len());
                out.push((row, i));
            }
        }
    }
    out
}

fn opt_nanos(t: Option<&crate::domain::Time>) -> Option<i64> {
    t.map(nanos)
}

/// Inserts or replaces items by key (a replaced item takes every column of
/// the new one, create time included, as on SQLite).
async fn put_items(tx: &Tx<'_>, items: &[Item]) -> Attempt<()> {
    if items.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO items (key, source_id, external_id, title, body, url, state, labels, \
             estimate, parent_key, create_time, update_time, close_time, votes) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::float8[], $10::text[], $11::int8[], \
             $12::int8[], $13::int8[], $14::int8[]) \
             ON CONFLICT (key) DO UPDATE SET title = EXCLUDED.title, body = EXCLUDED.body, \
             url = EXCLUDED.url, state = EXCLUDED.state, labels = EXCLUDED.labels, \
             estimate = EXCLUDED.estimate, parent_key = EXCLUDED.parent_key, \
             create_time = EXCLUDED.create_time, update_time = EXCLUDED.update_time, \
             close_time = EXCLUDED.close_time, votes = EXCLUDED.votes",
        )
        .await?;
    let rows = last_by_key(items, Item::key);
    for chunk in rows.chunks(ROWS) {
        let column = |f: fn(&Item) -> Option<i64>| -> Vec<Option<i64>> {
            chunk.iter().map(|&(it, _)| f(it)).collect()
        };
        let text = |f: fn(&Item) -> &str| -> Vec<Cow<'_, str>> {
            chunk.iter().map(|&(it, _)| pg_text(f(it))).collect()
        };
        let key: Vec<String> = chunk.iter().map(|(it, _)| it.key()).collect();
        let source_id: Vec<&str> = chunk.iter().map(|(it, _)| it.source_id.as_str()).collect();
        let external_id: Vec<&str> = chunk
            .iter()
            .map(|(it, _)| it.external_id.as_str())
            .collect();
        let title = text(|it| &it.title);
        let body = text(|it| &it.body);
        let url = text(|it| &it.url);
        let parent_key = text(|it| &it.parent_key);
        let state: Vec<String> = chunk.iter().map(|(it, _)| enum_str(&it.state)).collect();
        let labels: Vec<String> = chunk.iter().map(|(it, _)| pg_labels(&it.labels)).collect();
        let estimate: Vec<Option<f64>> = chunk.iter().map(|(it, _)| it.estimate).collect();
        let create_time = column(|it| opt_nanos(it.create_time.as_ref()));
        let update_time = column(|it| opt_nanos(it.update_time.as_ref()));
        let close_time = column(|it| opt_nanos(it.close_time.as_ref()));
        let votes = column(|it| it.votes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)));
        tx.execute(
            &stmt,
            &[
                &key,
                &source_id,
                &external_id,
                &title,
                &body,
                &url,
                &state,
                &labels,
                &estimate,
                &parent_key,
                &create_time,
                &update_time,
                &close_time,
                &votes,
            ],
        )
        .await?;
    }
    Ok(())
}

async fn remove_links(tx: &Tx<'_>, pairs: &[(String, String)]) -> Attempt<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "DELETE FROM links WHERE (item_key, hypothesis_id) IN \
             (SELECT * FROM unnest($1::text[], $2::text[]))",
        )
        .await?;
    for chunk in pairs.chunks(ROWS) {
        let items: Vec<&str> = chunk.iter().map(|p| p.0.as_str()).collect();
        let hypotheses: Vec<&str> = chunk.iter().map(|p| p.1.as_str()).collect();
        tx.execute(&stmt, &[&items, &hypotheses]).await?;
    }
    Ok(())
}

/// Inserts or replaces links by (item, hypothesis); a replaced link keeps
/// its create time.
pub(super) async fn put_links(tx: &Tx<'_>, links: &[Link]) -> Attempt<()> {
    if links.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO links (item_key, hypothesis_id, contribution, origin, rationale, \
             create_time, update_time) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[], \
             $6::int8[], $7::int8[]) \
             ON CONFLICT (item_key, hypothesis_id) DO UPDATE SET \
             contribution = EXCLUDED.contribution, origin = EXCLUDED.origin, \
             rationale = EXCLUDED.rationale, update_time = EXCLUDED.update_time",
        )
        .await?;
    let rows = last_by_key(links, |l| (l.item_key.as_str(), l.hypothesis_id.as_str()));
    for chunk in rows.chunks(ROWS) {
        let n = chunk.len();
        let (mut item_key, mut hypothesis_id, mut contribution, mut origin) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut rationale, mut create_time, mut update_time) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for &(l, first) in chunk {
            item_key.push(l.item_key.as_str());
            hypothesis_id.push(l.hypothesis_id.as_str());
            contribution.push(l.contribution);
            origin.push(enum_str(&l.origin));
            rationale.push(pg_text(&l.rationale));
            // A link new to the table was inserted by its first row.
            create_time.push(nanos(&links[first].create_time));
            update_time.push(nanos(&l.update_time));
        }
        tx.execute(
            &stmt,
            &[
                &item_key,
                &hypothesis_id,
                &contribution,
                &origin,
                &rationale,
                &create_time,
                &update_time,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Marks items removed (or updates how they were), by key.
async fn put_removals(tx: &Tx<'_>, remove: &[(String, Removal)]) -> Attempt<()> {
    if remove.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO item_removals (item_key, remove_time, reason, detail) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) \
             ON CONFLICT (item_key) DO UPDATE SET remove_time = EXCLUDED.remove_time, \
             reason = EXCLUDED.reason, detail = EXCLUDED.detail",
        )
        .await?;
    let rows = last_by_key(remove, |r| r.0.as_str());
    for chunk in rows.chunks(ROWS) {
        let keys: Vec<&str> = chunk.iter().map(|(r, _)| r.0.as_str()).collect();
        let times: Vec<i64> = chunk.iter().map(|(r, _)| nanos(&r.1.remove_time)).collect();
        let reasons: Vec<String> = chunk.iter().map(|(r, _)| enum_str(&r.1.reason)).collect();
        let details: Vec<Cow<str>> = chunk.iter().map(|(r, _)| pg_text(&r.1.detail)).collect();
        tx.execute(&stmt, &[&keys, &times, &reasons, &details])
            .await?;
    }
    Ok(())
}

/// Stores observations (the same metric and time replaces the value).
pub(super) async fn put_observations(tx: &Tx<'_>, observations: &[Observation]) -> Attempt<()> {
    if observations.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO observations (metric_id, observe_time, value) \
             SELECT * FROM unnest($1::text[], $2::int8[], $3::float8[]) \
             ON CONFLICT (metric_id, observe_time) DO UPDATE SET value = EXCLUDED.value",
        )
        .await?;
    let rows = last_by_key(observations, |o| {
        (o.metric_id.as_str(), nanos(&o.observe_time))
    });
    for chunk in rows.chunks(ROWS) {
        let metrics: Vec<&str> = chunk.iter().map(|(o, _)| o.metric_id.as_str()).collect();
        let times: Vec<i64> = chunk.iter().map(|(o, _)| nanos(&o.observe_time)).collect();
        let values: Vec<f64> = chunk.iter().map(|(o, _)| o.value).collect();
        tx.execute(&stmt, &[&metrics, &times, &values]).await?;
    }
    Ok(())
}

/// Inserts or replaces a source's sync state.
pub(super) async fn put_sync_state(tx: &Tx<'_>, st: &SyncState) -> Attempt<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO sync_state (source_id, cursor_time, cursor_ids, etag, etag_url, state, \
             last_start_time, last_finish_time, last_error, last_request_count, \
             last_upserted_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (source_id) DO UPDATE SET cursor_time = EXCLUDED.cursor_time, \
             cursor_ids = EXCLUDED.cursor_ids, etag = EXCLUDED.etag, \
             etag_url = EXCLUDED.etag_url, state = EXCLUDED.state, \
             last_start_time = EXCLUDED.last_start_time, \
             last_finish_time = EXCLUDED.last_finish_time, last_error = EXCLUDED.last_error, \
             last_request_count = EXCLUDED.last_request_count, \
             last_upserted_count = EXCLUDED.last_upserted_count",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &st.source_id,
            &opt_nanos(st.cursor.time.as_ref()),
            &json(&st.cursor.ids),
            &pg_text(&st.etag),
            &pg_text(&st.etag_url),
            &enum_str(&st.state),
            &opt_nanos(st.last_start_time.as_ref()),
            &opt_nanos(st.last_finish_time.as_ref()),
            &pg_text(&st.last_error),
            &st.last_request_count,
            &st.last_upserted_count,
        ],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::last_by_key;

    #[test]
    fn a_later_row_of_a_key_replaces_the_earlier_in_its_place() {
        let rows = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let kept: Vec<((&str, i32), usize)> = last_by_key(&rows, |r| r.0)
            .into_iter()
            .map(|(r, first)| (*r, first))
            .collect();
        assert_eq!(kept, vec![(("a", 3), 0), (("b", 5), 1), (("c", 4), 3)]);
    }
}
