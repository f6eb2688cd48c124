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
//! The store also watches that writes can succeed ([`WriteHealth`]): each
//! write's outcome sets it, and each write checks, once it committed, that
//! the path still names the file that was opened (device and inode).
//! SQLite commits happily into a file that was deleted (its descriptor
//! keeps the inode alive) and the next start would not see it, so a write
//! is acknowledged only if the file was still there when it committed. Once the file is gone, every write is refused until a
//! restart, even if a file comes back at the path: the index holds writes
//! the new file may not, and only a restart rebuilds it from the file.
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

use tokio::sync::watch;

use parking_lot::Mutex;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use crate::config::{StoreConfig, Synchronous};
use crate::store::{BoxError, Result, StoreError, WriteHealth};

/// Read connections open at once, at most; more readers wait.
const READERS: usize = 4;

/// The fixed settings of every connection, write or read. WAL lets reads
/// run beside the writer; checkpoints every 8192 pages (32 MiB) rather than
/// 1000 keep a sync's bulk writes from stalling on them. `synchronous` comes
/// from [`Settings`].
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
                       PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 8192;";

/// The configurable settings of the connections (`[store]`).
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// `NORMAL` is durable across a process crash (a power cut may lose
    /// the last transactions, never corrupt); `FULL` syncs every commit.
    pub synchronous: Synchronous,
    /// How long a connection waits for another process's lock before
    /// failing with [`StoreError::Busy`].
    pub busy_timeout: Duration,
    /// Largest size of the file in bytes, 0 for none (the write
    /// connection's `max_page_count`).
    pub max_size: u64,
    /// Test hook: open the write connection read-only while set, the one
    /// way to make SQLite refuse writes that works for root too.
    #[cfg(test)]
    pub read_only_writer: Arc<AtomicBool>,
}

impl Settings {
    pub fn new(config: &StoreConfig) -> Self {
        Settings {
            synchronous: config.synchronous,
            busy_timeout: Duration::from_millis(config.busy_timeout_ms),
            max_size: config.max_size_mib.saturating_mul(1 << 20),
            #[cfg(test)]
            read_only_writer: Arc::default(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::new(&StoreConfig::default())
    }
}

/// What a connection is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    /// The one connection that writes (and creates the file).
    Write,
    /// A connection that only reads; SQLite refuses its writes.
    Read,
}

/// Opens a connection to `path` with the store's settings.
pub(super) fn connect(
    path: &Path,
    role: Role,
    settings: &Settings,
) -> rusqlite::Result<Connection> {
    let flags = match role {
        #[cfg(test)]
        Role::Write if settings.read_only_writer.load(Ordering::Relaxed) => {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        }
        Role::Write => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        Role::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(settings.busy_timeout)?;
    conn.execute_batch(PRAGMAS)?;
    let synchronous = match settings.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    if matches!(role, Role::Write) && settings.max_size > 0 {
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let pages = settings.max_size / page_size.max(1) as u64;
        conn.pragma_update(
            None,
            "max_page_count",
            i64::try_from(pages.max(1)).unwrap_or(i64::MAX),
        )?;
    }
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
    /// The database file is not the one opened any more (deleted or
    /// replaced).
    Gone,
    /// The path of the database could not be checked.
    Io(std::io::Error),
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
            Fail::Gone => {
                return StoreError::Gone {
                    doing,
                    path: String::new(),
                };
            }
            Fail::Io(e) => {
                return StoreError::Unavailable {
                    doing,
                    source: Box::new(e),
                };
            }
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
        let extended = match &e {
            rusqlite::Error::SqliteFailure(f, _) => f.extended_code,
            _ => 0,
        };
        if extended == rusqlite::ffi::SQLITE_READONLY_DBMOVED {
            // SQLite's own finding that the file was moved or deleted.
            return StoreError::Gone {
                doing,
                path: String::new(),
            };
        }
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
            Some(ErrorCode::DiskFull) => StoreError::Full { doing, source },
            Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { doing, source },
            Some(
                ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
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

/// An error with its sources (`a: b: c`), for the log.
fn chain(err: &StoreError) -> String {
    let mut out = err.to_string();
    let mut next = std::error::Error::source(err);
    while let Some(e) = next {
        out.push_str(": ");
        out.push_str(&e.to_string());
        next = e.source();
    }
    out
}

/// A call's result before it is told as a [`StoreError`].
pub(super) type Attempt<T> = std::result::Result<T, Fail>;

/// The identity of a file: device and inode, which a file keeps while it
/// lives and a new file at the same path does not share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// The identity of the file at `path`; `None` if there is none.
fn file_id(path: &Path) -> std::io::Result<Option<FileId>> {
    match std::fs::metadata(path) {
        #[cfg(unix)]
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            Ok(Some(FileId {
                dev: m.dev(),
                ino: m.ino(),
            }))
        }
        // No inode to compare: only a missing file is noticed.
        #[cfg(not(unix))]
        Ok(_) => Ok(Some(FileId { dev: 0, ino: 0 })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The connections of one database file.
#[derive(Debug)]
pub(super) struct Connections {
    path: PathBuf,
    settings: Settings,
    /// The file opened at start: writes are acknowledged only while the
    /// path still names it.
    file: FileId,
    /// Set once the path no longer names `file`; never cleared.
    gone: AtomicBool,
    /// Whether writes can succeed, for health.
    health: watch::Sender<WriteHealth>,
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
        settings: Settings,
        setup: impl FnOnce(&mut Connection) -> Attempt<()>,
    ) -> Attempt<Connections> {
        let mut conn = connect(path, Role::Write, &settings)?;
        let file = file_id(path).map_err(Fail::Io)?.ok_or(Fail::Gone)?;
        setup(&mut conn)?;
        Ok(Connections {
            path: path.to_path_buf(),
            settings,
            file,
            gone: AtomicBool::new(false),
            health: watch::Sender::new(WriteHealth::Writable),
            writer: Mutex::new(Some(conn)),
            idle: Mutex::new(Vec::new()),
            readers: Arc::new(tokio::sync::Semaphore::new(READERS)),
            closed: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether writes can succeed, as it changes.
    pub fn health(&self) -> watch::Receiver<WriteHealth> {
        self.health.subscribe()
    }

    /// Runs `f` in one `IMMEDIATE` transaction on the write connection, on
    /// a blocking thread; commits if it succeeds and the file is still the
    /// one opened. The outcome sets [`health`](Self::health).
    pub async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        doing: &str,
        f: impl FnOnce(&Transaction<'_>) -> Attempt<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        let result = tokio::task::spawn_blocking(move || this.write_now(f))
            .await
            .unwrap_or_else(|e| Err(Fail::Thread(e)))
            .map_err(|e| match e.during(doing) {
                StoreError::Gone { doing, .. } => StoreError::Gone {
                    doing,
                    path: self.path.display().to_string(),
                },
                e => e,
            });
        match &result {
            Ok(_) => self.set_health(WriteHealth::Writable, None),
            Err(e) => {
                if let Some(h) = WriteHealth::after(e) {
                    self.set_health(h, Some(e));
                }
            }
        }
        result
    }

    /// Whether the path still names the file opened; marks the store gone
    /// for good when it does not.
    fn check_file(&self) -> Attempt<()> {
        if self.gone.load(Ordering::Acquire) {
            return Err(Fail::Gone);
        }
        match file_id(&self.path) {
            Ok(Some(id)) if id == self.file => Ok(()),
            Ok(_) => {
                self.gone.store(true, Ordering::Release);
                Err(Fail::Gone)
            }
            // The path cannot be looked at (its folder's permissions
            // changed): nothing says the file went, and failing a write
            // that committed would leave the index without it.
            Err(e) => {
                tracing::warn!(db = %self.path.display(), error = %e,
                    "cannot check that the database file is still the one opened");
                Ok(())
            }
        }
    }

    fn write_now<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Attempt<T>) -> Attempt<T> {
        let mut guard = self.writer.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(Fail::Closed);
        }
        if self.gone.load(Ordering::Acquire) {
            return Err(Fail::Gone);
        }
        if guard.is_none() {
            // Reopening would create a new, empty file where one was deleted.
            self.check_file()?;
            *guard = Some(connect(&self.path, Role::Write, &self.settings)?);
        }
        let Some(conn) = guard.as_mut() else {
            unreachable!("the write connection was opened just above");
        };
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            // Checked after the commit, so that a file deleted before or
            // while committing is noticed; the commit went into the
            // deleted file, which nothing reads again, and is not
            // acknowledged. One `stat` (about 1.3 µs here), against 70 µs
            // for the smallest write.
            self.check_file()?;
            Ok(out)
        })();
        let reopen = match &result {
            Ok(_) => false,
            // A failed COMMIT can leave the transaction open; a connection
            // in that state would fail every later write, so drop it.
            Err(_) if !conn.is_autocommit() => true,
            // SQLite opens a file it cannot write read-only and stays so:
            // only a new connection sees permissions fixed or a disk
            // remounted.
            Err(Fail::Sql(e)) => matches!(
                e.sqlite_error_code(),
                Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure)
            ),
            Err(_) => false,
        };
        if reopen {
            *guard = None;
        }
        result
    }

    /// Sets the write health, logging each change once: an error line
    /// saying what to do when writes start failing, a line when they
    /// succeed again. A store whose file is gone stays gone.
    fn set_health(&self, now: WriteHealth, cause: Option<&StoreError>) {
        let now = if self.gone.load(Ordering::Acquire) {
            WriteHealth::Gone
        } else {
            now
        };
        // Watchers wake only on a change, not on every write.
        let mut was = now;
        self.health.send_if_modified(|h| {
            was = std::mem::replace(h, now);
            was != now
        });
        if was == now {
            return;
        }
        let path = self.path.display();
        let cause = cause.map(chain).unwrap_or_default();
        match now {
            WriteHealth::Writable => {
                tracing::info!(db = %path, "database writes succeed again; health is SERVING")
            }
            WriteHealth::Gone => tracing::error!(
                db = %path,
                "the database file was deleted or replaced while plumbline had it open; \
                 no write is acknowledged from now on and health is NOT_SERVING. Restart \
                 plumbline: it opens the file at that path (a new, empty one if none is \
                 there), so restore the file from a backup first if you have one"
            ),
            WriteHealth::Busy => tracing::error!(
                db = %path, %cause,
                "database writes fail: another process holds the database; health is \
                 NOT_SERVING until it lets go"
            ),
            WriteHealth::Full => tracing::error!(
                db = %path, %cause,
                "database writes fail: the disk or [store] max_size_mib is full; health is \
                 NOT_SERVING until space is freed"
            ),
            WriteHealth::ReadOnly => tracing::error!(
                db = %path, %cause,
                "database writes fail: the database is read-only; health is NOT_SERVING \
                 until the file and its folder are writable"
            ),
            WriteHealth::Failing => tracing::error!(
                db = %path, %cause,
                "database writes fail; health is NOT_SERVING until one succeeds"
            ),
        }
    }

    /// The periodic check: is the file still the one opened, and while
    /// writes fail, can an empty write (one that rewrites the header's
    /// `user_version` with its own value, so that a page is written) now
    /// succeed? Sets [`health`](Self::health).
    ///
    /// A full store is not probed: rewriting a page needs no new space, so
    /// the probe would succeed while every write that adds data still
    /// fails, and health would flap. It says SERVING again when a write
    /// succeeds (a client's, a sync's, or the delete that freed space).
    pub async fn check(self: &Arc<Self>) {
        if self.gone.load(Ordering::Acquire) || self.closed.load(Ordering::Acquire) {
            return;
        }
        let this = self.clone();
        let checked = tokio::task::spawn_blocking(move || this.check_file())
            .await
            .unwrap_or_else(|e| Err(Fail::Thread(e)));
        if let Err(Fail::Gone) = checked {
            self.set_health(WriteHealth::Gone, None);
            return;
        }
        let now = *self.health.borrow();
        if now.is_writable() || now == WriteHealth::Full {
            return;
        }
        // The probe's outcome sets the health, as any write's does.
        let _ = self
            .write("check that the database can be written", |tx| {
                let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
                tx.pragma_update(None, "user_version", version)?;
                Ok(())
            })
            .await;
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
            None => connect(&self.path, Role::Read, &self.settings)?,
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
    fn the_durability_and_size_settings_reach_the_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        for (synchronous, want) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let settings = Settings::new(&StoreConfig {
                synchronous,
                max_size_mib: 2,
                ..StoreConfig::default()
            });
            for role in [Role::Write, Role::Read] {
                let conn = connect(&path, role, &settings).unwrap();
                let got: i64 = conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))
                    .unwrap();
                assert_eq!(got, want, "{synchronous:?} {role:?}");
            }
            let conn = connect(&path, Role::Write, &settings).unwrap();
            let pages: i64 = conn
                .pragma_query_value(None, "max_page_count", |r| r.get(0))
                .unwrap();
            assert_eq!(pages, 512, "2 MiB of 4 KiB pages");
        }
    }

    #[test]
    fn failures_are_told_by_meaning_with_sqlite_words_as_source() {
        use rusqlite::ffi;
        let cases = [
            (ffi::SQLITE_BUSY, "busy"),
            (ffi::SQLITE_LOCKED, "busy"),
            (ffi::SQLITE_CONSTRAINT_FOREIGNKEY, "conflict"),
            (ffi::SQLITE_BUSY_SNAPSHOT, "busy"),
            (ffi::SQLITE_CANTOPEN, "unavailable"),
            (ffi::SQLITE_IOERR_WRITE, "unavailable"),
            (ffi::SQLITE_IOERR_FSYNC, "unavailable"),
            (ffi::SQLITE_FULL, "full"),
            (ffi::SQLITE_READONLY, "read-only"),
            (ffi::SQLITE_READONLY_RECOVERY, "read-only"),
            (ffi::SQLITE_READONLY_CANTLOCK, "read-only"),
            (ffi::SQLITE_READONLY_ROLLBACK, "read-only"),
            (ffi::SQLITE_READONLY_DIRECTORY, "read-only"),
            (ffi::SQLITE_READONLY_DBMOVED, "gone"),
            (ffi::SQLITE_CORRUPT, "corrupt"),
            (ffi::SQLITE_NOTADB, "corrupt"),
            (ffi::SQLITE_ERROR, "backend"),
        ];
        for (code, want) in cases {
            let e = sqlite(code).during("store a goal");
            assert_eq!(e.kind(), want, "SQLite code {code}");
            if want == "gone" {
                continue;
            }
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
