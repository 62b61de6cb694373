//! Players of a stream are written by one fan-out task, not by one task each.
//!
//! With a task per player, every frame woke every player's task, and each then made its own
//! `writev` at its own moment: at 500 players the wake-ups, the per-player chunking and the
//! scattered writes cost more than the bytes. A fan-out task reads the stream once, encodes
//! each frame once per distinct (chunk size, message stream id, timestamp) — in practice once —
//! and walks its players' sockets in turn with non-blocking writes, as nginx's event loop does.
//! The task keeps one ring of recent events (the current GOP and a few seconds more) with their
//! encodings; each player is a cursor into it, and takes from it only as much as its socket
//! accepts. A socket that would block keeps its place and resumes when it is writable; a player
//! that falls off the end of the ring skips to the next keyframe, and nobody else waits. So a
//! player costs a cursor and a small write queue, not a queue of frames.
//!
//! The connection task keeps reading its player's commands. Both tasks write to the socket,
//! so after the hand-over every message from either starts with a full chunk header, and the
//! connection's few replies travel through the fan-out task to keep whole messages in order.

use super::{MAX_IOVECS, ServerConfig, Socket, coalesce_window};
use crate::chunk::{MessageHeader, OutQueue, encode_standalone};
use crate::message;
use crate::play::{Mapped, Play};
use crate::session::MessageWriter;
use bytes::Bytes;
use hub::{Event, Hub, SentMeter, Subscription};
use media::{Frame, MediaInfo, TrackKind};
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

/// A player's write queue is filled from the ring up to this before each write.
const FILL_BYTES: usize = 256 << 10;
/// A player whose own replies pile up beyond this behind a stalled socket is dropped.
const MAX_PLAYER_BACKLOG: usize = 2 << 20;
/// Hub events and commands taken per wake-up, so one busy stream cannot hold a worker.
const MAX_BATCH: usize = 64;
/// Commands waiting for a fan-out task (joins, leaves, replies of its players).
const COMMAND_QUEUE: usize = 1024;
/// How long a leaving connection waits for its queued bytes to come back.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

/// Fan-out tasks by stream code. A stream gets a second task when the first holds
/// `ServerConfig::play_group_size` players, so a large audience spreads over the worker threads.
#[derive(Debug)]
pub(super) struct Registry {
    groups: Mutex<HashMap<String, Vec<Arc<Shared>>>>,
    next_member: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    tx: mpsc::Sender<Cmd>,
    /// Players joined and not yet removed; changed only under the registry lock, so a task
    /// retires only when no join is on its way to it.
    joined: AtomicUsize,
}

enum Cmd {
    Join(Box<Member>),
    Leave {
        id: u64,
        reply: Option<oneshot::Sender<Leftover>>,
    },
    Control {
        id: u64,
        change: Option<Change>,
        out: OutQueue,
    },
}

/// A player's own playback controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// `pause`: nothing more is sent until unpaused.
    Pause,
    /// Unpause: resumes live, at the current GOP's keyframe.
    Resume,
    /// `receiveAudio` / `receiveVideo`; video comes back at a keyframe.
    Receive { video: bool, on: bool },
}

/// What a player that leaves its fan-out task takes back to its connection.
pub(super) struct Leftover {
    /// Bytes not yet written; the front one may be partly written already.
    pub out: OutQueue,
    /// The player's playback state (for its goodbye).
    pub play: Play,
}

/// A player handed to a fan-out task.
pub(super) struct Joiner {
    /// The connection's socket (the connection keeps reading it).
    pub socket: Arc<dyn Socket>,
    /// Playback state; nothing sent yet for this play.
    pub play: Play,
    /// Outgoing chunk size agreed at `connect`.
    pub chunk_size: u32,
    /// The connection's own bytes not written yet; they go out first.
    pub pending: OutQueue,
    /// Counts what is sent, for the stream's and the session's stats.
    pub meter: SentMeter,
    /// The session's kick switch: the member's `gone` token is its child.
    pub kill: CancellationToken,
}

/// The connection's side of a player in a fan-out task. Dropping it removes the player.
pub(super) struct Membership {
    id: u64,
    shared: Arc<Shared>,
    alive: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    gone: CancellationToken,
    left: bool,
}

impl Registry {
    pub(super) fn new() -> Self {
        Registry {
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(1),
        }
    }

    fn groups(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Shared>>>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fan-out tasks running now (for tests).
    #[cfg(test)]
    pub(super) fn tasks(&self) -> usize {
        self.groups().values().map(Vec::len).sum()
    }

    /// Hands a player of `code` to a fan-out task, starting one if needed.
    pub(super) async fn join(
        self: &Arc<Self>,
        hub: &Hub,
        config: &Arc<ServerConfig>,
        code: &str,
        joiner: Joiner,
    ) -> Option<Membership> {
        let id = self.next_member.fetch_add(1, Ordering::Relaxed);
        let alive = Arc::new(AtomicBool::new(true));
        let started = Arc::new(AtomicBool::new(false));
        let gone = joiner.kill.child_token();
        let mut w = MessageWriter::full_headers(joiner.chunk_size);
        let mut pending = joiner.pending;
        w.out().append(&mut pending);
        let member = Box::new(Member {
            id,
            socket: joiner.socket,
            play: joiner.play,
            w,
            chunk_size: joiner.chunk_size,
            cursor: 0,
            skipping: false,
            paused: false,
            audio: true,
            video: true,
            video_key: false,
            blocked: false,
            ready: false,
            unmetered: 0,
            meter: joiner.meter,
            alive: alive.clone(),
            started: started.clone(),
            gone: gone.clone(),
        });
        let shared = {
            let mut groups = self.groups();
            let list = groups.entry(code.to_owned()).or_default();
            let cap = config.play_group_size.max(1);
            let shared = match list.iter().find(|s| s.joined.load(Ordering::Relaxed) < cap) {
                Some(s) => s.clone(),
                None => {
                    let s = self.spawn(hub, config, code);
                    list.push(s.clone());
                    s
                }
            };
            shared.joined.fetch_add(1, Ordering::Relaxed);
            shared
        };
        // The task cannot retire while `joined` counts this player, so the send is received.
        if shared.tx.send(Cmd::Join(member)).await.is_err() {
            warn!("fan-out task ended; player dropped");
            return None;
        }
        Some(Membership {
            id,
            shared,
            alive,
            started,
            gone,
            left: false,
        })
    }

    /// Starts a fan-out task for `code`; call with the registry locked.
    fn spawn(self: &Arc<Self>, hub: &Hub, config: &Arc<ServerConfig>, code: &str) -> Arc<Shared> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let shared = Arc::new(Shared {
            tx,
            joined: AtomicUsize::new(0),
        });
        let hc = hub.config();
        let group = Group {
            code: code.to_owned(),
            shared: shared.clone(),
            registry: self.clone(),
            rx,
            sub: hub.subscribe_fanout(code, "rtmp"),
            dropped_seen: 0,
            ring: Ring {
                events: VecDeque::new(),
                first: 0,
                bytes: 0,
                max_events: hc.reader_queue_frames.max(16),
                max_bytes: hc.gop_cache_max_bytes,
                start: None,
                lowest: 0,
                gop_cache: hc.gop_cache,
                evict_oldest: hc.gop_cache_evict_oldest,
                current: None,
            },
            members: Vec::new(),
            config: config.clone(),
            flush_at: None,
            last_flush: Instant::now(),
        };
        let span = info_span!("rtmp-fanout", code = %code);
        tokio::spawn(group.run().instrument(span));
        shared
    }
}

impl Membership {
    /// Whether the stream started for this player (it got `Play.Start` and tracks).
    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Cancelled when the player is kicked or its fan-out task dropped it.
    pub(super) fn gone(&self) -> CancellationToken {
        self.gone.clone()
    }

    /// Sends the connection's own replies out behind what is queued, applying `change`
    /// first (so a pause status is the last thing before the pause, an unpause status the
    /// first thing after); `false` if the fan-out task no longer has this player.
    pub(super) async fn forward(&self, out: &mut OutQueue, change: Option<Change>) -> bool {
        if out.is_empty() && change.is_none() {
            return true;
        }
        let out = std::mem::take(out);
        self.shared
            .tx
            .send(Cmd::Control {
                id: self.id,
                change,
                out,
            })
            .await
            .is_ok()
            && !self.gone.is_cancelled()
    }

    /// Leaves the fan-out task and takes back the unwritten bytes and playback state, so the
    /// connection can go on writing itself; `None` if the task dropped the player meanwhile.
    pub(super) async fn leave(mut self) -> Option<Leftover> {
        self.left = true;
        self.alive.store(false, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        let leave = Cmd::Leave {
            id: self.id,
            reply: Some(reply),
        };
        self.shared.tx.send(leave).await.ok()?;
        tokio::time::timeout(LEAVE_TIMEOUT, rx).await.ok()?.ok()
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if self.left {
            return;
        }
        // The flag alone is enough: the task checks it before every write. The message only
        // frees the player (and its socket) sooner.
        self.alive.store(false, Ordering::Relaxed);
        let _ = self.shared.tx.try_send(Cmd::Leave {
            id: self.id,
            reply: None,
        });
    }
}

struct Member {
    id: u64,
    socket: Arc<dyn Socket>,
    play: Play,
    /// Encodes this player's control and status messages; its queue is what the next write
    /// takes, shared frame encodings included.
    w: MessageWriter,
    chunk_size: u32,
    /// Sequence number of the next ring event for this player.
    cursor: u64,
    /// Waiting for a video keyframe (joined without a GOP, or fell behind).
    skipping: bool,
    /// The player paused: its cursor stays until it unpauses.
    paused: bool,
    /// The player wants audio (`receiveAudio`).
    audio: bool,
    /// The player wants video (`receiveVideo`).
    video: bool,
    /// Video was switched back on: its next video frame must be a keyframe.
    video_key: bool,
    /// The socket would block: wait for writability.
    blocked: bool,
    /// Became writable since the last flush.
    ready: bool,
    unmetered: usize,
    meter: SentMeter,
    alive: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    gone: CancellationToken,
}

/// Everything that makes one player's bytes for a frame differ from another's.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    mapped: Mapped,
    stream_id: u32,
    chunk_size: u32,
}

struct Entry {
    event: Event,
    /// Encodings made of this frame so far, one per key (in practice one): chunk headers and
    /// slices of the frame's payload, so the ring holds no second copy of the stream.
    encoded: Vec<(Key, Arc<[Bytes]>)>,
}

/// The stream's recent events, shared by every player of the task.
struct Ring {
    events: VecDeque<Entry>,
    /// Sequence number of `events[0]`.
    first: u64,
    bytes: usize,
    /// Hard bounds, whatever the GOP and the players need: the lag a player is allowed,
    /// the same as every other output gets from the hub.
    max_events: usize,
    max_bytes: usize,
    /// Where a joining player starts: the current GOP's keyframe, when the ring holds it.
    start: Option<u64>,
    /// The lowest player cursor at the last flush: events from there on are still needed.
    lowest: u64,
    gop_cache: bool,
    /// A GOP past the bounds keeps its newest frames for joiners (see
    /// `hub::HubConfig::gop_cache_evict_oldest`).
    evict_oldest: bool,
    /// The live tracks and publish session.
    current: Option<(Arc<MediaInfo>, u64)>,
}

impl Ring {
    fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    fn has_video(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|(i, _)| i.video.is_some())
    }

    fn push(&mut self, event: Event) {
        let seq = self.end();
        match &event {
            Event::Tracks { session, .. } => {
                if self.current.as_ref().map(|c| c.1) != Some(*session) {
                    self.start = None;
                }
            }
            Event::End => self.start = None,
            Event::Frame(f) => {
                self.bytes += f.payload.len();
                if f.track == TrackKind::Video && f.keyframe && self.gop_cache {
                    self.start = Some(seq);
                }
            }
        }
        match &event {
            Event::Tracks { info, session } => self.current = Some((info.clone(), *session)),
            Event::End => self.current = None,
            Event::Frame(_) => {}
        }
        self.events.push_back(Entry {
            event,
            encoded: Vec::new(),
        });
        self.trim(self.lowest);
    }

    /// Drops what neither a joiner (the current GOP) nor a player (`lowest` cursor) still
    /// needs, and anything beyond the hard bounds: a player that far behind skips ahead.
    fn trim(&mut self, lowest: u64) {
        self.lowest = lowest;
        let keep_from = self.start.unwrap_or(u64::MAX).min(lowest);
        while let Some(front) = self.events.front() {
            let over = self.events.len() > self.max_events || self.bytes > self.max_bytes;
            if self.first >= keep_from && !over {
                break;
            }
            if let Event::Frame(f) = &front.event {
                self.bytes -= f.payload.len();
            }
            self.events.pop_front();
            self.first += 1;
        }
        if self.start.is_some_and(|s| s < self.first) {
            // This GOP outgrew the bounds: joiners wait for the next keyframe, or start from
            // its newest frames.
            self.start = self.evict_oldest.then_some(self.first);
        }
    }

    fn clear(&mut self) {
        self.first = self.end();
        self.lowest = self.first;
        self.events.clear();
        self.bytes = 0;
        self.start = None;
    }
}

struct Group {
    code: String,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    rx: mpsc::Receiver<Cmd>,
    sub: Subscription,
    dropped_seen: u64,
    ring: Ring,
    members: Vec<Member>,
    config: Arc<ServerConfig>,
    flush_at: Option<Instant>,
    last_flush: Instant,
}

enum Wake {
    Command(Option<Cmd>),
    Hub(Option<Event>),
    Timer,
    Writable,
}

impl Group {
    async fn run(mut self) {
        debug!("fan-out started");
        loop {
            let any_blocked = self.members.iter().any(|m| m.blocked);
            let flush_at = self.flush_at;
            let members = &mut self.members;
            let wake = tokio::select! {
                biased;
                c = self.rx.recv() => Wake::Command(c),
                e = self.sub.recv() => Wake::Hub(e),
                _ = async { sleep_until(flush_at.unwrap_or_else(Instant::now)).await }, if flush_at.is_some() => Wake::Timer,
                _ = writable(members), if any_blocked => Wake::Writable,
            };
            match wake {
                Wake::Command(None) => break,
                Wake::Command(Some(cmd)) => {
                    self.command(cmd);
                    for _ in 1..MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.command(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Hub(None) => {
                    debug!("stream closed; dropping its players");
                    break;
                }
                Wake::Hub(Some(ev)) => {
                    self.event(ev);
                    for _ in 1..MAX_BATCH {
                        match self.sub.try_recv() {
                            Some(ev) => self.event(ev),
                            None => break,
                        }
                    }
                    self.schedule();
                }
                Wake::Timer => {
                    self.flush_at = None;
                    self.flush(|_| true);
                }
                Wake::Writable => {
                    let timer = self.flush_at.is_some();
                    self.flush(|m| m.ready || !timer);
                }
            }
            if self.members.is_empty() && self.retire() {
                break;
            }
        }
        for m in self.members.drain(..) {
            m.gone.cancel();
        }
        self.retire_now();
        debug!("fan-out ended");
    }

    /// Flushes now, or arms the merge timer when the audience is large (see
    /// [`coalesce_window`]).
    fn schedule(&mut self) {
        if self.flush_at.is_some() {
            return;
        }
        let window = coalesce_window(
            self.members.len() as u64,
            self.config.play_coalesce_max,
            self.config.play_coalesce_readers,
        );
        let due = self.last_flush + window;
        if window.is_zero() || due <= Instant::now() {
            self.flush(|_| true);
        } else {
            self.flush_at = Some(due);
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join(m) => self.join(*m),
            Cmd::Leave { id, reply } => {
                if let Some(i) = self.members.iter().position(|m| m.id == id) {
                    let mut m = self.remove(i);
                    if let Some(reply) = reply {
                        let _ = reply.send(Leftover {
                            out: std::mem::take(m.w.out()),
                            play: m.play,
                        });
                    }
                }
            }
            Cmd::Control {
                id,
                change,
                mut out,
            } => {
                if let Some(i) = self.members.iter().position(|m| m.id == id) {
                    let m = &mut self.members[i];
                    if let Some(change) = change {
                        apply(&self.ring, m, change);
                    }
                    m.w.out().append(&mut out);
                    if m.w.out().len_bytes() > MAX_PLAYER_BACKLOG {
                        warn!("player's replies pile up behind a stalled socket; dropping it");
                        let m = self.remove(i);
                        m.gone.cancel();
                        return;
                    }
                    if !m.blocked && !pump(&mut self.ring, m) {
                        let m = self.remove(i);
                        m.gone.cancel();
                    }
                }
            }
        }
    }

    /// A new player starts at the cached GOP, at once: a viewer is waiting.
    fn join(&mut self, mut m: Member) {
        m.cursor = self.ring.end();
        if let Some((info, session)) = &self.ring.current {
            m.play.tracks(&mut m.w, info.clone(), *session);
            m.started.store(true, Ordering::Relaxed);
            match self.ring.start {
                Some(start) => m.cursor = start,
                None => m.skipping = info.video.is_some(),
            }
        }
        if pump(&mut self.ring, &mut m) {
            self.members.push(m);
        } else {
            m.gone.cancel();
            let _groups = self.registry.groups();
            self.shared.joined.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn event(&mut self, ev: Event) {
        let dropped = self.sub.dropped();
        if dropped != self.dropped_seen {
            // This task fell behind the hub: the ring has a hole, and the subscription now
            // waits for a keyframe for everyone.
            self.dropped_seen = dropped;
            self.ring.clear();
        }
        self.ring.push(ev);
    }

    /// Writes to each chosen player what it has not been sent, as far as its socket takes it.
    fn flush(&mut self, pick: impl Fn(&Member) -> bool) {
        // Only a pass over every player knows the lowest cursor.
        let pick_all = self.members.iter().all(&pick);
        self.last_flush = Instant::now();
        let mut lowest = self.ring.end();
        let mut i = 0;
        while i < self.members.len() {
            let m = &mut self.members[i];
            // A kicked player gets nothing more, even before its connection has heard of it:
            // a publish kicks the waiting players without its key before its media flows.
            if !m.alive.load(Ordering::Relaxed) || m.gone.is_cancelled() {
                self.remove(i);
                continue;
            }
            if pick(m) && !m.blocked {
                m.ready = false;
                if !pump(&mut self.ring, m) {
                    let m = self.remove(i);
                    m.gone.cancel();
                    continue;
                }
            }
            lowest = lowest.min(self.members[i].cursor);
            i += 1;
        }
        if pick_all {
            self.ring.trim(lowest);
        }
    }

    fn remove(&mut self, i: usize) -> Member {
        let m = self.members.swap_remove(i);
        if m.unmetered > 0 {
            m.meter.record(m.unmetered);
        }
        let _groups = self.registry.groups();
        self.shared.joined.fetch_sub(1, Ordering::Relaxed);
        m
    }

    /// Unregisters this task if no player is on its way to it; `false` means keep running.
    fn retire(&mut self) -> bool {
        let mut groups = self.registry.groups();
        if self.shared.joined.load(Ordering::Relaxed) != 0 {
            return false;
        }
        unregister(&mut groups, &self.code, &self.shared);
        true
    }

    fn retire_now(&mut self) {
        let mut groups = self.registry.groups();
        self.shared.joined.store(0, Ordering::Relaxed);
        unregister(&mut groups, &self.code, &self.shared);
    }
}

fn unregister(groups: &mut HashMap<String, Vec<Arc<Shared>>>, code: &str, shared: &Arc<Shared>) {
    if let Some(list) = groups.get_mut(code) {
        list.retain(|s| !Arc::ptr_eq(s, shared));
        if list.is_empty() {
            groups.remove(code);
        }
    }
}

/// Resolves once any blocked player's socket is writable again (marking it ready).
async fn writable(members: &mut [Member]) {
    std::future::poll_fn(|cx| {
        let mut any = false;
        for m in members.iter_mut().filter(|m| m.blocked) {
            if m.socket.poll_write_ready(cx).is_ready() {
                m.blocked = false;
                m.ready = true;
                any = true;
            }
        }
        if any { Poll::Ready(()) } else { Poll::Pending }
    })
    .await
}

/// Moves the player's cursor through the ring into its queue and writes, until it is up to
/// date or its socket would block; `false` on a broken connection.
fn pump(ring: &mut Ring, m: &mut Member) -> bool {
    loop {
        fill(ring, m);
        if m.w.out().is_empty() {
            m.w.out().release_idle();
            break;
        }
        let out = m.w.out();
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = out.io_slices(&mut slices);
        match m.socket.try_send_vectored(&slices[..n]) {
            Ok(0) => return false,
            Ok(written) => out.advance(written),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                m.blocked = true;
                break;
            }
            Err(e) => {
                debug!(error = %e, "player write failed");
                return false;
            }
        }
    }
    if m.unmetered > 64 << 10 {
        m.meter.record(m.unmetered);
        m.unmetered = 0;
    }
    true
}

fn apply(ring: &Ring, m: &mut Member, change: Change) {
    match change {
        Change::Pause => m.paused = true,
        Change::Resume if m.paused => {
            // Live has moved on: start again where a new player would, unless that is behind
            // what this one was already sent (a pause within one GOP): never go back in time.
            m.paused = false;
            match ring.start {
                Some(start) if start > m.cursor => {
                    m.cursor = start;
                    m.skipping = false;
                }
                Some(_) => {}
                None if m.cursor < ring.first => {}
                None => {
                    m.cursor = ring.end();
                    m.skipping = ring.has_video();
                }
            }
        }
        Change::Resume => {}
        Change::Receive { video: false, on } => m.audio = on,
        Change::Receive { video: true, on } => {
            m.video_key = on && !m.video;
            m.video = on;
        }
    }
}

/// Queues the player's next events, up to [`FILL_BYTES`].
fn fill(ring: &mut Ring, m: &mut Member) {
    if m.paused {
        return;
    }
    let end = ring.end();
    if m.cursor < ring.first {
        // Fell off the ring: resume at a keyframe, with the tracks of whatever session is
        // live now (a republish may have gone by).
        m.cursor = ring.first;
        m.skipping = ring.has_video();
        if let Some((info, session)) = &ring.current
            && m.play.session() != Some(*session)
        {
            m.play.tracks(&mut m.w, info.clone(), *session);
            m.started.store(true, Ordering::Relaxed);
        }
    }
    while m.cursor < end && m.w.out().len_bytes() < FILL_BYTES {
        let entry = &mut ring.events[(m.cursor - ring.first) as usize];
        m.cursor += 1;
        match &entry.event {
            Event::Tracks { info, session } => {
                m.play.tracks(&mut m.w, info.clone(), *session);
                m.started.store(true, Ordering::Relaxed);
            }
            Event::End => {
                m.play.end(&mut m.w);
                m.skipping = false;
            }
            Event::Frame(f) => {
                let video = f.track == TrackKind::Video;
                if m.skipping {
                    if !(video && f.keyframe) {
                        continue;
                    }
                    m.skipping = false;
                }
                if video {
                    if !m.video || m.video_key && !f.keyframe {
                        continue;
                    }
                    m.video_key = false;
                } else if !m.audio {
                    continue;
                }
                let Some(mapped) = m.play.map(f) else {
                    continue;
                };
                let key = Key {
                    mapped,
                    stream_id: m.play.stream_id(),
                    chunk_size: m.chunk_size,
                };
                let pieces = match entry.encoded.iter().find(|(k, _)| *k == key) {
                    Some((_, p)) => p.clone(),
                    None => match encode(&key, f) {
                        Some(p) => {
                            entry.encoded.push((key, p.clone()));
                            p
                        }
                        None => continue,
                    },
                };
                m.unmetered += f.payload.len();
                let out = m.w.out();
                for piece in pieces.iter() {
                    out.push(piece.clone());
                }
            }
        }
    }
}

/// One frame as one message of whole chunks, for every player with `key`.
fn encode(key: &Key, f: &Frame) -> Option<Arc<[Bytes]>> {
    let header = MessageHeader {
        csid: if key.mapped.video {
            message::CSID_VIDEO
        } else {
            message::CSID_AUDIO
        },
        timestamp: key.mapped.timestamp,
        type_id: if key.mapped.video {
            message::TYPE_VIDEO
        } else {
            message::TYPE_AUDIO
        },
        stream_id: key.stream_id,
    };
    match encode_standalone(&header, key.mapped.prefix(), &f.payload, key.chunk_size) {
        Ok(pieces) => Some(pieces.into()),
        Err(e) => {
            // Only a frame over RTMP's 16 MiB message limit gets here; players skip it.
            warn!(error = %e, "frame not sent over RTMP");
            None
        }
    }
}
