//! The PostgreSQL connections: a pool (deadpool-postgres, the pool the
//! tokio-postgres ecosystem keeps), how a call's transaction is run and
//! retried, and what a driver's error means to the caller.
//!
//! Every write is one transaction at PostgreSQL's default isolation (READ
//! COMMITTED) made of row upserts and deletes by key, so two sidecars writing
//! the same row serialize on its row lock and neither write is lost. A
//! transaction the server aborts to break a deadlock or a serialization
//! conflict (SQLSTATE 40P01, 40001; CockroachDB reports every contention so)
//! is run again from the start, a few times, before the caller sees
//! [`StoreError::Busy`].
//!
//! TLS: rustls verified against the system's roots, required to any host
//! that is not this machine (see [`crate::pg`]), so a password never crosses
//! a network in the clear.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;

use crate::store::{BoxError, Result, StoreError, WriteHealth};

/// A transaction of the store (statements prepared once per connection).
pub(in crate::store) type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// A future borrowed from a transaction and a call's arguments.
pub(in crate::store) type TxFuture<'c, T> = Pin<Box<dyn Future<Output = Attempt<T>> + Send + 'c>>;

/// How many times a transaction aborted by a conflict is run, in all.
const ATTEMPTS: u32 = 8;

/// Why a call failed, before it is told as a [`StoreError`] with what the
/// caller was doing.
#[derive(Debug)]
pub(in crate::store) enum Fail {
    Sql(tokio_postgres::Error),
    Pool(PoolError),
    /// A stored value that cannot be read back as the model.
    Corrupt(BoxError),
    /// The schema could not be brought up to date.
    Migrate(BoxError),
    Closed,
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Sql(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Fail::Sql(e),
            e => Fail::Pool(e),
        }
    }
}

/// A call's result before it is told as a [`StoreError`].
pub(in crate::store) type Attempt<T> = std::result::Result<T, Fail>;

impl Fail {
    /// Whether running the transaction again can succeed: the server
    /// aborted it for a deadlock or a serialization conflict.
    fn is_conflict(&self) -> bool {
        matches!(self, Fail::Sql(e) if e.code().is_some_and(|c|
            *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
    }

    /// The failure by its meaning, keeping the driver's error as source.
    pub fn during(self, doing: &str) -> StoreError {
        let doing = doing.to_string();
        let e = match self {
            Fail::Sql(e) => e,
            Fail::Corrupt(source) => return StoreError::Corrupt { doing, source },
            Fail::Migrate(source) => return StoreError::Migrate { doing, source },
            Fail::Closed => return StoreError::Closed,
            Fail::Pool(PoolError::Closed) => return StoreError::Closed,
            Fail::Pool(e) => {
                return StoreError::Unavailable {
                    doing,
                    source: Box::new(e),
                };
            }
        };
        let code = e.code().map(|c| c.code().to_string());
        let transient = crate::pg::is_transient(&e);
        // The server's own words (message, detail, hint) as the source;
        // tokio-postgres' Display shows only "db error".
        let source: BoxError = crate::pg::describe(e).into();
        match code.as_deref() {
            Some("40001" | "40P01" | "55P03") => StoreError::Busy { doing, source },
            Some(c) if c.starts_with("23") => StoreError::Conflict { doing, source },
            Some("53100") => StoreError::Full { doing, source },
            Some("25006") => StoreError::ReadOnly { doing, source },
            // A value the schema cannot hold (out of range, a bad
            // encoding): the caller's checks let it through.
            Some(c) if c.starts_with("22") => StoreError::Conflict { doing, source },
            _ if transient => StoreError::Unavailable { doing, source },
            Some(c) if c.starts_with("28") || c.starts_with("3D") => {
                StoreError::Unavailable { doing, source }
            }
            _ => StoreError::Backend { doing, source },
        }
    }
}

/// The pool of one database, and whether writes can succeed.
pub(in crate::store) struct Connections {
    pool: Pool,
    /// For the connections made outside the pool (the change listener).
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// This sidecar's id in the change log and on leases.
    replica: String,
    health: watch::Sender<WriteHealth>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Connections {
    // The pool's configuration holds the password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Settings of the pool.
#[derive(Debug, Clone)]
pub(in crate::store) struct Settings {
    pub max_connections: usize,
    /// How long a call waits for a connection (or a lock) before failing.
    pub wait: Duration,
}

impl Connections {
    /// A pool on the database `dsn` names (nothing is connected yet). The
    /// error never holds the DSN.
    pub fn new(dsn: &str, settings: &Settings) -> std::result::Result<Connections, String> {
        // The parser's message can quote the DSN (with its password), so
        // it is never shown; libpq takes the scheme in any case, the parser
        // only in lower case.
        let dsn = lowercase_scheme(dsn);
        let mut config = tokio_postgres::Config::from_str(&dsn).map_err(|_| {
            "the PostgreSQL DSN does not parse; its form is \
             postgres://user:password@host:port/database?sslmode=require"
                .to_string()
        })?;
        crate::pg::require_tls_off_loopback(&mut config, "the PostgreSQL DSN")?;
        let lock_ms = settings.wait.as_millis().max(1);
        let own = format!("-c lock_timeout={lock_ms} -c TimeZone=UTC");
        let options = match config.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} {own}"),
            _ => own,
        };
        config
            .options(&options)
            .connect_timeout(settings.wait)
            .application_name("plumbline");
        let tls =
            tokio_postgres_rustls::MakeRustlsConnect::new((*crate::pg::tls_config()?).clone());
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.wait))
            .create_timeout(Some(settings.wait))
            .recycle_timeout(Some(settings.wait))
            .build()
            .map_err(|e| format!("the PostgreSQL pool could not be built: {e}"))?;
        Ok(Connections {
            pool,
            config,
            tls,
            replica: replica_id(),
            health: watch::Sender::new(WriteHealth::Writable),
            closed: AtomicBool::new(false),
        })
    }

    /// This sidecar's id in the change log and on leases.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// A connection of its own, outside the pool (for LISTEN), with its
    /// driver future, which the caller polls.
    pub async fn dedicated(
        &self,
    ) -> std::result::Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A connection of the pool.
    pub async fn client(&self) -> Attempt<deadpool_postgres::Object> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Fail::Closed);
        }
        Ok(self.pool.get().await?)
    }

    /// Whether writes can succeed, as it changes.
    pub fn health(&self) -> watch::Receiver<WriteHealth> {
        self.health.subscribe()
    }

    fn set_health(&self, to: WriteHealth, cause: Option<&StoreError>) {
        let changed = self.health.send_if_modified(|h| {
            let changed = *h != to;
            *h = to;
            changed
        });
        if changed {
            match cause {
                Some(e) => {
                    tracing::warn!(health = ?to, error = %chain(e), "database writes failing")
                }
                None => tracing::info!(health = ?to, "database writable again"),
            }
        }
    }

    /// Runs `f` on `args` in one transaction and commits; a transaction the
    /// server aborted for a conflict is run again. The outcome sets
    /// [`health`](Self::health).
    pub async fn write<A, T, F>(&self, doing: &str, args: A, f: F) -> Result<T>
    where
        A: Sync,
        T: Send,
        F: for<'c> Fn(&'c Tx<'c>, &'c A) -> TxFuture<'c, T> + Sync,
    {
        let result = self
            .transact(&args, &f, false)
            .await
            .map_err(|e| e.during(doing));
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

    /// [`write`](Self::write), and when `changed` is not empty, appends it
    /// to the change log in the same transaction (see
    /// `migrations/postgres/0002_replicas.sql`) and wakes the other
    /// sidecars' listeners at commit.
    pub async fn write_logged<A, T, F>(
        &self,
        doing: &str,
        changed: &crate::store::Changed,
        args: A,
        f: F,
    ) -> Result<T>
    where
        A: Sync,
        T: Send,
        F: for<'c> Fn(&'c Tx<'c>, &'c A) -> TxFuture<'c, T> + Sync,
    {
        if changed.is_empty() {
            return self.write(doing, args, f).await;
        }
        let record = crate::store::codec::json(changed);
        let replica = self.replica.as_str();
        let f = &f;
        self.write(
            doing,
            (args, record, replica),
            move |tx, (args, record, replica)| {
                Box::pin(async move {
                    let out = f(tx, args).await?;
                    log_change(tx, replica, record).await?;
                    Ok(out)
                })
            },
        )
        .await
    }

    /// Runs `f` on `args` in one read-only transaction (one snapshot of
    /// the database at READ COMMITTED per statement; callers that need one
    /// view across statements read in one statement).
    pub async fn read<A, T, F>(&self, doing: &str, args: A, f: F) -> Result<T>
    where
        A: Sync,
        T: Send,
        F: for<'c> Fn(&'c Tx<'c>, &'c A) -> TxFuture<'c, T> + Sync,
    {
        self.transact(&args, &f, true)
            .await
            .map_err(|e| e.during(doing))
    }

    async fn transact<A, T, F>(&self, args: &A, f: &F, read_only: bool) -> Attempt<T>
    where
        A: Sync,
        T: Send,
        F: for<'c> Fn(&'c Tx<'c>, &'c A) -> TxFuture<'c, T> + Sync,
    {
        let mut attempt = 1;
        loop {
            let mut client = self.client().await?;
            let outcome: Attempt<T> = async {
                let tx = client
                    .build_transaction()
                    .read_only(read_only)
                    .start()
                    .await?;
                let out = f(&tx, args).await?;
                tx.commit().await?;
                Ok(out)
            }
            .await;
            match outcome {
                Err(e) if e.is_conflict() && attempt < ATTEMPTS => {
                    attempt += 1;
                    // A short, growing, jittered pause, so that two
                    // sidecars retrying the same rows do not meet again.
                    let jitter = u64::from(rand_jitter()) % 5;
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5 + jitter))
                        .await;
                }
                other => return other,
            }
        }
    }

    /// Checks that a write can succeed (a `SELECT 1` on a pooled
    /// connection) and updates [`health`](Self::health).
    pub async fn check(&self) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let outcome: Attempt<()> = async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await?;
            Ok(())
        }
        .await;
        match outcome.map_err(|e| e.during("check the database")) {
            Ok(()) => self.set_health(WriteHealth::Writable, None),
            Err(e) => {
                let h = WriteHealth::after(&e).unwrap_or(WriteHealth::Failing);
                self.set_health(h, Some(&e));
            }
        }
    }

    /// Closes the pool; later calls fail with [`StoreError::Closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
    }
}

/// `dsn` with its URL scheme (`POSTGRES://`) in lower case.
pub(in crate::store) fn lowercase_scheme(dsn: &str) -> String {
    match dsn.split_once("://") {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case("postgres")
                || scheme.eq_ignore_ascii_case("postgresql") =>
        {
            format!("{}://{rest}", scheme.to_ascii_lowercase())
        }
        _ => dsn.to_string(),
    }
}

/// The channel of the change log's notifications.
pub(in crate::store) const CHANGES_CHANNEL: &str = "plumbline_changes";

/// Appends one entry to the change log, as the transaction's last
/// statements: the counter row stays locked until commit, so entries are
/// numbered in commit order.
async fn log_change(tx: &Tx<'_>, replica: &str, record: &str) -> Attempt<()> {
    let next = tx
        .prepare_cached("UPDATE change_seq SET seq = seq + 1 WHERE id = 1 RETURNING seq")
        .await?;
    let seq: i64 = tx.query_one(&next, &[]).await?.get(0);
    let insert = tx
        .prepare_cached(
            "INSERT INTO change_log (seq, replica, commit_time, changed) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    tx.execute(&insert, &[&seq, &replica, &now, &record])
        .await?;
    let notify = tx.prepare_cached("SELECT pg_notify($1, $2)").await?;
    tx.execute(&notify, &[&CHANGES_CHANNEL, &seq.to_string()])
        .await?;
    Ok(())
}

/// A new id for this process: its pid and 48 random bits, so that a
/// restarted sidecar never takes the leases of the one it replaced for
/// its own.
fn replica_id() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{hex}", std::process::id())
}

/// A few bits of randomness for the retry's jitter.
fn rand_jitter() -> u8 {
    let mut b = [0u8; 1];
    // Without randomness the pause is only shorter by a few ms.
    let _ = getrandom::fill(&mut b);
    b[0]
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

/// The store's pool, shared by its clones.
pub(in crate::store) type Shared = Arc<Connections>;
