//! One task per live stream for a packaged output (HLS, DASH): started when a stream is
//! published, stoppable and restartable per code when its output is switched, all stopped
//! and awaited at shutdown. The outputs differ only in what their task does.

use crate::{Event, Hub, HubEvent};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Decides whether the output runs for a stream code.
pub type EnabledFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The source stream a code is a rendition of, if it is one (outputs that line a rendition
/// up with its source ask it).
pub type ParentFn = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

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
    /// Cancelled by [`StreamTasks::finish`]: every task ends its output now.
    finishing: CancellationToken,
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
    /// Cancelled by [`StreamTasks::finish`] (first step of a graceful shutdown): the task ends
    /// its output at once and keeps serving it until `stop`.
    pub finish: CancellationToken,
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
                finishing: CancellationToken::new(),
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
        // A relayed stream is packaged, recorded and transcoded by its origin.
        if !enabled(code) || self.inner.hub.is_relay(code) {
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
            finish: self.inner.finishing.clone(),
        };
        self.inner.tracker.spawn(task(code.to_owned(), handle));
    }

    /// Tells every task, running or started later, to end its output now (see
    /// [`TaskHandle::finish`]).
    pub fn finish(&self) {
        self.inner.finishing.cancel();
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

/// Where one stream of a packaged output (HLS, DASH) is in its life: live; gone, waiting
/// `end_grace` for a republish; ended, still served for `linger`.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// A publisher is (or may be) sending; checked again at `idle_check`.
    Live { idle_check: Instant },
    /// The publisher left; the presentation ends at `deadline` unless it comes back.
    Gone { deadline: Instant },
    /// Ended; the entry is removed at `deadline` unless someone republishes.
    Ended { deadline: Instant },
}

/// What a stream task must do when [`Lifecycle::deadline`] passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Nothing yet.
    Nothing,
    /// The publisher vanished without an End (lost to reader lag): close the open segment.
    Flush,
    /// The grace period passed with no republish: end the presentation.
    End,
    /// The linger passed: retire the task (see [`TaskHandle::retire_unless`]), or call
    /// [`Lifecycle::keep`] if a publisher is back.
    Retire,
}

/// The shared lifecycle of a packaged output's stream task, as a small state machine.
#[derive(Debug)]
pub struct Lifecycle {
    phase: Phase,
    end_grace: Duration,
    linger: Duration,
}

impl Lifecycle {
    /// Starts live if the stream has a publisher (checked after subscribing, so a later
    /// departure arrives as an End event), else already gone.
    pub fn new(live: bool, end_grace: Duration, linger: Duration) -> Self {
        let now = Instant::now();
        let phase = if live {
            Phase::Live {
                idle_check: now + end_grace,
            }
        } else {
            Phase::Gone {
                deadline: now + end_grace,
            }
        };
        Lifecycle {
            phase,
            end_grace,
            linger,
        }
    }

    /// When [`Lifecycle::on_deadline`] is next due.
    pub fn deadline(&self) -> Instant {
        match self.phase {
            Phase::Live { idle_check } => idle_check,
            Phase::Gone { deadline } | Phase::Ended { deadline } => deadline,
        }
    }

    fn live(&mut self, now: Instant) {
        self.phase = Phase::Live {
            idle_check: now + self.end_grace,
        };
    }

    /// Advances at the deadline and says what to do.
    pub fn on_deadline(&mut self, now: Instant, has_publisher: bool) -> Due {
        match self.phase {
            // Quiet for a grace period with nobody publishing: the End was lost (reader lag)
            // or never came; finish like after one.
            Phase::Live { .. } if !has_publisher => {
                self.phase = Phase::Gone { deadline: now };
                Due::Flush
            }
            Phase::Live { .. } => {
                self.live(now);
                Due::Nothing
            }
            Phase::Gone { .. } => {
                self.phase = Phase::Ended {
                    deadline: now + self.linger,
                };
                Due::End
            }
            Phase::Ended { .. } => Due::Retire,
        }
    }

    /// A publisher is back as the task was about to retire: check again later.
    pub fn keep(&mut self, now: Instant) {
        self.phase = Phase::Ended {
            deadline: now + self.end_grace,
        };
    }

    /// Follows a hub event; `true` when a stream comes back after its presentation ended,
    /// which needs a fresh playlist or manifest (an ended one is final for players).
    pub fn on_event(&mut self, event: &Event, now: Instant) -> bool {
        match (event, self.phase) {
            (Event::Tracks { .. }, Phase::Ended { .. }) => {
                self.live(now);
                true
            }
            (Event::Tracks { .. }, _) | (Event::Frame(_), Phase::Live { .. }) => {
                self.live(now);
                false
            }
            (Event::End, Phase::Live { .. }) => {
                self.phase = Phase::Gone {
                    deadline: now + self.end_grace,
                };
                false
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use media::{Frame, MediaInfo, TrackKind};

    fn frame() -> Event {
        Event::Frame(Frame {
            track: TrackKind::Video,
            dts: 0,
            pts: 0,
            keyframe: true,
            payload: Bytes::new(),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn lifecycle_goes_live_gone_ended_and_comes_back() {
        let grace = Duration::from_secs(10);
        let linger = Duration::from_secs(60);
        let mut l = Lifecycle::new(true, grace, linger);
        let t0 = Instant::now();
        assert_eq!(l.deadline(), t0 + grace);
        // Still publishing at the idle check: stay live.
        assert_eq!(l.on_deadline(t0 + grace, true), Due::Nothing);
        // The End event starts the grace period; its expiry ends the presentation.
        assert!(!l.on_event(&Event::End, t0));
        assert_eq!(l.deadline(), t0 + grace);
        assert_eq!(l.on_deadline(t0 + grace, false), Due::End);
        assert_eq!(l.deadline(), t0 + grace + linger);
        // Frames alone do not revive an ended presentation; new tracks do, freshly.
        assert!(!l.on_event(&frame(), t0 + grace));
        let tracks = Event::Tracks {
            info: std::sync::Arc::new(MediaInfo::default()),
            session: 2,
        };
        assert!(l.on_event(&tracks, t0 + grace));
        assert!(
            !l.on_event(&tracks, t0 + grace),
            "only after an end is it a comeback"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn lost_end_is_detected_and_retirement_can_be_deferred() {
        let grace = Duration::from_secs(10);
        let mut l = Lifecycle::new(true, grace, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(l.on_deadline(t0 + grace, false), Due::Flush);
        assert_eq!(l.deadline(), t0 + grace, "ends right after the flush");
        assert_eq!(l.on_deadline(t0 + grace, false), Due::End);
        let t1 = l.deadline();
        assert_eq!(l.on_deadline(t1, false), Due::Retire);
        l.keep(t1);
        assert_eq!(l.deadline(), t1 + grace);
    }
}
