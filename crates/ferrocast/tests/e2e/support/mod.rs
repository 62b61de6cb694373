//! Harness of the end-to-end suite: the real `ferrocast` binary on private ports with a private
//! data dir, real ffmpeg/ffprobe clients, a tiny HTTP client and a raw RTMP client.

pub mod api;
pub mod ffmpeg;
pub mod hook_server;
pub mod http;
pub mod nginx;
pub mod pg;
pub mod proc;
pub mod raw_rtmp;
pub mod server;
pub mod tls;

pub use ffmpeg::Fixture;
pub use server::{Playlist, Publisher, Server};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Held for the whole of a test that runs a CPU-heavy client: headless Chromium (decoding
/// video, or encoding its camera), or ffmpeg decoding 720p from UDP, which cannot wait. On a
/// 2-core CI machine several of them beside the rest of the suite starved the players: ffmpeg
/// fell out of a 2-segment DASH window, a UDP reader overflowed its socket buffer, the
/// dashboard's steps timed out.
pub struct HeavySlot {
    _guard: MutexGuard<'static, ()>,
}

/// Waits for the heavy-client slot (see [`HeavySlot`]); take it before starting the server,
/// so that the wait never eats into a test's own timing.
pub fn heavy_slot() -> HeavySlot {
    static SLOT: Mutex<()> = Mutex::new(());
    HeavySlot {
        _guard: SLOT.lock().unwrap_or_else(PoisonError::into_inner),
    }
}

/// Root of everything the suite writes: fixtures (kept between runs) and per-test dirs.
pub fn scratch_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ferrocast-e2e")
}

/// A directory private to one test; removed on drop unless the test is failing.
#[derive(Debug)]
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `<root>/<pid>-<n>-<test name>`.
    pub fn new() -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let test: String = std::thread::current()
            .name()
            .unwrap_or("test")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = scratch_root().join(format!("{}-{n}-{test}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(test files kept in {})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, failing the test after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes ANSI escape sequences (colored log output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
