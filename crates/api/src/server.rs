//! The HTTP listener: hyper HTTP/1.1 connections serving an axum router, with the bounds a
//! server facing the internet needs and `axum::serve` does not offer: a deadline for request
//! headers, an idle timeout, and per-address connection caps shared with the other protocols.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use tracing::{debug, warn};

/// The listener's shutdown signal, in every request's extensions: a response that streams
/// until its client leaves (`GET /api/v1/events`) must also end when the server stops, or the
/// graceful close of its connection would wait for it until the grace period runs out.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(pub CancellationToken);

/// The local address of the listener a request came in on, in every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct LocalAddr(pub SocketAddr);

/// Bounds of every HTTP connection.
#[derive(Clone, Debug)]
pub struct HttpServerConfig {
    /// Request headers must be complete within this, from the accept or the end of the
    /// previous response (so it also ends idle keep-alive connections).
    pub header_timeout: Duration,
    /// No byte received or sent for this long closes the connection.
    pub idle_timeout: Duration,
    /// Limits shared with every other listener (`limits.*`).
    pub shared: Option<access::ConnLimiter>,
    /// HTTP's own per-address cap (`http.max_connections_per_ip`).
    pub http: Option<access::ConnLimiter>,
}

impl Default for HttpServerConfig {
    fn default() -> Self {
        HttpServerConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            shared: None,
            http: None,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (responses
/// still streaming are the caller's grace period to bound).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: HttpServerConfig,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut refused = RateLimitedLog::default();
    let local = listener.local_addr().ok();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let guards = match admit(&config, peer) {
            Ok(g) => g,
            Err(e) => {
                if refused.should_log() {
                    warn!(%peer, reason = %e, suppressed = refused.take_suppressed(), "http connection refused by limits");
                }
                continue;
            }
        };
        tracker.spawn(connection(
            stream,
            peer,
            local,
            app.clone(),
            config.clone(),
            guards,
            shutdown.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

/// The route a request with a namespaced stream code (`region/north/news`) takes, where the
/// router's one-segment `{code}` cannot see it; `None` for every other request.
///
/// Open-Streamer's clients put such codes in paths unescaped: the API's
/// `/api/v1/streams/<code>[/restart|/switch|/kill|/close|/recording|/recordings[/<id>]|/push/<n>/retry]` gets the code's
/// slashes escaped (so those words are reserved as a code's last name, as `restart` and
/// `switch` are there), and MPEG-TS's
/// `/<code>/mpegts` becomes `/live/<code>/mpegts`.
pub fn canonical_path(path: &str) -> Option<String> {
    const STREAMS: &str = "/api/v1/streams/";
    if let Some(rest) = path.strip_prefix(STREAMS) {
        if !rest.contains('/') {
            return None;
        }
        let (code, tail) = split_action(rest);
        if !code.contains('/') {
            return None;
        }
        return Some(format!("{STREAMS}{}{tail}", code.replace('/', "%2F")));
    }
    let code = path.strip_prefix('/')?.strip_suffix("/mpegts")?;
    let first = code.split('/').next().unwrap_or_default();
    (code.contains('/') && first != "live" && first != "api")
        .then(|| format!("/live/{code}/mpegts"))
}

/// The one-name routes under `/api/v1/streams/{code}/` (a test checks them against the API).
const STREAM_ACTIONS: [&str; 6] = [
    "/restart",
    "/switch",
    "/kill",
    "/close",
    "/recording",
    "/recordings",
];

/// `(code, "/action...")` of a stream API path after `/streams/`.
fn split_action(rest: &str) -> (&str, &str) {
    for action in STREAM_ACTIONS {
        if let Some(code) = rest.strip_suffix(action) {
            return (code, &rest[code.len()..]);
        }
    }
    // `/recordings/<id>`
    if let Some((code, id)) = rest.rsplit_once("/recordings/")
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
    {
        return (code, &rest[code.len()..]);
    }
    // `/push/<n>/retry`
    if let Some(head) = rest.strip_suffix("/retry")
        && let Some((code, n)) = head.rsplit_once("/push/")
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return (code, &rest[code.len()..]);
    }
    (rest, "")
}

fn canonical_uri(uri: &hyper::Uri) -> Option<hyper::Uri> {
    let path = canonical_path(uri.path())?;
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    pq.parse().ok()
}

/// Places taken in the limiters; released when the connection ends.
type Guards = (Option<access::ConnGuard>, Option<access::ConnGuard>);

fn admit(config: &HttpServerConfig, peer: SocketAddr) -> Result<Guards, access::LimitError> {
    let shared = config
        .shared
        .as_ref()
        .map(|l| l.try_acquire(peer.ip()))
        .transpose()?;
    let http = config
        .http
        .as_ref()
        .map(|l| l.try_acquire(peer.ip()))
        .transpose()?;
    Ok((shared, http))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    app: Router,
    config: HttpServerConfig,
    _guards: Guards,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let signal = ShutdownSignal(shutdown.clone());
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(uri) = canonical_uri(req.uri()) {
            *req.uri_mut() = uri;
        }
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(signal.clone());
        if let Some(local) = local {
            req.extensions_mut().insert(LocalAddr(local));
        }
        // Router is always ready and cloning it is an Arc bump.
        let mut app = app.clone();
        async move { app.call(req).await }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let idle_deadline = activity.last() + config.idle_timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Header timeouts, resets and malformed requests: the client's doing.
                    debug!(%peer, error = %e, "http connection ended");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_deadline) => {
                if activity.last() + config.idle_timeout <= Instant::now() {
                    debug!(%peer, timeout = ?config.idle_timeout, "closing an idle http connection");
                    return;
                }
            }
        }
    }
}

/// When the connection last moved a byte, as milliseconds since it was accepted.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A socket that records progress in either direction.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// At most one refusal line a second; the rest are counted into the next line.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    fn should_log(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return false;
        }
        self.last = Some(now);
        true
    }

    fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn open_streamer_namespaced_paths() {
        let c = |p: &str| canonical_path(p);
        assert_eq!(
            c("/api/v1/streams/region/north/news").as_deref(),
            Some("/api/v1/streams/region%2Fnorth%2Fnews")
        );
        assert_eq!(
            c("/api/v1/streams/a/b/restart").as_deref(),
            Some("/api/v1/streams/a%2Fb/restart")
        );
        assert_eq!(
            c("/api/v1/streams/a/b/switch").as_deref(),
            Some("/api/v1/streams/a%2Fb/switch")
        );
        assert_eq!(
            c("/api/v1/streams/a/b/push/2/retry").as_deref(),
            Some("/api/v1/streams/a%2Fb/push/2/retry")
        );
        assert_eq!(
            c("/api/v1/streams/a/b/recordings/17").as_deref(),
            Some("/api/v1/streams/a%2Fb/recordings/17")
        );
        assert_eq!(c("/a/b/c/mpegts").as_deref(), Some("/live/a/b/c/mpegts"));
        // Single names and everything else route as they are.
        for p in [
            "/api/v1/streams/cam",
            "/api/v1/streams/cam/restart",
            "/api/v1/streams/cam/push/0/retry",
            "/cam/mpegts",
            "/live/a/b/mpegts",
            "/live/a/index.m3u8",
            "/api/v1/sessions",
            "/",
        ] {
            assert_eq!(c(p), None, "{p}");
        }
        // Every route under a stream, as the API declares them.
        for path in crate::openapi().paths.paths.keys() {
            let Some(tail) = path.strip_prefix("/api/v1/streams/{code}") else {
                continue;
            };
            let tail = tail
                .replace("{index}", "3")
                .replace("{id}", "1796475929690");
            let want = format!("/api/v1/streams/a%2Fb{tail}");
            assert_eq!(
                c(&format!("/api/v1/streams/a/b{tail}")).as_deref(),
                Some(want.as_str()),
                "{path}"
            );
        }
        let uri: hyper::Uri = "/x/y/mpegts?token=1".parse().unwrap();
        assert_eq!(
            canonical_uri(&uri).unwrap().to_string(),
            "/live/x/y/mpegts?token=1"
        );
    }

    async fn start(config: HttpServerConfig) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { p.ip().to_string() }),
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(serve(listener, app, config, shutdown.clone()));
        (addr, shutdown)
    }

    /// Reads until EOF or `limit`; `None` when the server kept the connection open.
    async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        tokio::time::timeout(limit, s.read_to_end(&mut out))
            .await
            .ok()
            .map(|r| r.map(|_| out).unwrap_or_default())
    }

    #[tokio::test]
    async fn slowloris_headers_are_cut_at_the_header_timeout() {
        let (addr, _stop) = start(HttpServerConfig {
            header_timeout: Duration::from_millis(300),
            ..HttpServerConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // One header line at a time, never the blank line.
        for i in 0..3 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = s.write_all(format!("X-{i}: y\r\n").as_bytes()).await;
        }
        assert!(
            read_to_close(&mut s, Duration::from_secs(3))
                .await
                .is_some(),
            "connection still open long after the header timeout"
        );
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_are_closed() {
        let (addr, _stop) = start(HttpServerConfig {
            header_timeout: Duration::from_millis(300),
            ..HttpServerConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut s, Duration::from_secs(3))
            .await
            .expect("closed after the idle keep-alive period");
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.ends_with("127.0.0.1"),
            "ConnectInfo reaches handlers: {text}"
        );
    }

    #[tokio::test]
    async fn a_stalled_connection_is_closed_at_the_idle_timeout() {
        let (addr, _stop) = start(HttpServerConfig {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_millis(300),
            ..HttpServerConfig::default()
        })
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /pe").await.unwrap();
        assert!(
            read_to_close(&mut s, Duration::from_secs(3))
                .await
                .is_some()
        );
    }

    #[tokio::test]
    async fn per_address_cap_refuses_the_next_connection() {
        let (addr, _stop) = start(HttpServerConfig {
            http: Some(access::ConnLimiter::new(access::LimitsConfig {
                max_connections_per_ip: Some(2),
                ..access::LimitsConfig::default()
            })),
            ..HttpServerConfig::default()
        })
        .await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        // Accepts are served in order, so the third is refused once the first two are held.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let got = read_to_close(&mut c, Duration::from_secs(2)).await;
        assert_eq!(
            got.as_deref(),
            Some(&b""[..]),
            "third connection closed at once"
        );
        drop(_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut d, Duration::from_secs(2)).await.unwrap();
        assert!(got.starts_with(b"HTTP/1.1 200"), "a freed place is reused");
    }

    #[tokio::test]
    async fn a_streaming_response_that_keeps_moving_is_not_idle() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/stream",
            get(|| async {
                let ticks = futures_util::stream::unfold(0u32, |n| async move {
                    if n == 8 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((
                        Ok::<_, io::Error>(bytes::Bytes::from_static(b"tick")),
                        n + 1,
                    ))
                });
                axum::body::Body::from_stream(ticks)
            }),
        );
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            app,
            HttpServerConfig {
                // Both shorter than the response: neither may cut a response that moves.
                header_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(300),
                ..HttpServerConfig::default()
            },
            stop.clone(),
        ));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let got = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
        let ticks = String::from_utf8_lossy(&got).matches("tick").count();
        assert_eq!(
            ticks, 8,
            "800 ms of output outlived 300 ms header and idle timeouts"
        );
    }
}
