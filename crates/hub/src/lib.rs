//! Per-stream buffer hub: the publisher writes each frame once, every output reads it.
//!
//! One [`Stream`] per code holds the current track info, a GOP cache starting at the last
//! keyframe, and a bounded ring ([`tokio::sync::broadcast`]) that readers consume at their own
//! pace. The publisher never waits for a reader: a reader that falls a full ring behind loses
//! frames, skips forward to the next keyframe, and the loss is counted per stream.

mod admission;
mod listeners;
pub mod outputs;
mod sessions;
mod stats;
mod stream;

pub use admission::{
    AccessRequest, Action, Admission, Admit, AllowAll, ClientInfo, CommandArgs, ConnectFuture,
    Decision, DecisionFuture, Denied,
};
pub use listeners::{ListenerGuard, ListenerInfo};
pub use sessions::{INTERNAL_ARG, ReaderMeta, SessionGuard, SessionInfo, SessionRole};
pub use stats::{HISTORY_LEN, PublisherSnapshot, RateSample, StreamStats};

pub use stream::{Event, Publisher, Seat, SentMeter, Subscription};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::broadcast;

/// Longest accepted stream code.
pub const MAX_CODE_LEN: usize = 128;

/// Compares secrets without an early exit, so timing reveals nothing about where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        // Compare against the other side cyclically so the loop length depends only on `a`.
        let y = if b.is_empty() { 0 } else { b[i % b.len()] };
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Whether `code` is a valid stream code: up to 128 of `[A-Za-z0-9_/-]`, where `/` separates
/// namespaces (`region/north/news`, as Open-Streamer allows): never first, last or doubled.
pub fn valid_code(code: &str) -> bool {
    code.len() <= MAX_CODE_LEN && code.split('/').all(valid_name)
}

/// Whether `name` is one path segment of a code, an application or a template name:
/// `[A-Za-z0-9_-]{1,128}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CODE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How long a reader of a stream whose source starts on demand waits for it to go live
/// (MediaMTX's `sourceOnDemandStartTimeout` default).
pub const ON_DEMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Memory bounds of every stream.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Keep the frames since the last keyframe so a new reader starts at once.
    pub gop_cache: bool,
    /// Byte cap of one stream's GOP cache; a longer GOP disables the cache until the next one,
    /// unless `gop_cache_evict_oldest`.
    pub gop_cache_max_bytes: usize,
    /// A GOP over the cap loses its oldest frames instead of the whole cache (AgustinSRG
    /// rtmp-server's behaviour): new readers then start mid-GOP, and decoders catch up at the
    /// next keyframe.
    pub gop_cache_evict_oldest: bool,
    /// Frames a reader may fall behind before it skips to the next keyframe.
    pub reader_queue_frames: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            gop_cache: true,
            gop_cache_max_bytes: 16 << 20,
            gop_cache_evict_oldest: false,
            reader_queue_frames: 1024,
        }
    }
}

/// Who is publishing, as shown in stats and logs.
#[derive(Clone, Debug, Default)]
pub struct PublisherMeta {
    /// Ingest protocol, e.g. `rtmp`.
    pub protocol: &'static str,
    /// Remote address of the publisher's connection.
    pub remote_addr: Option<SocketAddr>,
    /// The connection the publisher came on (RTMP); `None` elsewhere.
    pub client: Option<Arc<ClientInfo>>,
    /// Query arguments of the publish request (`?key=...`).
    pub args: Vec<(String, String)>,
    /// Id an external system gave the session at admission ([`Admit::external_id`]).
    pub external_id: Option<String>,
}

/// A change in which streams are live, for output managers that start per-stream work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubEvent {
    /// A publisher started on `code`; `session` is unique across the process.
    Published {
        /// Stream code.
        code: String,
        /// Publish session id.
        session: u64,
    },
    /// The publisher of `code` left.
    Unpublished {
        /// Stream code.
        code: String,
        /// Publish session id that ended.
        session: u64,
    },
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    /// Another publisher holds the code.
    #[error("stream {0:?} already has a publisher")]
    AlreadyPublishing(String),
    /// The code is not `[A-Za-z0-9_-]{1,128}`.
    #[error("invalid stream code {0:?}")]
    InvalidCode(String),
}

/// Tells whether a code is only relayed through this node.
pub type RelayFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Registry of streams by code; cheap to clone and share.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

pub(crate) struct HubInner {
    pub(crate) config: HubConfig,
    streams: Mutex<HashMap<String, Arc<stream::Stream>>>,
    /// Codes whose publishers feed a private stream that an input supervisor reads
    /// ([`Hub::intake`]) instead of the stream readers see.
    intakes: Mutex<HashMap<String, Arc<stream::Stream>>>,
    /// Last time a reader asked for each code whose source starts on demand
    /// ([`Intake::set_on_demand`]); other codes are not recorded, so the map stays bounded.
    demand: Mutex<HashMap<String, Option<std::time::Instant>>>,
    next_session: AtomicU64,
    events: broadcast::Sender<HubEvent>,
    pub(crate) sessions: sessions::Sessions,
    admission: RwLock<Arc<dyn Admission>>,
    /// Which codes are only relayed here (a cluster edge's pull of another node's stream).
    relay: RwLock<Option<RelayFn>>,
    /// Counters of streams already removed from the registry, so totals never go down.
    retired: Mutex<Totals>,
    listeners: Arc<listeners::Listeners>,
}

/// Process-wide counters since start, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Payload bytes received from publishers.
    pub bytes_in: u64,
    /// Bytes outputs reported as sent.
    pub bytes_out: u64,
    /// Frames received from publishers.
    pub frames_in: u64,
    /// Frames slow readers lost.
    pub frames_dropped: u64,
    /// Sessions registered.
    pub sessions_opened: u64,
    /// Sessions unregistered.
    pub sessions_closed: u64,
}

impl HubInner {
    fn demand(&self) -> MutexGuard<'_, HashMap<String, Option<std::time::Instant>>> {
        self.demand.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn intakes(&self) -> MutexGuard<'_, HashMap<String, Arc<stream::Stream>>> {
        // Single inserts and removes only: a poisoned map is consistent.
        self.intakes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<String, Arc<stream::Stream>>> {
        // A panic while holding this lock cannot leave the map half-updated (all updates are
        // single inserts/removes), so a poisoned lock is safe to keep using.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the registry entry once nobody publishes or reads, so codes do not leak.
    pub(crate) fn release(&self, stream: &Arc<stream::Stream>) {
        let mut map = self.streams();
        if stream.is_unused()
            && map
                .get(stream.code())
                .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            map.remove(stream.code());
            let st = stream.stats();
            let mut r = self.retired.lock().unwrap_or_else(|e| e.into_inner());
            r.bytes_in += st.bytes_in;
            r.bytes_out += st.bytes_out;
            r.frames_in += st.frames_in;
            r.frames_dropped += st.frames_dropped;
        }
    }

    /// A process-unique id for publish sessions and session registrations.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// The installed admission, cloned so no lock is held while it runs.
    pub(crate) fn admission(&self) -> Arc<dyn Admission> {
        self.admission
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn emit(&self, event: HubEvent) {
        // No listener is fine: outputs are optional.
        let _ = self.events.send(event);
    }
}

impl Hub {
    /// Creates an empty hub.
    pub fn new(config: HubConfig) -> Hub {
        let (events, _) = broadcast::channel(1024);
        Hub {
            inner: Arc::new(HubInner {
                config,
                streams: Mutex::new(HashMap::new()),
                intakes: Mutex::new(HashMap::new()),
                demand: Mutex::new(HashMap::new()),
                next_session: AtomicU64::new(1),
                events,
                sessions: sessions::Sessions::default(),
                admission: RwLock::new(Arc::new(AllowAll)),
                relay: RwLock::new(None),
                retired: Mutex::new(Totals::default()),
                listeners: Arc::default(),
            }),
        }
    }

    /// The configuration the hub was built with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Runs `f` on the entry for `code` while the registry is locked, so a concurrent
    /// [`HubInner::release`] cannot remove the entry between lookup and attach.
    fn with_entry<T>(&self, code: &str, f: impl FnOnce(Arc<stream::Stream>) -> T) -> T {
        let mut map = self.inner.streams();
        let stream = map
            .entry(code.to_owned())
            .or_insert_with(|| stream::Stream::new(code, &self.inner.config))
            .clone();
        f(stream)
    }

    /// Claims `code` for a new publisher; refused while another publisher is live.
    ///
    /// While an [`Intake`] holds `code`, the publisher writes to the intake's private stream:
    /// an encoder becomes one input among several and the supervisor decides what readers see.
    pub fn publish(&self, code: &str, meta: PublisherMeta) -> Result<Publisher, PublishError> {
        if !valid_code(code) {
            return Err(PublishError::InvalidCode(code.to_owned()));
        }
        let session = self.inner.next_id();
        let intake = self.inner.intakes().get(code).cloned();
        if let Some(stream) = intake {
            let mut publisher =
                stream::Publisher::claim(stream, self.inner.clone(), session, meta)?.into_intake();
            publisher.notify_opened();
            return Ok(publisher);
        }
        self.publish_visible(code, session, meta)
    }

    /// Claims the stream readers see, whatever intake holds the code.
    fn publish_visible(
        &self,
        code: &str,
        session: u64,
        meta: PublisherMeta,
    ) -> Result<Publisher, PublishError> {
        let mut publisher = self.with_entry(code, |stream| {
            stream::Publisher::claim(stream, self.inner.clone(), session, meta)
        })?;
        // Outside the registry lock: the admission may call back into the hub.
        publisher.notify_opened();
        self.inner.emit(HubEvent::Published {
            code: code.to_owned(),
            session,
        });
        Ok(publisher)
    }

    /// Routes the publishers of `code` to a private stream read only through the returned
    /// [`Intake`], until it is dropped. Refused while another intake holds the code.
    pub fn intake(&self, code: &str) -> Result<Intake, PublishError> {
        if !valid_code(code) {
            return Err(PublishError::InvalidCode(code.to_owned()));
        }
        let mut intakes = self.inner.intakes();
        if intakes.contains_key(code) {
            return Err(PublishError::AlreadyPublishing(code.to_owned()));
        }
        let stream = stream::Stream::new(code, &self.inner.config);
        intakes.insert(code.to_owned(), stream.clone());
        Ok(Intake {
            stream,
            hub: self.inner.clone(),
        })
    }

    /// Subscribes to `code`, live or not: a reader of an idle stream waits for its publisher.
    pub fn subscribe(&self, code: &str, protocol: &'static str) -> Subscription {
        self.with_entry(code, |stream| {
            Subscription::attach(stream, self.inner.clone(), protocol)
        })
    }

    /// A reader asked for `code` (a playlist, a play request): starts and keeps alive a
    /// source that runs on demand. Free for other codes.
    pub fn touch(&self, code: &str) {
        if let Some(t) = self.inner.demand().get_mut(code) {
            *t = Some(std::time::Instant::now());
        }
    }

    /// Whether `code`'s source starts when a reader asks, so a request may wait for it.
    pub fn on_demand(&self, code: &str) -> bool {
        self.inner.demand().contains_key(code)
    }

    /// Whether `code` is live, waiting first (at most `limit`) when its source starts on
    /// demand: this request asks for it, which starts it. For protocols that must answer a
    /// play request with tracks (RTSP `DESCRIBE`, an SRT handshake).
    pub async fn live_on_demand(&self, code: &str, limit: std::time::Duration) -> bool {
        self.wait_until_ready(code, limit, || self.is_live(code))
            .await
    }

    /// Holds a request for `code` until `ready` (at most `limit`) while what it waits for is
    /// on its way: the source starts on demand (this request asks for it, which starts it),
    /// or the stream is live and the output asked for is not made yet (a playlist before the
    /// first segment). Returns `ready()`. The request counts as demand.
    pub async fn wait_until_ready(
        &self,
        code: &str,
        limit: std::time::Duration,
        ready: impl Fn() -> bool,
    ) -> bool {
        self.touch(code);
        let coming = || self.on_demand(code) || self.is_live(code);
        if ready() || !coming() {
            return ready();
        }
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if ready() {
                return true;
            }
            if !coming() {
                return false;
            }
        }
        false
    }

    /// When a reader last asked for an on-demand `code`.
    pub fn last_demand(&self, code: &str) -> Option<std::time::Instant> {
        self.inner.demand().get(code).copied().flatten()
    }

    /// External readers (players, not internal outputs) of `code` right now.
    pub fn reader_sessions(&self, code: &str) -> usize {
        // Asked every supervisor tick: counted in place, no snapshot of every session.
        self.inner
            .sessions
            .count_where(|stream, _, role| role == SessionRole::Reader && stream == code)
    }

    /// Subscribes an external reader (listed in [`Hub::sessions`], kickable), live or not.
    pub fn subscribe_reader(&self, code: &str, meta: ReaderMeta) -> Subscription {
        self.touch(code);
        let mut sub = self.subscribe(code, meta.protocol);
        sub.set_session(SessionGuard::register(
            &self.inner,
            code,
            SessionRole::Reader,
            meta.into(),
        ));
        sub
    }

    /// Seats an external reader of `code` (listed, counted, kickable) whose frames a fan-out
    /// task reads for it through [`Hub::subscribe_fanout`].
    pub fn seat(&self, code: &str, meta: ReaderMeta) -> Seat {
        self.touch(code);
        let protocol = meta.protocol;
        let guard = SessionGuard::register(&self.inner, code, SessionRole::Reader, meta.into());
        self.with_entry(code, |stream| {
            Seat::take(stream, self.inner.clone(), protocol, guard)
        })
        .opened()
    }

    /// Subscribes a fan-out task that writes for seated readers: it keeps the stream alive
    /// but is not a reader itself, so the readers count stays the count of viewers.
    pub fn subscribe_fanout(&self, code: &str, protocol: &'static str) -> Subscription {
        self.with_entry(code, |stream| {
            Subscription::attach_as(stream, self.inner.clone(), protocol, false)
        })
    }

    /// Subscribes an external reader only if `code` has a publisher that announced its tracks.
    pub fn subscribe_live(&self, code: &str, meta: ReaderMeta) -> Option<Subscription> {
        self.touch(code);
        let map = self.inner.streams();
        let stream = map.get(code).filter(|s| s.is_live())?.clone();
        let mut sub = Subscription::attach(stream, self.inner.clone(), meta.protocol);
        drop(map);
        // The publisher may have left between the check and the attach.
        if !sub.started_live() {
            return None;
        }
        sub.set_session(SessionGuard::register(
            &self.inner,
            code,
            SessionRole::Reader,
            meta.into(),
        ));
        Some(sub)
    }

    /// Whether `code` currently has a publisher that announced its tracks.
    pub fn is_live(&self, code: &str) -> bool {
        self.inner.streams().get(code).is_some_and(|s| s.is_live())
    }

    /// The stream's clock: decode time (hub ticks) of the newest frame its publisher wrote,
    /// as nginx-rtmp's `timestamp` in `on_update`. `None` before the first frame.
    pub fn media_time(&self, code: &str) -> Option<i64> {
        self.inner.streams().get(code)?.media_time()
    }

    /// Stats of one stream, if the hub knows it.
    pub fn stats(&self, code: &str) -> Option<StreamStats> {
        let stream = self.inner.streams().get(code).cloned()?;
        Some(stream.stats())
    }

    /// Stats of every stream the hub knows, sorted by code.
    pub fn list(&self) -> Vec<StreamStats> {
        let streams: Vec<_> = self.inner.streams().values().cloned().collect();
        let mut out: Vec<_> = streams.iter().map(|s| s.stats()).collect();
        out.sort_by(|a, b| a.code.cmp(&b.code));
        out
    }

    /// Codes that have a live publisher now.
    pub fn live_codes(&self) -> Vec<String> {
        self.inner
            .streams()
            .values()
            .filter(|s| s.is_live())
            .map(|s| s.code().to_owned())
            .collect()
    }

    /// Publish/unpublish notifications; a lagging listener should resync with [`Hub::live_codes`].
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    /// Counts bytes an output without a subscription (HLS over HTTP) sent for `code`.
    pub fn record_sent(&self, code: &str, bytes: usize) {
        let stream = self.inner.streams().get(code).cloned();
        if let Some(stream) = stream {
            stream.record_sent(bytes);
        }
    }

    /// Samples every stream's output counters; call about once a second so bitrates cover a
    /// fixed window however rarely they are read.
    pub fn sample_rates(&self) {
        let streams: Vec<_> = self.inner.streams().values().cloned().collect();
        for s in streams {
            s.sample_rates();
        }
    }

    /// The last few minutes of `code`'s bitrates, oldest first, one sample per second of
    /// [`Hub::run_sampler`]; empty when the hub does not know the stream.
    pub fn bitrate_history(&self, code: &str) -> Vec<RateSample> {
        let stream = self.inner.streams().get(code).cloned();
        stream.map(|s| s.history()).unwrap_or_default()
    }

    /// Announces a running listener until the guard drops (see [`Hub::listeners`]).
    pub fn announce_listener(&self, info: ListenerInfo) -> ListenerGuard {
        self.inner.listeners.add(info)
    }

    /// Every announced listener, by protocol.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.inner.listeners.list()
    }

    /// Runs [`Hub::sample_rates`] every second until `shutdown`.
    pub async fn run_sampler(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.sample_rates(),
            }
        }
    }

    /// Counters since start, including streams no longer known.
    pub fn totals(&self) -> Totals {
        let mut t = *self.inner.retired.lock().unwrap_or_else(|e| e.into_inner());
        for s in self.list() {
            t.bytes_in += s.bytes_in;
            t.bytes_out += s.bytes_out;
            t.frames_in += s.frames_in;
            t.frames_dropped += s.frames_dropped;
        }
        let (opened, closed) = self.inner.sessions.counts();
        t.sessions_opened = opened;
        t.sessions_closed = closed;
        t
    }

    /// Every registered publisher and reader, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.inner.sessions.list()
    }

    /// Kicks one session; `false` if the id is unknown.
    pub fn kick_session(&self, id: u64) -> bool {
        self.inner.sessions.kick(id)
    }

    /// The value of the query argument `name` the live publisher of `code` gave, if any.
    pub fn publisher_arg(&self, code: &str, name: &str) -> Option<String> {
        self.inner.sessions.publisher_arg(code, name)
    }

    /// Kicks the readers of `code` on `protocol` that fail `keep`; returns how many.
    pub fn kick_readers_unless(
        &self,
        code: &str,
        protocol: &str,
        keep: impl Fn(&SessionInfo) -> bool,
    ) -> usize {
        self.inner
            .sessions
            .kick_readers_unless(code, protocol, keep)
    }

    /// Kicks the readers of `code` on `protocol` (every protocol if `None`); returns how many.
    pub fn kick_readers(&self, code: &str, protocol: Option<&str>) -> usize {
        self.inner.sessions.kick_where(|stream, proto, role| {
            role == SessionRole::Reader && stream == code && protocol.is_none_or(|p| p == proto)
        })
    }

    /// Installs the test of which codes are only relayed through this node: their origin
    /// packages, records, transcodes and pushes them, so this node's outputs that would do it
    /// again ([`StreamTasks`], pushes) leave them alone and only fan them out to players.
    pub fn set_relay(&self, relay: RelayFn) {
        *self.inner.relay.write().unwrap_or_else(|e| e.into_inner()) = Some(relay);
    }

    /// Whether `code` is only relayed through this node (see [`Hub::set_relay`]).
    pub fn is_relay(&self, code: &str) -> bool {
        let relay = self
            .inner
            .relay
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        relay.is_some_and(|f| f(code))
    }

    /// Installs the control plane's admission decisions.
    pub fn set_admission(&self, admission: Arc<dyn Admission>) {
        *self
            .inner
            .admission
            .write()
            .unwrap_or_else(|e| e.into_inner()) = admission;
    }

    /// The installed [`Admission`], for the calls beyond [`Hub::authorize`] (RTMP `connect`
    /// and disconnect). A clone: no hub lock is held while it runs.
    pub fn admission(&self) -> Arc<dyn Admission> {
        self.inner.admission()
    }

    /// Asks the installed [`Admission`] whether `request` may proceed.
    pub fn authorize(&self, request: AccessRequest) -> DecisionFuture {
        self.inner.admission().check(request)
    }

    /// A process-unique id for a protocol connection (nginx-rtmp's `clientid`); drawn from the
    /// same counter as session ids, so it never equals one.
    pub fn next_connection_id(&self) -> u64 {
        self.inner.next_id()
    }

    /// Asks the publisher of `code` to stop; returns whether there was one.
    pub fn kick_publisher(&self, code: &str) -> bool {
        let Some(stream) = self.inner.streams().get(code).cloned() else {
            return false;
        };
        stream.kick_publisher()
    }

    /// Disconnects the publisher of `code` only if its session carries `external_id`, so a
    /// command meant for an earlier broadcast cannot end a newer one on the same code.
    pub fn kick_publisher_with_id(&self, code: &str, external_id: &str) -> bool {
        let session = self.sessions().into_iter().find(|s| {
            s.role == SessionRole::Publisher
                && s.stream == code
                && s.external_id.as_deref() == Some(external_id)
        });
        session.is_some_and(|s| self.kick_session(s.id))
    }
}

/// The publish side of a stream whose readers see what an input supervisor chooses: while it
/// lives, encoders publishing to the code write here (see [`Hub::publish`]).
pub struct Intake {
    stream: Arc<stream::Stream>,
    hub: Arc<HubInner>,
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake")
            .field("code", &self.stream.code())
            .finish()
    }
}

impl Intake {
    /// Reads what encoders publish to the code, GOP cache first, like any reader.
    pub fn subscribe(&self) -> Subscription {
        Subscription::attach(self.stream.clone(), self.hub.clone(), "intake")
    }

    /// Claims the stream readers see, for the supervisor that owns this intake.
    pub fn publish(&self, meta: PublisherMeta) -> Result<Publisher, PublishError> {
        let hub = Hub {
            inner: self.hub.clone(),
        };
        let session = self.hub.next_id();
        hub.publish_visible(self.stream.code(), session, meta)
    }

    /// Makes readers' requests for the code start its source ([`Hub::touch`]); the demand
    /// record lives as long as this intake.
    pub fn set_on_demand(&self, on: bool) {
        let mut demand = self.hub.demand();
        if on {
            demand.entry(self.stream.code().to_owned()).or_insert(None);
        } else {
            demand.remove(self.stream.code());
        }
    }

    /// Whether an encoder publishes to the code right now.
    pub fn has_publisher(&self) -> bool {
        self.stream.stats().publisher.is_some()
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        {
            let mut intakes = self.hub.intakes();
            if intakes
                .get(self.stream.code())
                .is_some_and(|s| Arc::ptr_eq(s, &self.stream))
            {
                intakes.remove(self.stream.code());
                self.hub.demand().remove(self.stream.code());
            }
        }
        // The encoder reconnects and then publishes to the stream itself.
        self.stream.kick_publisher();
    }
}

#[cfg(test)]
mod tests;
