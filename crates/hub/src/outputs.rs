//! One task per live stream for a packaged output (HLS, DASH): started when a stream is
//! published, stoppable and restartable per code when its output is switched, all stopped
//! and awaited at shutdown. The outputs differ only in what their task does.

use crate::{Hub, HubEvent};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Decides whether the output runs for a stream code.
pub type EnabledFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The body of one stream's task; it must return soon after `handle.stop` is cancelled.
pub type TaskFn =
    Arc<dyn Fn(String, TaskHandle) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

struct Inner {
    hub: Hub,
    name: &'static str,
    enabled: RwLock<EnabledFn>,
    /// Codes with a running task (at most one per code): the task's id and stop switch.
    tasks: Mutex<HashMap<String, (u64, CancellationToken)>>,
    next: AtomicU64,
    /// The shutdown token once `run` started, parent of every task's token.
    root: Mutex<Option<CancellationToken>>,
    tracker: TaskTracker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whole-entry inserts and removes only: a poisoned map is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running task's registration; dropping it forgets the task unless a newer one replaced it.
pub struct TaskHandle {
    code: String,
    id: u64,
    inner: Arc<Inner>,
    /// Cancelled by [`StreamTasks::stop`] or shutdown.
    pub stop: CancellationToken,
}

impl std::fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("code", &self.code)
            .field("id", &self.id)
            .finish()
    }
}

impl TaskHandle {
    /// Ends this task's registration if `keep` is false, deciding under the registry lock so
    /// a publish handled at the same moment either sees this task or starts a new one; runs
    /// `cleanup` before releasing the lock. Returns whether the task should exit.
    pub fn retire_unless(&self, keep: impl FnOnce() -> bool, cleanup: impl FnOnce()) -> bool {
        let mut tasks = lock(&self.inner.tasks);
        if keep() {
            return false;
        }
        cleanup();
        if tasks.get(&self.code).is_some_and(|(t, _)| *t == self.id) {
            tasks.remove(&self.code);
        }
        true
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        let mut tasks = lock(&self.inner.tasks);
        if tasks.get(&self.code).is_some_and(|(t, _)| *t == self.id) {
            tasks.remove(&self.code);
        }
    }
}

/// The per-stream task registry of one output; cheap to clone.
#[derive(Clone)]
pub struct StreamTasks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTasks")
            .field("output", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl StreamTasks {
    /// A registry for the output called `name` (for logs); enabled for every code.
    pub fn new(hub: Hub, name: &'static str) -> Self {
        StreamTasks {
            inner: Arc::new(Inner {
                hub,
                name,
                enabled: RwLock::new(Arc::new(|_: &str| true)),
                tasks: Mutex::new(HashMap::new()),
                next: AtomicU64::new(1),
                root: Mutex::new(None),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Replaces the predicate deciding, when a task would start, whether the output runs.
    pub fn set_enabled(&self, enabled: EnabledFn) {
        *self
            .inner
            .enabled
            .write()
            .unwrap_or_else(|e| e.into_inner()) = enabled;
    }

    /// Starts `task` for every published stream until `shutdown`, then waits for all tasks.
    pub async fn run(&self, task: TaskFn, shutdown: CancellationToken) {
        *lock(&self.inner.root) = Some(shutdown.clone());
        let mut events = self.inner.hub.events();
        // Streams published before we listened (and after a lag) are found by asking the hub.
        self.resync(&task, &shutdown);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(HubEvent::Published { code, .. }) => self.ensure(&task, &code, &shutdown),
                    Ok(HubEvent::Unpublished { .. }) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::debug!(output = self.inner.name, lost = n, "hub events lagged; resyncing");
                        self.resync(&task, &shutdown);
                    }
                    // Cannot happen while we hold a Hub, which owns the sender.
                    Err(RecvError::Closed) => break,
                },
            }
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn resync(&self, task: &TaskFn, shutdown: &CancellationToken) {
        for stats in self.inner.hub.list() {
            if stats.publisher.is_some() {
                self.ensure(task, &stats.code, shutdown);
            }
        }
    }

    fn ensure(&self, task: &TaskFn, code: &str, shutdown: &CancellationToken) {
        let enabled = self
            .inner
            .enabled
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !enabled(code) {
            return;
        }
        let stop = shutdown.child_token();
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut tasks = lock(&self.inner.tasks);
            if tasks.contains_key(code) {
                return;
            }
            tasks.insert(code.to_owned(), (id, stop.clone()));
        }
        let handle = TaskHandle {
            code: code.to_owned(),
            id,
            inner: self.inner.clone(),
            stop,
        };
        self.inner.tracker.spawn(task(code.to_owned(), handle));
    }

    /// Stops the task of `code`, if any; returns whether one ran.
    pub fn stop(&self, code: &str) -> bool {
        match lock(&self.inner.tasks).remove(code) {
            Some((_, stop)) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Starts a task for `code` if it is live, enabled and has none (after a switch-on).
    pub fn refresh(&self, task: &TaskFn, code: &str) {
        let root = lock(&self.inner.root).clone();
        if let Some(root) = root
            && self
                .inner
                .hub
                .stats(code)
                .is_some_and(|s| s.publisher.is_some())
        {
            self.ensure(task, code, &root);
        }
    }
}
