//! Background work on exactly one sidecar of a shared database.
//!
//! Each kind of background work (one source's sync, one metric's pull,
//! automatic validation, ranking snapshots) has a named lease in the store.
//! A sidecar runs the work only while it holds the lease, renewing it every
//! third of its time to live; when it dies, the lease expires and the next
//! sidecar whose loop comes round takes it, so another takes over within
//! the lease time plus one loop interval. Work whose lease was lost
//! (another sidecar took it after a stall, the database was unreachable)
//! is dropped at its next await point: a sync keeps the pages it stored and
//! its cursor, so whoever holds the lease next resumes from there.
//!
//! On a store only one process writes (SQLite), every lease is held.

use std::future::Future;
use std::time::Duration;

use crate::store::Store;

/// Runs `work` if this sidecar holds (or can take) the lease `name`;
/// `None` when another sidecar holds it, the store cannot say, or the
/// lease was lost while the work ran.
pub async fn run_leased<T>(
    store: &dyn Store,
    name: &str,
    ttl: Duration,
    work: impl Future<Output = T>,
) -> Option<T> {
    if !store.is_shared() {
        return Some(work.await);
    }
    match store.lease(name, ttl).await {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            tracing::warn!(lease = name, error = %e, "cannot take a lease; the work waits");
            return None;
        }
    }
    let renew = async {
        let every = (ttl / 3).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(every).await;
            match store.lease(name, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        lease = name,
                        "lease taken by another sidecar; stopping the work"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = name, error = %e, "cannot renew a lease; stopping the work");
                    return;
                }
            }
        }
    };
    let out = tokio::select! {
        out = work => Some(out),
        () = renew => None,
    };
    // Handed back at once, so that the next holder need not wait for it to
    // expire (a later renewal failing leaves it to expire instead).
    if let Err(e) = store.release_lease(name).await {
        tracing::debug!(lease = name, error = %e, "cannot give up a lease; it expires");
    }
    out
}
