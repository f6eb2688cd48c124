//! Health follows the store: NOT_SERVING for the server and every service
//! while writes cannot succeed (a full disk, a lock held elsewhere, a
//! read-only or deleted file), SERVING again once they can. Reads are
//! answered from memory either way; a load balancer that routes by health
//! sends writes elsewhere meanwhile.
//!
//! The store says whether writes succeed ([`WriteHealth`]); this task
//! copies that to the health service and runs the store's periodic check,
//! which notices a deleted file without waiting for a write and lets a
//! failing store recover without one.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::engine::FollowHealth;
use crate::lifecycle::Lifecycle;
use crate::store::{Store, WriteHealth};

/// SERVING while writes can succeed and, on a shared database, this
/// sidecar is in step with the change log.
fn store_status(
    health: &tokio::sync::watch::Receiver<WriteHealth>,
    replica: Option<&tokio::sync::watch::Receiver<FollowHealth>>,
) -> ServingStatus {
    let writable = *health.borrow() == WriteHealth::Writable;
    let in_step = replica.is_none_or(|r| *r.borrow() == FollowHealth::InStep);
    if writable && in_step {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// Sets `status` on every name unless reporting stopped; answers whether
/// it may go on.
async fn report(
    status: &ServingStatus,
    reporter: &HealthReporter,
    names: &[&str],
    gate: &tokio::sync::Mutex<bool>,
) -> bool {
    let stopped = gate.lock().await;
    if *stopped {
        return false;
    }
    for name in names {
        reporter.set_service_status(name, *status).await;
    }
    true
}

/// The running follower; [`stop`](Self::stop) it before shutdown sets the
/// final statuses, so that it cannot set SERVING after them.
pub(super) struct StoreHealth {
    stopped: Arc<tokio::sync::Mutex<bool>>,
}

impl StoreHealth {
    /// Starts following `store` under `lifecycle`, checking it every
    /// `interval`, and reporting on `names`.
    pub fn follow(
        store: Arc<dyn Store>,
        mut replica: Option<tokio::sync::watch::Receiver<FollowHealth>>,
        reporter: HealthReporter,
        names: &'static [&'static str],
        interval: Duration,
        lifecycle: &Lifecycle,
    ) -> StoreHealth {
        let stopped = Arc::new(tokio::sync::Mutex::new(false));
        let gate = stopped.clone();
        let stop = lifecycle.clone();
        lifecycle.spawn("store health", async move {
            let mut health = store.write_health();
            let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let replica_changed = async {
                    match replica.as_mut() {
                        Some(r) => r.changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    changed = health.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        health.borrow_and_update();
                        if !report(&store_status(&health, replica.as_ref()), &reporter, names, &gate).await {
                            return;
                        }
                    }
                    changed = replica_changed => {
                        if !changed {
                            replica = None;
                        }
                        if !report(&store_status(&health, replica.as_ref()), &reporter, names, &gate).await {
                            return;
                        }
                    }
                    _ = ticks.tick() => tokio::select! {
                        () = store.check_health() => {}
                        () = stop.cancelled() => return,
                    },
                    () = stop.cancelled() => return,
                }
            }
        });
        StoreHealth { stopped }
    }

    /// Stops reporting; once this returns, no status is set any more.
    pub async fn stop(&self) {
        *self.stopped.lock().await = true;
    }
}
