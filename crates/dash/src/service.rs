//! Tokio driver: one segmenter task per published stream, and the store HTTP reads from.
//! Mirrors `hls::HlsService` (same lifecycle: live, gone for `end_grace`, ended for `linger`).

use crate::mpd::{Manifest, MpdTiming};
use crate::segmenter::{Output, Segmenter};
use crate::{DashConfig, EXPIRED_SEGMENTS_KEPT};
use bytes::Bytes;
use hub::outputs::{StreamTasks, TaskFn, TaskHandle};
use hub::{Event, Hub};
use media::TrackKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub use hub::outputs::EnabledFn;

/// Cheap per-stream numbers for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DashStreamStats {
    /// Segments held, all tracks (listed plus recently expired).
    pub segments: usize,
    /// Bytes of segment data held.
    pub bytes: usize,
    /// Whether the presentation ended (`mediaPresentationDuration` set).
    pub ended: bool,
}

struct Entry {
    manifest: Manifest,
    /// Rendered once per change: requests outnumber segment updates by far.
    rendered: Option<String>,
}

struct Inner {
    hub: Hub,
    config: DashConfig,
    store: Mutex<HashMap<String, Entry>>,
    tasks: StreamTasks,
}

/// Lock that tolerates poisoning: every critical section below is a single map update, so a
/// panic elsewhere cannot leave the data half-changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// DASH output for every stream of a hub; cheap to clone.
#[derive(Clone)]
pub struct DashService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DashService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl DashService {
    /// Creates the service; nothing happens until [`DashService::run`].
    pub fn new(hub: Hub, config: DashConfig) -> Self {
        DashService {
            inner: Arc::new(Inner {
                tasks: StreamTasks::new(hub.clone(), "dash"),
                hub,
                config,
                store: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Replaces the predicate deciding, at each publish, whether DASH runs for a code.
    pub fn set_enabled(&self, enabled: EnabledFn) {
        self.inner.tasks.set_enabled(enabled);
    }

    fn task(&self) -> TaskFn {
        let inner = self.inner.clone();
        Arc::new(move |code, handle| Box::pin(stream_task(inner.clone(), code, handle)))
    }

    /// Starts a task per published stream until `shutdown`, then waits for all of them.
    pub async fn run(self, shutdown: CancellationToken) {
        self.inner.tasks.run(self.task(), shutdown).await;
    }

    /// Stops DASH for `code` now and forgets its MPD and segments (requests get 404), e.g.
    /// when the stream's DASH output is switched off or the stream is deleted.
    pub fn stop(&self, code: &str) {
        self.inner.tasks.stop(code);
        lock(&self.inner.store).remove(code);
    }

    /// Starts DASH for `code` if it is live, enabled and not running (after a switch-on).
    pub fn refresh(&self, code: &str) {
        self.inner.tasks.refresh(&self.task(), code);
    }

    /// The MPD of `code`; `None` if unknown or no segment is complete yet.
    pub fn mpd(&self, code: &str) -> Option<String> {
        lock(&self.inner.store).get(code)?.rendered.clone()
    }

    /// The init segment of `track` in period `period` of `code`.
    pub fn init(&self, code: &str, track: TrackKind, period: u64) -> Option<Bytes> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .init(track, period)
    }

    /// The media segment of `track` starting at `time` (its `$Time$`) in `period`; `None` if
    /// unknown or expired.
    pub fn segment(&self, code: &str, track: TrackKind, period: u64, time: u64) -> Option<Bytes> {
        lock(&self.inner.store)
            .get(code)?
            .manifest
            .segment(track, period, time)
    }

    /// Stats of `code`, if it has a DASH entry.
    pub fn stats(&self, code: &str) -> Option<DashStreamStats> {
        let store = lock(&self.inner.store);
        let m = &store.get(code)?.manifest;
        Some(DashStreamStats {
            segments: m.len(),
            bytes: m.bytes(),
            ended: m.is_ended(),
        })
    }

    /// Codes that currently have a DASH entry, sorted.
    pub fn codes(&self) -> Vec<String> {
        let mut codes: Vec<String> = lock(&self.inner.store).keys().cloned().collect();
        codes.sort();
        codes
    }
}

/// Wall clock as Unix milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Inner {
    fn new_entry(&self) -> Entry {
        Entry {
            manifest: Manifest::new(self.config.window, EXPIRED_SEGMENTS_KEPT),
            rendered: None,
        }
    }

    fn timing(&self) -> MpdTiming {
        MpdTiming {
            minimum_update_period: self.config.minimum_update_period,
            suggested_presentation_delay: self.config.suggested_presentation_delay,
            min_buffer_time: self.config.min_buffer_time,
        }
    }

    fn push_outputs(&self, code: &str, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let now = now_ms();
        let mut store = lock(&self.store);
        let entry = store
            .entry(code.to_owned())
            .or_insert_with(|| self.new_entry());
        for output in outputs {
            match output {
                Output::Period(info) => entry.manifest.start_period(info, now),
                Output::Segment(seg) => {
                    tracing::debug!(
                        stream = code,
                        track = ?seg.track,
                        time = seg.time,
                        samples = seg.samples,
                        "dash: segment listed"
                    );
                    entry.manifest.push(seg, now);
                }
            }
        }
        entry.rendered = entry.manifest.render(&self.timing());
    }

    fn end(&self, code: &str) {
        if let Some(entry) = lock(&self.store).get_mut(code) {
            entry.manifest.end(now_ms());
            entry.rendered = entry.manifest.render(&self.timing());
        }
    }

    fn has_publisher(&self, code: &str) -> bool {
        self.hub.stats(code).is_some_and(|s| s.publisher.is_some())
    }
}

/// Where a stream task is in its life.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// A publisher is (or may be) sending; checked again at `idle_check`.
    Live { idle_check: Instant },
    /// The publisher left; the presentation ends at `deadline` unless it comes back.
    Gone { deadline: Instant },
    /// Ended; the entry is removed at `deadline` unless someone republishes.
    Ended { deadline: Instant },
}

impl Phase {
    fn deadline(self) -> Instant {
        match self {
            Phase::Live { idle_check } => idle_check,
            Phase::Gone { deadline } | Phase::Ended { deadline } => deadline,
        }
    }
}

async fn stream_task(inner: Arc<Inner>, code: String, handle: TaskHandle) {
    let inner = &*inner;
    let code = code.as_str();
    let shutdown = handle.stop.clone();
    let config = &inner.config;
    let mut sub = inner.hub.subscribe(code, "dash");
    // Period ids are in every URL: starting them from the wall clock in milliseconds means a
    // stream that comes back after its entry was removed never reuses a URL a cache may hold.
    let first_period = u64::try_from(now_ms()).unwrap_or(0);
    let mut segmenter = Segmenter::new(
        config.segment_duration,
        config.max_segment_bytes,
        first_period,
    );
    let live = |now: Instant| Phase::Live {
        idle_check: now + config.end_grace,
    };
    // Checked after subscribing: a publisher leaving later is seen as an End event.
    let mut phase = if inner.has_publisher(code) {
        live(Instant::now())
    } else {
        Phase::Gone {
            deadline: Instant::now() + config.end_grace,
        }
    };
    tracing::debug!(stream = code, "dash: stream task started");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = sleep_until(phase.deadline()) => {
                let now = Instant::now();
                phase = match phase {
                    // Quiet for a grace period with nobody publishing: the End was lost
                    // (reader lag) or never came; finish like after one.
                    Phase::Live { .. } if !inner.has_publisher(code) => {
                        inner.push_outputs(code, segmenter.flush());
                        Phase::Gone { deadline: now }
                    }
                    Phase::Live { .. } => live(now),
                    Phase::Gone { .. } => {
                        inner.end(code);
                        tracing::debug!(stream = code, "dash: publisher gone; presentation ended");
                        Phase::Ended { deadline: now + config.linger }
                    }
                    Phase::Ended { .. } => {
                        // Decided under the registry lock: a publish handled by `run` at the
                        // same moment either sees this task or starts a new one.
                        let done = handle.retire_unless(
                            || inner.has_publisher(code),
                            || {
                                lock(&inner.store).remove(code);
                            },
                        );
                        if done {
                            break;
                        }
                        Phase::Ended { deadline: now + config.end_grace }
                    }
                };
            }
            ev = sub.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                match (&ev, phase) {
                    (Event::Tracks { .. }, Phase::Ended { .. }) => {
                        // An ended presentation is final for players that saw it: a comeback
                        // gets a fresh MPD; period ids continue so cached URLs never change
                        // meaning.
                        let mut store = lock(&inner.store);
                        store.insert(code.to_owned(), inner.new_entry());
                        // The fresh MPD needs its period announced again.
                        segmenter.restart_period();
                        phase = live(now);
                    }
                    (Event::Tracks { .. }, _) | (Event::Frame(_), Phase::Live { .. }) => {
                        phase = live(now);
                    }
                    (Event::End, Phase::Live { .. }) => {
                        phase = Phase::Gone { deadline: now + config.end_grace };
                    }
                    _ => {}
                }
                let outputs = segmenter.push(ev);
                // A stop() may have removed the entry meanwhile; do not bring it back.
                if !shutdown.is_cancelled() {
                    inner.push_outputs(code, outputs);
                }
            }
        }
    }
    tracing::debug!(stream = code, "dash: stream task stopped");
}
