//! The socket.io protocol of `@api.video/browser-to-rtmp-client` (0.2.x), served so that
//! client works unchanged: `start(config, ack)`, `binarystream(bytes, ack)`, `stop(ack)`; the
//! server emits `error {name, message, details?, fatal?}` and, when enabled, `ffmpegOutput`.
//!
//! Differences from api.video's server, each deliberate: every `start` is acknowledged, a
//! failed one too (the error is emitted right after the ack, so the client's recorder, which
//! starts on the ack, is stopped by it); a second `start` while running is refused instead of
//! leaking a second ffmpeg; chunks are bounded in size and in bytes queued; a local target
//! goes through admission and into the hub without an RTMP hop.

use crate::feed::Feed;
use crate::ffmpeg::{self, FeedError, Ffmpeg, SpawnError, StdinFeed};
use crate::names::*;
use crate::target::{self, Target};
use crate::{BrowserIngest, ServerError};
use axum::Router;
use bytes::Bytes;
use serde::Deserialize;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// Sample rates ffmpeg's AAC encoder takes.
const AAC_RATES: [u32; 9] = [8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000];

/// The `start` event's configuration (`FfmpegConfig` of the client).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StartConfig {
    /// Output frame rate.
    pub framerate: Option<f64>,
    /// AAC sample rate.
    pub audio_sample_rate: Option<f64>,
    /// Target RTMP URL.
    pub rtmp: Option<String>,
    /// AAC bitrate.
    pub audio_bits_per_second: Option<f64>,
    /// H.264 bitrate.
    pub video_bits_per_second: Option<f64>,
}

/// A validated `start`.
#[derive(Clone, Debug, PartialEq)]
pub struct Start {
    /// 1..=120.
    pub framerate: u32,
    /// One of the AAC rates.
    pub audio_sample_rate: u32,
    /// The raw target.
    pub rtmp: String,
    /// bits/s.
    pub audio_bitrate: u32,
    /// bits/s.
    pub video_bitrate: u32,
}

impl StartConfig {
    /// Checks every value; the message names the missing or invalid ones.
    pub fn validate(&self) -> Result<Start, ServerError> {
        let mut missing = Vec::new();
        if self.framerate.is_none() {
            missing.push("framerate");
        }
        if self.audio_sample_rate.is_none() {
            missing.push("audioSampleRate");
        }
        if self.rtmp.as_deref().is_none_or(str::is_empty) {
            missing.push("rtmp");
        }
        if !missing.is_empty() {
            return Err(ServerError::fatal(
                INVALID_PARAMETERS,
                format!("Missing values: {}", missing.join(", ")),
            ));
        }
        let int = |v: Option<f64>| {
            v.filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v.round() as u64)
        };
        let mut invalid = Vec::new();
        let framerate = int(self.framerate).filter(|f| (1..=120).contains(f));
        if framerate.is_none() {
            invalid.push("framerate (1 to 120)");
        }
        let rate = int(self.audio_sample_rate).filter(|r| AAC_RATES.contains(&(*r as u32)));
        if rate.is_none() {
            invalid.push("audioSampleRate (an AAC rate: 8000 to 48000)");
        }
        let audio = match self.audio_bits_per_second {
            None => Some(128_000),
            v => int(v).filter(|b| (8_000..=512_000).contains(b)),
        };
        if audio.is_none() {
            invalid.push("audioBitsPerSecond (8000 to 512000)");
        }
        let video = match self.video_bits_per_second {
            None => Some(2_500_000),
            v => int(v).filter(|b| (100_000..=50_000_000).contains(b)),
        };
        if video.is_none() {
            invalid.push("videoBitsPerSecond (100000 to 50000000)");
        }
        match (framerate, rate, audio, video) {
            (Some(f), Some(r), Some(a), Some(v)) => Ok(Start {
                framerate: f as u32,
                audio_sample_rate: r as u32,
                rtmp: self.rtmp.clone().unwrap_or_default(),
                audio_bitrate: a as u32,
                video_bitrate: v as u32,
            }),
            _ => Err(ServerError::fatal(
                INVALID_PARAMETERS,
                format!("Invalid values: {}", invalid.join(", ")),
            )),
        }
    }
}

/// ffmpeg's arguments: WebM from stdin, H.264 + AAC as FLV to `output` (`pipe:1` or a relay).
pub fn ffmpeg_args(s: &Start, output: &str) -> Vec<String> {
    let fr = s.framerate.to_string();
    let vb = s.video_bitrate.to_string();
    let codecs = [
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-r",
        &fr,
        "-g",
        &(s.framerate * 2).to_string(),
        "-keyint_min",
        &s.framerate.min(25).to_string(),
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        "-profile:v",
        "main",
        "-b:v",
        &vb,
        "-maxrate",
        &vb,
        "-bufsize",
        &(u64::from(s.video_bitrate) * 2).to_string(),
        "-c:a",
        "aac",
        "-b:a",
        &s.audio_bitrate.to_string(),
        "-ar",
        &s.audio_sample_rate.to_string(),
    ]
    .map(str::to_owned);
    // -stats: api.video clients may ask for ffmpeg's progress lines (ffmpegOutput).
    ffmpeg::flv_command(&["-stats"], &codecs, output)
}

/// The `/socket.io/` route.
pub fn router(b: BrowserIngest) -> Router {
    let max = b.config().max_chunk_bytes as u64;
    let (svc, io) = SocketIo::builder()
        // Above our own chunk bound, so an oversized chunk gets our error instead of a bare
        // disconnect from engine.io (which still ends anything beyond twice the bound).
        .max_payload(max * 2 + (64 << 10))
        .build_svc();
    io.ns("/", move |s: SocketRef| {
        let b = b.clone();
        async move { on_connect(b, s) }
    });
    // api.video's client runs on the platform's own page, another origin: its first
    // (polling) requests are cross-origin XHRs. Admission is by stream key, not by origin.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers(tower_http::cors::Any);
    Router::new().route_service("/socket.io/", svc).layer(cors)
}

/// One socket's state.
struct Conn {
    b: BrowserIngest,
    peer: Option<SocketAddr>,
    host: Option<String>,
    running: Mutex<Option<Running>>,
    sessions: AtomicU64,
}

/// A started session, as the event handlers see it.
struct Running {
    id: u64,
    stdin: StdinFeed,
    /// Graceful end: stdin closes and ffmpeg flushes.
    stop: CancellationToken,
    /// Immediate end: ffmpeg is killed.
    kill: CancellationToken,
    /// Cancelled by the session task when it is over.
    done: CancellationToken,
    last_data: Arc<Mutex<Instant>>,
    /// The stream's first bytes, kept until its container signature is decided (MediaRecorder
    /// may hand out a first blob of one byte).
    head: Option<Vec<u8>>,
}

impl Conn {
    fn take_running(&self) -> Option<Running> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

fn on_connect(b: BrowserIngest, s: SocketRef) {
    let parts = s.req_parts();
    let conn = Arc::new(Conn {
        peer: crate::peer_of(parts),
        host: crate::host_of(parts),
        b,
        running: Mutex::new(None),
        sessions: AtomicU64::new(0),
    });
    debug!(peer = ?conn.peer, sid = %s.id, "socket.io client connected");
    s.on("start", {
        let conn = conn.clone();
        move |s: SocketRef, TryData(config): TryData<StartConfig>, ack: AckSender| {
            let conn = conn.clone();
            async move {
                let result = match config {
                    Ok(config) => start(&conn, &s, config).await,
                    Err(e) => Err(ServerError::fatal(
                        INVALID_PARAMETERS,
                        format!("start takes a configuration object: {e}"),
                    )),
                };
                match result {
                    Ok(()) => {
                        let _ = ack.send(&());
                    }
                    Err(e) => {
                        warn!(peer = ?conn.peer, name = e.name, message = %e.message, "browser start refused");
                        let _ = ack.send(&e);
                        let _ = s.emit("error", &e);
                    }
                }
            }
        }
    });
    // Synchronous on purpose: socketioxide calls handlers in arrival order but runs their
    // futures as separate tasks, so the chunk is queued here, before any future runs, to keep
    // the WebM stream in order.
    s.on("binarystream", {
        let conn = conn.clone();
        move |s: SocketRef, TryData(data): TryData<Bytes>, ack: AckSender| {
            binarystream(&conn, &s, data.map_err(|e| e.to_string()), ack);
            async {}
        }
    });
    s.on("stop", {
        let conn = conn.clone();
        move |ack: AckSender| {
            let conn = conn.clone();
            async move {
                if let Some(r) = conn.take_running() {
                    r.stop.cancel();
                    // Bounded: the session kills ffmpeg after its flush grace.
                    let _ = tokio::time::timeout(
                        ffmpeg::FLUSH_GRACE + Duration::from_secs(1),
                        r.done.cancelled(),
                    )
                    .await;
                }
                let _ = ack.send(&());
            }
        }
    });
    s.on_disconnect({
        let conn = conn.clone();
        move || {
            if let Some(r) = conn.take_running() {
                debug!(peer = ?conn.peer, "socket.io client gone; ending its session");
                r.kill.cancel();
            }
            async {}
        }
    });
}

fn binarystream(conn: &Conn, s: &SocketRef, data: Result<Bytes, String>, ack: AckSender) {
    let fail = |ack: AckSender, e: ServerError| {
        let _ = ack.send(&e);
        let _ = s.emit("error", &e);
    };
    let data = match data {
        Ok(d) => d,
        Err(e) => {
            return fail(
                ack,
                ServerError::warning(
                    INVALID_PARAMETERS,
                    format!("binarystream carries binary media: {e}"),
                ),
            );
        }
    };
    let max = conn.b.config().max_chunk_bytes;
    let mut running = conn.running.lock().unwrap_or_else(|e| e.into_inner());
    let Some(r) = running.as_mut() else {
        drop(running);
        return fail(
            ack,
            ServerError::warning(FFMPEG_NOT_RUNNING, "ffmpeg is not running yet"),
        );
    };
    if data.len() > max {
        let r = running.take();
        drop(running);
        if let Some(r) = r {
            r.kill.cancel();
        }
        warn!(peer = ?conn.peer, bytes = data.len(), max, "browser chunk too large; session ended");
        return fail(
            ack,
            ServerError::fatal(
                INVALID_PARAMETERS,
                format!(
                    "a chunk of {} bytes exceeds the {max}-byte bound",
                    data.len()
                ),
            ),
        );
    }
    if data.is_empty() {
        // MediaRecorder may hand out an empty blob; nothing to write.
        drop(running);
        let _ = ack.send(&());
        return;
    }
    if let Some(head) = r.head.as_mut() {
        head.extend_from_slice(&data[..data.len().min(8 - head.len())]);
        let verdict = container_verdict(head);
        if verdict.is_some() {
            r.head = None;
        }
        if verdict == Some(false) {
            let head = &data[..data.len().min(8)];
            let r = running.take();
            drop(running);
            if let Some(r) = r {
                r.kill.cancel();
            }
            warn!(peer = ?conn.peer, ?head, "browser sent something that is not WebM or MP4; session ended");
            return fail(
                ack,
                ServerError::fatal(
                    INVALID_PARAMETERS,
                    "binarystream must start with MediaRecorder output (WebM or MP4)",
                ),
            );
        }
    }
    *r.last_data.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    let done: ffmpeg::Done = Box::new(move |r: Result<(), String>| {
        let _ = match r {
            Ok(()) => ack.send(&()),
            Err(e) => ack.send(&ServerError::warning(FFMPEG_WRITE_ERROR, e)),
        };
    });
    match r.stdin.send(data, Some(done)) {
        Ok(()) => {}
        Err(e @ FeedError::Behind { .. }) => {
            let r = running.take();
            drop(running);
            if let Some(r) = r {
                r.kill.cancel();
            }
            warn!(peer = ?conn.peer, error = %e, "browser publisher too far ahead of ffmpeg; session ended");
            let _ = s.emit(
                "error",
                &ServerError::fatal(FFMPEG_WRITE_ERROR, e.to_string()),
            );
        }
        Err(e @ FeedError::Closed) => {
            drop(running);
            let _ = s.emit(
                "error",
                &ServerError::warning(FFMPEG_WRITE_ERROR, e.to_string()),
            );
        }
    }
}

async fn start(conn: &Arc<Conn>, s: &SocketRef, config: StartConfig) -> Result<(), ServerError> {
    if conn
        .running
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
    {
        return Err(ServerError::warning(
            INVALID_PARAMETERS,
            "already started; send stop first",
        ));
    }
    let start = config.validate()?;
    let b = &conn.b;
    let cfg = b.config();
    let target = target::resolve(
        &start.rtmp,
        conn.host.as_deref(),
        &cfg.local_hosts,
        &cfg.app,
        &cfg.relay_allow,
    )
    .map_err(|e| ServerError::fatal(INVALID_PARAMETERS, e.to_string()))?;
    let (publisher, output) = match &target {
        Target::Local { code, args } => {
            let p = b
                .publish(code.clone(), args.clone(), conn.peer)
                .await
                .map_err(|reason| {
                    ServerError::fatal(RTMP_CONNECTION_FAILED, format!("publish refused: {reason}"))
                })?;
            (Some(p), "pipe:1".to_owned())
        }
        Target::Relay(url) => (None, url.clone()),
    };
    let args = ffmpeg_args(&start, &output);
    let mut child = ffmpeg::spawn(
        &cfg.ffmpeg,
        &args,
        &b.inner.cap,
        cfg.max_pending_bytes,
        publisher.is_some(),
        &b.inner.tasks,
    )
    .map_err(|e| match e {
        SpawnError::NotFound => ServerError::fatal(FFMPEG_NOT_FOUND, e.to_string()),
        e => ServerError::fatal(CANT_START_FFMPEG, e.to_string()),
    })?;
    let Some(stdin) = child.stdin.clone() else {
        return Err(ServerError::fatal(CANT_START_FFMPEG, "ffmpeg has no input"));
    };
    let id = conn.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    let running = Running {
        id,
        stdin,
        stop: CancellationToken::new(),
        kill: CancellationToken::new(),
        done: CancellationToken::new(),
        last_data: Arc::new(Mutex::new(Instant::now())),
        head: Some(Vec::new()),
    };
    let session = Session {
        conn: conn.clone(),
        socket: s.clone(),
        id,
        stop: running.stop.clone(),
        kill: running.kill.clone(),
        done: running.done.clone(),
        last_data: running.last_data.clone(),
        relay: matches!(target, Target::Relay(_)).then(|| target::masked(&start.rtmp)),
    };
    // The socket may have gone while admission ran.
    if !s.connected() {
        child.kill().await;
        return Ok(());
    }
    *conn.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(running);
    let code = publisher.as_ref().map(|p| p.code().to_owned());
    let span = info_span!("browser", protocol = "socket.io", peer = ?conn.peer, code = code.as_deref().unwrap_or("-"));
    span.in_scope(|| {
        info!(
            pid = child.pid(),
            relay = session.relay.as_deref(),
            "browser publisher started (api.video protocol)"
        )
    });
    b.inner.tasks.spawn(
        session
            .run(child, publisher.map(Feed::flv))
            .instrument(span),
    );
    Ok(())
}

/// The task that owns one ffmpeg and its feed.
struct Session {
    conn: Arc<Conn>,
    socket: SocketRef,
    id: u64,
    stop: CancellationToken,
    kill: CancellationToken,
    done: CancellationToken,
    last_data: Arc<Mutex<Instant>>,
    /// The masked relay URL, when ffmpeg pushes elsewhere.
    relay: Option<String>,
}

impl Session {
    fn emit_error(&self, e: ServerError, tail: &ffmpeg::Tail) {
        let cfg = self.conn.b.config();
        let details = cfg.send_error_details.then(|| tail.text());
        warn!(name = e.name, message = %e.message, "browser session error");
        let _ = self.socket.emit("error", &e.with_details(details));
    }

    async fn run(self, mut child: Ffmpeg, mut feed: Option<Feed>) {
        let b = self.conn.b.clone();
        let cfg = b.config().clone();
        let shutdown = b.inner.shutdown.clone();
        let mut stdout = child.stdout.take();
        let mut lines = child.lines.take();
        let kicked = feed.as_ref().map(|f| f.publisher().kill_token());
        let tail = child.tail.clone();
        let mut buf = bytes::BytesMut::with_capacity(64 << 10);
        let mut flush_deadline: Option<tokio::time::Instant> = None;
        let mut idle = tokio::time::interval(Duration::from_secs(1));
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.emit_error(ServerError::fatal(FFMPEG_UNEXPECTED_END, "the gateway is shutting down"), &tail);
                    child.kill().await;
                    break;
                }
                _ = self.kill.cancelled() => {
                    child.kill().await;
                    break;
                }
                _ = async { kicked.as_ref().expect("guarded").cancelled().await }, if kicked.is_some() => {
                    self.emit_error(ServerError::fatal(FFMPEG_UNEXPECTED_END, "the gateway ended this publish session"), &tail);
                    child.kill().await;
                    break;
                }
                _ = self.stop.cancelled(), if flush_deadline.is_none() => {
                    child.stdin = None;
                    flush_deadline = Some(tokio::time::Instant::now() + ffmpeg::FLUSH_GRACE);
                }
                _ = tokio::time::sleep_until(flush_deadline.unwrap_or_else(tokio::time::Instant::now)), if flush_deadline.is_some() => {
                    child.kill().await;
                    break;
                }
                r = async { stdout.as_mut().expect("guarded").read_buf(&mut buf).await }, if stdout.is_some() => {
                    match r {
                        Ok(0) | Err(_) => stdout = None,
                        Ok(_) => {
                            if let Some(f) = feed.as_mut()
                                && let Err(e) = f.ffmpeg_output(&buf)
                            {
                                self.emit_error(ServerError::fatal(FFMPEG_ERROR, e.to_string()), &tail);
                                child.kill().await;
                                break;
                            }
                            buf.clear();
                        }
                    }
                }
                status = child.wait(), if stdout.is_none() => {
                    if flush_deadline.is_none() {
                        debug!(?status, "ffmpeg exited on its own");
                        // Its last words may still be in the stderr pipe: a relay that could
                        // not connect says so there, and the client should hear that name.
                        let mut refused = false;
                        if let Some(l) = lines.as_mut() {
                            while let Ok(Some(line)) = tokio::time::timeout(Duration::from_millis(300), l.recv()).await {
                                refused |= is_connection_failure(&line);
                            }
                        }
                        let e = match &self.relay {
                            Some(relay) if refused || is_connection_failure(&tail.text()) => ServerError::fatal(
                                RTMP_CONNECTION_FAILED,
                                format!("connection to {relay} failed"),
                            ),
                            _ => ServerError::fatal(FFMPEG_UNEXPECTED_END, "ffmpeg ended unexpectedly"),
                        };
                        self.emit_error(e, &tail);
                    }
                    break;
                }
                line = async { lines.as_mut().expect("guarded").recv().await }, if lines.is_some() => {
                    match line {
                        None => lines = None,
                        Some(line) => {
                            if let Some(relay) = &self.relay
                                && is_connection_failure(&line)
                            {
                                self.emit_error(
                                    ServerError::fatal(RTMP_CONNECTION_FAILED, format!("connection to {relay} failed")),
                                    &tail,
                                );
                                child.kill().await;
                                break;
                            }
                            if cfg.send_ffmpeg_output {
                                let _ = self.socket.emit("ffmpegOutput", &line);
                            }
                        }
                    }
                }
                _ = idle.tick() => {
                    let last = *self.last_data.lock().unwrap_or_else(|e| e.into_inner());
                    if flush_deadline.is_none() && last.elapsed() > cfg.publisher_timeout {
                        self.emit_error(
                            ServerError::fatal(FFMPEG_UNEXPECTED_END, format!("no media for {:?}; session closed", cfg.publisher_timeout)),
                            &tail,
                        );
                        child.kill().await;
                        break;
                    }
                }
            }
        }
        let frames = feed.as_ref().map(Feed::frames).unwrap_or(0);
        info!(
            secs = started.elapsed().as_secs(),
            frames, "browser publisher ended"
        );
        // Unpublish before the handlers see the session gone, so a restart can claim the code.
        drop(feed);
        let mut running = self.conn.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.as_ref().is_some_and(|r| r.id == self.id) {
            *running = None;
        }
        drop(running);
        self.done.cancel();
    }
}

/// Whether a stream starts like MediaRecorder output: an EBML header (WebM, Chromium and
/// Firefox) or an ISO BMFF `ftyp` box (MP4, Safari). `None` while too few bytes decide it.
fn container_verdict(head: &[u8]) -> Option<bool> {
    const EBML: [u8; 4] = [0x1a, 0x45, 0xdf, 0xa3];
    if head.len() >= 4 && head.starts_with(&EBML) {
        return Some(true);
    }
    if head.len() >= 8 {
        return Some(&head[4..8] == b"ftyp");
    }
    None
}

/// ffmpeg's words for an RTMP server it could not reach or that dropped it.
fn is_connection_failure(line: &str) -> bool {
    [
        "Connection refused",
        "Cannot open connection",
        "Failed to connect",
        "Connection timed out",
        "Input/output error",
        "Server error",
        "Broken pipe",
        "Connection reset",
    ]
    .iter()
    .any(|p| line.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: serde_json::Value) -> StartConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn start_config_as_the_client_sends_it() {
        // The client's defaults: framerate 25, audioSampleRate = audioBitsPerSecond / 4.
        let s = cfg(serde_json::json!({
            "host": "localhost", "port": 8080, "framerate": 25,
            "audioSampleRate": 32000, "audioBitsPerSecond": 128000,
            "videoBitsPerSecond": 2500000, "rtmp": "rtmp://localhost/live/demo?key=k"
        }))
        .validate()
        .unwrap();
        assert_eq!(s.framerate, 25);
        assert_eq!(s.audio_sample_rate, 32000);
        let args = ffmpeg_args(&s, "pipe:1");
        let at = |k: &str| args[args.iter().position(|a| a == k).unwrap() + 1].clone();
        assert_eq!(at("-g"), "50");
        assert_eq!(at("-keyint_min"), "25");
        assert_eq!(at("-tune"), "zerolatency");
        assert_eq!(at("-ar"), "32000");
        assert_eq!(at("-c:a"), "aac");
        assert_eq!(args.last().unwrap(), "pipe:1");
    }

    #[test]
    fn start_config_errors_name_the_fields() {
        let e = cfg(serde_json::json!({"framerate": 25}))
            .validate()
            .unwrap_err();
        assert_eq!(e.name, INVALID_PARAMETERS);
        assert!(e.fatal);
        assert_eq!(e.message, "Missing values: audioSampleRate, rtmp");
        let e = cfg(serde_json::json!({
            "framerate": 1000, "audioSampleRate": 12345, "rtmp": "rtmp://h/live/x",
            "videoBitsPerSecond": 1
        }))
        .validate()
        .unwrap_err();
        assert!(e.message.contains("framerate"), "{}", e.message);
        assert!(e.message.contains("audioSampleRate"), "{}", e.message);
        assert!(e.message.contains("videoBitsPerSecond"), "{}", e.message);
        assert!(!e.message.contains("audioBitsPerSecond"), "{}", e.message);
    }

    #[test]
    fn media_recorder_signatures() {
        assert_eq!(container_verdict(&[0x1a, 0x45, 0xdf, 0xa3]), Some(true));
        assert_eq!(container_verdict(b"\0\0\0\x1cftyp"), Some(true));
        assert_eq!(container_verdict(b"FLV\x01\x05\0\0\0"), Some(false));
        // Chromium's first blob can be a single byte: undecided, not refused.
        assert_eq!(container_verdict(&[0x1a]), None);
        assert_eq!(container_verdict(b"FLV"), None);
        assert_eq!(container_verdict(&[]), None);
    }

    #[test]
    fn errors_serialize_as_the_client_expects() {
        let e = ServerError::warning(FFMPEG_NOT_RUNNING, "ffmpeg is not running yet");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"name": "FFMPEG_NOT_RUNNING", "message": "ffmpeg is not running yet", "fatal": false})
        );
    }
}
