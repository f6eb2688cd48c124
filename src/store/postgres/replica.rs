//! What lets several sidecars share one PostgreSQL database: the change log
//! they follow, the notifications that wake them, the write turn that lets
//! one write at a time, and the leases of background work.
//!
//! - **Change log**: every write that changes the index appends one entry
//!   in its own transaction, numbered in commit order without gaps (see
//!   `migrations/postgres/0002_replicas.sql` and `conn::log_change`).
//! - **Notifications**: a connection of its own LISTENs on the log's
//!   channel and bumps a counter on each NOTIFY; it reconnects after a
//!   failure. Followers also poll, so a lost notification (or an engine
//!   without LISTEN) only delays them.
//! - **Write turn**: a session advisory lock, taken on a pooled connection
//!   for the length of one engine write; dropping the turn unlocks it (or,
//!   if it cannot, closes the connection, which unlocks it too).
//! - **Leases**: a row per kind of background work, taken when free,
//!   expired or already ours, in one statement.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::conn::{Attempt, CHANGES_CHANNEL, Connections, Fail};
use crate::store::{ChangeRecord, Changed, Result, WriteTurn};

/// The write turn's advisory lock key ("plb-writ").
const WRITE_KEY: i64 = 0x706c_622d_7772_6974;

/// How long the listener waits before connecting again after a failure.
const RECONNECT: Duration = Duration::from_secs(1);

/// The change log's listener: bumps `signal` on every notification.
pub(super) struct Listener {
    pub signal: watch::Sender<u64>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Listener {
    /// Starts listening on `db`'s change channel in the background.
    pub fn start(db: Arc<Connections>) -> Listener {
        let signal = watch::Sender::new(0u64);
        let task = tokio::spawn(listen(db, signal.clone()));
        Listener {
            signal,
            task: parking_lot::Mutex::new(Some(task)),
        }
    }

    pub fn stop(&self) {
        if let Some(t) = self.task.lock().take() {
            t.abort();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn listen(db: Arc<Connections>, signal: watch::Sender<u64>) {
    while !db.is_closed() {
        match db.dedicated().await {
            Ok((client, mut connection)) => {
                // The LISTEN is sent through the client while the
                // connection is polled here, which also yields the
                // notifications.
                let statement = format!("LISTEN {CHANGES_CHANNEL}");
                let listen = client.batch_execute(&statement);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        done = &mut listen, if !listening => {
                            if let Err(e) = done {
                                tracing::warn!(error = %crate::pg::describe(e), "LISTEN on the change log failed");
                                break;
                            }
                            listening = true;
                            // Anything committed while not listening is
                            // read by the followers' next poll; wake them.
                            signal.send_modify(|n| *n += 1);
                        }
                        message = std::future::poll_fn(|cx| connection.poll_message(cx)) => {
                            match message {
                                Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                                    signal.send_modify(|n| *n += 1);
                                }
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(error = %crate::pg::describe(e), "the change log's listener lost its connection");
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %crate::pg::describe(e), "the change log's listener cannot connect");
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// The change log after `seq`, in order, at most `limit`.
pub(super) async fn changes_after(
    db: &Connections,
    seq: i64,
    limit: usize,
) -> Result<Vec<ChangeRecord>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.read("read the change log", (seq, limit), |tx, (seq, limit)| {
        Box::pin(async move {
            let stmt = tx
                .prepare_cached(
                    "SELECT seq, replica, changed FROM change_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .await?;
            let rows = tx.query(&stmt, &[seq, limit]).await?;
            rows.iter()
                .map(|r| {
                    let changed: Changed = crate::store::codec::parse_json(r.get::<_, &str>(2))
                        .map_err(Fail::Corrupt)?;
                    Ok(ChangeRecord {
                        seq: r.get(0),
                        replica: r.get(1),
                        changed,
                    })
                })
                .collect::<Attempt<Vec<_>>>()
        })
    })
    .await
}

/// The last position of the change log.
pub(super) async fn last_change(db: &Connections) -> Result<i64> {
    db.read("read the change log", (), |tx, ()| {
        Box::pin(async move {
            let row = tx
                .query_one("SELECT seq FROM change_seq WHERE id = 1", &[])
                .await?;
            Ok(row.get(0))
        })
    })
    .await
}

/// Deletes the change log's entries older than `keep` (by commit time),
/// keeping at least the last `min_entries`; answers how many went. A
/// follower further behind than what is kept reads everything back.
pub(super) async fn prune_changes(
    db: &Connections,
    keep: Duration,
    min_entries: i64,
) -> Result<u64> {
    let before = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
        - i64::try_from(keep.as_nanos()).unwrap_or(i64::MAX);
    db.write(
        "prune the change log",
        (before, min_entries),
        |tx, (before, min)| {
            Box::pin(async move {
                Ok(tx
                    .execute(
                        "DELETE FROM change_log WHERE commit_time < $1 \
                     AND seq <= (SELECT seq FROM change_seq WHERE id = 1) - $2",
                        &[before, min],
                    )
                    .await?)
            })
        },
    )
    .await
}

/// The write turn: the advisory lock held on a pooled connection.
struct Turn {
    client: Option<deadpool_postgres::Object>,
    /// Whether the lock was granted. A turn dropped before (its wait
    /// cancelled: a client gone, a timeout) may still have the request
    /// pending on the server, which would grant it to an idle pooled
    /// session nobody unlocks: its connection is closed instead, which
    /// withdraws the request.
    held: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if !self.held {
            drop(deadpool_postgres::Object::take(client));
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if client
                        .execute("SELECT pg_advisory_unlock($1)", &[&WRITE_KEY])
                        .await
                        .is_err()
                    {
                        // Closing the session releases its locks.
                        drop(deadpool_postgres::Object::take(client));
                    }
                });
            }
            Err(_) => drop(deadpool_postgres::Object::take(client)),
        }
    }
}

/// Waits for the write turn.
pub(super) async fn write_turn(db: &Connections) -> Result<WriteTurn> {
    let taken: Attempt<Turn> = async {
        let mut turn = Turn {
            client: Some(db.client().await?),
            held: false,
        };
        if let Some(client) = &turn.client {
            client
                .execute("SELECT pg_advisory_lock($1)", &[&WRITE_KEY])
                .await?;
        }
        turn.held = true;
        Ok(turn)
    }
    .await;
    let turn = taken.map_err(|e| e.during("wait for the turn to write"))?;
    Ok(WriteTurn::held(Box::new(turn)))
}

/// Takes or renews the lease `name` for `ttl` if it is free, expired or
/// this sidecar's; answers whether this sidecar holds it now.
pub(super) async fn lease(db: &Connections, name: &str, ttl: Duration) -> Result<bool> {
    // Times are the database's clock, so a sidecar whose clock runs ahead
    // cannot take a live lease for an expired one.
    let ttl = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
    let holder = db.replica();
    db.write("take a lease", (name, holder, ttl), |tx, (name, holder, ttl)| {
        Box::pin(async move {
            let stmt = tx
                .prepare_cached(
                    "WITH now AS (SELECT (extract(epoch FROM clock_timestamp()) * 1e9)::bigint AS t) \
                     INSERT INTO leases (name, holder, expire_time) \
                     SELECT $1, $2, now.t + $3 FROM now \
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
                     expire_time = EXCLUDED.expire_time \
                     WHERE leases.holder = EXCLUDED.holder \
                        OR leases.expire_time < (SELECT t FROM now) \
                     RETURNING holder",
                )
                .await?;
            let got = tx.query_opt(&stmt, &[name, holder, ttl]).await?;
            Ok(got.is_some())
        })
    })
    .await
}

/// Gives up the lease `name` if this sidecar holds it.
pub(super) async fn release_lease(db: &Connections, name: &str) -> Result<()> {
    let holder = db.replica();
    db.write("give up a lease", (name, holder), |tx, (name, holder)| {
        Box::pin(async move {
            tx.execute(
                "DELETE FROM leases WHERE name = $1 AND holder = $2",
                &[name, holder],
            )
            .await?;
            Ok(())
        })
    })
    .await
}
