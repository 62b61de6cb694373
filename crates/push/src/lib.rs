//! Outbound push of live streams to `rtmp://` and `rtmps://` destinations.
//!
//! One worker per enabled destination of a live stream: started when the stream goes live,
//! stopped when it ends or the destination is removed or disabled, restarted at once (fresh
//! session, attempt counter reset) when the publisher comes back. Each worker is a retry loop
//! with visible state (STYLE.md habit 10), readable by the API and metrics. Workers read the
//! hub like any output: a destination slower than the stream skips to the next keyframe.

mod status;
pub mod url;
mod worker;

pub use status::{PushError, PushSnapshot, PushState, StateChange, StateObserver, Status};

use hub::{Hub, HubEvent};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use store::PushDestination;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What a manual retry did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The waiting worker tries again now.
    Started,
    /// The destination is connecting or active; nothing to retry.
    NotWaiting(PushState),
    /// No worker runs for it (stream not live, destination disabled or unknown).
    NotRunning,
}

/// The destinations configured for a stream code.
pub type SourceFn = Arc<dyn Fn(&str) -> Vec<PushDestination> + Send + Sync>;

struct Handle {
    dest: PushDestination,
    status: Arc<Status>,
    stop: CancellationToken,
    retry: Arc<Notify>,
}

/// A push a hook asked for with an `rtmp://` redirect of `on_publish` (nginx-rtmp's relay
/// push): it belongs to the next publish session of its code, and only to that one.
struct Relay {
    dest: PushDestination,
    asked: std::time::Instant,
    /// The publish session it was given to, once that session went live.
    session: Option<u64>,
}

/// How long a relay waits for its publisher to go live before it is forgotten (a publish
/// refused after the hook answered never does).
const RELAY_CLAIM: std::time::Duration = std::time::Duration::from_secs(30);

struct Inner {
    hub: Hub,
    relays: Mutex<HashMap<String, Relay>>,
    tls: Arc<worker::ClientTls>,
    source: RwLock<SourceFn>,
    /// Hears every destination's state changes (the event bus).
    observer: RwLock<Option<StateObserver>>,
    workers: Mutex<HashMap<String, Vec<Handle>>>,
    root: Mutex<Option<CancellationToken>>,
    tracker: TaskTracker,
}

/// Runs every push worker; cheap to clone.
#[derive(Clone)]
pub struct PushManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PushManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushManager").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whole-entry updates only: a poisoned map is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PushManager {
    /// A manager for `hub`; rtmps:// trusts the platform's roots plus `extra_ca`.
    pub fn new(hub: Hub, extra_ca: Option<&Path>) -> Self {
        // A broken CA file must not stop rtmp:// pushes: rtmps:// ones report it as their
        // error. It is read now only to say so at start; the configuration (with the
        // platform's roots) is made by the first rtmps:// push.
        if let Some(path) = extra_ca
            && let Err(e) = rtmp::tls::load_certs(path)
        {
            tracing::warn!(error = %e, "tls.extra_ca_file unusable; rtmps:// pushes will fail");
        }
        let tls = Arc::new(worker::ClientTls::new(extra_ca));
        PushManager {
            inner: Arc::new(Inner {
                hub,
                relays: Mutex::new(HashMap::new()),
                tls,
                source: RwLock::new(Arc::new(|_: &str| Vec::new())),
                observer: RwLock::new(None),
                workers: Mutex::new(HashMap::new()),
                root: Mutex::new(None),
                tracker: TaskTracker::new(),
            }),
        }
    }

    /// Sets where each code's destinations come from (the control plane).
    pub fn set_source(&self, source: SourceFn) {
        *self.inner.source.write().unwrap_or_else(|e| e.into_inner()) = source;
    }

    /// Sets who hears every push state change (`starting`, `active`, `reconnecting`,
    /// `failed`); destinations started from now on report to it.
    pub fn set_state_observer(&self, observer: StateObserver) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    fn destinations(&self, code: &str) -> Vec<PushDestination> {
        // A relayed stream is pushed by its origin (each edge pulling it would push it again).
        if self.inner.hub.is_relay(code) {
            return Vec::new();
        }
        let source = self
            .inner
            .source
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut dests: Vec<PushDestination> =
            source(code).into_iter().filter(|d| d.enabled).collect();
        if let Some(r) = lock(&self.inner.relays).get(code)
            && r.session.is_some()
            && !dests.iter().any(|d| d.url == r.dest.url)
        {
            dests.push(r.dest.clone());
        }
        dests
    }

    /// nginx-rtmp's relay push, asked by a hook's `rtmp://` redirect of `on_publish`: the
    /// publish session of `code` that goes live next is also pushed to `url`, for as long as
    /// it lasts, with the usual visible state.
    pub fn relay_push(&self, code: &str, url: &str) -> Result<(), String> {
        url::parse(url)?;
        let dest = PushDestination {
            url: url.to_owned(),
            enabled: true,
            timeout_s: 10,
            retry: store::RetryPolicy::default(),
            limit: 0,
            comment: "relay push (hook redirect)".into(),
            rendition: String::new(),
        };
        tracing::info!(stream = code, url = %url::masked(url), "relay push requested");
        lock(&self.inner.relays).insert(
            code.to_owned(),
            Relay {
                dest,
                asked: std::time::Instant::now(),
                session: None,
            },
        );
        Ok(())
    }

    /// Gives a waiting relay to the publish `session` that just went live on `code`, and
    /// forgets one that belonged to an earlier session.
    fn claim_relay(&self, code: &str, session: u64) {
        let mut relays = lock(&self.inner.relays);
        let keep = match relays.get_mut(code) {
            None => return,
            Some(r) => match r.session {
                None if r.asked.elapsed() < RELAY_CLAIM => {
                    r.session = Some(session);
                    true
                }
                Some(s) => s == session,
                None => false,
            },
        };
        if !keep {
            relays.remove(code);
        }
    }

    /// Follows the hub until `shutdown`, then stops every worker and waits for them.
    pub async fn run(self, shutdown: CancellationToken) {
        *lock(&self.inner.root) = Some(shutdown.clone());
        let mut events = self.inner.hub.events();
        self.resync();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                ev = events.recv() => match ev {
                    Ok(HubEvent::Published { code, session }) => {
                        self.claim_relay(&code, session);
                        self.start(&code);
                    }
                    Ok(HubEvent::Unpublished { code, .. }) => {
                        // Ignore a stale event if the code is live again already.
                        if !self.inner.hub.is_live(&code)
                            && self.inner.hub.stats(&code).is_none_or(|s| s.publisher.is_none())
                        {
                            self.stop_all(&code);
                            let mut relays = lock(&self.inner.relays);
                            if relays.get(&code).is_some_and(|r| r.session.is_some()) {
                                relays.remove(&code);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.resync(),
                    Err(RecvError::Closed) => break,
                },
            }
        }
        let codes: Vec<String> = lock(&self.inner.workers).keys().cloned().collect();
        for code in codes {
            self.stop_all(&code);
        }
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn resync(&self) {
        let live: Vec<String> = self
            .inner
            .hub
            .list()
            .into_iter()
            .filter(|s| s.publisher.is_some())
            .map(|s| s.code)
            .collect();
        let running: Vec<String> = lock(&self.inner.workers).keys().cloned().collect();
        for code in &running {
            if !live.contains(code) {
                self.stop_all(code);
            }
        }
        for code in &live {
            if !running.contains(code) {
                self.start(code);
            }
        }
    }

    /// A new publish session: every destination restarts now, with a fresh attempt count.
    fn start(&self, code: &str) {
        self.stop_all(code);
        let dests = self.destinations(code);
        self.reconcile_with(code, &dests);
    }

    fn stop_all(&self, code: &str) {
        if let Some(handles) = lock(&self.inner.workers).remove(code) {
            for h in handles {
                h.stop.cancel();
            }
        }
    }

    /// Applies a configuration change for `code`: destinations are matched by URL and
    /// settings, so only added, removed or changed ones start or stop.
    pub fn reconcile(&self, code: &str) {
        let live = self
            .inner
            .hub
            .stats(code)
            .is_some_and(|s| s.publisher.is_some());
        if !live {
            self.stop_all(code);
            return;
        }
        let dests = self.destinations(code);
        self.reconcile_with(code, &dests);
    }

    fn reconcile_with(&self, code: &str, wanted: &[PushDestination]) {
        let Some(root) = lock(&self.inner.root).clone() else {
            return;
        };
        let mut workers = lock(&self.inner.workers);
        let current = workers.remove(code).unwrap_or_default();
        let mut kept = Vec::new();
        for h in current {
            if wanted.contains(&h.dest) {
                kept.push(h);
            } else {
                h.stop.cancel();
            }
        }
        for dest in wanted {
            if kept.iter().any(|h| &h.dest == dest) {
                continue;
            }
            let observer = self
                .inner
                .observer
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .map(|o| (code.to_owned(), o));
            let status = Arc::new(Status::observed(&dest.url, observer));
            let stop = root.child_token();
            let retry = Arc::new(Notify::new());
            let w = worker::Worker {
                code: code.to_owned(),
                dest: dest.clone(),
                hub: self.inner.hub.clone(),
                tls: self.inner.tls.clone(),
                status: status.clone(),
                retry_now: retry.clone(),
            };
            tracing::info!(stream = code, url = %url::masked(&dest.url), "push started");
            self.inner.tracker.spawn(w.run(stop.clone()));
            kept.push(Handle {
                dest: dest.clone(),
                status,
                stop,
                retry,
            });
        }
        // Keep the configured order for the API.
        kept.sort_by_key(|h| wanted.iter().position(|d| d == &h.dest));
        if !kept.is_empty() {
            workers.insert(code.to_owned(), kept);
        }
    }

    /// State of every running destination of `code`, in configuration order.
    pub fn status(&self, code: &str) -> Vec<PushSnapshot> {
        lock(&self.inner.workers)
            .get(code)
            .map(|hs| hs.iter().map(|h| h.status.snapshot()).collect())
            .unwrap_or_default()
    }

    /// State of every running destination of every stream.
    pub fn all_status(&self) -> Vec<(String, PushSnapshot)> {
        let workers = lock(&self.inner.workers);
        let mut out = Vec::new();
        for (code, hs) in workers.iter() {
            out.extend(hs.iter().map(|h| (code.clone(), h.status.snapshot())));
        }
        out
    }

    /// Retries the destination with `url` of `code` now if it is waiting (reconnecting or
    /// failed).
    pub fn retry(&self, code: &str, url: &str) -> RetryOutcome {
        let workers = lock(&self.inner.workers);
        match workers
            .get(code)
            .and_then(|hs| hs.iter().find(|h| h.dest.url == url))
        {
            Some(h) => match h.status.snapshot().state {
                PushState::Reconnecting | PushState::Failed => {
                    // Only a waiting worker consumes the permit; an unconditional notify would
                    // linger and cut a future backoff short.
                    h.retry.notify_one();
                    RetryOutcome::Started
                }
                state => RetryOutcome::NotWaiting(state),
            },
            None => RetryOutcome::NotRunning,
        }
    }
}

#[cfg(test)]
mod tests;
