//! The SQLite connections: their settings in one place, the one write
//! connection and a few read connections, and how a call reaches them from
//! async code.
//!
//! SQLite has one writer at a time, so the store keeps one write connection
//! behind a mutex: writes queue there instead of retrying on a busy lock,
//! and every write (a sync's bulk upsert as much as a goal) is one
//! `IMMEDIATE` transaction, so none fails half-way on a lock it could not
//! upgrade. Reads use their own connections, which WAL lets run beside the
//! writer. Every call runs on `spawn_blocking`, never on a tokio worker.
//!
//! The read connections are a small pool written here rather than taken
//! from r2d2 or deadpool: their SQLite crates pin a rusqlite (and so a
//! `libsqlite3-sys`, of which one binary can link only one) that does not
//! match ours, and what is needed is a stack of idle connections and a
//! semaphore, a few lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::store::{BoxError, Result, StoreError};

/// How long a connection waits for another process's lock before failing
/// with [`StoreError::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections open at once, at most; more readers wait.
const READERS: usize = 4;

/// The settings of every connection, write or read. WAL lets reads run
/// beside the writer; `synchronous = NORMAL` is durable across a process
/// crash (a power cut may lose the last transactions, never corrupt);
/// checkpoints every 8192 pages (32 MiB) rather than 1000 keep a sync's
/// bulk writes from stalling on them.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                       PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 8192;";

/// What a connection is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// The one connection that writes (and creates the file).
    Write,
    /// A connection that only reads; SQLite refuses its writes.
    Read,
}

/// Opens a connection to `path` with the store's settings.
pub(super) fn connect(path: &Path, role: Role) -> rusqlite::Result<Connection> {
    let flags = match role {
        Role::Write => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Role::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(PRAGMAS)?;
    // Room for every statement the store runs, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Why a call on a connection failed, before it is told as a
/// [`StoreError`] with what the caller was doing.
#[derive(Debug)]
pub(super) enum Fail {
    Sql(rusqlite::Error),
    /// A stored value that cannot be read back as the model.
    Corrupt(BoxError),
    Closed,
    /// The schema could not be brought up to date.
    Migrate(super::migrate::MigrateError),
    /// The blocking thread running the call panicked or was cancelled.
    Thread(tokio::task::JoinError),
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<rusqlite::types::FromSqlError> for Fail {
    fn from(e: rusqlite::types::FromSqlError) -> Self {
        Fail::Corrupt(Box::new(e))
    }
}

impl Fail {
    /// The failure by its meaning, keeping the driver's error as source.
    pub fn during(self, doing: &str) -> StoreError {
        let doing = doing.to_string();
        let e = match self {
            Fail::Sql(e) => e,
            Fail::Corrupt(source) => return StoreError::Corrupt { doing, source },
            Fail::Closed => return StoreError::Closed,
            Fail::Migrate(e) => {
                return StoreError::Migrate {
                    doing,
                    source: Box::new(e),
                };
            }
            Fail::Thread(e) => {
                return StoreError::Backend {
                    doing,
                    source: Box::new(e),
                };
            }
        };
        let code = e.sqlite_error_code();
        let corrupt_value = matches!(
            e,
            rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::InvalidColumnType(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
        );
        let source: BoxError = Box::new(e);
        match code {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Busy { doing, source }
            }
            Some(ErrorCode::ConstraintViolation) => StoreError::Conflict { doing, source },
            Some(
                ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::NoLargeFileSupport,
            ) => StoreError::Unavailable { doing, source },
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt { doing, source }
            }
            _ if corrupt_value => StoreError::Corrupt { doing, source },
            _ => StoreError::Backend { doing, source },
        }
    }
}

/// A call's result before it is told as a [`StoreError`].
pub(super) type Attempt<T> = std::result::Result<T, Fail>;

/// The connections of one database file.
#[derive(Debug)]
pub(super) struct Connections {
    path: PathBuf,
    /// `None` before first use and after a failed commit left the
    /// connection inside a transaction (it is reopened on next use).
    writer: Mutex<Option<Connection>>,
    /// Idle read connections.
    idle: Mutex<Vec<Connection>>,
    /// One permit per read connection that may be open.
    readers: Arc<tokio::sync::Semaphore>,
    closed: AtomicBool,
}

impl Connections {
    /// Opens the write connection, creating the file if needed, and hands
    /// it to `setup` (the migrations) before any other call can use it.
    pub fn open(
        path: &Path,
        setup: impl FnOnce(&mut Connection) -> Attempt<()>,
    ) -> Attempt<Connections> {
        let mut conn = connect(path, Role::Write)?;
        setup(&mut conn)?;
        Ok(Connections {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(conn)),
            idle: Mutex::new(Vec::new()),
            readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            closed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `IMMEDIATE` transaction on the write connection, on
    /// a blocking thread; commits if it succeeds.
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        doing: &str,
        f: impl FnOnce(&Transaction<'_>) -> Attempt<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_now(f))
            .await
            .unwrap_or_else(|e| Err(Fail::Thread(e)))
            .map_err(|e| e.during(doing))
    }

    fn write_now<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Attempt<T>) -> Attempt<T> {
        let mut guard = self.writer.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(Fail::Closed);
        }
        if guard.is_none() {
            *guard = Some(connect(&self.path, Role::Write)?);
        }
        let Some(conn) = guard.as_mut() else {
            unreachable!("the write connection was opened just above");
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        if result.is_err() && !conn.is_autocommit() {
            // A failed COMMIT can leave the transaction open; a connection
            // in that state would fail every later write, so drop it.
            *guard = None;
        }
        result
    }

    /// Runs `f` on a read connection, on a blocking thread.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        doing: &str,
        f: impl FnOnce(&Connection) -> Attempt<T> + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = this.read_now(f);
            drop(permit);
            result
        })
        .await
        .unwrap_or_else(|e| Err(Fail::Thread(e)))
        .map_err(|e| e.during(doing))
    }

    fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Attempt<T>) -> Attempt<T> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Fail::Closed);
        }
        let conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => connect(&self.path, Role::Read)?,
        };
        let result = f(&conn);
        if !self.closed.load(Ordering::Acquire) {
            self.idle.lock().push(conn);
        }
        result
    }

    /// Closes every connection (the last one to close checkpoints the WAL
    /// into the file); later calls fail with [`StoreError::Closed`].
    pub async fn close(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Release);
        self.readers.close();
        let this = self.clone();
        let closing = tokio::task::spawn_blocking(move || {
            drop(this.idle.lock().drain(..).collect::<Vec<_>>());
            // Taken under the lock: a write in progress finishes first.
            drop(this.writer.lock().take());
        });
        if let Err(e) = closing.await {
            tracing::warn!(error = %e, "closing the database connections failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> Fail {
        Fail::Sql(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            Some("from SQLite".into()),
        ))
    }

    #[test]
    fn failures_are_told_by_meaning_with_sqlite_words_as_source() {
        use rusqlite::ffi;
        let cases = [
            (ffi::SQLITE_BUSY, "busy"),
            (ffi::SQLITE_LOCKED, "busy"),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, "conflict"),
            (ffi::SQLITE_CANTOPEN, "unavailable"),
            (ffi::SQLITE_FULL, "unavailable"),
            (ffi::SQLITE_CORRUPT, "corrupt"),
            (ffi::SQLITE_NOTADB, "corrupt"),
            (ffi::SQLITE_ERROR, "backend"),
        ];
        for (code, want) in cases {
            let e = sqlite(code).during("store a goal");
            let got = match &e {
                StoreError::Busy { .. } => "busy",
                StoreError::Conflict { .. } => "conflict",
                StoreError::Unavailable { .. } => "unavailable",
                StoreError::Corrupt { .. } => "corrupt",
                StoreError::Backend { .. } => "backend",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "SQLite code {code}");
            assert!(e.to_string().contains("store a goal"), "{e}");
            let source = std::error::Error::source(&e).map(ToString::to_string);
            assert!(
                source.as_deref().is_some_and(|s| s.contains("from SQLite")),
                "{source:?}"
            );
        }
        assert!(matches!(Fail::Closed.during("x"), StoreError::Closed));
    }
}
