//! One MPEG-TS mux per stream, shared by every SRT player of it.
//!
//! The first player of a code starts a feed: a task that reads the hub once, muxes each event
//! into 188-byte packets and hands the same [`Bytes`] to every player, so fifty players cost
//! one mux, not fifty. The same task drives the players' SRT connections ([`crate::play`]).
//! The feed keeps the TS since the last keyframe, so a player that joins later starts at a
//! keyframe with PAT/PMT first, as a hub subscriber starts at the GOP cache. A player whose
//! peer falls behind loses, in its own SRT send buffer, what is older than its latency; nobody
//! waits for it. The feed stops when its last player leaves.

use crate::PAYLOAD_SIZE;
use crate::endpoint::{Inbox, Link};
use crate::play::{Join, PlayEnd, Players};
use bytes::{Bytes, BytesMut};
use hub::{Event, Hub, Seat, Subscription};
use media::TrackKind;
use mpegts::{PACKET_SIZE, TsMuxer};
use srt_protocol::packet::Packet;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info_span, warn};

/// Hub events muxed per wake-up of the feed task.
const MAX_BATCH: usize = 64;
/// Longest a frame's last partial payload waits for the next frame's TS to fill it; small
/// next to the SRT latency (120 ms by default), and about the gap between audio and video
/// frames, so most tails are filled.
const PACK_WAIT: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest the players' ACKs wait in the inbox for media to send. They are answered (each
/// with an ACKACK) when the feed next sends media, so the ACKACK leaves in the same datagram
/// train as the data: one send and one wake-up of the peer instead of two. The peer's
/// round-trip estimate grows by the wait, a few milliseconds on average.
const ACK_HOLD: Duration = Duration::from_millis(25);
/// Muxed TS of a GOP is its frames plus PES/TS headers (about 2 %, more for small audio
/// frames); the feed's cache gets this much room over the hub's GOP cap.
const TS_OVERHEAD_PERCENT: usize = 25;

/// What players receive from a feed, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// The transport packets of one hub event: whole 188-byte packets.
    Ts {
        /// The packets, shared by every player.
        data: Bytes,
        /// Starts with PAT/PMT and a keyframe (audio-only: with PAT/PMT): a decoder can start
        /// here, so joiners and players that fell behind resume here.
        sync: bool,
    },
    /// The publisher left.
    End,
}

/// Where the mux is: waiting for tracks, then for a keyframe (a decoder cannot start
/// elsewhere), then muxing everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum MuxState {
    #[default]
    NoTracks,
    WaitKeyframe,
    Muxing,
}

/// Hub events in, TS items out: the sans-I/O core of a feed.
#[derive(Debug, Default)]
pub(crate) struct StreamMux {
    mux: TsMuxer,
    state: MuxState,
    warned: bool,
}

impl StreamMux {
    /// The TS for one hub event, if it yields any.
    pub(crate) fn push(&mut self, ev: &Event) -> Option<Item> {
        match ev {
            Event::Tracks { info, .. } => {
                let skipped = self.mux.set_tracks(info);
                if !skipped.is_empty() && !self.warned {
                    self.warned = true;
                    warn!(?skipped, "tracks not carried over srt");
                }
                // `set_tracks` makes the muxer write PAT/PMT before the next frame it muxes.
                self.state = if self.mux.carries(TrackKind::Video) {
                    MuxState::WaitKeyframe
                } else {
                    MuxState::Muxing
                };
                None
            }
            Event::Frame(f) => {
                let video_key = f.track == TrackKind::Video && f.keyframe;
                if self.state == MuxState::WaitKeyframe && video_key {
                    self.state = MuxState::Muxing;
                }
                if self.state != MuxState::Muxing || !self.mux.carries(f.track) {
                    return None;
                }
                let mut out =
                    BytesMut::with_capacity(f.payload.len() + f.payload.len() / 32 + 1024);
                if let Err(e) = self.mux.write_frame(f, &mut out) {
                    debug!(error = %e, "frame not muxed");
                    return None;
                }
                if out.is_empty() {
                    return None;
                }
                let data = out.freeze();
                // With video only a keyframe is a start; without, any point with tables is.
                let sync =
                    starts_with_pat(&data) && (video_key || !self.mux.carries(TrackKind::Video));
                Some(Item::Ts { data, sync })
            }
            Event::End => {
                // A republish starts over: new tracks, tables, and a keyframe to wait for.
                self.mux = TsMuxer::new();
                self.state = MuxState::NoTracks;
                Some(Item::End)
            }
        }
    }
}

fn starts_with_pat(ts: &[u8]) -> bool {
    // PID is the low 13 bits of bytes 1..3; the PAT's PID is 0.
    ts.len() >= PACKET_SIZE
        && ts[0] == 0x47
        && (u16::from(ts[1] & 0x1f) << 8 | u16::from(ts[2])) == 0
}

/// Packs TS items into whole [`PAYLOAD_SIZE`] payloads. A frame's TS rarely ends on a payload
/// boundary; sending its tail as a short payload costs a whole SRT packet (and per-packet
/// work in every player's connection), so the tail waits for the next frame, at most
/// [`PACK_WAIT`]. The tail is copied once here, never per player.
#[derive(Debug, Default)]
pub(crate) struct Packer {
    pending: BytesMut,
    /// The pending TS starts at a sync point.
    pending_sync: bool,
}

impl Packer {
    /// Appends to `out` the whole payloads `item` completes; its tail is kept.
    pub(crate) fn pack(&mut self, item: Item, out: &mut Vec<Item>) {
        let (mut data, sync) = match item {
            Item::Ts { data, sync } => (data, sync),
            Item::End => {
                out.extend(self.flush());
                out.push(Item::End);
                return;
            }
        };
        // A sync item must start its payload with PAT/PMT, so nothing goes in front of it.
        if sync {
            out.extend(self.flush());
        }
        if !self.pending.is_empty() {
            let take = (PAYLOAD_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data.split_to(take));
            if self.pending.len() < PAYLOAD_SIZE {
                return;
            }
            out.extend(self.flush());
        }
        let whole = data.len() - data.len() % PAYLOAD_SIZE;
        if whole > 0 {
            out.push(Item::Ts {
                data: data.split_to(whole),
                sync,
            });
        }
        if !data.is_empty() {
            self.pending_sync = sync && whole == 0;
            self.pending.extend_from_slice(&data);
        }
    }

    /// The waiting tail as an item of its own.
    pub(crate) fn flush(&mut self) -> Option<Item> {
        if self.pending.is_empty() {
            return None;
        }
        let sync = std::mem::take(&mut self.pending_sync);
        Some(Item::Ts {
            data: self.pending.split().freeze(),
            sync,
        })
    }

    /// Whether a tail is waiting.
    pub(crate) fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The TS since the last sync point, for players that join.
#[derive(Debug)]
pub(crate) struct GopCache {
    /// Items from the last sync point on; empty while there is none or it outgrew the cap.
    gop: VecDeque<Item>,
    gop_bytes: usize,
    gop_cap: usize,
    /// The current GOP outgrew the cap: cache nothing until the next sync point.
    overflow: bool,
}

impl GopCache {
    /// A cache of at most `gop_cap` bytes of TS.
    pub(crate) fn new(gop_cap: usize) -> GopCache {
        GopCache {
            gop: VecDeque::new(),
            gop_bytes: 0,
            gop_cap,
            overflow: false,
        }
    }

    /// Keeps `item` for later joiners when it belongs to the current GOP.
    pub(crate) fn publish(&mut self, item: &Item) {
        match item {
            Item::Ts { data, sync } => {
                if *sync {
                    self.clear_gop();
                }
                let cached = !self.gop.is_empty() || *sync;
                if cached && !self.overflow {
                    if self.gop_bytes + data.len() > self.gop_cap {
                        self.clear_gop();
                        self.overflow = true;
                    } else {
                        self.gop_bytes += data.len();
                        self.gop.push_back(item.clone());
                    }
                }
            }
            Item::End => self.clear_gop(),
        }
    }

    fn clear_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
        self.overflow = false;
    }

    /// The cached GOP: what a joining player gets first.
    pub(crate) fn items(&self) -> impl Iterator<Item = &Item> {
        self.gop.iter()
    }

    /// A joining player's cursor, for what is published after [`GopCache::items`].
    pub(crate) fn cursor(&self) -> Cursor {
        Cursor {
            // Without a cached GOP, the next sync point is the first thing a decoder can use.
            skipping: self.gop.is_empty(),
            dropped: 0,
        }
    }
}

/// Whether a player waits for a sync point (it joined without a cached GOP).
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Drop everything until the next sync point.
    skipping: bool,
    dropped: u64,
}

impl Cursor {
    /// Whether this player takes `item`.
    pub(crate) fn admit(&mut self, item: &Item) -> bool {
        match item {
            Item::Ts { sync: false, .. } if self.skipping => {
                self.dropped += 1;
                false
            }
            Item::Ts { .. } => {
                self.skipping = false;
                true
            }
            Item::End => true,
        }
    }

    /// Items this player skipped waiting for a sync point.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A running feed: where players join and where their packets go. The feed task stops when
/// the last [`FeedHandle`] is dropped.
#[derive(Debug)]
struct Shared {
    joins: mpsc::Sender<Join>,
    inbox: Arc<Inbox>,
    _stop: DropGuard,
}

/// A player's hold on its stream's feed, which keeps the feed running.
#[derive(Debug)]
pub struct FeedHandle {
    feed: Arc<Shared>,
}

impl FeedHandle {
    /// Where the endpoint must put this feed's players' packets.
    pub fn inbox(&self) -> Arc<Inbox> {
        self.feed.inbox.clone()
    }

    /// Plays the stream to `link` (seated at `seat`) until the play ends.
    pub async fn play(&self, link: Link, seat: Seat) -> PlayEnd {
        let (done, ended) = oneshot::channel();
        if self
            .feed
            .joins
            .send(Join { link, seat, done })
            .await
            .is_err()
        {
            return PlayEnd::Unpublished;
        }
        // The feed ends every play it took before it stops.
        ended.await.unwrap_or(PlayEnd::Unpublished)
    }
}

/// The running feeds by stream code.
#[derive(Clone, Debug)]
pub(crate) struct Feeds {
    hub: Hub,
    tracker: TaskTracker,
    /// Cancelled when the server shuts down: every feed ends its plays.
    shutdown: CancellationToken,
    feeds: Arc<Mutex<HashMap<String, Weak<Shared>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Critical sections here leave the data consistent before anything that could panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Feeds {
    /// Feeds reading `hub`; their tasks run on `tracker` and end their plays on `shutdown`.
    pub(crate) fn new(hub: Hub, tracker: TaskTracker, shutdown: CancellationToken) -> Feeds {
        Feeds {
            hub,
            tracker,
            shutdown,
            feeds: Arc::default(),
        }
    }

    /// Joins the feed of `code`, starting it if this is its first player.
    pub(crate) fn join(&self, code: &str) -> FeedHandle {
        let mut feeds = lock(&self.feeds);
        if let Some(feed) = feeds.get(code).and_then(Weak::upgrade) {
            return FeedHandle { feed };
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let config = self.hub.config();
        let gop_cap = config.gop_cache_max_bytes / 100 * (100 + TS_OVERHEAD_PERCENT);
        let stop = CancellationToken::new();
        let (joins, joins_rx) = mpsc::channel(64);
        let inbox = Inbox::new();
        let feed = Arc::new(Shared {
            joins,
            inbox: inbox.clone(),
            _stop: stop.clone().drop_guard(),
        });
        feeds.insert(code.to_owned(), Arc::downgrade(&feed));
        let sub = self.hub.subscribe_fanout(code, "srt");
        // Not a child of the first player's connection span: the feed outlives it.
        let span = info_span!(parent: None, "srt feed", code);
        let task = FeedTask {
            sub,
            joins: joins_rx,
            inbox,
            stop,
            shutdown: self.shutdown.clone(),
            gop: GopCache::new(gop_cap),
        };
        self.tracker.spawn(task.run().instrument(span));
        FeedHandle { feed }
    }
}

/// A feed's task: the hub subscription in, the players' connections out.
struct FeedTask {
    sub: Subscription,
    joins: mpsc::Receiver<Join>,
    inbox: Arc<Inbox>,
    stop: CancellationToken,
    shutdown: CancellationToken,
    gop: GopCache,
}

impl FeedTask {
    /// Reads the hub once for every player of the stream until the last one leaves.
    async fn run(mut self) {
        let mut mux = StreamMux::default();
        let mut packer = Packer::default();
        let mut players = Players::default();
        let mut items = Vec::with_capacity(MAX_BATCH);
        let mut packets: Vec<(Packet, SocketAddr)> = Vec::new();
        let mut flush_at = tokio::time::Instant::now();
        // Shutting down, or the stream is gone for good: the plays close, then the task ends.
        let mut ending: Option<PlayEnd> = None;
        // Media was just handed to the players, or a packet that cannot wait arrived; and
        // when the inbox was last read.
        let mut take = true;
        let mut taken = Instant::now();
        debug!("srt feed started");
        loop {
            // The players' ACKs wait for media to go with; see `Inbox` and `ACK_HOLD`.
            let now = Instant::now();
            if take || now >= taken + ACK_HOLD {
                self.inbox.take(&mut packets);
                taken = now;
            }
            take = false;
            for p in packets.drain(..) {
                players.handle(now, p);
            }
            let next = players.poll(now);
            if ending.is_some() && players.is_empty() {
                break;
            }
            let timer = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            // Unbiased: a flood of control packets must not starve the stream's media.
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = self.shutdown.cancelled(), if ending.is_none() => {
                    ending = Some(PlayEnd::Shutdown);
                    players.close_all(Instant::now(), PlayEnd::Shutdown);
                }
                Some(join) = self.joins.recv() => match ending {
                    Some(why) => {
                        let _ = join.done.send(why);
                    }
                    None => players.add(Instant::now(), join, &self.gop),
                },
                _ = self.inbox.urgent() => take = true,
                _ = players.unstall(), if players.is_stalled() => {}
                ev = self.sub.recv(), if ending.is_none() => match ev {
                    Some(ev) => {
                        let waiting = packer.is_pending();
                        if let Some(item) = mux.push(&ev) {
                            packer.pack(item, &mut items);
                        }
                        for _ in 1..MAX_BATCH {
                            match self.sub.try_recv() {
                                Some(ev) => {
                                    if let Some(item) = mux.push(&ev) {
                                        packer.pack(item, &mut items);
                                    }
                                }
                                None => break,
                            }
                        }
                        if packer.is_pending() && !waiting {
                            flush_at = tokio::time::Instant::now() + PACK_WAIT;
                        }
                    }
                    // A hub stream closed for good ends its players like an unpublish.
                    None => {
                        items.extend(packer.flush());
                        ending = Some(PlayEnd::Unpublished);
                    }
                },
                _ = tokio::time::sleep_until(flush_at), if packer.is_pending() => {
                    items.extend(packer.flush());
                }
                _ = tokio::time::sleep_until(timer.into()) => {}
            }
            if !items.is_empty() {
                take = true;
                let now = Instant::now();
                for item in items.drain(..) {
                    self.gop.publish(&item);
                    players.deliver(now, &item);
                }
            }
            if let Some(why) = ending {
                players.close_all(Instant::now(), why);
            }
        }
        debug!("srt feed stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use media::{AacConfig, AvcConfig, Frame, MediaInfo};

    /// A real capture (x264 + AAC, 320x240); only its decoder configurations are used.
    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    /// The AVC and AAC sequence headers of [`FLV`].
    fn configs() -> (AvcConfig, AacConfig) {
        let u24 = |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
        let mut pos = 9 + 4;
        let (mut avc, mut aac) = (None, None);
        while pos + 11 <= FLV.len() && (avc.is_none() || aac.is_none()) {
            let len = u24(&FLV[pos + 1..]);
            let body = Bytes::from_static(&FLV[pos + 11..pos + 11 + len]);
            match (FLV[pos], body[1]) {
                (9, 0) => avc = Some(AvcConfig::parse(body.slice(5..)).expect("avcC")),
                (8, 0) => aac = Some(AacConfig::parse(body.slice(2..)).expect("ASC")),
                _ => {}
            }
            pos += 11 + len + 4;
        }
        (avc.expect("no avcC"), aac.expect("no ASC"))
    }

    fn info(video: bool) -> Event {
        let (avc, aac) = configs();
        Event::Tracks {
            info: Arc::new(MediaInfo {
                video: video.then_some(media::VideoCodec::H264(avc)),
                audio: Some(media::AudioCodec::Aac(aac)),
                ..Default::default()
            }),
            session: 1,
        }
    }

    fn video(dts: i64, keyframe: bool, len: usize) -> Event {
        // One AVCC NAL unit (4-byte length): IDR or non-IDR slice.
        let mut p = vec![0u8; 4 + len];
        p[..4].copy_from_slice(&(len as u32).to_be_bytes());
        p[4] = if keyframe { 0x65 } else { 0x41 };
        Event::Frame(Frame {
            track: TrackKind::Video,
            dts,
            pts: dts,
            keyframe,
            payload: Bytes::from(p),
        })
    }

    fn audio(dts: i64) -> Event {
        Event::Frame(Frame {
            track: TrackKind::Audio,
            dts,
            pts: dts,
            keyframe: true,
            payload: Bytes::from(vec![0x21; 200]),
        })
    }

    fn pids(data: &[u8]) -> Vec<u16> {
        data.chunks(PACKET_SIZE)
            .map(|p| u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]))
            .collect()
    }

    fn data(item: &Item) -> &Bytes {
        match item {
            Item::Ts { data, .. } => data,
            Item::End => panic!("End where TS was expected"),
        }
    }

    /// A player as the feed task sees it: its cursor, and what it was handed.
    struct Viewer {
        cursor: Cursor,
        got: Vec<Item>,
    }

    fn viewer(gop: &GopCache) -> Viewer {
        Viewer {
            cursor: gop.cursor(),
            got: gop.items().cloned().collect(),
        }
    }

    /// Muxes `events`, caches each item and hands it to `viewers`, as the feed task does.
    fn feed(
        mux: &mut StreamMux,
        gop: &mut GopCache,
        viewers: &mut [&mut Viewer],
        events: impl IntoIterator<Item = Event>,
    ) {
        for ev in events {
            if let Some(item) = mux.push(&ev) {
                gop.publish(&item);
                for v in viewers.iter_mut() {
                    if v.cursor.admit(&item) {
                        v.got.push(item.clone());
                    }
                }
            }
        }
    }

    #[test]
    fn waits_for_a_keyframe_and_starts_it_with_tables() {
        let mut mux = StreamMux::default();
        assert_eq!(mux.push(&video(0, false, 100)), None, "no tracks yet");
        assert_eq!(mux.push(&info(true)), None);
        assert_eq!(mux.push(&audio(0)), None, "audio before the first keyframe");
        assert_eq!(mux.push(&video(3000, false, 100)), None);
        let Some(Item::Ts { data, sync: true }) = mux.push(&video(6000, true, 3000)) else {
            panic!("keyframe not a sync item");
        };
        assert_eq!(data.len() % PACKET_SIZE, 0);
        assert_eq!(&pids(&data)[..3], &[0, mpegts::PMT_PID, mpegts::VIDEO_PID]);
        let Some(Item::Ts { sync: false, .. }) = mux.push(&audio(6000)) else {
            panic!("audio after the keyframe not muxed");
        };
    }

    #[test]
    fn readers_get_identical_shared_packets() {
        let mut mux = StreamMux::default();
        let mut gop = GopCache::new(1 << 20);
        let (mut a, mut b) = (viewer(&gop), viewer(&gop));
        feed(
            &mut mux,
            &mut gop,
            &mut [&mut a, &mut b],
            [
                info(true),
                video(0, true, 5000),
                audio(0),
                video(3000, false, 900),
            ],
        );
        assert_eq!(a.got.len(), 3);
        assert_eq!(a.got, b.got);
        for (x, y) in a.got.iter().zip(&b.got) {
            // The same allocation, not an equal copy.
            assert_eq!(data(x).as_ptr(), data(y).as_ptr());
        }
    }

    #[test]
    fn late_joiner_starts_at_the_last_keyframe_with_tables_first() {
        let mut mux = StreamMux::default();
        let mut gop = GopCache::new(1 << 20);
        let events = [
            info(true),
            video(0, true, 2000),
            audio(0),
            video(3000, false, 500),
        ];
        feed(&mut mux, &mut gop, &mut [], events);
        feed(
            &mut mux,
            &mut gop,
            &mut [],
            [video(6000, true, 2000), audio(6000)],
        );
        let mut late = viewer(&gop);
        feed(
            &mut mux,
            &mut gop,
            &mut [&mut late],
            [video(9000, false, 500)],
        );
        assert_eq!(late.got.len(), 3, "GOP (keyframe, audio) then live");
        let Item::Ts { data, sync: true } = &late.got[0] else {
            panic!("joiner did not start at a sync item");
        };
        assert_eq!(&pids(data)[..2], &[0, mpegts::PMT_PID]);
        assert!(matches!(late.got[1], Item::Ts { sync: false, .. }));
    }

    #[test]
    fn joiner_without_a_cached_gop_waits_for_the_next_keyframe() {
        let mut mux = StreamMux::default();
        // A GOP cap smaller than one keyframe: nothing is ever cached.
        let mut gop = GopCache::new(100);
        feed(
            &mut mux,
            &mut gop,
            &mut [],
            [info(true), video(0, true, 2000)],
        );
        let mut c = viewer(&gop);
        feed(
            &mut mux,
            &mut gop,
            &mut [&mut c],
            [audio(0), video(3000, false, 500)],
        );
        assert!(c.got.is_empty(), "mid-GOP TS handed to a new player");
        assert_eq!(c.cursor.dropped(), 2);
        feed(
            &mut mux,
            &mut gop,
            &mut [&mut c],
            [video(6000, true, 2000), audio(6000)],
        );
        assert_eq!(c.got.len(), 2);
        assert!(matches!(c.got[0], Item::Ts { sync: true, .. }));
    }

    #[test]
    fn republish_ends_players_and_restarts_at_a_keyframe() {
        let mut mux = StreamMux::default();
        let mut gop = GopCache::new(1 << 20);
        feed(
            &mut mux,
            &mut gop,
            &mut [],
            [info(true), video(0, true, 1000)],
        );
        let mut c = viewer(&gop);
        feed(&mut mux, &mut gop, &mut [&mut c], [Event::End]);
        assert_eq!(c.got.last(), Some(&Item::End));
        // Nothing of the old session is handed to a player that joins after it.
        let mut next = viewer(&gop);
        assert!(next.got.is_empty());
        feed(
            &mut mux,
            &mut gop,
            &mut [&mut next],
            [info(true), video(0, false, 100), video(3000, true, 1000)],
        );
        assert_eq!(next.got.len(), 1);
        assert!(matches!(next.got[0], Item::Ts { sync: true, .. }));
    }

    #[test]
    fn audio_only_syncs_at_tables() {
        let mut mux = StreamMux::default();
        assert_eq!(mux.push(&info(false)), None);
        let Some(Item::Ts { data, sync: true }) = mux.push(&audio(0)) else {
            panic!("first audio frame is not a sync item");
        };
        assert_eq!(&pids(&data)[..2], &[0, mpegts::PMT_PID]);
        assert!(matches!(
            mux.push(&audio(1920)),
            Some(Item::Ts { sync: false, .. })
        ));
    }

    #[test]
    fn packer_fills_payloads_and_starts_sync_points_fresh() {
        let mut mux = StreamMux::default();
        let mut packer = Packer::default();
        let (mut muxed, mut packed) = (Vec::new(), Vec::new());
        let events = [
            info(true),
            video(0, true, 5000),
            audio(0),
            video(3000, false, 900),
        ];
        let more = [
            audio(1920),
            video(6000, true, 4000),
            audio(3840),
            Event::End,
        ];
        for ev in events.into_iter().chain(more) {
            if let Some(item) = mux.push(&ev) {
                muxed.push(item.clone());
                packer.pack(item, &mut packed);
            }
        }
        // The End flushed the tail, so nothing was lost or reordered.
        assert!(!packer.is_pending());
        let bytes = |items: &[Item]| -> Vec<u8> {
            items
                .iter()
                .filter_map(|i| match i {
                    Item::Ts { data, .. } => Some(data.to_vec()),
                    Item::End => None,
                })
                .flatten()
                .collect()
        };
        assert_eq!(bytes(&packed), bytes(&muxed));
        assert_eq!(packed.last(), Some(&Item::End));
        let ts: Vec<_> = packed.iter().filter(|i| **i != Item::End).collect();
        // Only the tails before a sync point and before the End are short.
        let short = ts
            .iter()
            .filter(|i| !data(i).len().is_multiple_of(PAYLOAD_SIZE))
            .count();
        assert!(short <= 2, "{short} short payloads");
        let syncs: Vec<_> = ts
            .iter()
            .filter(|i| matches!(i, Item::Ts { sync: true, .. }))
            .collect();
        assert_eq!(syncs.len(), 2);
        for s in syncs {
            assert_eq!(&pids(data(s))[..2], &[0, mpegts::PMT_PID]);
        }
    }

    #[tokio::test]
    async fn feed_stops_with_its_last_player() {
        let hub = Hub::new(hub::HubConfig::default());
        let tracker = TaskTracker::new();
        let feeds = Feeds::new(hub, tracker.clone(), CancellationToken::new());
        let a = feeds.join("x");
        let b = feeds.join("x");
        assert_eq!(tracker.len(), 1, "one feed for both players");
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(tracker.len(), 1, "still one player");
        drop(b);
        tracker.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), tracker.wait())
            .await
            .expect("feed task did not stop");
        let _c = feeds.join("x");
        assert_eq!(tracker.len(), 1, "a new player starts a new feed");
    }
}
