//! Renditions, as Open-Streamer and SRS make them: one ffmpeg child per live stream with a
//! ladder reads the stream from the hub as FLV on its stdin and writes every rung back as FLV
//! on a Unix socket of its own (no loopback RTMP hop). Each rung is published into the hub as
//! the ordinary stream `<code>_<name>`, so every output (HLS, DASH, RTMP, SRT, RTSP, TS,
//! FLV, pushes) serves it without knowing it is a rendition.
//!
//! The child is a reader like any other: when it falls behind, the hub skips it ahead and the
//! source's viewers never notice; when it dies, it is restarted with backoff and the rungs'
//! viewers see a discontinuity, not an end. Timestamps come back exactly as they went
//! ([`command`]), so the rungs' segments line up with the source's.

pub mod command;
pub mod probe;
mod progress;

use bytes::Bytes;
use command::{Encoder, Plan, SourceFacts};
use hub::outputs::{StreamTasks, TaskFn, TaskHandle};
use hub::{Event, Hub, Publisher, PublisherMeta};
use media::{MediaInfo, ms_to_ticks};
use probe::Probed;
use progress::{LogLimiter, Progress};
use rtmp::flv_mux::FlvMuxer;
use rtmp::flv_stream::{FlvIngest, FlvIngestError};
use rtmp::ingest::IngestOutput;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use store::{HwAccel, Rendition, RenditionSpec, TranscodeSpec};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The timestamp the child's input starts at (see [`FlvMuxer::starting_at`]).
const ORIGIN_MS: u32 = 10_000;
/// How long the child may take to open its outputs (it first reads the source's headers).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(20);
/// A child that takes no input for this long is hung.
const STDIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a child told to finish (stdin closed) may flush before it is killed.
const FLUSH_GRACE: Duration = Duration::from_secs(3);
/// Restart backoff: first delay, largest delay, and how long a run must last to reset it.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stream's task waits for a republish before it ends.
const REPUBLISH_WAIT: Duration = Duration::from_secs(30);
/// Lines of the child's stderr kept for the error of a run that failed.
const TAIL_LINES: usize = 6;
/// Longest stderr line kept.
const MAX_LINE: usize = 400;
/// Bytes read from a rung's socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The transcode settings of a code, `None` when it has none.
pub type SettingsFn = Arc<dyn Fn(&str) -> Option<TranscodeSpec> + Send + Sync>;

pub use store::rendition_code;

/// Process-wide settings (`transcode:` in the configuration file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscodeConfig {
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
    /// Most ladders running at once; a stream beyond it reports `failed` and retries.
    pub max_children: usize,
    /// Where the rungs' Unix sockets live (private to this process).
    pub socket_dir: PathBuf,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        TranscodeConfig {
            ffmpeg: PathBuf::from("ffmpeg"),
            max_children: 8,
            socket_dir: std::env::temp_dir()
                .join(format!("ferrocast-transcode-{}", std::process::id())),
        }
    }
}

/// Where a stream's ladder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The source is not live.
    Waiting,
    /// ffmpeg was started and has not encoded a frame yet.
    Starting,
    /// Encoding.
    Running,
    /// The last run failed; the next starts after a backoff.
    Restarting,
}

impl State {
    /// The name in the runtime API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Starting => "starting",
            State::Running => "running",
            State::Restarting => "restarting",
        }
    }
}

/// One rung, as the runtime API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct RenditionStatus {
    /// The rung's name.
    pub name: String,
    /// The hub code it is published under.
    pub code: String,
    /// The size it is encoded at (0 until the source's size is known).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// Video bitrate, kbit/s.
    pub video_bitrate_kbps: u32,
}

/// A stream's ladder, for the runtime API.
#[derive(Clone, Debug, PartialEq)]
pub struct TranscodeStatus {
    /// Where it is.
    pub state: State,
    /// ffmpeg's encoder (`libx264`, `h264_nvenc`, ...), once probed.
    pub encoder: Option<String>,
    /// Why the encoder is not the one asked for (hardware fallback), if so.
    pub hwaccel_note: Option<String>,
    /// Frames per second encoded, from ffmpeg's progress.
    pub fps: f64,
    /// Encoding speed relative to real time (1.0 keeps up).
    pub speed: f64,
    /// Frames encoded by the current run.
    pub frames: u64,
    /// Runs that failed and were restarted since the stream's task began.
    pub restarts: u64,
    /// Why the last run failed.
    pub last_error: Option<String>,
    /// The rungs (the `source` rung is the stream itself and not listed).
    pub renditions: Vec<RenditionStatus>,
}

struct Inner {
    hub: Hub,
    config: TranscodeConfig,
    tasks: StreamTasks,
    settings: RwLock<SettingsFn>,
    /// Each stream task's ladder, by code.
    ladders: Mutex<HashMap<String, Ladder>>,
    probes: tokio::sync::Mutex<HashMap<HwAccel, Probed>>,
    children: Arc<Semaphore>,
    next_run: AtomicU64,
}

/// A stream task's ladder: the task's id (a task that ends clears only its own entry, not a
/// successor's), the settings it started with (so an unrelated edit restarts nothing), and what
/// it reports.
struct Ladder {
    id: u64,
    spec: TranscodeSpec,
    status: TranscodeStatus,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Whole-entry updates only: a poisoned map is consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The ladders of every stream of a hub; cheap to clone.
#[derive(Clone)]
pub struct Transcoder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Transcoder {
    /// A transcoder; nothing runs until settings ask for a ladder and [`Transcoder::run`].
    pub fn new(hub: Hub, config: TranscodeConfig) -> Self {
        let t = Transcoder {
            inner: Arc::new(Inner {
                tasks: StreamTasks::new(hub.clone(), "transcode"),
                hub,
                children: Arc::new(Semaphore::new(config.max_children.max(1))),
                config,
                settings: RwLock::new(Arc::new(|_: &str| None)),
                ladders: Mutex::new(HashMap::new()),
                probes: tokio::sync::Mutex::new(HashMap::new()),
                next_run: AtomicU64::new(1),
            }),
        };
        let weak = Arc::downgrade(&t.inner);
        t.inner.tasks.set_enabled(Arc::new(move |code: &str| {
            weak.upgrade()
                .is_some_and(|i| i.settings_for(code).is_some())
        }));
        t
    }

    /// Replaces the per-code settings (the stream configuration's `transcode`).
    pub fn set_settings(&self, settings: SettingsFn) {
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = settings;
    }

    /// Applies changed settings of `code`: starts, restarts or stops its ladder. Settings
    /// equal to the running ladder's change nothing.
    pub fn refresh(&self, code: &str) {
        let want = self.inner.settings_for(code);
        let running = lock(&self.inner.ladders).get(code).map(|l| l.spec.clone());
        match want {
            None => {
                self.inner.tasks.stop(code);
            }
            Some(spec) if running.as_ref() != Some(&spec) => {
                if running.is_some() {
                    self.inner.tasks.stop(code);
                }
                self.inner.tasks.refresh(&self.task(), code);
            }
            Some(_) => {}
        }
    }

    /// The ladder of `code` now, if it has a task.
    pub fn status(&self, code: &str) -> Option<TranscodeStatus> {
        lock(&self.inner.ladders)
            .get(code)
            .map(|l| l.status.clone())
    }

    fn task(&self) -> TaskFn {
        let inner = self.inner.clone();
        Arc::new(move |code, handle| Box::pin(stream_task(inner.clone(), code, handle)))
    }

    /// Runs the ladders until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let dir = self.inner.config.socket_dir.clone();
        sweep_dead_dirs(&dir);
        self.inner.tasks.run(self.task(), shutdown).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Removes the socket directories (`ferrocast-transcode-<pid>` beside `dir`, this user's) of
/// processes that are gone: a server that was killed could not remove its own.
fn sweep_dead_dirs(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Some(parent), Ok(me)) = (
        dir.parent(),
        std::fs::metadata("/proc/self").map(|m| m.uid()),
    ) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ferrocast-transcode-"))
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == me);
        if ours && !Path::new("/proc").join(pid).exists() {
            let path = entry.path();
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    tracing::debug!(dir = %path.display(), "transcode: removed the socket directory of a process that is gone")
                }
                Err(e) => {
                    tracing::debug!(dir = %path.display(), error = %e, "transcode: could not remove a stale socket directory")
                }
            }
        }
    }
}

/// Creates `dir` for this process alone (0700), or takes it if it is already a directory of
/// this user's (a previous process with the same id); refuses anything else, such as a
/// directory or link another user placed at the predictable name.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            let me = std::fs::metadata("/proc/self")?.uid();
            if !m.is_dir() || m.uid() != me {
                return Err(std::io::Error::other(
                    "exists and is not a directory of this user's",
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
        }
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

impl Inner {
    fn settings_for(&self, code: &str) -> Option<TranscodeSpec> {
        (self.settings.read().unwrap_or_else(|e| e.into_inner()))(code).filter(|s| s.active())
    }

    /// Changes what task `me` of `code` reports; nothing if a newer task took the code over.
    fn update(&self, code: &str, me: u64, f: impl FnOnce(&mut TranscodeStatus)) {
        if let Some(l) = lock(&self.ladders).get_mut(code).filter(|l| l.id == me) {
            f(&mut l.status);
        }
    }

    /// The encoder for `request`, probed once per process.
    async fn encoder(&self, request: HwAccel) -> Probed {
        let mut probes = self.probes.lock().await;
        if let Some(p) = probes.get(&request) {
            return p.clone();
        }
        let p = probe::probe(&self.config.ffmpeg, request).await;
        match &p.note {
            Some(note) if request != HwAccel::None => {
                tracing::warn!(hwaccel = request.as_str(), "transcode: {note}")
            }
            _ => tracing::info!(
                hwaccel = request.as_str(),
                encoder = p.encoder.codec(),
                "transcode: encoder chosen"
            ),
        }
        probes.insert(request, p.clone());
        p
    }
}

/// Why a child's run ended.
enum Exit {
    /// The task was stopped (settings changed, shutdown).
    Stopped,
    /// The source's publisher left.
    SourceEnded,
    /// The source came back as a new session (or changed codec): start over with it.
    NewSession(Arc<MediaInfo>, u64),
    /// ffmpeg failed; restart after a backoff.
    Failed(String),
}

/// One rung's hub publisher, shared by the successive runs of a source session.
struct RungOut {
    publisher: Mutex<Publisher>,
    /// Whether some run announced tracks: the next run's first announcement then starts a
    /// new session, so players see a discontinuity rather than a clash of timelines.
    announced: std::sync::atomic::AtomicBool,
}

async fn stream_task(inner: Arc<Inner>, code: String, handle: TaskHandle) {
    let Some(spec) = inner.settings_for(&code) else {
        return;
    };
    let rungs: Vec<Rendition> = spec
        .profiles
        .iter()
        .filter_map(RenditionSpec::resolve)
        .collect();
    let me = inner.next_run.fetch_add(1, Ordering::Relaxed);
    let status = TranscodeStatus {
        state: State::Waiting,
        encoder: None,
        hwaccel_note: None,
        fps: 0.0,
        speed: 0.0,
        frames: 0,
        restarts: 0,
        last_error: None,
        renditions: rungs
            .iter()
            .map(|r| RenditionStatus {
                name: r.name.clone(),
                code: rendition_code(&code, &r.name),
                width: 0,
                height: 0,
                video_bitrate_kbps: r.video_bitrate_kbps,
            })
            .collect(),
    };
    lock(&inner.ladders).insert(
        code.clone(),
        Ladder {
            id: me,
            spec: spec.clone(),
            status,
        },
    );
    let probed = tokio::select! {
        p = inner.encoder(spec.hwaccel) => p,
        _ = handle.stop.cancelled() => return forget(&inner, &code, me),
    };
    inner.update(&code, me, |s| {
        s.encoder = Some(probed.encoder.codec().to_owned());
        s.hwaccel_note = probed.note.clone();
    });
    tracing::info!(stream = %code, rungs = rungs.len(), encoder = probed.encoder.codec(), "transcode: ladder started");
    let mut sub = inner.hub.subscribe(&code, "transcode");
    let mut outs: Option<Arc<Vec<RungOut>>> = None;
    let mut pending: Option<(Arc<MediaInfo>, u64)> = None;
    let mut backoff = BACKOFF_FIRST;
    loop {
        let (info, session) = match pending.take() {
            Some(t) => t,
            None => match wait_tracks(&inner, &code, &mut sub, &handle, me).await {
                Some(t) => t,
                None => break,
            },
        };
        if info.video.is_none() {
            // Nothing to scale: wait for a session with video (a codec change or republish).
            inner.update(&code, me, |s| {
                s.state = State::Waiting;
                s.last_error = Some("the source has no video".into());
            });
            continue;
        }
        let outputs = match &outs {
            Some(o) => o.clone(),
            None => match publish_rungs(&inner.hub, &code, &rungs) {
                Ok(o) => outs.insert(Arc::new(o)).clone(),
                Err(e) => {
                    // A previous task of this code may still be letting go of the rungs.
                    inner.update(&code, me, |s| {
                        s.state = State::Restarting;
                        s.last_error = Some(e.clone());
                    });
                    tracing::warn!(stream = %code, error = %e, retry_in = ?backoff, "transcode: rungs not published");
                    // A publisher that took a rung's code while the ladder was off is dropped;
                    // control refuses publishers on rung codes while it is on.
                    for r in &rungs {
                        inner.hub.kick_publisher(&rendition_code(&code, &r.name));
                    }
                    if sleep_or_stop(backoff, &handle.stop).await {
                        break;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    pending = Some((info, session));
                    continue;
                }
            },
        };
        let started = Instant::now();
        let exit = run_child(
            &inner,
            &code,
            me,
            &spec,
            &rungs,
            &probed.encoder,
            info,
            session,
            &mut sub,
            &outputs,
            &handle.stop,
        )
        .await;
        match exit {
            Exit::Stopped => break,
            Exit::SourceEnded => {
                // The rungs end with their source; a republish publishes them again.
                outs = None;
                inner.update(&code, me, |s| {
                    s.state = State::Waiting;
                    s.fps = 0.0;
                    s.speed = 0.0;
                });
            }
            Exit::NewSession(info, session) => pending = Some((info, session)),
            Exit::Failed(error) => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = BACKOFF_FIRST;
                }
                tracing::warn!(stream = %code, error = %error, retry_in = ?backoff, "transcode: ffmpeg failed; restarting");
                inner.update(&code, me, |s| {
                    s.state = State::Restarting;
                    s.restarts += 1;
                    s.fps = 0.0;
                    s.speed = 0.0;
                    s.last_error = Some(error);
                });
                if sleep_or_stop(backoff, &handle.stop).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                // A fresh subscription starts at the GOP cache: the next run begins on a
                // keyframe instead of wherever the failed one stopped reading.
                sub = inner.hub.subscribe(&code, "transcode");
            }
        }
    }
    drop(outs);
    forget(&inner, &code, me);
    tracing::info!(stream = %code, "transcode: ladder stopped");
}

/// Clears the entries of task `me` of `code`, unless a newer task (a restart after a settings
/// change) owns them already.
fn forget(inner: &Inner, code: &str, me: u64) {
    let mut ladders = lock(&inner.ladders);
    if ladders.get(code).is_some_and(|l| l.id == me) {
        ladders.remove(code);
    }
}

/// Sleeps `d`; true if the task was stopped meanwhile.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.cancelled() => true,
    }
}

/// Publishes every rung's code into the hub.
fn publish_rungs(hub: &Hub, code: &str, rungs: &[Rendition]) -> Result<Vec<RungOut>, String> {
    rungs
        .iter()
        .map(|r| {
            let rcode = rendition_code(code, &r.name);
            let meta = PublisherMeta {
                protocol: "transcode",
                ..PublisherMeta::default()
            };
            hub.publish(&rcode, meta)
                .map(|p| RungOut {
                    publisher: Mutex::new(p),
                    announced: std::sync::atomic::AtomicBool::new(false),
                })
                .map_err(|e| format!("{rcode}: {e}"))
        })
        .collect()
}

/// Waits for the source's tracks; `None` when the task should end (stopped, or no
/// republish within [`REPUBLISH_WAIT`]).
async fn wait_tracks(
    inner: &Inner,
    code: &str,
    sub: &mut hub::Subscription,
    handle: &TaskHandle,
    me: u64,
) -> Option<(Arc<MediaInfo>, u64)> {
    let has_publisher = || inner.hub.stats(code).is_some_and(|s| s.publisher.is_some());
    let mut deadline = Instant::now() + REPUBLISH_WAIT;
    loop {
        tokio::select! {
            _ = handle.stop.cancelled() => return None,
            _ = tokio::time::sleep_until(deadline) => {
                if handle.retire_unless(has_publisher, || forget(inner, code, me)) {
                    return None;
                }
                deadline = Instant::now() + REPUBLISH_WAIT;
            }
            ev = sub.recv() => match ev? {
                Event::Tracks { info, session } => return Some((info, session)),
                // Frames before tracks belong to nobody we can decode; an End restarts the wait.
                Event::Frame(_) => {}
                Event::End => deadline = Instant::now() + REPUBLISH_WAIT,
            },
        }
    }
}

/// Removes a run's sockets and text file, however the run ends.
struct RunFiles(Vec<PathBuf>);

impl Drop for RunFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Kills and reaps the child.
async fn kill(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// One ffmpeg run over a source session: feeds it, reads its rungs back, watches it.
#[allow(clippy::too_many_arguments)]
async fn run_child(
    inner: &Arc<Inner>,
    code: &str,
    me: u64,
    spec: &TranscodeSpec,
    rungs: &[Rendition],
    encoder: &Encoder,
    info: Arc<MediaInfo>,
    session: u64,
    sub: &mut hub::Subscription,
    outs: &Arc<Vec<RungOut>>,
    stop: &CancellationToken,
) -> Exit {
    let Ok(_permit) = inner.children.clone().try_acquire_owned() else {
        return Exit::Failed(format!(
            "{} ladders run already (transcode.max_children)",
            inner.config.max_children
        ));
    };
    let run = inner.next_run.fetch_add(1, Ordering::Relaxed);
    let dir = &inner.config.socket_dir;
    // Made by the first ladder, so a server that never transcodes leaves nothing behind.
    if let Err(e) = make_private_dir(dir) {
        return Exit::Failed(format!(
            "socket directory {}: {e} (transcode.socket_dir)",
            dir.display()
        ));
    }
    let mut files = RunFiles(Vec::new());
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for i in 0..rungs.len() {
        let path = dir.join(format!("{run}-{i}.sock"));
        let _ = std::fs::remove_file(&path);
        match UnixListener::bind(&path) {
            Ok(l) => listeners.push(l),
            Err(e) => return Exit::Failed(format!("socket {}: {e}", path.display())),
        }
        urls.push(format!("unix:{}", path.display()));
        files.0.push(path);
    }
    let text_file = match command::overlay_text(spec) {
        Some(text) => {
            let path = dir.join(format!("{run}.txt"));
            if let Err(e) = std::fs::write(&path, text) {
                return Exit::Failed(format!("overlay text {}: {e}", path.display()));
            }
            files.0.push(path.clone());
            Some(path.display().to_string())
        }
        None => None,
    };
    let source = SourceFacts {
        size: info.video_size(),
        fps: info.fps(),
    };
    let plan = Plan {
        spec,
        rungs,
        encoder,
        source,
        outputs: &urls,
        text_file: text_file.as_deref(),
    };
    inner.update(code, me, |s| {
        for (st, r) in s.renditions.iter_mut().zip(rungs) {
            let (w, h) = command::output_size(r, source.size);
            (st.width, st.height) = (w, h);
        }
        s.state = State::Starting;
        s.frames = 0;
    });
    let ffmpeg = &inner.config.ffmpeg;
    let spawned = Command::new(ffmpeg)
        .args(plan.args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Exit::Failed(format!(
                "ffmpeg not found (transcode.ffmpeg is `{}`): the source plays on, without renditions",
                ffmpeg.display()
            ));
        }
        Err(e) => return Exit::Failed(format!("cannot start {}: {e}", ffmpeg.display())),
    };
    let mut stdin = child.stdin.take();
    let mut tasks: JoinSet<Result<(), String>> = JoinSet::new();
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    if let Some(out) = child.stdout.take() {
        let inner = inner.clone();
        let code = code.to_owned();
        // Progress lines come once a second; they end with the run, so this task's result
        // means nothing and it is never awaited for an outcome.
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            let mut p = Progress::default();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(update) = p.line(&line, std::time::Instant::now()) {
                    inner.update(&code, me, |s| {
                        s.fps = update.fps;
                        s.speed = update.speed;
                        s.frames = update.frames;
                        if update.frames > 0 {
                            s.state = State::Running;
                        }
                    });
                }
            }
        });
    }
    if let Some(err) = child.stderr.take() {
        let tail = tail.clone();
        let code = code.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            let mut limiter = LogLimiter::default();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(MAX_LINE).collect();
                match limiter.admit(std::time::Instant::now()) {
                    progress::Admit::Log => tracing::warn!(stream = %code, "ffmpeg: {line}"),
                    progress::Admit::LogWithSuppressed(n) => {
                        tracing::warn!(stream = %code, suppressed = n, "ffmpeg: {line}")
                    }
                    progress::Admit::Drop => {}
                }
                let mut t = lock(&tail);
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
    }
    let shift = Arc::new(AtomicI64::new(0));
    for (i, l) in listeners.into_iter().enumerate() {
        let outs = outs.clone();
        let shift = shift.clone();
        tasks.spawn(async move { read_rung(l, &outs[i], &shift).await });
    }
    let failed = |why: String| {
        let t = lock(&tail);
        let detail = t.iter().cloned().collect::<Vec<_>>().join(" | ");
        if detail.is_empty() {
            why
        } else {
            format!("{why}: {detail}")
        }
    };
    let mut mux = FlvMuxer::starting_at(ORIGIN_MS);
    mux.tracks(info, session);
    let mut shift_known = false;
    let exit = loop {
        let pieces = mux.take();
        if !pieces.is_empty() {
            let Some(pipe) = stdin.as_mut() else {
                break Exit::Failed(failed("ffmpeg's input is closed".into()));
            };
            match tokio::time::timeout(STDIN_TIMEOUT, write_pieces(pipe, &pieces)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // Its exit status says more than the broken pipe.
                    let status = tokio::time::timeout(FLUSH_GRACE, child.wait()).await;
                    let why = match status {
                        Ok(Ok(s)) => format!("ffmpeg exited ({s})"),
                        _ => format!("ffmpeg stopped reading its input ({e})"),
                    };
                    break Exit::Failed(failed(why));
                }
                Err(_) => break Exit::Failed(failed("ffmpeg took no input for 10 s".into())),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break Exit::Stopped,
            status = child.wait() => {
                let why = match status {
                    Ok(s) => format!("ffmpeg exited ({s})"),
                    Err(e) => format!("ffmpeg lost: {e}"),
                };
                break Exit::Failed(failed(why));
            }
            Some(done) = tasks.join_next() => {
                // An output closes first when ffmpeg dies: its exit status says why.
                let why = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                    Ok(Ok(s)) => format!("ffmpeg exited ({s})"),
                    _ => match done {
                        Ok(Ok(())) => "ffmpeg closed a rendition's output".to_owned(),
                        Ok(Err(e)) => e,
                        Err(e) => format!("rendition reader: {e}"),
                    },
                };
                break Exit::Failed(failed(why));
            }
            ev = sub.recv() => match ev {
                None => break Exit::Stopped,
                Some(Event::Tracks { info, session: s }) => {
                    // A republish, an input switch or a codec change: ffmpeg cannot follow
                    // a decoder configuration change mid-stream, so the run starts over.
                    break Exit::NewSession(info, s);
                }
                Some(Event::Frame(f)) => {
                    mux.frame(&f);
                    if !shift_known && mux.started() {
                        shift_known = true;
                        // Rung timestamps are input timestamps: this maps them back to hub time.
                        shift.store(-ms_to_ticks(mux.offset_ms()), Ordering::Release);
                    }
                }
                Some(Event::End) => {
                    // Closing stdin lets ffmpeg flush the last GOP to the rungs.
                    drop(stdin.take());
                    let _ = tokio::time::timeout(FLUSH_GRACE, child.wait()).await;
                    // ... and the rungs read what is left in their sockets.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while tasks.join_next().await.is_some() {}
                    })
                    .await;
                    break Exit::SourceEnded;
                }
            },
        }
    };
    drop(stdin);
    kill(&mut child).await;
    tasks.shutdown().await;
    drop(files);
    exit
}

async fn write_pieces(pipe: &mut ChildStdin, pieces: &[Bytes]) -> std::io::Result<()> {
    for p in pieces {
        pipe.write_all(p).await?;
    }
    Ok(())
}

/// Reads one rung's FLV from ffmpeg into its hub publisher.
async fn read_rung(listener: UnixListener, out: &RungOut, shift: &AtomicI64) -> Result<(), String> {
    let (mut sock, _) = tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept())
        .await
        .map_err(|_| "ffmpeg did not open its outputs within 20 s".to_owned())?
        .map_err(|e| format!("accept: {e}"))?;
    drop(listener);
    let mut flv = FlvIngest::default();
    let mut emitted = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut first = true;
    loop {
        let n = sock
            .read(&mut buf)
            .await
            .map_err(|e| format!("rendition output: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        flv.push(&buf[..n]);
        loop {
            let r = flv.next(&mut emitted, |_, ms| Some(ms));
            let s = shift.load(Ordering::Acquire);
            for o in emitted.drain(..) {
                let mut p = lock(&out.publisher);
                match o {
                    IngestOutput::Announce(info) => {
                        if first && out.announced.swap(true, Ordering::AcqRel) {
                            p.switch_session(*info);
                        } else {
                            p.announce(*info);
                        }
                        first = false;
                    }
                    IngestOutput::Frame(mut f) => {
                        f.dts += s;
                        f.pts += s;
                        p.write(f);
                    }
                }
            }
            match r {
                Ok(true) => {}
                Ok(false) => break,
                Err(FlvIngestError::Flv(e)) => {
                    return Err(format!("rendition output is not FLV: {e}"));
                }
                Err(e) => return Err(format!("rendition output: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_only_directories_of_processes_that_are_gone() {
        let parent =
            std::env::temp_dir().join(format!("ferrocast-sweep-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        // Above the kernel's largest pid (2^22): no process has it.
        let gone = parent.join("ferrocast-transcode-99999999");
        let mine = parent.join(format!("ferrocast-transcode-{}", std::process::id()));
        let other = parent.join("ferrocast-transcode-x1");
        for d in [&gone, &mine, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(gone.join("0-0.sock"), b"").unwrap();
        sweep_dead_dirs(&mine);
        assert!(!gone.exists(), "a dead process's directory stays");
        assert!(mine.exists(), "a live process's directory went");
        assert!(other.exists(), "a name that is not ours went");
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
