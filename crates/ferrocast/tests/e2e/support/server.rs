//! The server under test and its publishers.

use super::ffmpeg::{self, Fixture};
use super::http;
use super::proc::ChildGuard;
use super::{ScratchDir, strip_ansi, wait_until};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a server gets to come up (first /healthz 200).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with fresh ports when another process grabbed one in between.
const BIND_ATTEMPTS: usize = 5;

/// Settings of a server to start, as dotted config keys (`hls.segment_duration`).
#[derive(Clone, Debug, Default)]
pub struct ServerBuilder {
    settings: Vec<(String, String)>,
    /// Raw environment variables (AgustinSRG-compatible names), set before the settings.
    env: Vec<(String, String)>,
    /// Give the RTMP port as `RTMP_PORT` instead of `FERROCAST_RTMP__LISTEN`.
    rtmp_port_env: bool,
}

impl ServerBuilder {
    /// Sets a config key through its environment override (`rtmp.handshake_timeout` ->
    /// `FERROCAST_RTMP__HANDSHAKE_TIMEOUT`).
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_owned(), value.to_string()));
        self
    }

    /// Sets a raw environment variable of the server process (`RTMP_PLAY_WHITELIST`); the
    /// `set` keys (`FERROCAST_*`) still win where both apply.
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_string()));
        self
    }

    /// Passes the RTMP port as AgustinSRG's `RTMP_PORT` (so the server listens on all
    /// addresses) instead of `FERROCAST_RTMP__LISTEN`; [`Server::rtmp`] is still the address to
    /// connect to.
    pub fn rtmp_port_env(mut self) -> Self {
        self.rtmp_port_env = true;
        self
    }

    /// Starts the binary on free ports and waits until `/healthz` answers.
    pub fn start(self) -> Server {
        ffmpeg::require_tools();
        let dir = ScratchDir::new();
        for attempt in 1..=BIND_ATTEMPTS {
            let (rtmp, http) = free_addrs();
            let log = dir.path().join(format!("server-{attempt}.log"));
            match spawn_ready(dir.path(), rtmp, http, &self, &log) {
                Ok(child) => {
                    return Server {
                        child,
                        rtmp,
                        http,
                        dir,
                        launch: self,
                        starts: 1,
                    };
                }
                Err((status, text)) => {
                    if text.contains("cannot listen") && attempt < BIND_ATTEMPTS {
                        continue; // a port was taken between our probe and its bind
                    }
                    panic!("ferrocast exited at startup ({status}):\n{text}");
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// Spawns the binary on `rtmp`/`http` and waits for its first `/healthz` 200; on an early
/// exit returns the status and the log.
fn spawn_ready(
    dir: &Path,
    rtmp: SocketAddr,
    http: SocketAddr,
    launch: &ServerBuilder,
    log: &Path,
) -> Result<ChildGuard, (ExitStatus, String)> {
    let mut cmd = base_command(dir);
    if launch.rtmp_port_env {
        cmd.env("RTMP_PORT", rtmp.port().to_string());
    } else {
        cmd.env("FERROCAST_RTMP__LISTEN", rtmp.to_string());
    }
    cmd.env("FERROCAST_HTTP__LISTEN", http.to_string())
        // SRT is on by default on UDP 9000; parallel servers each need their own port.
        .env("FERROCAST_SRT__LISTEN", free_udp_addr().to_string())
        // RTSP is on by default on TCP 8554; likewise (tests that use it set their own).
        .env("FERROCAST_RTSP__LISTEN", free_addrs().0.to_string());
    for (k, v) in &launch.env {
        cmd.env(k, v);
    }
    for (k, v) in &launch.settings {
        cmd.env(env_name(k), v);
    }
    let mut child = ChildGuard::spawn("ferrocast", &mut cmd, log);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_status() {
            return Err((status, child.log()));
        }
        if let Ok(r) = http::get(http, "/healthz")
            && r.status == 200
        {
            assert!(r.text().contains("ok"), "/healthz answered {:?}", r.text());
            return Ok(child);
        }
        assert!(
            start.elapsed() < STARTUP_TIMEOUT,
            "ferrocast did not answer /healthz within {STARTUP_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How [`Server::restart`] ends the running process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM, and wait for a clean exit (status 0).
    Term,
    /// SIGKILL: no shutdown code runs at all.
    Kill,
}

/// Environment variables of AgustinSRG's rtmp-server that the binary also reads; never
/// inherited, so the host's environment cannot change a test's configuration.
pub const COMPAT_ENV: [&str; 25] = [
    "RTMP_PORT",
    "BIND_ADDRESS",
    "SSL_PORT",
    "SSL_CERT",
    "SSL_KEY",
    "SSL_CHECK_RELOAD_SECONDS",
    "RTMP_CHUNK_SIZE",
    "ID_MAX_LENGTH",
    "MAX_IP_CONCURRENT_CONNECTIONS",
    "CONCURRENT_LIMIT_WHITELIST",
    "RTMP_PLAY_WHITELIST",
    "PLAY_ALLOWED_FROM",
    "GOP_CACHE_SIZE_MB",
    "CALLBACK_URL",
    "JWT_SECRET",
    "CUSTOM_JWT_SUBJECT",
    "RTMP_HOST",
    "REDIS_USE",
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_PASSWORD",
    "REDIS_CHANNEL",
    "REDIS_TLS",
    "LOG_REQUESTS",
    "LOG_DEBUG",
];

/// The binary with a clean environment for config: no inherited `FERROCAST_*`, `RUST_LOG` or
/// [`COMPAT_ENV`] variables, no colors, info logs (`FERROCAST_E2E_LOG` overrides, e.g.
/// `info,ferrocast_rtmp=debug`).
pub fn base_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FERROCAST_") {
            cmd.env_remove(k);
        }
    }
    for k in COMPAT_ENV {
        cmd.env_remove(k);
    }
    cmd.env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env(
            "FERROCAST_LOG",
            std::env::var("FERROCAST_E2E_LOG").unwrap_or_else(|_| "info".into()),
        )
        .env("FERROCAST_DATA_DIR", data_dir.join("data"))
        .current_dir(data_dir);
    cmd
}

fn env_name(key: &str) -> String {
    format!("FERROCAST_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Two distinct free ports on 127.0.0.1 (both held while the second is chosen).
pub fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    (
        a.local_addr().expect("local_addr"),
        b.local_addr().expect("local_addr"),
    )
}

/// A free UDP port on 127.0.0.1 (for `srt.listen`).
pub fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    s.local_addr().expect("local_addr")
}

/// A running `ferrocast`; killed on drop (its log tail printed if the test fails).
#[derive(Debug)]
pub struct Server {
    child: ChildGuard,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    dir: ScratchDir,
    /// What it was started with, for restarts.
    launch: ServerBuilder,
    /// Processes started so far (restarts included), to name their logs.
    starts: usize,
}

impl Server {
    /// Defaults, plus 1 s HLS segments so tests see segments quickly.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default().set("hls.segment_duration", 1)
    }

    /// A server with [`Server::builder`] settings.
    pub fn start() -> Server {
        Server::builder().start()
    }

    pub fn rtmp_url(&self, code: &str) -> String {
        format!("rtmp://{}/live/{code}", self.rtmp)
    }

    pub fn hls_url(&self, code: &str) -> String {
        format!("http://{}/live/{code}/index.m3u8", self.http)
    }

    pub fn mpegts_url(&self, code: &str) -> String {
        format!("http://{}/live/{code}/mpegts", self.http)
    }

    /// The test's private directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `GET path`; panics on a transport error.
    pub fn get(&self, path: &str) -> http::Response {
        http::get(self.http, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The parsed playlist of `code`, `None` on a non-200 answer.
    pub fn playlist(&self, code: &str) -> Option<Playlist> {
        let r = http::get(self.http, &format!("/live/{code}/index.m3u8")).ok()?;
        (r.status == 200).then(|| Playlist::parse(&r.text()))
    }

    /// Polls the playlist of `code` until `ok` accepts it.
    pub fn wait_playlist(
        &self,
        code: &str,
        what: &str,
        timeout: Duration,
        mut ok: impl FnMut(&Playlist) -> bool,
    ) -> Playlist {
        wait_until(&format!("playlist of {code:?}: {what}"), timeout, || {
            self.playlist(code).filter(|p| ok(p))
        })
    }

    /// Whether `code` is live now (its MPEG-TS endpoint answers 200, not 404).
    pub fn is_live(&self, code: &str) -> bool {
        let path = format!("/live/{code}/mpegts");
        http::open(self.http, &path, Duration::from_secs(5)).is_ok_and(|s| s.status == 200)
    }

    /// Waits until `code` is live (its MPEG-TS endpoint answers 200 instead of 404).
    pub fn wait_live(&self, code: &str) {
        let path = format!("/live/{code}/mpegts");
        wait_until(
            &format!("{code:?} to go live"),
            Duration::from_secs(20),
            || {
                let s = http::open(self.http, &path, Duration::from_secs(5)).ok()?;
                (s.status == 200).then_some(())
            },
        );
    }

    /// Starts publishing `fixture` to `code` over RTMP (looped, real time).
    pub fn publish(&self, code: &str, fixture: Fixture) -> Publisher {
        let file = fixture.path();
        let log = self.dir.path().join(format!(
            "publisher-{}-{}.log",
            code.replace('/', "_"),
            unique()
        ));
        let started = Instant::now();
        let child = ChildGuard::spawn(
            &format!("publisher {code}"),
            &mut ffmpeg::publish_command(&file, &self.rtmp_url(code)),
            &log,
        );
        Publisher { child, started }
    }

    /// The server log so far, without colors.
    pub fn log(&self) -> String {
        strip_ansi(&self.child.log())
    }

    /// Polls the server log until it contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_until(&format!("server log line {needle:?}"), timeout, || {
            self.log().contains(needle).then_some(())
        });
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Ends the process (`how`), then starts the binary again with the same settings, data
    /// dir and ports, and waits until it answers `/healthz`.
    pub fn restart(&mut self, how: Stop) {
        match how {
            Stop::Term => {
                let status = self.child.stop(Duration::from_secs(15));
                assert!(
                    status.success(),
                    "ferrocast exited with {status} after SIGTERM:\n{}",
                    self.log()
                );
            }
            Stop::Kill => {
                self.child.signal("KILL");
                let status = self.child.wait_timeout(Duration::from_secs(10));
                assert!(status.is_some(), "ferrocast still running after SIGKILL");
            }
        }
        self.starts += 1;
        let log = self
            .dir
            .path()
            .join(format!("server-run{}.log", self.starts));
        // The listening sockets of the old process are gone; a bind race with another test is
        // possible in principle, so retry a few times on "cannot listen".
        for attempt in 1..=BIND_ATTEMPTS {
            match spawn_ready(self.dir.path(), self.rtmp, self.http, &self.launch, &log) {
                Ok(child) => {
                    self.child = child;
                    return;
                }
                Err((_, text)) if text.contains("cannot listen") && attempt < BIND_ATTEMPTS => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err((status, text)) => {
                    panic!("ferrocast exited at restart ({status}):\n{text}")
                }
            }
        }
    }

    /// The server process.
    pub fn process(&mut self) -> &mut ChildGuard {
        &mut self.child
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// An ffmpeg publisher; killed on drop.
#[derive(Debug)]
pub struct Publisher {
    child: ChildGuard,
    /// When the process was started (its media clock starts a little later).
    pub started: Instant,
}

impl Publisher {
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Stops it the way an operator would (SIGTERM: ffmpeg unpublishes and closes).
    pub fn stop(&mut self) -> ExitStatus {
        self.child.stop(Duration::from_secs(10))
    }

    /// What ffmpeg printed (errors only).
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Asserts the publisher is still running, with its log if not.
    pub fn assert_running(&mut self, when: &str) {
        assert!(
            self.is_running(),
            "publisher exited {when} ({:?}):\n{}",
            self.child.try_status(),
            self.log()
        );
    }
}

/// A media playlist as served.
#[derive(Clone, Debug)]
pub struct Playlist {
    pub text: String,
    pub target_duration: Option<u64>,
    pub media_sequence: Option<u64>,
    pub segments: Vec<PlaylistSegment>,
    pub ended: bool,
}

/// One `#EXTINF` entry.
#[derive(Clone, Debug)]
pub struct PlaylistSegment {
    /// Media sequence number (MEDIA-SEQUENCE + position).
    pub seq: u64,
    pub uri: String,
    pub duration: f64,
    /// Preceded by `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

impl Playlist {
    /// Parses the tags the server writes; unknown lines are ignored.
    pub fn parse(text: &str) -> Playlist {
        let mut p = Playlist {
            text: text.to_owned(),
            target_duration: None,
            media_sequence: None,
            segments: Vec::new(),
            ended: false,
        };
        let mut duration = None;
        let mut discontinuity = false;
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                duration = v.split(',').next().and_then(|d| d.parse::<f64>().ok());
            } else if line == "#EXT-X-DISCONTINUITY" {
                discontinuity = true;
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !line.is_empty() && !line.starts_with('#') {
                let seq = p.media_sequence.unwrap_or(0) + p.segments.len() as u64;
                p.segments.push(PlaylistSegment {
                    seq,
                    uri: line.to_owned(),
                    duration: duration.take().unwrap_or(f64::NAN),
                    discontinuity: std::mem::take(&mut discontinuity),
                });
            }
        }
        p
    }

    /// Sequence number of the newest listed segment.
    pub fn last_seq(&self) -> Option<u64> {
        self.segments.last().map(|s| s.seq)
    }
}
