//! Owner of fire-and-forget hook calls: bounded, counted, drained at shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// How many notifications may be in flight per hook client. A hook server that stalls must not
/// turn every ended session into a parked task; past this, notifications are dropped and counted.
pub(crate) const MAX_IN_FLIGHT: usize = 256;

#[derive(Debug)]
pub(crate) struct Outbox {
    tracker: TaskTracker,
    permits: Arc<Semaphore>,
    dropped: AtomicU64,
    /// Upper bound for `close()`: every call is itself bounded by the client timeout.
    grace: Duration,
}

impl Outbox {
    pub(crate) fn new(limit: usize, grace: Duration) -> Outbox {
        Outbox {
            tracker: TaskTracker::new(),
            permits: Arc::new(Semaphore::new(limit)),
            dropped: AtomicU64::new(0),
            grace,
        }
    }

    /// Runs `call` in the background unless the bound is reached or the outbox is closed.
    pub(crate) fn spawn<F>(&self, what: &str, call: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if self.tracker.is_closed() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(what, "hook: closed, notification dropped");
            return false;
        }
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Rate-limited by powers of two: a dead hook server would otherwise flood the log.
            if dropped.is_power_of_two() {
                tracing::warn!(
                    what,
                    dropped,
                    "hook: too many notifications in flight, dropped"
                );
            }
            return false;
        };
        self.tracker.spawn(async move {
            call.await;
            drop(permit);
        });
        true
    }

    /// Notifications dropped so far (over the bound or after `close`).
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notifications still running.
    pub(crate) fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Stops accepting and waits for running notifications, at most `grace`.
    pub(crate) async fn close(&self) {
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tracker.len(),
                "hook: notifications still running at close"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn over_the_bound_drops_and_counts() {
        let outbox = Outbox::new(1, Duration::from_secs(5));
        let (tx, rx) = oneshot::channel::<()>();
        assert!(outbox.spawn("a", async move {
            let _ = rx.await;
        }));
        assert!(!outbox.spawn("b", async {}));
        assert_eq!(outbox.dropped(), 1);
        tx.send(()).unwrap();
        outbox.close().await;
        assert_eq!(outbox.in_flight(), 0);
        assert!(
            !outbox.spawn("c", async {}),
            "closed outbox accepts nothing"
        );
        assert_eq!(outbox.dropped(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn close_gives_up_after_grace() {
        let outbox = Outbox::new(4, Duration::from_secs(2));
        outbox.spawn("stuck", std::future::pending());
        let started = tokio::time::Instant::now();
        outbox.close().await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert_eq!(outbox.in_flight(), 1);
    }
}
