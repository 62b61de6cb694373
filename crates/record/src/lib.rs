//! Recording streams to disk, as nginx-rtmp's `record` and SRS's DVR do: one task per
//! recorded live stream writes rotated MPEG-TS or fragmented MP4 files with a keyframe index
//! ([`catalog`]), retention runs continuously, and the files serve DVR/timeshift playlists
//! (HLS byte ranges of either format) and DASH manifests ([`dash`], MP4 only).
//!
//! Both formats are crash-safe by construction. An MPEG-TS file cut anywhere plays up to the
//! cut; an MP4 file is written a whole GOP fragment at a time after its `moov`, and its index
//! names only fragments already on disk, so a repair cuts it back to the last one. Either way a
//! `kill -9` loses at most the GOP in progress, and every closed file plays in ffmpeg and VLC.
//! The keyframe index makes any time range of the recording addressable as byte ranges without
//! rewriting anything.

pub mod catalog;
pub mod dash;
mod mp4;
pub mod writer;

pub use catalog::{DvrSegment, Format, RecordedTrack, RecordingFile};
pub use writer::{RecordingDone, Settings};

use hub::Hub;
use hub::outputs::{StreamTasks, TaskFn, TaskHandle};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Events queued between a stream's task and its writer thread: about 10 s of 30 fps video
/// with its audio. A disk slower than that makes the task wait, and the hub then skips the
/// recording ahead like any slow reader, rather than memory growing.
const WRITER_QUEUE: usize = 1024;
/// How long a stream's task waits for a republish before it ends.
const REPUBLISH_WAIT: Duration = Duration::from_secs(30);
/// How often retention runs over every stream with limits, live or not.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// How often schedule windows are checked: a window opens or closes within this.
const SCHEDULE_INTERVAL: Duration = Duration::from_secs(10);

/// The recording settings of a code, `None` when it is not recorded.
pub type SettingsFn = Arc<dyn Fn(&str) -> Option<Settings> + Send + Sync>;
/// Hears of every closed file.
pub type DoneFn = Arc<dyn Fn(RecordingDone) + Send + Sync>;

/// Where recordings go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// Root directory (`<data_dir>/recordings` by default).
    pub dir: PathBuf,
}

struct Inner {
    hub: Hub,
    config: RecordConfig,
    tasks: StreamTasks,
    settings: RwLock<SettingsFn>,
    /// The retention limits of a code, recorded now or not (`None`: no limits).
    limits: RwLock<Option<SettingsFn>>,
    /// `POST /streams/{code}/recording` overrides: `true` records, `false` does not.
    manual: Mutex<HashMap<String, bool>>,
    /// The file each recording stream is writing.
    current: Mutex<HashMap<String, u64>>,
    done: RwLock<Option<DoneFn>>,
    /// DASH DVR segments being cut at once (each holds a GOP in memory).
    dash_cuts: tokio::sync::Semaphore,
    /// Parsed indexes of closed files.
    indexes: catalog::IndexCache,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Single inserts and removes: a poisoned map is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recorder of every stream of a hub; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder writing under `config.dir`; nothing is recorded until settings say so.
    pub fn new(hub: Hub, config: RecordConfig) -> Self {
        let recorder = Recorder {
            inner: Arc::new(Inner {
                tasks: StreamTasks::new(hub.clone(), "record"),
                hub,
                config,
                settings: RwLock::new(Arc::new(|_: &str| None)),
                limits: RwLock::new(None),
                manual: Mutex::new(HashMap::new()),
                current: Mutex::new(HashMap::new()),
                done: RwLock::new(None),
                dash_cuts: tokio::sync::Semaphore::new(DASH_CUTS),
                indexes: catalog::IndexCache::new(INDEX_CACHE_FILES),
            }),
        };
        let weak = Arc::downgrade(&recorder.inner);
        recorder
            .inner
            .tasks
            .set_enabled(Arc::new(move |code: &str| {
                weak.upgrade()
                    .is_some_and(|i| i.settings_for(code).is_some())
            }));
        recorder
    }

    /// The root directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.inner.config.dir
    }

    /// Replaces the per-code settings (the stream configuration's `recording`).
    pub fn set_settings(&self, settings: SettingsFn) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// Replaces the per-code retention limits used by the periodic sweep: a stream whose
    /// recording was turned off keeps its age and size limits (without this, the recording
    /// settings are used).
    pub fn set_limits(&self, limits: SettingsFn) {
        *self.inner.limits.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
    }

    /// Sets who hears of closed files (`on_record_done`, the `recording.done` event).
    pub fn set_done_observer(&self, done: DoneFn) {
        *self.inner.done.write().unwrap_or_else(|e| e.into_inner()) = Some(done);
    }

    /// Starts (`true`) or stops (`false`) recording `code` whatever its settings say, until
    /// [`Recorder::clear_override`] or a restart of the process.
    pub fn set_override(&self, code: &str, record: bool) {
        lock(&self.inner.manual).insert(code.to_owned(), record);
        self.refresh(code);
    }

    /// Drops the start/stop override of `code`: its settings decide again.
    pub fn clear_override(&self, code: &str) {
        lock(&self.inner.manual).remove(code);
        self.refresh(code);
    }

    /// Applies changed settings of `code`: starts or stops its recording as they now say.
    pub fn refresh(&self, code: &str) {
        if self.inner.settings_for(code).is_some() {
            self.inner.tasks.refresh(&self.task(), code);
        } else {
            self.inner.tasks.stop(code);
        }
    }

    /// Whether `code` is being recorded now, and the id of the file being written.
    pub fn current(&self, code: &str) -> Option<u64> {
        lock(&self.inner.current).get(code).copied()
    }

    /// Whether `code` would be recorded when live (settings or override).
    pub fn wanted(&self, code: &str) -> bool {
        self.inner.settings_for(code).is_some()
    }

    /// Every recorded file of `code`, oldest first.
    pub async fn list(&self, code: &str) -> Vec<RecordingFile> {
        let root = self.inner.config.dir.clone();
        let code = code.to_owned();
        tokio::task::spawn_blocking(move || catalog::list(&root, &code))
            .await
            .unwrap_or_default()
    }

    /// The file `id` of `code`.
    pub async fn find(&self, code: &str, id: u64) -> Option<RecordingFile> {
        let inner = self.inner.clone();
        let code = code.to_owned();
        tokio::task::spawn_blocking(move || inner.indexes.find(&inner.config.dir, &code, id))
            .await
            .ok()
            .flatten()
    }

    /// Deletes the file `id` of `code`; `Ok(false)` if it does not exist, an error if it is
    /// the file being written.
    pub async fn delete(&self, code: &str, id: u64) -> std::io::Result<bool> {
        if self.current(code) == Some(id) {
            return Err(std::io::Error::other("the file is being recorded"));
        }
        self.inner.indexes.forget(code, id);
        let root = self.inner.config.dir.clone();
        let code = code.to_owned();
        tokio::task::spawn_blocking(move || match catalog::find(&root, &code, id) {
            Some(file) => catalog::delete(&file).map(|()| true),
            None => Ok(false),
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The DVR segments of `code` covering `[from_ms, to_ms)`.
    pub async fn dvr(&self, code: &str, from_ms: i64, to_ms: i64) -> Vec<DvrSegment> {
        let files = self.list_range(code, from_ms, to_ms).await;
        catalog::dvr_segments(&files, from_ms, to_ms, true)
    }

    async fn list_range(&self, code: &str, from_ms: i64, to_ms: i64) -> Vec<RecordingFile> {
        let inner = self.inner.clone();
        let code = code.to_owned();
        tokio::task::spawn_blocking(move || {
            let root = &inner.config.dir;
            catalog::list_range_with(root, &code, from_ms, to_ms, |id| {
                inner.indexes.find(root, &code, id)
            })
        })
        .await
        .unwrap_or_default()
    }

    /// A live playlist of `code` delayed by `delay_ms`: the `window` latest GOPs that ended by
    /// then, from the recording.
    pub async fn delayed(
        &self,
        code: &str,
        delay_ms: i64,
        window: usize,
        uri_prefix: &str,
    ) -> Option<String> {
        let now = media::unix_ms_now();
        let until = now.saturating_sub(delay_ms);
        // Only the files that can hold the window are read: it ends `delay` ago.
        // The window ends `delay` ago and holds a few GOPs: the files of the minute before.
        let files = self
            .list_range(code, until.saturating_sub(60_000), until)
            .await;
        let segments = catalog::dvr_segments(&files, i64::MIN, until, false);
        catalog::delayed_playlist(&segments, until, window, uri_prefix)
    }

    /// The DASH MPD of `code`'s MP4 recordings over `[from_ms, to_ms)`, up to its
    /// `UTCTiming` (see [`dash::mpd`]).
    pub async fn dash_mpd(
        &self,
        code: &str,
        from_ms: i64,
        to_ms: i64,
        timeline: dash::Timeline,
    ) -> Option<String> {
        let files = self.list_range(code, from_ms, to_ms).await;
        dash::mpd(&files, from_ms, to_ms, timeline)
    }

    /// A DASH segment (or initialization) of one track of a recorded MP4 file, cut out of the
    /// muxed file on request.
    pub async fn dash_segment(&self, code: &str, name: dash::SegmentName) -> Option<bytes::Bytes> {
        let file = self.find(code, name.file).await?;
        if file.format != Format::Mp4 {
            return None;
        }
        let (from, to) = match name.seq {
            None => (0, file.header_len),
            Some(seq) => dash::gop_range(&file, seq)?,
        };
        if to - from > MAX_DASH_SEGMENT {
            tracing::warn!(stream = %code, file = name.file, bytes = to - from, "DVR segment too large to cut");
            return None;
        }
        // A GOP is read whole to cut one track out of it: a few at a time, so many requests
        // cannot hold many GOPs in memory at once.
        let _permit = self.inner.dash_cuts.acquire().await.ok()?;
        let path = file.path.clone();
        // Read and cut off the runtime: decoding and re-encoding boxes is blocking work too.
        let cut = tokio::task::spawn_blocking(move || {
            let data = read_range(&path, from, to).map_err(|e| e.to_string())?;
            match name.seq {
                None => fmp4::track_header(&data, name.track_id()),
                Some(_) => fmp4::track_fragments(&data, name.track_id()),
            }
            .map_err(|e| e.to_string())
        })
        .await
        .ok()?;
        match cut {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::debug!(stream = %code, file = name.file, error = %e, "DVR segment not cut");
                None
            }
        }
    }

    /// A live playlist of everything recorded of `code` in the last `depth_ms`, one GOP per
    /// segment numbered by the index, so the playlist slides without renumbering.
    pub async fn live_dvr(&self, code: &str, depth_ms: i64, uri_prefix: &str) -> Option<String> {
        let now = media::unix_ms_now();
        let from = now.saturating_sub(depth_ms);
        let files = self.list_range(code, from, now).await;
        let segments = catalog::dvr_segments(&files, from, now, false);
        catalog::delayed_playlist(&segments, now, usize::MAX, uri_prefix)
    }

    fn task(&self) -> TaskFn {
        let inner = self.inner.clone();
        Arc::new(move |code, handle| Box::pin(stream_task(inner.clone(), code, handle)))
    }

    /// Repairs files cut by an earlier crash, then records until `shutdown`, running
    /// retention every minute.
    pub async fn run(self, shutdown: CancellationToken) {
        let root = self.inner.config.dir.clone();
        let repaired = tokio::task::spawn_blocking(move || repair_all(&root))
            .await
            .unwrap_or(0);
        if repaired > 0 {
            tracing::info!(files = repaired, "recordings cut by a crash were closed");
        }
        let sweeper = {
            let inner = self.inner.clone();
            let shutdown = shutdown.clone();
            let task = self.task();
            tokio::spawn(async move {
                let mut retention = tokio::time::interval(RETENTION_INTERVAL);
                let mut schedules = tokio::time::interval(SCHEDULE_INTERVAL);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = retention.tick() => inner.sweep().await,
                        _ = schedules.tick() => inner.apply_schedules(&task),
                    }
                }
            })
        };
        self.inner.tasks.run(self.task(), shutdown).await;
        let _ = sweeper.await;
    }
}

impl Inner {
    fn settings_for(&self, code: &str) -> Option<Settings> {
        let configured = (self.settings.read().unwrap_or_else(|e| e.into_inner()))(code);
        match lock(&self.manual).get(code) {
            // A manual start records now, whatever the schedule says.
            Some(true) => Some(configured.unwrap_or_default()),
            Some(false) => None,
            None => configured.filter(|s| s.in_schedule(media::unix_ms_now())),
        }
    }

    /// Starts or stops the recording of every live stream whose schedule window opened or
    /// closed.
    fn apply_schedules(self: &Arc<Self>, task: &TaskFn) {
        for code in self.hub.live_codes() {
            if self.settings_for(&code).is_some() {
                self.tasks.refresh(task, &code);
            } else {
                self.tasks.stop(&code);
            }
        }
    }

    fn notify(&self, done: RecordingDone) {
        let observer = self.done.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(f) = observer {
            f(done);
        }
    }

    /// Retention over every stream on disk that has limits, recorded now or not.
    async fn sweep(self: &Arc<Self>) {
        let inner = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = media::unix_ms_now();
            for code in catalog::codes(&inner.config.dir) {
                let limits = inner.limits.read().unwrap_or_else(|e| e.into_inner()).clone();
                let configured = match limits {
                    Some(f) => f(&code),
                    None => (inner.settings.read().unwrap_or_else(|e| e.into_inner()))(&code),
                };
                let Some(s) = configured else { continue };
                let max_age = s
                    .max_age
                    .map_or(0, |a| i64::try_from(a.as_millis()).unwrap_or(i64::MAX));
                for f in catalog::enforce_retention(&inner.config.dir, &code, max_age, s.max_bytes, now) {
                    tracing::info!(stream = %code, path = %f.path.display(), "recording deleted by retention");
                }
            }
        })
        .await;
    }
}

/// Closed files whose parsed index is kept: 4 hours of 1-minute files, or days of the default
/// 10-minute ones, at ~15 KB each for 10 minutes of 2 s GOPs.
const INDEX_CACHE_FILES: usize = 512;

/// DASH DVR segments cut at once; more requests wait.
const DASH_CUTS: usize = 4;

/// The largest GOP a DASH DVR request reads into memory to cut one track out of it: a 10 s
/// GOP at 50 Mbit/s.
const MAX_DASH_SEGMENT: u64 = 64 << 20;

/// Bytes `[from, to)` of the file at `path`.
fn read_range(path: &std::path::Path, from: u64, to: u64) -> std::io::Result<bytes::Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::with_capacity(usize::try_from(to - from).unwrap_or(0));
    f.take(to - from).read_to_end(&mut buf)?;
    if (buf.len() as u64) < to - from {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the recording is shorter than its index says",
        ));
    }
    Ok(bytes::Bytes::from(buf))
}

/// Closes every file whose index has no end line (the process died while writing it).
fn repair_all(root: &std::path::Path) -> usize {
    let mut n = 0;
    for code in catalog::codes(root) {
        for f in catalog::list(root, &code)
            .into_iter()
            .filter(|f| !f.complete)
        {
            match catalog::repair(&f) {
                Ok(true) => n += 1,
                Ok(false) => {
                    tracing::info!(path = %f.path.display(), "recording cut by a crash before its first GOP was on disk: deleted")
                }
                Err(e) => {
                    tracing::warn!(path = %f.path.display(), error = %e, "recording not repaired")
                }
            }
        }
    }
    n
}

async fn stream_task(inner: Arc<Inner>, code: String, handle: TaskHandle) {
    let Some(settings) = inner.settings_for(&code) else {
        return;
    };
    let mut sub = inner.hub.subscribe(&code, "record");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<hub::Event>(WRITER_QUEUE);
    let writer = {
        let inner = inner.clone();
        let code = code.clone();
        let root = inner.config.dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = writer::Writer::new(root, &code, settings);
            let mut failed = false;
            while let Some(ev) = rx.blocking_recv() {
                if failed && matches!(ev, hub::Event::Tracks { .. }) {
                    // A new publish (or codec) after a failure: the stale file is closed as
                    // far as it goes, and the new one starts from this event.
                    let _ = w.close(media::unix_ms_now());
                    failed = false;
                }
                if !failed && let Err(e) = w.event(&ev, media::unix_ms_now()) {
                    // A full or read-only disk: the stream goes on, unrecorded, and says so once.
                    tracing::error!(stream = %code, error = %e, "recording failed; stopped for this publish");
                    failed = true;
                }
                match w.current() {
                    Some(id) => lock(&inner.current).insert(code.clone(), id),
                    None => lock(&inner.current).remove(&code),
                };
                for done in w.take_done() {
                    inner.notify(done);
                }
            }
            if let Err(e) = w.close(media::unix_ms_now()) {
                tracing::error!(stream = %code, error = %e, "recording not closed cleanly");
            }
            lock(&inner.current).remove(&code);
            for done in w.take_done() {
                inner.notify(done);
            }
        })
    };
    let mut idle_since: Option<tokio::time::Instant> = None;
    // An `End` can be lost when the hub skips a slow reader ahead: the publisher is also
    // checked now and then, as the DASH task does.
    let mut check = tokio::time::interval(REPUBLISH_WAIT / 3);
    loop {
        let deadline = idle_since.map(|t| t + REPUBLISH_WAIT);
        tokio::select! {
            _ = handle.stop.cancelled() => break,
            _ = check.tick(), if idle_since.is_none() => {
                if inner.hub.stats(&code).is_none_or(|s| s.publisher.is_none()) {
                    idle_since = Some(tokio::time::Instant::now());
                    // Closes the file now rather than when the task ends.
                    if tx.send(hub::Event::End).await.is_err() {
                        break;
                    }
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                let has_publisher = || inner.hub.stats(&code).is_some_and(|s| s.publisher.is_some());
                if handle.retire_unless(has_publisher, || {}) {
                    break;
                }
                idle_since = None;
            }
            ev = sub.recv() => {
                let Some(ev) = ev else { break };
                match &ev {
                    hub::Event::End => idle_since = Some(tokio::time::Instant::now()),
                    hub::Event::Tracks { .. } => idle_since = None,
                    hub::Event::Frame(_) => {}
                }
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
