//! One push destination: `run` retries `run_once` with backoff, publishing its state.

use crate::status::{PushState, Status};
use crate::url::{self, Target};
use bytes::BytesMut;
use hub::{Event, Hub, Subscription};
use media::{Frame, MediaInfo, TrackKind, ticks_to_ms};
use rtmp::chunk::OutQueue;
use rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::PushDestination;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

/// Queued bytes above which the worker stops taking frames; the hub then drops frames for it
/// and resumes it at a keyframe, so a slow destination never holds the stream back.
const MAX_QUEUE: usize = 8 << 20;
/// Time allowed for a clean close (FCUnpublish, deleteStream) when a push is stopped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?} before the remote accepted the publish")]
    Timeout(Duration),
    #[error("remote refused: {0}")]
    Refused(String),
    #[error("remote closed the connection")]
    Closed,
    #[error("destination accepted no data for {0:?}")]
    Stalled(Duration),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("invalid destination: {0}")]
    Url(String),
}

/// How a session that did not fail ended.
enum Ended {
    /// Asked to stop (stream ended, destination removed, shutdown).
    Stopped,
}

/// Everything one worker needs.
pub(crate) struct Worker {
    pub(crate) code: String,
    pub(crate) dest: PushDestination,
    pub(crate) hub: Hub,
    pub(crate) tls: Arc<ClientTls>,
    pub(crate) status: Arc<Status>,
    pub(crate) retry_now: Arc<Notify>,
}

/// The rtmps:// client configuration, made by the first rtmps:// push: reading and parsing
/// the platform's root certificates takes milliseconds and heap that a server pushing only
/// rtmp://, or nothing, would hold for its whole life.
pub(crate) struct ClientTls {
    extra_ca: Option<std::path::PathBuf>,
    config: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl ClientTls {
    pub(crate) fn new(extra_ca: Option<&std::path::Path>) -> Self {
        ClientTls {
            extra_ca: extra_ca.map(std::path::Path::to_path_buf),
            config: std::sync::OnceLock::new(),
        }
    }

    /// The configuration, or why there is none (the same answer for every push).
    pub(crate) fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.config
            .get_or_init(|| {
                rtmp::tls::client_config(self.extra_ca.as_deref()).map_err(|e| {
                    tracing::warn!(error = %e, "TLS client configuration failed; rtmps:// pushes will fail");
                    e.to_string()
                })
            })
            .clone()
    }
}

/// Exponential backoff with ±20 % jitter so many workers do not retry in lockstep.
pub(crate) fn backoff(dest: &PushDestination, failures: u32, jitter_seed: u64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let base = (dest.retry.initial_s * f64::from(1u32 << exp.min(20))).min(dest.retry.max_s);
    // xorshift: no dependency, and the jitter needs no quality beyond spreading.
    let mut x = jitter_seed | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let unit = (x % 10_000) as f64 / 10_000.0;
    Duration::from_secs_f64((base * (0.8 + 0.4 * unit)).max(0.05))
}

impl Worker {
    /// Retries `run_once` until stopped; after `limit` consecutive failures waits for a
    /// manual retry instead.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let target = url::parse(&self.dest.url);
        let mut failures: u32 = 0;
        loop {
            self.status.begin_attempt();
            let result = match &target {
                Ok(t) => self.run_once(t, &stop).await,
                Err(e) => Err(SessionError::Url(e.clone())),
            };
            if stop.is_cancelled() {
                return;
            }
            match result {
                Ok(Ended::Stopped) => return,
                Err(e) => {
                    // Only consecutive failures count toward `limit`: a session that was
                    // accepted and later broke starts the count again.
                    if self.status.was_active() {
                        failures = 0;
                    }
                    failures += 1;
                    tracing::warn!(stream = %self.code, url = %url::masked(&self.dest.url), attempt = self.status.attempt(), error = %e, "push failed");
                    self.status.record_error(e.to_string());
                }
            }
            let limit = self.dest.limit;
            let wait_until = if limit > 0 && failures >= limit {
                self.status.set_state(PushState::Failed, None);
                None
            } else {
                let seed = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1);
                let delay = backoff(&self.dest, failures, seed);
                self.status
                    .set_state(PushState::Reconnecting, Some(SystemTime::now() + delay));
                Some(Instant::now() + delay)
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.retry_now.notified() => {
                    failures = 0;
                    // Visible at once: the manual attempt is under way.
                    self.status.set_state(PushState::Reconnecting, None);
                }
                _ = async { sleep_until(wait_until.unwrap_or_else(Instant::now)).await }, if wait_until.is_some() => {}
            }
        }
    }

    /// One connection: connect, publish, then forward frames until stopped or broken.
    async fn run_once(
        &self,
        target: &Target,
        stop: &CancellationToken,
    ) -> Result<Ended, SessionError> {
        let budget = Duration::from_secs(u64::from(self.dest.timeout_s.max(1)));
        let deadline = Instant::now() + budget;
        let addr = format!("{}:{}", target.host, target.port);
        let tcp = tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            r = tokio::time::timeout_at(deadline, TcpStream::connect(addr)) => match r {
                Ok(r) => r?,
                Err(_) => return Err(SessionError::Timeout(budget)),
            },
        };
        tcp.set_nodelay(true)?;
        if !target.tls {
            return self.session(tcp, target, deadline, budget, stop).await;
        }
        let config = self.tls.config().map_err(SessionError::Tls)?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone())
            .map_err(|e| SessionError::Tls(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = tokio::select! {
            _ = stop.cancelled() => return Ok(Ended::Stopped),
            r = tokio::time::timeout_at(deadline, connector.connect(name, tcp)) => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(SessionError::Tls(e.to_string())),
                Err(_) => return Err(SessionError::Timeout(budget)),
            },
        };
        self.session(tls, target, deadline, budget, stop).await
    }

    async fn session<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        target: &Target,
        deadline: Instant,
        budget: Duration,
        stop: &CancellationToken,
    ) -> Result<Ended, SessionError> {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut session = ClientSession::new(
            ClientConfig::new(target.app.clone(), target.tc_url.clone()),
            ClientRole::Publish {
                name: target.name.clone(),
            },
            epoch as u32,
            epoch,
        );
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut rbuf = BytesMut::with_capacity(8 << 10);
        let mut inflight = OutQueue::new();
        let mut needs_flush = false;
        let mut sub: Option<Subscription> = None;
        let mut mapper = Mapper::default();
        // A destination that stops reading after accepting the publish would otherwise look
        // active forever while every frame is dropped for it.
        let mut last_progress = Instant::now();
        loop {
            if inflight.is_empty() {
                inflight = std::mem::take(session.out());
                last_progress = Instant::now();
            }
            let io_due = !inflight.is_empty() || needs_flush;
            let queued = inflight.len_bytes() + session.out().len_bytes();
            let waiting_publish = sub.is_none();
            let take_frames = sub.is_some() && queued < MAX_QUEUE;
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    session.close();
                    let rest = std::mem::take(session.out());
                    let _ = tokio::time::timeout(CLOSE_GRACE, async {
                        write_all(&mut wr, inflight).await?;
                        write_all(&mut wr, rest).await?;
                        wr.shutdown().await
                    }).await;
                    return Ok(Ended::Stopped);
                }
                _ = sleep_until(deadline), if waiting_publish => {
                    return Err(SessionError::Timeout(budget));
                }
                _ = sleep_until(last_progress + budget), if !waiting_publish && !inflight.is_empty() => {
                    return Err(SessionError::Stalled(budget));
                }
                r = write_step(&mut wr, &inflight), if io_due => {
                    match r? {
                        Step::Wrote(n) => {
                            inflight.advance(n);
                            last_progress = Instant::now();
                            self.status.add_bytes(n as u64);
                            needs_flush = true;
                        }
                        Step::Flushed => needs_flush = false,
                    }
                }
                r = rd.read_buf(&mut rbuf) => {
                    if r? == 0 {
                        return Err(SessionError::Closed);
                    }
                    session.feed(&mut rbuf).map_err(|e| SessionError::Protocol(e.to_string()))?;
                    while let Some(ev) = session.poll_event() {
                        match ev {
                            ClientEvent::Publishing => {
                                self.status.set_active();
                                tracing::info!(stream = %self.code, url = %url::masked(&self.dest.url), "push active");
                                // A push may send one rung of the stream's ladder; the rung
                                // is an ordinary hub stream, published a moment after its source.
                                let code = if self.dest.rendition.is_empty() {
                                    self.code.clone()
                                } else {
                                    store::rendition_code(&self.code, &self.dest.rendition)
                                };
                                sub = Some(self.hub.subscribe(&code, "push"));
                            }
                            ClientEvent::Status { level, code, description } if level == "error" => {
                                return Err(SessionError::Refused(format!("{code}: {description}")));
                            }
                            ClientEvent::Error { command, description } => {
                                return Err(SessionError::Refused(format!("{command} failed: {description}")));
                            }
                            _ => {}
                        }
                    }
                    if rbuf.capacity() > 64 << 10 && rbuf.is_empty() {
                        rbuf = BytesMut::with_capacity(8 << 10);
                    }
                }
                ev = async {
                    match sub.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                }, if take_frames => {
                    let Some(sub) = sub.as_mut() else { continue };
                    let mut next = ev;
                    while let Some(ev) = next {
                        match ev {
                            Event::Tracks { info, .. } => mapper.tracks(&mut session, info),
                            Event::Frame(f) => mapper.frame(&mut session, &f),
                            // The publisher left: the manager stops this worker; until then
                            // there is nothing to send.
                            Event::End => {}
                        }
                        if session.out().len_bytes() >= MAX_QUEUE {
                            break;
                        }
                        next = sub.try_recv();
                    }
                    self.status.set_dropped(sub.dropped());
                }
            }
        }
    }
}

enum Step {
    Wrote(usize),
    Flushed,
}

/// One write (or, when nothing is queued, one flush) — a single operation, so the future can
/// be dropped by `select!` without losing track of what was written.
async fn write_step<W: AsyncWrite + Unpin>(wr: &mut W, q: &OutQueue) -> std::io::Result<Step> {
    if q.is_empty() {
        wr.flush().await?;
        return Ok(Step::Flushed);
    }
    let mut slices = [IoSlice::new(&[]); 64];
    let n = q.io_slices(&mut slices);
    let written = wr.write_vectored(&slices[..n]).await?;
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    Ok(Step::Wrote(written))
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, mut q: OutQueue) -> std::io::Result<()> {
    while !q.is_empty() {
        if let Step::Wrote(n) = write_step(wr, &q).await? {
            q.advance(n);
        }
    }
    wr.flush().await
}

/// Hub frames -> RTMP publish messages with timestamps starting at 0 for every session.
#[derive(Default)]
struct Mapper {
    info: Option<Arc<MediaInfo>>,
    base_ms: Option<i64>,
    last: [u32; 2],
}

impl Mapper {
    fn tracks(&mut self, s: &mut ClientSession, info: Arc<MediaInfo>) {
        s.send_metadata(rtmp::play::metadata(&info));
        let ts = self.last[0].max(self.last[1]);
        if let Some((h, body)) = info
            .video
            .as_ref()
            .and_then(rtmp::flv::video_sequence_header)
        {
            s.send_media(true, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = rtmp::flv::video_metadata_tag(&info) {
            s.send_media(true, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = info
            .audio
            .as_ref()
            .and_then(rtmp::flv::audio_sequence_header)
        {
            s.send_media(false, ts, h.as_slice(), &body);
        }
        self.info = Some(info);
    }

    fn frame(&mut self, s: &mut ClientSession, f: &Frame) {
        let Some(info) = &self.info else { return };
        let ms = ticks_to_ms(f.dts);
        let base = *self.base_ms.get_or_insert(ms);
        let idx = usize::from(f.track == TrackKind::Audio);
        // Start at 0 per session and never go back within a track (audio cached with the GOP
        // can be a few ms older than the keyframe the session starts on).
        let ts = u32::try_from((ms - base).max(0))
            .unwrap_or(u32::MAX)
            .max(self.last[idx]);
        self.last[idx] = ts;
        let prefix = match (f.track, &info.video, &info.audio) {
            (TrackKind::Video, Some(v), _) => rtmp::flv::video_frame_prefix(v, f),
            (TrackKind::Audio, _, Some(a)) => rtmp::flv::audio_frame_prefix(a),
            _ => return,
        };
        s.send_media(
            f.track == TrackKind::Video,
            ts,
            prefix.as_slice(),
            &f.payload,
        );
    }
}
