//! HLS and DASH of a stream published on another node: fetched from that node (its origin)
//! and kept briefly, so every node answers with the origin's own playlists, manifests,
//! segments and parts, byte for byte. A load balancer or CDN may then send each request of a
//! player to any node: the names, numbers, timelines and bytes are the same everywhere.
//!
//! Packaging again on each edge (from the RTMP pull) cannot promise that: segment numbers,
//! cut points, DASH periods and TS continuity counters depend on where each packager joined
//! the stream. SRS's HLS edge (an HTTP cache in front of the origin) makes the same choice.
//!
//! Each distinct request is fetched once: requests that arrive while it is under way read the
//! same body as it arrives (an LL-HLS part that is still growing reaches every waiting player
//! chunk by chunk), and a finished answer is kept as long as the origin's `Cache-Control`
//! allows (at most [`MAX_TTL`]), or [`SHORT_TTL`] for `no-cache` playlists.

use crate::lock;
use crate::registry::{CLUSTER_ARG, Registry};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a playlist or manifest the origin marks `no-cache` is reused: a thousand players
/// polling one edge cost the origin a few requests a second, at most this much staleness.
pub const SHORT_TTL: Duration = Duration::from_millis(250);
/// The longest an answer is kept, whatever the origin allows.
pub const MAX_TTL: Duration = Duration::from_secs(30);
/// How long where a stream is published is remembered (a Redis round trip otherwise), unless
/// the origin fails to answer first (see [`EdgeHttp::forget_origin`]).
const ORIGIN_TTL: Duration = Duration::from_secs(5);
/// Most bytes kept in finished answers; the ones closest to expiry go first.
const MAX_CACHED_BYTES: usize = 128 << 20;
/// The largest answer fetched: the segmenters cut at 32 MiB.
const MAX_BODY: usize = 33 << 20;
/// Most fetches under way at once; beyond, requests are refused (503) rather than buffered.
pub const MAX_IN_FLIGHT: usize = 512;
/// Most streams whose origin is remembered.
const MAX_ORIGINS: usize = 10_000;
/// A whole API call to another node.
pub const API_TIMEOUT: Duration = Duration::from_secs(3);
/// Connecting to the origin.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Between two pieces of an answer: longer than an LL-HLS blocking reload may wait
/// (three target durations).
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The origin's answer line and the headers passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Length`, when the origin sent it.
    pub content_length: Option<u64>,
}

/// One request to the origin, shared by every player asking for the same thing.
#[derive(Debug)]
pub struct Fetch {
    state: Mutex<FetchState>,
    /// Bumped at each change of `state`.
    changed: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct FetchState {
    /// `None` while the origin has not answered; `Some(None)` when it never will.
    head: Option<Option<Head>>,
    chunks: Vec<Bytes>,
    bytes: usize,
    /// `Some(true)`: the body is complete; `Some(false)`: it was cut.
    end: Option<bool>,
}

/// Where a reader of a [`Fetch`] stands.
#[derive(Debug)]
pub struct FetchReader {
    fetch: Arc<Fetch>,
    next: usize,
    rx: watch::Receiver<u64>,
}

/// Why a body read stopped short.
#[derive(Debug, thiserror::Error)]
#[error("the origin's answer was cut")]
pub struct Cut;

impl Fetch {
    fn new() -> Arc<Fetch> {
        Arc::new(Fetch {
            state: Mutex::new(FetchState::default()),
            changed: watch::channel(0).0,
        })
    }

    fn update(&self, f: impl FnOnce(&mut FetchState)) {
        f(&mut lock(&self.state));
        self.changed.send_modify(|n| *n += 1);
    }

    /// The origin's answer line; `None` when the origin could not be reached.
    pub async fn head(&self) -> Option<Head> {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(head) = &lock(&self.state).head {
                return head.clone();
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// The whole body when it is complete now (so it can go out with its length).
    pub fn complete_len(&self) -> Option<u64> {
        let s = lock(&self.state);
        (s.end == Some(true)).then_some(s.bytes as u64)
    }

    /// Reads the body from its start, as it arrives.
    pub fn reader(self: &Arc<Self>) -> FetchReader {
        FetchReader {
            rx: self.changed.subscribe(),
            fetch: self.clone(),
            next: 0,
        }
    }
}

impl FetchReader {
    /// The next piece of the body; `Ok(None)` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, Cut> {
        loop {
            {
                let s = lock(&self.fetch.state);
                if let Some(chunk) = s.chunks.get(self.next) {
                    self.next += 1;
                    return Ok(Some(chunk.clone()));
                }
                match s.end {
                    Some(true) => return Ok(None),
                    Some(false) => return Err(Cut),
                    None => {}
                }
            }
            if self.rx.changed().await.is_err() {
                return Err(Cut);
            }
        }
    }
}

struct Kept {
    fetch: Arc<Fetch>,
    /// `None` while under way.
    expires: Option<Instant>,
    bytes: usize,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Kept>,
    /// Bytes of finished answers.
    bytes: usize,
    /// Fetches under way (entries without an expiry).
    in_flight: usize,
    swept: Option<Instant>,
}

impl Cache {
    /// Drops what expired, at most once a second.
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        let mut freed = 0;
        self.entries.retain(|_, k| {
            let keep = k.expires.is_none_or(|e| e > now);
            if !keep {
                freed += k.bytes;
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Keeps `fetch` (done, `bytes` long) under `key` until `ttl` from now, evicting the
    /// answers closest to expiry while over the byte bound; a zero `ttl` forgets it.
    fn finish(&mut self, key: &str, fetch: &Arc<Fetch>, ttl: Duration, bytes: usize) {
        // An entry under way is never replaced (only an expired one is), so this is ours.
        self.in_flight = self.in_flight.saturating_sub(1);
        let ours = self
            .entries
            .get(key)
            .is_some_and(|k| Arc::ptr_eq(&k.fetch, fetch));
        if !ours {
            return;
        }
        if ttl.is_zero() || bytes > MAX_CACHED_BYTES {
            self.entries.remove(key);
            return;
        }
        if let Some(k) = self.entries.get_mut(key) {
            k.expires = Some(Instant::now() + ttl);
            k.bytes = bytes;
        }
        self.bytes += bytes;
        while self.bytes > MAX_CACHED_BYTES {
            let Some(victim) = self
                .entries
                .iter()
                .filter_map(|(k, v)| Some((v.expires?, k)))
                .min()
                .map(|(_, k)| k.clone())
            else {
                break;
            };
            if let Some(k) = self.entries.remove(&victim) {
                self.bytes -= k.bytes;
            }
        }
    }
}

/// The HTTP side of an edge: origin lookup and the shared, short-lived cache of its answers.
#[derive(Clone)]
pub struct EdgeHttp {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    client: reqwest::Client,
    cache: Mutex<Cache>,
    /// Code -> the origin's HTTP base (`None`: published here, or nowhere), and when asked.
    origins: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl std::fmt::Debug for EdgeHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeHttp").finish_non_exhaustive()
    }
}

/// How long an answer with this `Cache-Control` may be reused.
pub fn ttl_of(cache_control: Option<&str>) -> Duration {
    let Some(cc) = cache_control else {
        return SHORT_TTL;
    };
    let mut ttl = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "private" {
            return Duration::ZERO;
        }
        if let Some(secs) = lower
            .strip_prefix("max-age=")
            .and_then(|v| v.parse::<u64>().ok())
        {
            ttl = Some(Duration::from_secs(secs).min(MAX_TTL));
        }
    }
    ttl.filter(|t| !t.is_zero()).unwrap_or(SHORT_TTL)
}

impl EdgeHttp {
    /// The edge side of `registry`'s node.
    pub fn new(registry: Registry) -> Result<EdgeHttp, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // Origins are found through the registry, never through redirects.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(EdgeHttp {
            inner: Arc::new(Inner {
                registry,
                client,
                cache: Mutex::default(),
                origins: Mutex::default(),
            }),
        })
    }

    /// The HTTP base URL of the node that publishes `code`, when that is another node; `None`
    /// when it is published here, nowhere, or Redis is away (then this node answers alone).
    pub async fn origin(&self, code: &str) -> Option<String> {
        let now = Instant::now();
        if let Some((base, at)) = lock(&self.inner.origins).get(code)
            && now.duration_since(*at) < ORIGIN_TTL
        {
            return base.clone();
        }
        let registry = &self.inner.registry;
        let base = match registry.origin(code).await {
            // The key, read once, lets the origin admit the fetches (see `get`).
            Some((node, _, http))
                if node != registry.node_id() && registry.cluster_key().await.is_some() =>
            {
                Some(http)
            }
            _ => None,
        };
        let mut origins = lock(&self.inner.origins);
        if origins.len() >= MAX_ORIGINS {
            origins.retain(|_, (_, at)| now.duration_since(*at) < ORIGIN_TTL);
            if origins.len() >= MAX_ORIGINS {
                origins.clear();
            }
        }
        origins.insert(code.to_owned(), (base.clone(), now));
        base
    }

    /// Forgets where `code` is published: its origin did not answer, or no longer has it
    /// (the stream moved), so the next request looks it up again.
    pub fn forget_origin(&self, code: &str) {
        lock(&self.inner.origins).remove(code);
    }

    /// `path` with `query` of `base`, fetched once: an answer under way or still fresh is
    /// shared. `variant` separates answers that differ by request header (an MPD for one
    /// player family); `headers` go to the origin with the request. `None` when
    /// [`MAX_IN_FLIGHT`] fetches are under way already.
    pub fn get(
        &self,
        base: &str,
        path: &str,
        query: &[(String, String)],
        variant: &str,
        headers: &[(&'static str, String)],
    ) -> Option<Arc<Fetch>> {
        let mut query: Vec<(&str, &str)> = query
            .iter()
            .filter(|(k, _)| k != CLUSTER_ARG)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = format!("{}\n{variant}", url(base, path, &query));
        // The player was admitted here; the origin admits this node by the cluster key.
        let cluster_key = self.inner.registry.known_cluster_key();
        query.extend(cluster_key.as_deref().map(|k| (CLUSTER_ARG, k)));
        let url = url(base, path, &query);
        let now = Instant::now();
        let fetch = {
            let mut cache = lock(&self.inner.cache);
            cache.sweep(now);
            if let Some(k) = cache.entries.get(&key)
                && k.expires.is_none_or(|e| e > now)
            {
                return Some(k.fetch.clone());
            }
            if cache.in_flight >= MAX_IN_FLIGHT {
                return None;
            }
            let fetch = Fetch::new();
            if let Some(old) = cache.entries.insert(
                key.clone(),
                Kept {
                    fetch: fetch.clone(),
                    expires: None,
                    bytes: 0,
                },
            ) {
                cache.bytes -= old.bytes;
            }
            cache.in_flight += 1;
            fetch
        };
        let mut request = self.inner.client.get(&url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        tokio::spawn(run_fetch(self.inner.clone(), key, request, fetch.clone()));
        Some(fetch)
    }

    /// Asks another node's API: `method` `path` with `query`, passing the caller's
    /// `Authorization` on (the nodes share their `api.token`); the status and body, or why
    /// the node did not answer (within [`API_TIMEOUT`]).
    pub async fn ask(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        query: &[(&str, &str)],
        authorization: Option<&str>,
    ) -> Result<(u16, Bytes), String> {
        let mut request = self
            .inner
            .client
            .request(method, url(base, path, query))
            .timeout(API_TIMEOUT);
        if let Some(auth) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        // Without the URL: the caller's answer names the node, not its address.
        let response = request
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| e.without_url().to_string())?;
        Ok((status, body))
    }
}

/// `base` + `path`, with `query` encoded.
fn url(base: &str, path: &str, query: &[(&str, &str)]) -> String {
    let mut url = format!("{}{path}", base.trim_end_matches('/'));
    if !query.is_empty() {
        url.push('?');
        url.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish(),
        );
    }
    url
}

/// Carries one request to the origin out, whoever reads it.
async fn run_fetch(
    inner: Arc<Inner>,
    key: String,
    request: reqwest::RequestBuilder,
    f: Arc<Fetch>,
) {
    let mut done = Done {
        inner,
        key,
        f,
        ttl: None,
    };
    done.ttl = fetch_body(request, &done.f).await;
}

/// Ends a fetch however its task ends (a panic, the runtime shutting down), so no reader
/// waits for an answer that will never come, and the cache keeps only a complete answer.
struct Done {
    inner: Arc<Inner>,
    key: String,
    f: Arc<Fetch>,
    /// Set once the body is complete.
    ttl: Option<Duration>,
}

impl Drop for Done {
    fn drop(&mut self) {
        let (ended, bytes) = {
            let s = lock(&self.f.state);
            (s.end.is_some(), s.bytes)
        };
        if !ended {
            self.f.update(|s| {
                s.head.get_or_insert(None);
                s.end = Some(false);
            });
        }
        let ttl = self.ttl.filter(|_| ended).unwrap_or(Duration::ZERO);
        lock(&self.inner.cache).finish(&self.key, &self.f, ttl, bytes);
    }
}

/// Fills `f` from the origin: the TTL of a complete answer, `None` for a failed one.
async fn fetch_body(request: reqwest::RequestBuilder, f: &Fetch) -> Option<Duration> {
    let mut response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            // Without the URL, which carries the cluster key.
            tracing::warn!(error = %e.without_url(), "cluster: origin not reached over HTTP");
            f.update(|s| {
                s.head = Some(None);
                s.end = Some(false);
            });
            return None;
        }
    };
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let head = Head {
        status: response.status().as_u16(),
        content_type: header(reqwest::header::CONTENT_TYPE),
        cache_control: header(reqwest::header::CACHE_CONTROL),
        content_length: response.content_length(),
    };
    // Only a success is reused; a 404 (a part not there yet) is asked again next time.
    let ttl = if head.status == 200 {
        ttl_of(head.cache_control.as_deref())
    } else {
        Duration::ZERO
    };
    f.update(|s| s.head = Some(Some(head)));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let mut too_big = false;
                f.update(|s| {
                    s.bytes += chunk.len();
                    too_big = s.bytes > MAX_BODY;
                    if too_big {
                        s.end = Some(false);
                    } else {
                        s.chunks.push(chunk);
                    }
                });
                if too_big {
                    tracing::warn!(max = MAX_BODY, "cluster: origin answer too large; cut");
                    return None;
                }
            }
            Ok(None) => {
                f.update(|s| s.end = Some(true));
                return Some(ttl);
            }
            Err(e) => {
                tracing::debug!(error = %e.without_url(), "cluster: origin answer cut");
                f.update(|s| s.end = Some(false));
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_sets_how_long_an_answer_is_reused() {
        assert_eq!(ttl_of(Some("public, max-age=60")), MAX_TTL);
        assert_eq!(ttl_of(Some("max-age=2")), Duration::from_secs(2));
        assert_eq!(ttl_of(Some("no-cache")), SHORT_TTL);
        assert_eq!(ttl_of(Some("max-age=0")), SHORT_TTL);
        assert_eq!(ttl_of(None), SHORT_TTL);
        assert_eq!(ttl_of(Some("no-store")), Duration::ZERO);
        assert_eq!(ttl_of(Some("Private, max-age=9")), Duration::ZERO);
    }

    #[tokio::test]
    async fn every_reader_gets_the_whole_body_as_it_arrives_and_a_cut_shows() {
        let f = Fetch::new();
        let mut early = f.reader();
        f.update(|s| {
            s.head = Some(Some(Head {
                status: 200,
                content_type: None,
                cache_control: None,
                content_length: None,
            }))
        });
        assert_eq!(f.head().await.map(|h| h.status), Some(200));
        f.update(|s| s.chunks.push(Bytes::from_static(b"ab")));
        assert_eq!(early.next().await.unwrap().as_deref(), Some(&b"ab"[..]));
        let waiting = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = early.next().await.unwrap() {
                got.extend_from_slice(&c);
            }
            got
        });
        tokio::task::yield_now().await;
        f.update(|s| s.chunks.push(Bytes::from_static(b"cd")));
        // A reader that joins late starts from the first byte.
        let mut late = f.reader();
        assert_eq!(late.next().await.unwrap().as_deref(), Some(&b"ab"[..]));
        assert_eq!(f.complete_len(), None);
        f.update(|s| {
            s.bytes = 4;
            s.end = Some(true)
        });
        assert_eq!(waiting.await.unwrap(), b"cd");
        assert_eq!(late.next().await.unwrap().as_deref(), Some(&b"cd"[..]));
        assert_eq!(late.next().await.unwrap(), None);
        assert_eq!(f.complete_len(), Some(4));

        let cut = Fetch::new();
        let mut r = cut.reader();
        cut.update(|s| {
            s.head = Some(None);
            s.end = Some(false)
        });
        assert_eq!(cut.head().await, None);
        assert!(r.next().await.is_err());
    }

    #[test]
    fn the_cache_keeps_fresh_answers_within_its_byte_bound() {
        let mut cache = Cache::default();
        let now = Instant::now();
        let add = |cache: &mut Cache, key: &str, ttl: Duration, bytes: usize| {
            let f = Fetch::new();
            cache.entries.insert(
                key.to_owned(),
                Kept {
                    fetch: f.clone(),
                    expires: None,
                    bytes: 0,
                },
            );
            cache.finish(key, &f, ttl, bytes);
            f
        };
        add(&mut cache, "a", Duration::from_secs(5), 100);
        add(&mut cache, "b", Duration::from_secs(9), 200);
        assert_eq!(cache.bytes, 300);
        // A zero TTL (an error, `no-store`) is forgotten at once.
        add(&mut cache, "c", Duration::ZERO, 50);
        assert!(!cache.entries.contains_key("c"));
        // Over the bound, the answer closest to expiry goes first.
        add(
            &mut cache,
            "big",
            Duration::from_secs(20),
            MAX_CACHED_BYTES - 250,
        );
        assert!(!cache.entries.contains_key("a"));
        assert!(cache.entries.contains_key("b") && cache.entries.contains_key("big"));
        assert_eq!(cache.bytes, MAX_CACHED_BYTES - 50);
        // A fetch replaced under its key (expired, asked again) does not finish the new one.
        let stale = Fetch::new();
        cache.finish("b", &stale, Duration::from_secs(1), 10);
        assert_eq!(cache.bytes, MAX_CACHED_BYTES - 50);
        // Expired answers are swept.
        cache.sweep(now + Duration::from_secs(10));
        assert!(!cache.entries.contains_key("b"));
        assert_eq!(cache.bytes, MAX_CACHED_BYTES - 250);
    }

    /// A tiny origin: counts requests per path and answers each after 150 ms, in two pieces,
    /// with the `Cache-Control` the path names (`/keep` 5 s, `/once` no-store, else 404).
    async fn origin() -> (String, Arc<Mutex<HashMap<String, usize>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let seen = counts.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                    let path = path.split('?').next().unwrap_or("").to_owned();
                    *lock(&seen).entry(path.clone()).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let (status, cc) = match path.as_str() {
                        "/keep" => ("200 OK", "max-age=5"),
                        "/once" => ("200 OK", "no-store"),
                        _ => ("404 Not Found", "no-cache"),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncache-control: {cc}\r\ncontent-type: video/mp2t\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(b"3\r\nabc\r\n").await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = sock.write_all(b"3\r\ndef\r\n0\r\n\r\n").await;
                });
            }
        });
        (base, counts)
    }

    async fn body(f: Arc<Fetch>) -> (u16, Vec<u8>) {
        let status = f.head().await.map_or(0, |h| h.status);
        let mut r = f.reader();
        let mut out = Vec::new();
        while let Some(c) = r.next().await.unwrap() {
            out.extend_from_slice(&c);
        }
        (status, out)
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch_and_only_cacheable_answers_are_kept() {
        let (base, counts) = origin().await;
        let registry = crate::tests::offline_registry("edge");
        let edge = EdgeHttp::new(registry).unwrap();
        let count = |path: &str| lock(&counts).get(path).copied().unwrap_or(0);
        let get = |path: &str| edge.get(&base, path, &[], "", &[]).unwrap();

        // Ten players at once: one request to the origin, the same bytes for each.
        let readers: Vec<_> = (0..10).map(|_| tokio::spawn(body(get("/keep")))).collect();
        for r in readers {
            assert_eq!(r.await.unwrap(), (200, b"abcdef".to_vec()));
        }
        assert_eq!(count("/keep"), 1);
        // Finished and fresh: kept, with its length known.
        let again = get("/keep");
        assert_eq!(again.complete_len(), Some(6));
        assert_eq!(body(again).await, (200, b"abcdef".to_vec()));
        assert_eq!(count("/keep"), 1);
        // Directives are part of what is asked.
        let q = [("_HLS_msn".to_owned(), "7".to_owned())];
        body(edge.get(&base, "/keep", &q, "", &[]).unwrap()).await;
        assert_eq!(count("/keep"), 2);

        // no-store, and a 404: shared while under way, asked again afterwards.
        let (a, b) = (get("/once"), get("/once"));
        assert!(Arc::ptr_eq(&a, &b));
        body(a).await;
        body(get("/once")).await;
        assert_eq!(count("/once"), 2);
        assert_eq!(body(get("/missing")).await.0, 404);
        assert_eq!(body(get("/missing")).await.0, 404);
        assert_eq!(count("/missing"), 2);

        // An origin that does not answer: the readers hear it at once.
        let gone = edge
            .get("http://127.0.0.1:1", "/keep", &[], "", &[])
            .unwrap();
        assert_eq!(gone.head().await, None);
        assert!(gone.reader().next().await.is_err());
    }
}
