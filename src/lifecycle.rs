//! The lifetime of the server's long tasks: one cancellation signal that
//! every long task listens to (background sync and validation, each
//! `WatchRanking` stream, each sync started over the API), and one tracker
//! that shutdown waits on before the store closes.
//!
//! The pair is tokio-util's `CancellationToken` and `TaskTracker`; what this
//! type adds is a name for each task, so that a shutdown that runs out of
//! time can say what was still running instead of hanging or guessing.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Tasks still running when a shutdown's grace period ran out, by name.
#[derive(Debug, thiserror::Error)]
#[error("still running: {}", .0.join(", "))]
pub struct StillRunning(pub Vec<String>);

/// The stop signal and the tracked tasks of one server. Clones share both.
#[derive(Clone, Debug, Default)]
pub struct Lifecycle {
    stop: CancellationToken,
    tasks: TaskTracker,
    names: Arc<Names>,
}

/// The names of the tasks running now, by spawn order.
#[derive(Debug, Default)]
struct Names {
    next: AtomicU64,
    running: Mutex<BTreeMap<u64, String>>,
}

impl Names {
    fn running(&self) -> MutexGuard<'_, BTreeMap<u64, String>> {
        self.running.lock()
    }
}

/// Takes a task's name off the list when the task ends, however it ends
/// (returns, panics or is dropped with the runtime).
struct Named {
    names: Arc<Names>,
    id: u64,
}

impl Drop for Named {
    fn drop(&mut self) {
        self.names.running().remove(&self.id);
    }
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` on the runtime, tracked: a shutdown waits for it. `what`
    /// names it in the log if it outlives the grace period. The task must
    /// end soon after [`cancelled`](Self::cancelled) resolves.
    pub fn spawn<F>(&self, what: impl Into<String>, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = self.names.next.fetch_add(1, Ordering::Relaxed);
        self.names.running().insert(id, what.into());
        let named = Named {
            names: self.names.clone(),
            id,
        };
        self.tasks.spawn(async move {
            let _named = named;
            task.await
        })
    }

    /// Resolves when the server starts to stop.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// The stop signal itself, for what takes a token (tonic's shutdown
    /// future, a child token).
    pub fn token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Whether the server has started to stop.
    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Tells every task to stop. Tasks may still be spawned afterwards (a
    /// call accepted just before); they see the signal at once.
    pub fn stop(&self) {
        self.stop.cancel();
        self.tasks.close();
    }

    /// The names of the tasks running now, oldest first.
    pub fn running(&self) -> Vec<String> {
        self.names.running().values().cloned().collect()
    }

    /// Waits until every tracked task has ended, or `deadline`; then names
    /// those still running. Only meaningful after [`stop`](Self::stop).
    pub async fn wait_until(&self, deadline: Instant) -> Result<(), StillRunning> {
        match tokio::time::timeout_at(deadline, self.tasks.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(StillRunning(self.running())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_stop_waits_for_tasks_that_listen_and_names_those_that_do_not() {
        let life = Lifecycle::new();
        let l = life.clone();
        let listener = life.spawn("listener", async move { l.cancelled().await });
        life.spawn("deaf", std::future::pending::<()>());
        assert_eq!(life.running(), ["listener", "deaf"]);
        life.stop();
        let waited = life
            .wait_until(Instant::now() + Duration::from_millis(200))
            .await;
        assert_eq!(waited.unwrap_err().0, ["deaf"]);
        assert!(listener.is_finished());
    }

    #[tokio::test]
    async fn a_stop_with_only_listeners_ends_at_once() {
        let life = Lifecycle::new();
        for _ in 0..3 {
            let l = life.clone();
            life.spawn("listener", async move { l.cancelled().await });
        }
        life.stop();
        // A task spawned after the stop still counts, and still sees it.
        let l = life.clone();
        life.spawn("late", async move { l.cancelled().await });
        life.wait_until(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(life.running().is_empty());
    }
}
