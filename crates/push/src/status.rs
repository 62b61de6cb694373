//! The state a push destination shows in the API and metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

/// Errors kept per destination, newest first.
const MAX_ERRORS: usize = 5;
/// Bitrate is averaged over this window.
const RATE_WINDOW_SECS: f64 = 5.0;

/// Lifecycle of a push destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushState {
    /// Worker started; no attempt has finished yet.
    Starting,
    /// The remote accepted the publish; media flows.
    Active,
    /// The last session failed or ended; waiting for `next_retry_at`.
    Reconnecting,
    /// `limit` consecutive attempts failed; waiting for a manual retry.
    Failed,
}

impl PushState {
    /// `starting`, `active`, `reconnecting` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            PushState::Starting => "starting",
            PushState::Active => "active",
            PushState::Reconnecting => "reconnecting",
            PushState::Failed => "failed",
        }
    }
}

/// One recorded failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushError {
    /// What went wrong, including the remote's onStatus code and description if it sent one.
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// A point-in-time view of one destination.
#[derive(Clone, Debug)]
pub struct PushSnapshot {
    /// The destination URL as configured.
    pub url: String,
    /// Current state.
    pub state: PushState,
    /// Attempts made by this worker (1 = the first connection).
    pub attempt: u64,
    /// When the current session became active.
    pub connected_at: Option<SystemTime>,
    /// When the next attempt starts, while reconnecting.
    pub next_retry_at: Option<SystemTime>,
    /// Up to five recent errors, newest first.
    pub last_errors: Vec<PushError>,
    /// Bytes written to the destination by this worker.
    pub bytes_sent: u64,
    /// Send bitrate over the last few seconds.
    pub bitrate_kbps: u64,
    /// Frames skipped because the destination was slower than the stream.
    pub frames_dropped: u64,
}

/// A destination's state changed (see [`crate::PushManager::set_state_observer`]).
#[derive(Clone, Debug)]
pub struct StateChange {
    /// Stream code.
    pub code: String,
    /// The destination URL with its key masked ([`crate::url::masked`]).
    pub url: String,
    /// The new state.
    pub state: PushState,
    /// The state before; `None` when the worker just started.
    pub previous: Option<PushState>,
    /// The attempt the worker is on.
    pub attempt: u64,
    /// The newest recorded error, if any.
    pub error: Option<String>,
    /// When the next attempt starts, while reconnecting.
    pub next_retry_at: Option<SystemTime>,
}

/// Told of every state change; called on the worker's task, so it must not block.
pub type StateObserver = Arc<dyn Fn(&StateChange) + Send + Sync>;

struct Inner {
    state: PushState,
    attempt: u64,
    connected_at: Option<SystemTime>,
    next_retry_at: Option<SystemTime>,
    errors: VecDeque<PushError>,
    rate_mark: (Instant, u64),
    rate_kbps: u64,
    /// The current attempt reached `Active`.
    activated: bool,
}

/// Shared, updated by the worker and read by the API.
pub struct Status {
    url: String,
    inner: Mutex<Inner>,
    bytes: AtomicU64,
    dropped: AtomicU64,
    /// The stream code and who hears of state changes.
    observer: Option<(String, StateObserver)>,
}

impl Status {
    /// A status whose changes `observer` hears (with the stream code); it hears `Starting`
    /// at once.
    pub(crate) fn observed(url: &str, observer: Option<(String, StateObserver)>) -> Status {
        let status = Status {
            observer,
            url: url.to_owned(),
            inner: Mutex::new(Inner {
                state: PushState::Starting,
                attempt: 0,
                connected_at: None,
                next_retry_at: None,
                errors: VecDeque::new(),
                rate_mark: (Instant::now(), 0),
                rate_kbps: 0,
                activated: false,
            }),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        };
        status.tell(None);
        status
    }

    /// Tells the observer the current state, unless it equals `previous`.
    fn tell(&self, previous: Option<PushState>) {
        let Some((code, observer)) = &self.observer else {
            return;
        };
        let change = {
            let s = self.lock();
            if previous == Some(s.state) {
                return;
            }
            StateChange {
                code: code.clone(),
                url: crate::url::masked(&self.url),
                state: s.state,
                previous,
                attempt: s.attempt,
                error: s.errors.front().map(|e| e.message.clone()),
                next_retry_at: s.next_retry_at,
            }
        };
        // Outside the lock: the observer may read this status.
        observer(&change);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Field assignments only: a poisoned lock holds consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn begin_attempt(&self) {
        let mut s = self.lock();
        s.attempt += 1;
        s.activated = false;
        s.next_retry_at = None;
        s.connected_at = None;
    }

    pub(crate) fn was_active(&self) -> bool {
        self.lock().activated
    }

    pub(crate) fn attempt(&self) -> u64 {
        self.lock().attempt
    }

    pub(crate) fn set_active(&self) {
        let previous = {
            let mut s = self.lock();
            let previous = s.state;
            s.state = PushState::Active;
            s.activated = true;
            s.connected_at = Some(SystemTime::now());
            s.next_retry_at = None;
            previous
        };
        self.tell(Some(previous));
    }

    pub(crate) fn set_state(&self, state: PushState, next_retry_at: Option<SystemTime>) {
        let previous = {
            let mut s = self.lock();
            let previous = s.state;
            s.state = state;
            s.next_retry_at = next_retry_at;
            s.connected_at = None;
            previous
        };
        self.tell(Some(previous));
    }

    pub(crate) fn record_error(&self, message: String) {
        let mut s = self.lock();
        s.errors.push_front(PushError {
            message,
            at: SystemTime::now(),
        });
        s.errors.truncate(MAX_ERRORS);
    }

    pub(crate) fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_dropped(&self, n: u64) {
        self.dropped.store(n, Ordering::Relaxed);
    }

    /// The current view.
    pub fn snapshot(&self) -> PushSnapshot {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let mut s = self.lock();
        let (mark_at, mark_bytes) = s.rate_mark;
        let elapsed = mark_at.elapsed().as_secs_f64();
        if elapsed >= RATE_WINDOW_SECS {
            s.rate_kbps = ((bytes - mark_bytes) as f64 * 8.0 / 1000.0 / elapsed) as u64;
            s.rate_mark = (Instant::now(), bytes);
        }
        PushSnapshot {
            url: self.url.clone(),
            state: s.state,
            attempt: s.attempt,
            connected_at: s.connected_at,
            next_retry_at: s.next_retry_at,
            last_errors: s.errors.iter().cloned().collect(),
            bytes_sent: bytes,
            bitrate_kbps: s.rate_kbps,
            frames_dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod observer_tests {
    use super::*;

    #[test]
    fn the_observer_hears_each_change_once_with_the_masked_url_and_last_error() {
        let heard = Arc::new(Mutex::new(Vec::<StateChange>::new()));
        let sink = heard.clone();
        let observer: StateObserver = Arc::new(move |c: &StateChange| {
            sink.lock().unwrap().push(c.clone());
        });
        let st = Status::observed("rtmp://h/app/s3cret", Some(("cam".to_owned(), observer)));
        st.begin_attempt();
        st.set_active();
        st.record_error("remote closed the connection".into());
        st.set_state(PushState::Reconnecting, Some(SystemTime::now()));
        // Same state again (a manual retry under way): nothing new to tell.
        st.set_state(PushState::Reconnecting, None);
        st.begin_attempt();
        st.set_state(PushState::Failed, None);
        let heard = heard.lock().unwrap();
        let states: Vec<(Option<PushState>, PushState)> =
            heard.iter().map(|c| (c.previous, c.state)).collect();
        assert_eq!(
            states,
            [
                (None, PushState::Starting),
                (Some(PushState::Starting), PushState::Active),
                (Some(PushState::Active), PushState::Reconnecting),
                (Some(PushState::Reconnecting), PushState::Failed),
            ]
        );
        assert!(
            heard
                .iter()
                .all(|c| c.code == "cam" && c.url == "rtmp://h/app/****")
        );
        assert_eq!(heard[1].error, None);
        assert_eq!(
            heard[2].error.as_deref(),
            Some("remote closed the connection")
        );
        assert!(heard[2].next_retry_at.is_some());
        assert_eq!(heard[3].attempt, 2);
    }
}
