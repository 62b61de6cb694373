//! The ffmpeg children: spawned under a global cap, fed through a bounded queue, their stderr
//! kept as a short tail for error details, killed and reaped when their session ends.

use bytes::Bytes;
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::debug;

/// Chunks queued for one child's stdin; the byte bound is what normally stops a sender.
const STDIN_QUEUE: usize = 4096;
/// Lines of stderr kept for error details.
const TAIL_LINES: usize = 8;
/// Longest stderr line kept (ffmpeg's are short; a runaway one is cut).
const MAX_LINE: usize = 512;
/// Stderr lines queued for the client's `ffmpegOutput`; more are dropped, not waited for.
const LINES_QUEUE: usize = 64;
/// How long a child that was told to stop (stdin closed) may take to flush before it is killed.
pub const FLUSH_GRACE: Duration = Duration::from_secs(3);

/// An ffmpeg command line that reads `input` options and stdin, encodes with `codecs`, and
/// writes FLV to `output`, flushing every packet: both browser paths use this shape.
pub fn flv_command(input: &[&str], codecs: &[String], output: &str) -> Vec<String> {
    let head = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "warning",
        "-fflags",
        "+nobuffer",
    ];
    // Each packet leaves at once instead of waiting for a 32 KiB buffer to fill.
    let tail = [
        "-flush_packets",
        "1",
        "-f",
        "flv",
        "-flvflags",
        "no_duration_filesize",
    ];
    head.iter()
        .chain(input)
        .chain(&["-i", "pipe:0"])
        .map(|s| s.to_string())
        .chain(codecs.iter().cloned())
        .chain(tail.iter().map(|s| s.to_string()))
        .chain([output.to_owned()])
        .collect()
}

/// Called once a chunk is written to stdin (or could not be).
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Chunk {
    data: Bytes,
    done: Option<Done>,
}

/// Why a chunk was not queued.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The child is further behind than the per-connection bound.
    #[error("ffmpeg is {pending} bytes behind; this gateway allows {max}")]
    Behind {
        /// Bytes already queued, this chunk included.
        pending: usize,
        /// The bound.
        max: usize,
    },
    /// The child's stdin is closed (it exited or failed a write).
    #[error("ffmpeg's input is closed")]
    Closed,
}

/// The sending side of a child's stdin.
#[derive(Clone)]
pub struct StdinFeed {
    tx: mpsc::Sender<Chunk>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

impl StdinFeed {
    /// Queues `data`; `done` hears when ffmpeg took it. Never waits.
    pub fn send(&self, data: Bytes, done: Option<Done>) -> Result<(), FeedError> {
        let n = data.len();
        let pending = self.pending.fetch_add(n, Ordering::AcqRel) + n;
        if pending > self.max_pending {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            return Err(FeedError::Behind {
                pending,
                max: self.max_pending,
            });
        }
        self.tx.try_send(Chunk { data, done }).map_err(|_| {
            self.pending.fetch_sub(n, Ordering::AcqRel);
            FeedError::Closed
        })
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// The last lines ffmpeg wrote to stderr.
#[derive(Clone, Default)]
pub struct Tail(Arc<Mutex<VecDeque<String>>>);

impl Tail {
    fn push(&self, line: String) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }

    /// The kept lines, oldest first, one per line.
    pub fn text(&self) -> String {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A running ffmpeg.
pub struct Ffmpeg {
    child: Child,
    /// Its stdin; dropping every clone closes it, which tells ffmpeg to finish.
    pub stdin: Option<StdinFeed>,
    /// Its stdout, when it writes media back to us.
    pub stdout: Option<ChildStdout>,
    /// Its stderr lines, for `ffmpegOutput`.
    pub lines: Option<mpsc::Receiver<String>>,
    /// The last stderr lines, for error details.
    pub tail: Tail,
    pid: Option<u32>,
    _permit: OwnedSemaphorePermit,
}

impl std::fmt::Debug for Ffmpeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ffmpeg").field("pid", &self.pid).finish()
    }
}

/// Why no child was started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The cap on concurrent children is reached.
    #[error("this gateway runs at most {0} browser transcodes at once; try again later")]
    Cap(usize),
    /// The program is not installed (or not where configured).
    #[error("ffmpeg executable not found")]
    NotFound,
    /// Any other spawn failure.
    #[error("cannot start ffmpeg: {0}")]
    Io(std::io::Error),
}

/// The cap on concurrent children, shared by every browser session.
#[derive(Clone, Debug)]
pub struct Cap {
    sem: Arc<Semaphore>,
    max: usize,
}

impl Cap {
    /// At most `max` children at once.
    pub fn new(max: usize) -> Self {
        Cap {
            sem: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Children running now.
    pub fn running(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}

/// Starts `program args...` under `cap`, with its stdin fed from a queue bounded to
/// `max_pending` bytes. The helper tasks are tracked by `tasks` and end with the child.
pub fn spawn(
    program: &Path,
    args: &[String],
    cap: &Cap,
    max_pending: usize,
    want_stdout: bool,
    tasks: &TaskTracker,
) -> Result<Ffmpeg, SpawnError> {
    let permit = cap
        .sem
        .clone()
        .try_acquire_owned()
        .map_err(|_| SpawnError::Cap(cap.max))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(if want_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        // A session that ends by any path (its task dropped, a panic) takes the child with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => SpawnError::NotFound,
            _ => SpawnError::Io(e),
        })?;
    let pid = child.id();
    debug!(?pid, "ffmpeg started");
    let pending = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::channel::<Chunk>(STDIN_QUEUE);
    if let Some(mut stdin) = child.stdin.take() {
        let pending = pending.clone();
        tasks.spawn(async move {
            while let Some(Chunk { data, done }) = rx.recv().await {
                let r = stdin.write_all(&data).await;
                pending.fetch_sub(data.len(), Ordering::AcqRel);
                let failed = r.is_err();
                if let Some(done) = done {
                    done(r.map_err(|e| e.to_string()));
                }
                if failed {
                    break;
                }
            }
            // Fail what is still queued so every sender hears back.
            rx.close();
            while let Some(Chunk { data, done }) = rx.recv().await {
                pending.fetch_sub(data.len(), Ordering::AcqRel);
                if let Some(done) = done {
                    done(Err("ffmpeg's input is closed".into()));
                }
            }
        });
    }
    let tail = Tail::default();
    let (lines_tx, lines) = mpsc::channel(LINES_QUEUE);
    if let Some(mut stderr) = child.stderr.take() {
        let tail = tail.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 4096];
            let mut line = Vec::with_capacity(MAX_LINE);
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                for &b in &buf[..n] {
                    // ffmpeg ends progress lines with \r.
                    if b == b'\n' || b == b'\r' {
                        if !line.is_empty() {
                            let text = String::from_utf8_lossy(&line).into_owned();
                            debug!(target: "ffmpeg", pid, "{text}");
                            tail.push(text.clone());
                            let _ = lines_tx.try_send(text);
                            line.clear();
                        }
                    } else if line.len() < MAX_LINE {
                        line.push(b);
                    }
                }
            }
        });
    }
    let stdout = child.stdout.take();
    Ok(Ffmpeg {
        child,
        stdin: Some(StdinFeed {
            tx,
            pending,
            max_pending,
        }),
        stdout,
        lines: Some(lines),
        tail,
        pid,
        _permit: permit,
    })
}

impl Ffmpeg {
    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Waits for the child to exit on its own.
    pub async fn wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.wait().await.ok()
    }

    /// Kills the child and reaps it.
    pub async fn kill(&mut self) {
        self.stdin = None;
        if let Err(e) = self.child.kill().await {
            debug!(pid = self.pid, error = %e, "ffmpeg kill");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    fn tasks() -> TaskTracker {
        TaskTracker::new()
    }

    #[tokio::test]
    async fn a_missing_program_is_reported_as_not_found() {
        let cap = Cap::new(1);
        let r = spawn(
            Path::new("/nonexistent/ffmpeg"),
            &[],
            &cap,
            1024,
            true,
            &tasks(),
        );
        assert!(matches!(r, Err(SpawnError::NotFound)), "{r:?}");
        assert_eq!(cap.running(), 0, "a failed spawn gives its permit back");
    }

    #[tokio::test]
    async fn the_cap_holds_until_the_child_is_gone() {
        let cap = Cap::new(1);
        let t = tasks();
        let mut first = spawn(Path::new("cat"), &[], &cap, 1024, true, &t).expect("cat");
        assert_eq!(cap.running(), 1);
        let second = spawn(Path::new("cat"), &[], &cap, 1024, true, &t);
        assert!(matches!(second, Err(SpawnError::Cap(1))), "{second:?}");
        first.kill().await;
        drop(first);
        assert_eq!(cap.running(), 0);
        let third = spawn(Path::new("cat"), &[], &cap, 1024, true, &t);
        assert!(third.is_ok());
    }

    #[tokio::test]
    async fn queued_bytes_are_bounded() {
        let cap = Cap::new(1);
        let child = spawn(Path::new("cat"), &[], &cap, 100, true, &tasks()).expect("cat");
        let stdin = child.stdin.clone().expect("stdin");
        let e = stdin.send(Bytes::from_static(&[0; 101]), None).unwrap_err();
        assert!(
            matches!(
                e,
                FeedError::Behind {
                    pending: 101,
                    max: 100
                }
            ),
            "{e}"
        );
        assert_eq!(stdin.pending(), 0, "a refused chunk is not counted");
    }

    /// The whole plumbing with `cat` standing in for ffmpeg: chunks in order through stdin,
    /// FLV back on stdout, every write acknowledged.
    #[tokio::test]
    async fn bytes_round_trip_through_a_child_in_order() {
        let cap = Cap::new(1);
        let mut child = spawn(Path::new("cat"), &[], &cap, 1 << 20, true, &tasks()).expect("cat");
        let stdin = child.stdin.clone().expect("stdin");
        let acks = Arc::new(AtomicUsize::new(0));
        for piece in FLV.chunks(1000) {
            let acks = acks.clone();
            let done: Done = Box::new(move |r| {
                assert!(r.is_ok());
                acks.fetch_add(1, Ordering::Relaxed);
            });
            stdin
                .send(Bytes::copy_from_slice(piece), Some(done))
                .expect("queued");
        }
        drop(stdin);
        child.stdin = None;
        let mut out = Vec::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_end(&mut out)
            .await
            .expect("read");
        assert_eq!(out, FLV);
        assert_eq!(acks.load(Ordering::Relaxed), FLV.len().div_ceil(1000));
        assert!(child.wait().await.is_some_and(|s| s.success()));
    }
}
