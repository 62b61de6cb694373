//! One stream: publisher slot, GOP cache, and the bounded ring its readers consume.

use crate::sessions::{SessionGuard, SessionRole};
use crate::stats::{
    Counters, History, PublisherSnapshot, RateMeter, RateSample, Sampler, StreamStats,
};
use crate::{HubConfig, HubEvent, HubInner, PublishError, PublisherMeta};
use media::{Frame, MediaInfo, TrackKind};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What a reader receives, in order.
#[derive(Clone, Debug)]
pub enum Event {
    /// Track info: first of every publish session, again when a codec configuration changes.
    /// A new `session` means a republish: outputs mark a discontinuity.
    Tracks {
        /// The tracks and their decoder configurations.
        info: Arc<MediaInfo>,
        /// Publish session id; changes on republish.
        session: u64,
    },
    /// One access unit.
    Frame(Frame),
    /// The publisher left; another `Tracks` follows if someone publishes again.
    End,
}

#[derive(Clone, Debug)]
enum Item {
    Tracks { info: Arc<MediaInfo>, session: u64 },
    Frame(Frame),
    End,
}

struct PublisherSlot {
    session: u64,
    session_id: u64,
    meta: PublisherMeta,
    started_at: SystemTime,
    started: Instant,
    kill: CancellationToken,
}

#[derive(Default)]
struct Gop {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// The current GOP outgrew the cap; cache nothing until the next keyframe.
    overflow: bool,
}

struct State {
    publisher: Option<PublisherSlot>,
    info: Option<Arc<MediaInfo>>,
    gop: Gop,
    subscribers: usize,
    readers: BTreeMap<&'static str, u32>,
    rate_in: RateMeter,
    rate_out: Sampler,
    history: History,
}

pub(crate) struct Stream {
    code: String,
    gop_enabled: bool,
    gop_max_bytes: usize,
    gop_evict: bool,
    tx: broadcast::Sender<Item>,
    state: Mutex<State>,
    counters: Counters,
}

impl Stream {
    pub(crate) fn new(code: &str, config: &HubConfig) -> Arc<Stream> {
        let (tx, _) = broadcast::channel(config.reader_queue_frames.max(16));
        Arc::new(Stream {
            code: code.to_owned(),
            gop_enabled: config.gop_cache,
            gop_max_bytes: config.gop_cache_max_bytes,
            gop_evict: config.gop_cache_evict_oldest,
            tx,
            state: Mutex::new(State {
                publisher: None,
                info: None,
                gop: Gop::default(),
                subscribers: 0,
                readers: BTreeMap::new(),
                rate_in: RateMeter::default(),
                rate_out: Sampler::default(),
                history: History::default(),
            }),
            counters: Counters::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves State consistent before anything that could panic, so
        // a poisoned lock holds usable data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn code(&self) -> &str {
        &self.code
    }

    pub(crate) fn is_live(&self) -> bool {
        let st = self.state();
        st.publisher.is_some() && st.info.is_some()
    }

    pub(crate) fn is_unused(&self) -> bool {
        let st = self.state();
        st.publisher.is_none() && st.subscribers == 0
    }

    pub(crate) fn record_sent(&self, bytes: usize) {
        self.counters
            .bytes_out
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn sample_rates(&self) {
        let total = self.counters.bytes_out.load(Ordering::Relaxed);
        let now = Instant::now();
        let mut st = self.state();
        // kbps() samples the output counter too, so this is the one sample of this tick.
        let out_kbps = st.rate_out.kbps(now, total);
        let in_kbps = st.rate_in.kbps(now);
        st.history.push(
            now,
            RateSample {
                at: SystemTime::now(),
                in_kbps,
                out_kbps,
            },
        );
    }

    pub(crate) fn history(&self) -> Vec<RateSample> {
        self.state().history.to_vec()
    }

    pub(crate) fn kick_publisher(&self) -> bool {
        match &self.state().publisher {
            Some(p) => {
                p.kill.cancel();
                true
            }
            None => false,
        }
    }

    /// Decode time of the newest frame, if any was written.
    pub(crate) fn media_time(&self) -> Option<i64> {
        (self.counters.frames_in.load(Ordering::Relaxed) > 0)
            .then(|| self.counters.last_dts.load(Ordering::Relaxed))
    }

    pub(crate) fn stats(&self) -> StreamStats {
        let mut st = self.state();
        let now = Instant::now();
        let publisher = st.publisher.as_ref().map(|p| PublisherSnapshot {
            session: p.session,
            session_id: p.session_id,
            protocol: p.meta.protocol,
            remote_addr: p.meta.remote_addr,
            external_id: p.meta.external_id.clone(),
            started_at: p.started_at,
            uptime: now.saturating_duration_since(p.started),
        });
        let bitrate_in_kbps = st.rate_in.kbps(now);
        let bytes_out = self.counters.bytes_out.load(Ordering::Relaxed);
        let bitrate_out_kbps = st.rate_out.kbps(now, bytes_out);
        StreamStats {
            code: self.code.clone(),
            live: st.publisher.is_some() && st.info.is_some(),
            publisher,
            info: st.info.clone(),
            readers: st.readers.iter().map(|(k, v)| (*k, *v)).collect(),
            gop_cache_frames: st.gop.frames.len(),
            gop_cache_bytes: st.gop.bytes,
            bitrate_in_kbps,
            bitrate_out_kbps,
            bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
            frames_in: self.counters.frames_in.load(Ordering::Relaxed),
            frames_dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

/// The single writer of a stream. Dropping it ends the publish session.
pub struct Publisher {
    stream: Arc<Stream>,
    hub: Arc<HubInner>,
    session: u64,
    kill: CancellationToken,
    guard: SessionGuard,
    /// Writes to an [`crate::Intake`]: no hub events, no registry entry.
    intake: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("code", &self.stream.code)
            .field("session", &self.session)
            .finish()
    }
}

impl Publisher {
    pub(crate) fn claim(
        stream: Arc<Stream>,
        hub: Arc<HubInner>,
        session: u64,
        meta: PublisherMeta,
    ) -> Result<Publisher, PublishError> {
        {
            let st = stream.state();
            if st.publisher.is_some() {
                // The registry lock is held by the caller; the entry stays because it is live.
                return Err(PublishError::AlreadyPublishing(stream.code.clone()));
            }
        }
        let guard =
            SessionGuard::register(&hub, &stream.code, SessionRole::Publisher, (&meta).into());
        let kill = guard.kill_token().clone();
        {
            let mut st = stream.state();
            st.publisher = Some(PublisherSlot {
                session,
                session_id: guard.id(),
                meta,
                started_at: SystemTime::now(),
                started: Instant::now(),
                kill: kill.clone(),
            });
            st.info = None;
            st.gop = Gop::default();
        }
        Ok(Publisher {
            stream,
            hub,
            session,
            kill,
            guard,
            intake: false,
        })
    }

    pub(crate) fn into_intake(mut self) -> Publisher {
        self.intake = true;
        self
    }

    pub(crate) fn notify_opened(&mut self) {
        self.guard.notify_opened();
    }

    /// Stream code this publisher writes.
    pub fn code(&self) -> &str {
        &self.stream.code
    }

    /// Process-unique id of this publish session.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Id of this publisher in [`crate::Hub::sessions`].
    pub fn session_id(&self) -> u64 {
        self.guard.id()
    }

    /// The kick switch of this publisher (cancelled on kick, stream disabled or deleted).
    pub fn kill_token(&self) -> CancellationToken {
        self.kill.clone()
    }

    /// Resolves when the control plane asks this publisher to stop (kick, stream disabled).
    pub fn killed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.kill.cancelled()
    }

    /// Announces (or changes) the tracks; readers see it before any later frame.
    pub fn announce(&self, info: MediaInfo) {
        {
            let mut st = self.stream.state();
            if let Some(old) = st.info.as_ref().filter(|old| old.same_tracks(&info)) {
                // Only the video metadata changed: readers that join get it with the
                // tracks; those playing keep their GOP, segments and periods.
                if old.video_metadata != info.video_metadata {
                    st.info = Some(Arc::new(info));
                }
                return;
            }
        }
        self.send_tracks(info);
    }

    /// Announces `info` to every reader, whatever the tracks were before.
    fn send_tracks(&self, info: MediaInfo) {
        let info = Arc::new(info);
        let mut st = self.stream.state();
        st.info = Some(info.clone());
        // Frames cached under the old configuration cannot be decoded with the new one.
        st.gop = Gop::default();
        let _ = self.stream.tx.send(Item::Tracks {
            info,
            session: self.session,
        });
    }

    /// Starts a new publish session on the same claim, as when another source takes over:
    /// readers see `Tracks` with a new session (a discontinuity) and never an `End`, and
    /// per-session outputs (pushes) restart as after a republish.
    pub fn switch_session(&mut self, info: MediaInfo) {
        let session = self.hub.next_id();
        {
            let mut st = self.stream.state();
            if let Some(p) = st.publisher.as_mut().filter(|p| p.session == self.session) {
                p.session = session;
            }
        }
        self.session = session;
        // A new session is news to readers even with the same tracks.
        self.send_tracks(info);
        if !self.intake {
            self.hub.emit(HubEvent::Published {
                code: self.stream.code.clone(),
                session,
            });
        }
    }

    /// Writes one frame to every reader without waiting for any of them.
    pub fn write(&self, frame: Frame) {
        let len = frame.payload.len();
        let s = &self.stream;
        s.counters.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
        s.counters.frames_in.fetch_add(1, Ordering::Relaxed);
        s.counters.last_dts.store(frame.dts, Ordering::Relaxed);
        self.guard.add_bytes(len as u64);
        let mut st = s.state();
        st.rate_in.add(Instant::now(), len as u64);
        if s.gop_enabled {
            let has_video = st.info.as_ref().is_some_and(|i| i.video.is_some());
            let cap = GopCap {
                bytes: s.gop_max_bytes,
                evict: s.gop_evict,
            };
            cache_frame(&mut st.gop, &frame, has_video, cap, &s.code);
        }
        // Sending under the state lock keeps the ring in the same order as the GOP snapshot
        // a new reader takes; `send` only fails when nobody reads, which is fine.
        let _ = s.tx.send(Item::Frame(frame));
    }
}

/// The GOP cache's bound, and what happens past it.
#[derive(Clone, Copy)]
struct GopCap {
    bytes: usize,
    /// Drop the oldest frames (else the whole GOP, until the next keyframe).
    evict: bool,
}

fn cache_frame(gop: &mut Gop, frame: &Frame, has_video: bool, cap: GopCap, code: &str) {
    if !has_video {
        // Audio-only: every frame is a random access point, so a new reader starts live.
        return;
    }
    if frame.track == TrackKind::Video && frame.keyframe {
        gop.frames.clear();
        gop.bytes = 0;
        gop.overflow = false;
    } else if gop.overflow || gop.frames.is_empty() {
        // Nothing cached before the first keyframe: it could not be decoded.
        return;
    }
    gop.bytes += frame.payload.len();
    gop.frames.push_back(frame.clone());
    if gop.bytes > cap.bytes && cap.evict {
        while gop.bytes > cap.bytes
            && let Some(old) = gop.frames.pop_front()
        {
            gop.bytes -= old.payload.len();
        }
    } else if gop.bytes > cap.bytes {
        let cap = cap.bytes;
        tracing::warn!(
            stream = code,
            cap,
            "GOP larger than the GOP cache cap; caching disabled until the next keyframe"
        );
        gop.frames.clear();
        gop.bytes = 0;
        gop.overflow = true;
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        {
            let mut st = self.stream.state();
            if st.publisher.as_ref().map(|p| p.session) == Some(self.session) {
                st.publisher = None;
                st.info = None;
                st.gop = Gop::default();
                let _ = self.stream.tx.send(Item::End);
            }
        }
        if self.intake {
            return;
        }
        self.hub.emit(HubEvent::Unpublished {
            code: self.stream.code.clone(),
            session: self.session,
        });
        self.hub.release(&self.stream);
    }
}

/// One reader's bounded view of a stream.
pub struct Subscription {
    stream: Arc<Stream>,
    hub: Arc<HubInner>,
    protocol: &'static str,
    rx: broadcast::Receiver<Item>,
    backlog: VecDeque<Event>,
    started_live: bool,
    /// Lost frames: drop everything until the next video keyframe.
    skipping: bool,
    has_video: bool,
    dropped: u64,
    /// Set for external readers: listed in the sessions API and kickable.
    session: Option<SessionGuard>,
    /// Counted in the stream's readers (every output but a fan-out that feeds [`Seat`]s).
    counted: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("code", &self.stream.code)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl Subscription {
    pub(crate) fn attach(stream: Arc<Stream>, hub: Arc<HubInner>, protocol: &'static str) -> Self {
        Self::attach_as(stream, hub, protocol, true)
    }

    pub(crate) fn attach_as(
        stream: Arc<Stream>,
        hub: Arc<HubInner>,
        protocol: &'static str,
        counted: bool,
    ) -> Self {
        let mut backlog = VecDeque::new();
        let mut has_video = false;
        let mut skipping = false;
        let rx;
        let started_live;
        {
            let mut st = stream.state();
            st.subscribers += 1;
            if counted {
                count_reader(&stream, &mut st, protocol);
            }
            rx = stream.tx.subscribe();
            started_live = st.publisher.is_some() && st.info.is_some();
            if let (Some(p), Some(info)) = (&st.publisher, &st.info) {
                has_video = info.video.is_some();
                backlog.push_back(Event::Tracks {
                    info: info.clone(),
                    session: p.session,
                });
                backlog.extend(st.gop.frames.iter().cloned().map(Event::Frame));
                // No cached GOP (cache off, or this GOP outgrew the cap): live frames from the
                // middle of a GOP cannot be decoded, so wait for the next keyframe.
                skipping = has_video && st.gop.frames.is_empty();
            }
        }
        Subscription {
            stream,
            hub,
            protocol,
            rx,
            backlog,
            started_live,
            skipping,
            has_video,
            dropped: 0,
            session: None,
            counted,
        }
    }

    /// Makes this an external reader; call with no hub lock held (the admission hears of it).
    pub(crate) fn set_session(&mut self, mut guard: SessionGuard) {
        guard.notify_opened();
        self.session = Some(guard);
    }

    /// Id in [`crate::Hub::sessions`] for external readers.
    pub fn session_id(&self) -> Option<u64> {
        self.session.as_ref().map(|g| g.id())
    }

    /// The kick switch of an external reader.
    pub fn kill_token(&self) -> Option<CancellationToken> {
        self.session.as_ref().map(|g| g.kill_token().clone())
    }

    /// Resolves when this reader is kicked through the API; never for internal readers.
    pub async fn killed(&self) {
        match &self.session {
            Some(g) => g.kill_token().cancelled().await,
            None => std::future::pending().await,
        }
    }

    pub(crate) fn started_live(&self) -> bool {
        self.started_live
    }

    /// Stream code this subscription reads.
    pub fn code(&self) -> &str {
        &self.stream.code
    }

    /// Readers of this stream right now (all protocols), without taking a lock.
    pub fn stream_readers(&self) -> u64 {
        self.stream.counters.readers.load(Ordering::Relaxed)
    }

    /// Frames this reader lost by falling behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Counts bytes an output sent for this stream (for bitrate-out stats).
    pub fn record_sent(&self, bytes: usize) {
        self.stream.record_sent(bytes);
        if let Some(g) = &self.session {
            g.add_bytes(bytes as u64);
        }
    }

    /// Next event, waiting for one; `None` only if the stream was closed for good.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.pop_backlog() {
                return Some(ev);
            }
            let item = match self.rx.recv().await {
                Ok(item) => item,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.lost(n);
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if let Some(ev) = self.filter(item) {
                return Some(ev);
            }
        }
    }

    /// Next event if one is ready now; lets writers batch without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.pop_backlog() {
                return Some(ev);
            }
            let item = match self.rx.try_recv() {
                Ok(item) => item,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    self.lost(n);
                    continue;
                }
                Err(_) => return None,
            };
            if let Some(ev) = self.filter(item) {
                return Some(ev);
            }
        }
    }

    fn pop_backlog(&mut self) -> Option<Event> {
        let ev = self.backlog.pop_front();
        if ev.is_none() && self.backlog.capacity() > 0 {
            // The GOP snapshot can be a few hundred entries; do not keep that capacity for the
            // life of every reader.
            self.backlog = VecDeque::new();
        }
        ev
    }

    fn lost(&mut self, n: u64) {
        self.dropped += n;
        self.stream.counters.dropped.fetch_add(n, Ordering::Relaxed);
        self.skipping = self.has_video;
        tracing::debug!(
            stream = %self.stream.code,
            protocol = self.protocol,
            lost = n,
            "slow reader lost frames; skipping to the next keyframe"
        );
    }

    fn filter(&mut self, item: Item) -> Option<Event> {
        match item {
            Item::Tracks { info, session } => {
                self.has_video = info.video.is_some();
                // A new configuration needs a fresh keyframe anyway; frames before it would be
                // undecodable, so resync like after a loss.
                Some(Event::Tracks { info, session })
            }
            Item::End => {
                self.skipping = false;
                Some(Event::End)
            }
            Item::Frame(f) => {
                if self.skipping {
                    if f.track == TrackKind::Video && f.keyframe {
                        self.skipping = false;
                    } else {
                        self.dropped += 1;
                        self.stream.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
                Some(Event::Frame(f))
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        {
            let mut st = self.stream.state();
            st.subscribers = st.subscribers.saturating_sub(1);
            if self.counted {
                uncount_reader(&self.stream, &mut st, self.protocol);
            }
        }
        self.hub.release(&self.stream);
    }
}

fn count_reader(stream: &Stream, st: &mut State, protocol: &'static str) {
    stream.counters.readers.fetch_add(1, Ordering::Relaxed);
    *st.readers.entry(protocol).or_insert(0) += 1;
}

fn uncount_reader(stream: &Stream, st: &mut State, protocol: &'static str) {
    stream.counters.readers.fetch_sub(1, Ordering::Relaxed);
    if let Some(n) = st.readers.get_mut(protocol) {
        *n -= 1;
        if *n == 0 {
            st.readers.remove(protocol);
        }
    }
}

/// A reader that takes no events itself: a fan-out task (one per stream and protocol) reads
/// the stream once for many seated readers. It counts as a reader, is listed in the sessions
/// API and can be kicked, like a [`Subscription`].
pub struct Seat {
    stream: Arc<Stream>,
    hub: Arc<HubInner>,
    protocol: &'static str,
    session: SessionGuard,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat")
            .field("code", &self.stream.code)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl Seat {
    pub(crate) fn take(
        stream: Arc<Stream>,
        hub: Arc<HubInner>,
        protocol: &'static str,
        session: SessionGuard,
    ) -> Self {
        {
            let mut st = stream.state();
            st.subscribers += 1;
            count_reader(&stream, &mut st, protocol);
        }
        Seat {
            stream,
            hub,
            protocol,
            session,
        }
    }

    /// Tells the admission the session started; call with no hub lock held.
    pub(crate) fn opened(mut self) -> Self {
        self.session.notify_opened();
        self
    }

    /// Id in [`crate::Hub::sessions`].
    pub fn session_id(&self) -> u64 {
        self.session.id()
    }

    /// The kick switch.
    pub fn kill_token(&self) -> CancellationToken {
        self.session.kill_token().clone()
    }

    /// Stream code.
    pub fn code(&self) -> &str {
        &self.stream.code
    }

    /// What the fan-out task counts this reader's output with.
    pub fn meter(&self) -> SentMeter {
        SentMeter {
            stream: self.stream.clone(),
            session: self.session.bytes_counter(),
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        {
            let mut st = self.stream.state();
            st.subscribers = st.subscribers.saturating_sub(1);
            uncount_reader(&self.stream, &mut st, self.protocol);
        }
        self.hub.release(&self.stream);
    }
}

/// Counts bytes sent to one seated reader, in its session and in the stream's output.
#[derive(Clone)]
pub struct SentMeter {
    stream: Arc<Stream>,
    session: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for SentMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentMeter")
            .field("code", &self.stream.code)
            .finish()
    }
}

impl SentMeter {
    /// Adds `bytes` sent.
    pub fn record(&self, bytes: usize) {
        self.stream.record_sent(bytes);
        self.session.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}
