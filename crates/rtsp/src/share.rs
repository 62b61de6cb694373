//! Packetize once per stream: every RTSP reader of a stream sends the same [`RtpFrame`]s.
//!
//! Each reader keeps its own hub subscription, so the hub's policy still decides what a reader
//! gets: the GOP cache on join, a bounded queue that skips a slow reader to the next keyframe,
//! reader counts and kicks. Readers of one stream receive the same `Frame`s (the same payload
//! allocation), and the first of them to reach a frame packetizes it into a [`StreamPacketizer`]
//! that they share; the others find it there. What is per reader (sequence numbers, SSRC,
//! timestamp offset, RTCP counts) lives in each reader's [`crate::rtp::RtpSender`].
//!
//! A [`StreamPacketizer`] exists while a reader of its stream plays: readers hold it (`Arc`),
//! the [`SharedPacketizers`] registry only points at it (`Weak`), and the last reader to let go
//! removes the entry. A republish or a new codec configuration is a new track set, hence a new
//! packetizer; readers move to it as they reach the hub's new `Tracks` event.
//!
//! Memory: the cache holds at most `max_frames` frames, the newest ones packetized (the hub's
//! ring length by default), as per-packet heads and slices of the frames' payloads. The payloads
//! it keeps alive are frames the hub handed out recently, which its own ring and GOP cache hold
//! as well; what the cache adds is about 50 bytes a packet.

use crate::rtp::{self, RtpError, RtpFrame};
use crate::sdp::{AUDIO_PAYLOAD_TYPE, RtpFormat, VIDEO_PAYLOAD_TYPE};
use bytes::Bytes;
use media::{Frame, MediaInfo, TrackKind, VideoCodec};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Which stream and track set a packetizer serves: the code and the address of the
/// `MediaInfo` the hub announced, which stays unique while the packetizer holds it.
type Key = (String, usize);

type Registry = Mutex<HashMap<Key, Weak<StreamPacketizer>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves its data consistent before anything that could
    // panic, so a poisoned lock holds usable data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry of live [`StreamPacketizer`]s, one per stream code and track set.
#[derive(Clone)]
pub struct SharedPacketizers {
    registry: Arc<Registry>,
    max_frames: usize,
    mtu: usize,
}

impl std::fmt::Debug for SharedPacketizers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPacketizers")
            .field("streams", &self.len())
            .field("max_frames", &self.max_frames)
            .finish()
    }
}

impl SharedPacketizers {
    /// A registry whose packetizers keep the newest `max_frames` frames (at least 16) cut into
    /// packets of at most `mtu` payload bytes.
    pub fn new(max_frames: usize, mtu: usize) -> Self {
        SharedPacketizers {
            registry: Arc::default(),
            max_frames: max_frames.max(16),
            mtu,
        }
    }

    /// The packetizer of stream `code` with tracks `info`, created if no reader holds one.
    pub fn get(&self, code: &str, info: &Arc<MediaInfo>) -> Arc<StreamPacketizer> {
        let key: Key = (code.to_owned(), Arc::as_ptr(info) as usize);
        let mut map = lock(&self.registry);
        if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        let p = Arc::new(StreamPacketizer {
            key: key.clone(),
            info: info.clone(),
            mtu: self.mtu,
            max_frames: self.max_frames,
            cache: Mutex::new(VecDeque::new()),
            packetized: AtomicU64::new(0),
            registry: Arc::downgrade(&self.registry),
        });
        map.insert(key, Arc::downgrade(&p));
        p
    }

    /// Streams (track sets) with a live packetizer.
    pub fn len(&self) -> usize {
        lock(&self.registry)
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Whether no packetizer is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Identity of a frame as the hub hands it to every reader: the payload's address is unique
/// while the cache entry keeps the payload alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrameId {
    video: bool,
    dts: i64,
    pts: i64,
    addr: usize,
    len: usize,
}

impl FrameId {
    fn of(frame: &Frame) -> Self {
        FrameId {
            video: frame.track == TrackKind::Video,
            dts: frame.dts,
            pts: frame.pts,
            addr: frame.payload.as_ptr() as usize,
            len: frame.payload.len(),
        }
    }
}

struct Entry {
    id: FrameId,
    /// Keeps the payload's address from being reused while `id` names it.
    _payload: Bytes,
    /// `None`: the frame could not be packetized (malformed, or its codec has no mapping).
    packets: Option<Arc<RtpFrame>>,
}

/// The RTP packets of one stream's track set, made once and shared by its readers.
pub struct StreamPacketizer {
    key: Key,
    info: Arc<MediaInfo>,
    mtu: usize,
    max_frames: usize,
    /// The newest frames packetized, oldest first.
    cache: Mutex<VecDeque<Entry>>,
    packetized: AtomicU64,
    registry: Weak<Registry>,
}

impl StreamPacketizer {
    /// The track set this packetizer serves.
    pub fn info(&self) -> &Arc<MediaInfo> {
        &self.info
    }

    /// Frames packetized so far (each once, however many readers sent it).
    pub fn packetized(&self) -> u64 {
        self.packetized.load(Ordering::Relaxed)
    }

    /// The packets of `frame`: packetized by the first reader to ask, shared after that.
    ///
    /// `None` when the frame cannot be sent: its track has no RTP mapping in this track set,
    /// or the payload is malformed (logged once, by the reader that packetized it).
    pub fn packets(&self, frame: &Frame) -> Option<Arc<RtpFrame>> {
        let id = FrameId::of(frame);
        let mut cache = lock(&self.cache);
        // Readers mostly want the newest frame, so search from the back.
        if let Some(e) = cache.iter().rev().find(|e| e.id == id) {
            return e.packets.clone();
        }
        // Packetizing under the lock makes it happen once; it copies no media, only builds
        // packet heads, so the other readers wait microseconds at most.
        let packets = match self.packetize(frame) {
            Some(Ok(p)) => Some(Arc::new(p)),
            Some(Err(e)) => {
                log_dropped(&e);
                None
            }
            None => None,
        };
        self.packetized.fetch_add(1, Ordering::Relaxed);
        if cache.len() >= self.max_frames {
            cache.pop_front();
        }
        cache.push_back(Entry {
            id,
            _payload: frame.payload.clone(),
            packets: packets.clone(),
        });
        packets
    }

    /// `None` when the frame's track has no RTP mapping in this track set.
    fn packetize(&self, frame: &Frame) -> Option<Result<RtpFrame, RtpError>> {
        let info = &*self.info;
        Some(match frame.track {
            TrackKind::Video => match &info.video {
                Some(VideoCodec::H264(avc)) => {
                    rtp::packetize_h264(frame, avc, VIDEO_PAYLOAD_TYPE, self.mtu)
                }
                Some(VideoCodec::H265(hevc)) => {
                    rtp::packetize_h265(frame, hevc, VIDEO_PAYLOAD_TYPE, self.mtu)
                }
                Some(VideoCodec::Av1(av1)) => {
                    rtp::packetize_av1(frame, av1, VIDEO_PAYLOAD_TYPE, self.mtu)
                }
                _ => return None,
            },
            // The SDP decides which tracks have a mapping (multistream Opus has none).
            TrackKind::Audio => match RtpFormat::audio(info)? {
                RtpFormat::Aac { sample_rate } => {
                    rtp::packetize_aac(frame, sample_rate, AUDIO_PAYLOAD_TYPE, self.mtu)
                }
                RtpFormat::Opus => rtp::packetize_opus(frame, AUDIO_PAYLOAD_TYPE, self.mtu),
                RtpFormat::H264 | RtpFormat::H265 | RtpFormat::Av1 => return None,
            },
        })
    }
}

#[cfg(feature = "server")]
fn log_dropped(e: &RtpError) {
    tracing::debug!(error = %e, "rtsp frame dropped");
}

// The sans-I/O build has no logger; the frame is dropped all the same.
#[cfg(not(feature = "server"))]
fn log_dropped(_: &RtpError) {}

impl Drop for StreamPacketizer {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut map = lock(&registry);
        // A reader may have replaced the dead entry with a new packetizer in the meantime.
        if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
#[path = "share_tests.rs"]
mod tests;
