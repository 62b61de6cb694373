//! The state a push destination shows in the API and metrics.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl Status {
    pub(crate) fn new(url: &str) -> Status {
        Status {
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
        }
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
        let mut s = self.lock();
        s.state = PushState::Active;
        s.activated = true;
        s.connected_at = Some(SystemTime::now());
        s.next_retry_at = None;
    }

    pub(crate) fn set_state(&self, state: PushState, next_retry_at: Option<SystemTime>) {
        let mut s = self.lock();
        s.state = state;
        s.next_retry_at = next_retry_at;
        s.connected_at = None;
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
