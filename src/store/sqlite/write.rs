//! The bulk write path: items with their link changes (and a sync's cursor)
//! in one transaction of the write connection.
//!
//! A sync writes every item it fetches, so this is where SQLite's own work
//! should be all the cost: each statement is prepared once and kept in the
//! connection's statement cache, and each row binds borrowed values
//! straight into SQLite, with no owned copy per value and no round trip to
//! another thread per statement.

use rusqlite::{Transaction, params};

use super::{enum_str, json, nanos};
use crate::domain::{Item, ItemSplit, Link, Removal, SyncState};

/// One transaction's worth of item writes.
pub(super) struct ItemWrite {
    pub items: Vec<Item>,
    pub remove_links: Vec<(String, String)>,
    pub put_links: Vec<Link>,
    pub sync_state: Option<SyncState>,
    /// The record of a split these items are the slices of.
    pub split: Option<ItemSplit>,
    /// Removed items the tracker returned again: active from now on.
    pub restore: Vec<String>,
    /// Items the tracker no longer returns, by key.
    pub remove: Vec<(String, Removal)>,
}

/// Writes `w` inside `tx` (the caller commits).
pub(super) fn write_items(tx: &Transaction<'_>, w: &ItemWrite) -> rusqlite::Result<()> {
    if !w.items.is_empty() {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO items (key, source_id, external_id, title, body, url, state, labels, estimate, \
             parent_key, create_time, update_time, close_time, votes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (key) DO UPDATE SET title = excluded.title, body = excluded.body, url = excluded.url, \
             state = excluded.state, labels = excluded.labels, estimate = excluded.estimate, \
             parent_key = excluded.parent_key, create_time = excluded.create_time, \
             update_time = excluded.update_time, close_time = excluded.close_time, \
             votes = excluded.votes",
        )?;
        for it in &w.items {
            upsert.execute(params![
                it.key(),
                it.source_id,
                it.external_id,
                it.title,
                it.body,
                it.url,
                enum_str(&it.state),
                json(&it.labels),
                it.estimate,
                it.parent_key,
                it.create_time.as_ref().map(nanos),
                it.update_time.as_ref().map(nanos),
                it.close_time.as_ref().map(nanos),
                it.votes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            ])?;
        }
    }
    if !w.remove_links.is_empty() {
        let mut delete =
            tx.prepare_cached("DELETE FROM links WHERE item_key = ?1 AND hypothesis_id = ?2")?;
        for (item_key, hypothesis_id) in &w.remove_links {
            delete.execute(params![item_key, hypothesis_id])?;
        }
    }
    put_links(tx, &w.put_links)?;
    if !w.restore.is_empty() {
        let mut restore = tx.prepare_cached("DELETE FROM item_removals WHERE item_key = ?1")?;
        for key in &w.restore {
            restore.execute([key])?;
        }
    }
    if !w.remove.is_empty() {
        let mut remove = tx.prepare_cached(
            "INSERT INTO item_removals (item_key, remove_time, reason, detail) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (item_key) DO UPDATE SET remove_time = excluded.remove_time, \
             reason = excluded.reason, detail = excluded.detail",
        )?;
        for (key, r) in &w.remove {
            remove.execute(params![
                key,
                nanos(&r.remove_time),
                enum_str(&r.reason),
                r.detail
            ])?;
        }
    }
    if let Some(st) = &w.sync_state {
        put_sync_state(tx, st)?;
    }
    if let Some(sp) = &w.split {
        tx.prepare_cached(
            "INSERT INTO item_splits (item_key, plan_kind, hypothesis_ids, create_time) \
             VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (item_key) DO UPDATE SET plan_kind = excluded.plan_kind, \
             hypothesis_ids = excluded.hypothesis_ids, create_time = excluded.create_time",
        )?
        .execute(params![
            sp.item_key,
            sp.plan_kind,
            json(&sp.hypothesis_ids),
            nanos(&sp.create_time),
        ])?;
    }
    Ok(())
}

/// Inserts or replaces links by (item, hypothesis).
pub(super) fn put_links(tx: &Transaction<'_>, links: &[Link]) -> rusqlite::Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let mut put = tx.prepare_cached(
        "INSERT INTO links (item_key, hypothesis_id, contribution, origin, rationale, create_time, update_time) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (item_key, hypothesis_id) DO UPDATE SET contribution = excluded.contribution, \
         origin = excluded.origin, rationale = excluded.rationale, update_time = excluded.update_time",
    )?;
    for l in links {
        put.execute(params![
            l.item_key,
            l.hypothesis_id,
            l.contribution,
            enum_str(&l.origin),
            l.rationale,
            nanos(&l.create_time),
            nanos(&l.update_time),
        ])?;
    }
    Ok(())
}

/// Inserts or replaces a source's sync state.
pub(super) fn put_sync_state(tx: &Transaction<'_>, st: &SyncState) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sync_state (source_id, cursor_time, cursor_ids, etag, etag_url, state, last_start_time, \
         last_finish_time, last_error, last_request_count, last_upserted_count) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (source_id) DO UPDATE SET cursor_time = excluded.cursor_time, cursor_ids = excluded.cursor_ids, \
         etag = excluded.etag, etag_url = excluded.etag_url, state = excluded.state, \
         last_start_time = excluded.last_start_time, last_finish_time = excluded.last_finish_time, \
         last_error = excluded.last_error, last_request_count = excluded.last_request_count, \
         last_upserted_count = excluded.last_upserted_count",
    )?
    .execute(params![
        st.source_id,
        st.cursor.time.as_ref().map(nanos),
        json(&st.cursor.ids),
        st.etag,
        st.etag_url,
        enum_str(&st.state),
        st.last_start_time.as_ref().map(nanos),
        st.last_finish_time.as_ref().map(nanos),
        st.last_error,
        st.last_request_count,
        st.last_upserted_count,
    ])?;
    Ok(())
}
