//! The bulk write path: items with their link changes (and a sync's cursor),
//! on one connection of its own, on a blocking thread.
//!
//! A sync writes every item it fetches. Through the async driver each
//! bound value is copied into an owned argument, each statement is a round
//! trip to the driver's thread, and a multi-row statement is built and
//! parsed again for each run of rows; together that cost about as much as
//! SQLite's own work. Here the statements are prepared once per
//! transaction and each row binds borrowed values straight into SQLite.
//!
//! The connection is opened on first use with the pool's settings (WAL,
//! `synchronous = NORMAL`, foreign keys, the same busy timeout) and kept;
//! SQLite serializes it with the pool's connections like any other writer.
//! Transactions begin `IMMEDIATE`, so a write never fails half-way on a lock
//! it could not upgrade.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};

use super::{enum_str, json, nanos};
use crate::domain::{Item, Link, SyncState};
use crate::store::{Result, StoreError};

/// One transaction's worth of item writes.
pub(super) struct ItemWrite {
    pub items: Vec<Item>,
    pub remove_links: Vec<(String, String)>,
    pub put_links: Vec<Link>,
    pub sync_state: Option<SyncState>,
}

/// The store's own write connection, opened on first use.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    path: PathBuf,
    conn: Arc<Mutex<Conn>>,
}

#[derive(Debug)]
enum Conn {
    /// Not opened yet, or dropped after a failed commit.
    Unopened,
    Open(Connection),
    /// The store was closed; writes fail like the pool's do.
    Closed,
}

fn write_error(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.to_string())
}

impl Writer {
    pub fn new(path: &Path) -> Writer {
        Writer {
            path: path.to_path_buf(),
            conn: Arc::new(Mutex::new(Conn::Unopened)),
        }
    }

    /// Closes the connection; later writes fail.
    pub fn close(&self) {
        *self.conn.lock() = Conn::Closed;
    }

    /// Writes `w` in one transaction, on a blocking thread.
    pub async fn write(&self, w: ItemWrite) -> Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_now(&w))
            .await
            .map_err(|e| StoreError::Write(format!("the write thread failed: {e}")))?
    }

    fn write_now(&self, w: &ItemWrite) -> Result<()> {
        let mut guard = self.conn.lock();
        if matches!(*guard, Conn::Unopened) {
            *guard = Conn::Open(open(&self.path).map_err(write_error)?);
        }
        let Conn::Open(conn) = &mut *guard else {
            return Err(StoreError::Write("the store is closed".into()));
        };
        let result = write_in_transaction(conn, w).map_err(write_error);
        if result.is_err() && !conn.is_autocommit() {
            // A failed COMMIT can leave the transaction open; a connection
            // in that state would fail every later write, so drop it.
            *guard = Conn::Unopened;
        }
        result
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 8192;",
    )?;
    Ok(conn)
}

fn write_in_transaction(conn: &mut Connection, w: &ItemWrite) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !w.items.is_empty() {
        let mut upsert = tx.prepare(
            "INSERT INTO items (key, source_id, external_id, title, body, url, state, labels, estimate, \
             parent_key, create_time, update_time, close_time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (key) DO UPDATE SET title = excluded.title, body = excluded.body, url = excluded.url, \
             state = excluded.state, labels = excluded.labels, estimate = excluded.estimate, \
             parent_key = excluded.parent_key, create_time = excluded.create_time, \
             update_time = excluded.update_time, close_time = excluded.close_time",
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
            ])?;
        }
    }
    if !w.remove_links.is_empty() {
        let mut delete =
            tx.prepare("DELETE FROM links WHERE item_key = ?1 AND hypothesis_id = ?2")?;
        for (item_key, hypothesis_id) in &w.remove_links {
            delete.execute(params![item_key, hypothesis_id])?;
        }
    }
    if !w.put_links.is_empty() {
        let mut put = tx.prepare(
            "INSERT INTO links (item_key, hypothesis_id, contribution, origin, rationale, create_time, update_time) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (item_key, hypothesis_id) DO UPDATE SET contribution = excluded.contribution, \
             origin = excluded.origin, rationale = excluded.rationale, update_time = excluded.update_time",
        )?;
        for l in &w.put_links {
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
    }
    if let Some(st) = &w.sync_state {
        tx.execute(
            "INSERT INTO sync_state (source_id, cursor_time, cursor_ids, etag, etag_url, state, last_start_time, \
             last_finish_time, last_error, last_request_count, last_upserted_count) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
             ON CONFLICT (source_id) DO UPDATE SET cursor_time = excluded.cursor_time, cursor_ids = excluded.cursor_ids, \
             etag = excluded.etag, etag_url = excluded.etag_url, state = excluded.state, \
             last_start_time = excluded.last_start_time, last_finish_time = excluded.last_finish_time, \
             last_error = excluded.last_error, last_request_count = excluded.last_request_count, \
             last_upserted_count = excluded.last_upserted_count",
            params![
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
            ],
        )?;
    }
    tx.commit()
}
