//! Tokio driver: one segmenter task per published stream, and the store HTTP reads from.

use crate::playlist::MediaPlaylist;
use crate::segmenter::{Segment, Segmenter};
use crate::{EXPIRED_SEGMENTS_KEPT, HlsConfig};
use bytes::Bytes;
use hub::outputs::{Due, Lifecycle, StreamTasks, TaskFn, TaskHandle};
use hub::{Event, Hub};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

pub use hub::outputs::{EnabledFn, ParentFn};

/// How far apart a rendition's segment start and its source's may be and still be the same
/// keyframe: the rendition's timestamps went through milliseconds, and ffmpeg's `overlay`
/// (a watermark) rounds them to the frame grid, up to half a frame. Keyframes are at least
/// half a second apart, so this cannot match the wrong one.
const ALIGN_TOLERANCE: i64 = media::TIMEBASE / 10;
/// Segments of a rendition dropped while waiting for one that starts where a source segment
/// does, before it is numbered on its own.
const ALIGN_TRIES: u32 = 3;

/// What a multivariant playlist says of one variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariantStats {
    /// Peak segment bitrate, bit/s.
    pub peak_bps: u64,
    /// Average bitrate, bit/s.
    pub average_bps: u64,
}

/// Cheap per-stream numbers for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsStreamStats {
    /// `#EXT-X-MEDIA-SEQUENCE` of the current playlist, if any segment exists.
    pub media_sequence: Option<u64>,
    /// Segments held (listed plus recently expired).
    pub segments: usize,
    /// Bytes of segment data held.
    pub bytes: usize,
    /// `#EXT-X-TARGETDURATION` in seconds.
    pub target_duration: u64,
    /// Whether the playlist carries `#EXT-X-ENDLIST`.
    pub ended: bool,
}

struct Entry {
    playlist: MediaPlaylist,
    /// Rendered once per change and shared by every request (a reference count, no copy):
    /// requests outnumber segment updates by far.
    rendered: Option<Bytes>,
    /// Start PTS and date of the segment the dates are counted from (see `push_segment`).
    date_anchor: Option<(i64, i64)>,
}

/// How far media time may drift from the wall clock before dates are taken from the clock
/// again.
const DATE_DRIFT_MS: i64 = 1_000;

struct Inner {
    hub: Hub,
    config: HlsConfig,
    store: Mutex<HashMap<String, Entry>>,
    tasks: StreamTasks,
    parent: std::sync::RwLock<Option<ParentFn>>,
}

/// Lock that tolerates poisoning: every critical section below is a single map update, so a
/// panic elsewhere cannot leave the data half-changed.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// HLS output for every stream of a hub; cheap to clone.
#[derive(Clone)]
pub struct HlsService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HlsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HlsService")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl HlsService {
    /// Creates the service; nothing happens until [`HlsService::run`].
    pub fn new(hub: Hub, config: HlsConfig) -> Self {
        HlsService {
            inner: Arc::new(Inner {
                tasks: StreamTasks::new(hub.clone(), "hls"),
                hub,
                config,
                store: Mutex::new(HashMap::new()),
                parent: std::sync::RwLock::new(None),
            }),
        }
    }

    /// Sets how to tell a rendition's source: a rendition numbers and dates its segments as
    /// its source's, so players switch between them on the same boundaries.
    pub fn set_parent(&self, parent: ParentFn) {
        *self.inner.parent.write().unwrap_or_else(|e| e.into_inner()) = Some(parent);
    }

    /// Bitrates of the segments `code` holds, for a multivariant playlist.
    pub fn variant_stats(&self, code: &str) -> Option<VariantStats> {
        let (peak_bps, average_bps) = lock(&self.inner.store).get(code)?.playlist.bandwidth()?;
        Some(VariantStats {
            peak_bps,
            average_bps,
        })
    }

    /// Ends every playlist now (`EXT-X-ENDLIST`, open segment flushed) without waiting for
    /// `end_grace`: the first step of a graceful shutdown, so players polling during the
    /// drain see a clean end. Playlists stay served until `run`'s shutdown.
    pub fn finish(&self) {
        self.inner.tasks.finish();
    }

    /// Replaces the predicate deciding, at each publish, whether HLS runs for a code.
    pub fn set_enabled(&self, enabled: EnabledFn) {
        self.inner.tasks.set_enabled(enabled);
    }

    fn task(&self) -> TaskFn {
        let inner = self.inner.clone();
        Arc::new(move |code, handle| Box::pin(stream_task(inner.clone(), code, handle)))
    }

    /// Starts a task per published stream until `shutdown`, then waits for all of them.
    pub async fn run(self, shutdown: CancellationToken) {
        self.inner.tasks.run(self.task(), shutdown).await;
    }

    /// Stops HLS for `code` now and forgets its playlist (requests get 404), e.g. when the
    /// stream's HLS output is switched off or the stream is deleted.
    pub fn stop(&self, code: &str) {
        self.inner.tasks.stop(code);
        lock(&self.inner.store).remove(code);
    }

    /// Starts HLS for `code` if it is live, enabled and not running (after a switch-on).
    pub fn refresh(&self, code: &str) {
        self.inner.tasks.refresh(&self.task(), code);
    }

    /// The playlist of `code`; `None` if unknown or no segment is complete yet.
    pub fn playlist(&self, code: &str) -> Option<Bytes> {
        lock(&self.inner.store).get(code)?.rendered.clone()
    }

    /// Segment `seq` of `code`; `None` if unknown or expired.
    pub fn segment(&self, code: &str, seq: u64) -> Option<Bytes> {
        lock(&self.inner.store).get(code)?.playlist.segment(seq)
    }

    /// Stats of `code`, if it has an HLS entry.
    pub fn stats(&self, code: &str) -> Option<HlsStreamStats> {
        let store = lock(&self.inner.store);
        let p = &store.get(code)?.playlist;
        Some(HlsStreamStats {
            media_sequence: p.media_sequence(),
            segments: p.len(),
            bytes: p.bytes(),
            target_duration: p.target_duration(),
            ended: p.is_ended(),
        })
    }

    /// Codes that currently have an HLS entry, sorted.
    pub fn codes(&self) -> Vec<String> {
        let mut codes: Vec<String> = lock(&self.inner.store).keys().cloned().collect();
        codes.sort();
        codes
    }
}

impl Inner {
    fn new_entry(&self) -> Entry {
        Entry {
            playlist: MediaPlaylist::new(self.config.window, EXPIRED_SEGMENTS_KEPT)
                .with_target(self.config.segment_duration),
            rendered: None,
            date_anchor: None,
        }
    }

    fn parent_of(&self, code: &str) -> Option<String> {
        let f = self
            .parent
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        f(code)
    }

    /// The source's segment starting where `segment` does: its number and date.
    fn source_match(&self, parent: &str, segment: &Segment) -> Option<(u64, Option<i64>)> {
        lock(&self.store)
            .get(parent)?
            .playlist
            .find_start(segment.start_pts, ALIGN_TOLERANCE)
    }

    fn push_segment(&self, code: &str, mut segment: Segment) {
        // The segment is complete when the frame after it arrives, live: by the clock it
        // began its duration ago.
        let now = media::unix_ms_now();
        let took = i64::try_from(segment.duration.as_millis()).unwrap_or(0);
        let clock = now - took;
        let mut store = lock(&self.store);
        let entry = store
            .entry(code.to_owned())
            .or_insert_with(|| self.new_entry());
        match segment.program_ms {
            // A rendition's, given by its source's.
            Some(ms) => entry.date_anchor = Some((segment.start_pts, ms)),
            None => {
                // Dates follow media time from an anchor, so they do not jitter with the
                // moment each segment happened to be finished and a rendition finished later
                // gets the same ones; the clock is taken again after a discontinuity or if
                // media time drifted from it.
                let by_media = entry
                    .date_anchor
                    .filter(|_| !segment.discontinuity)
                    .map(|(pts, ms)| {
                        ms.saturating_add(media::ticks_to_ms(segment.start_pts.saturating_sub(pts)))
                    })
                    .filter(|ms| ms.abs_diff(clock) <= DATE_DRIFT_MS.unsigned_abs());
                segment.program_ms = Some(by_media.unwrap_or(clock));
                if by_media.is_none() {
                    entry.date_anchor = Some((segment.start_pts, clock));
                }
            }
        }
        entry.playlist.push(segment);
        entry.rendered = entry.playlist.render().map(Bytes::from);
    }

    fn end(&self, code: &str) {
        if let Some(entry) = lock(&self.store).get_mut(code) {
            entry.playlist.end();
            entry.rendered = entry.playlist.render().map(Bytes::from);
        }
    }

    fn has_publisher(&self, code: &str) -> bool {
        self.hub.stats(code).is_some_and(|s| s.publisher.is_some())
    }
}

/// Where a new playlist's media sequence starts.
///
/// A stream that comes back after its entry was removed must not reuse segment URIs a cache
/// may still hold, so numbering starts from the wall clock in tenths of a second: segments
/// last at least 0.1 s (config minimum), so no earlier playlist of this code can have got this
/// far. The clock is taken modulo 2^30 (3.4 years) because GStreamer's m3u8 parser, and other
/// players', read EXT-X-MEDIA-SEQUENCE as a signed 32-bit integer: raw Unix tenths (~1.8e10)
/// overflow it and hlsdemux loses its place at every playlist refresh. A playlist then has
/// 2^30 more segments before it reaches 2^31; the only reuse is across a wrap, 3.4 years
/// apart, far beyond any cache lifetime.
fn first_sequence(now: std::time::SystemTime) -> u64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() / 100) as u64 % (1 << 30))
        .unwrap_or(0)
}

async fn stream_task(inner: Arc<Inner>, code: String, handle: TaskHandle) {
    let inner = &*inner;
    let code = code.as_str();
    let shutdown = handle.stop.clone();
    let config = &inner.config;
    let mut sub = inner.hub.subscribe(code, "hls");
    let first_seq = first_sequence(std::time::SystemTime::now());
    let mut segmenter =
        Segmenter::new(config.segment_duration, config.max_segment_bytes).starting_at(first_seq);
    let mut life = Lifecycle::new(inner.has_publisher(code), config.end_grace, config.linger);
    let mut warned_skipped = false;
    let mut finished = false;
    let mut align = inner.parent_of(code).map(Align::new);
    tracing::debug!(stream = code, "hls: stream task started");
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Ended for shutdown, ENDLIST is final: only the shutdown is awaited after this.
            _ = handle.finish.cancelled(), if !finished => {
                finished = true;
                if let Some(s) = segmenter.flush() {
                    inner.push_segment(code, s);
                }
                inner.end(code);
                tracing::debug!(stream = code, "hls: playlist ended for shutdown");
            }
            _ = sleep_until(life.deadline()), if !finished => {
                let now = Instant::now();
                match life.on_deadline(now, inner.has_publisher(code)) {
                    Due::Nothing => {}
                    Due::Flush => {
                        if let Some(s) = segmenter.flush() {
                            inner.push_segment(code, s);
                        }
                    },
                    Due::End => {
                        inner.end(code);
                        tracing::debug!(stream = code, "hls: publisher gone; playlist ended");
                    }
                    Due::Retire => {
                        // Decided under the registry lock: a publish handled by `run` at the
                        // same moment either sees this task or starts a new one.
                        let done = handle.retire_unless(
                            || inner.has_publisher(code),
                            || {
                                lock(&inner.store).remove(code);
                            },
                        );
                        if done {
                            break;
                        }
                        life.keep(now);
                    }
                }
            }
            ev = sub.recv(), if !finished => {
                let Some(ev) = ev else { break };
                if life.on_event(&ev, Instant::now()) {
                    // ENDLIST is final (RFC 8216 6.2.1): a comeback gets a fresh playlist;
                    // sequence numbers continue so cached URIs never change meaning.
                    lock(&inner.store).insert(code.to_owned(), inner.new_entry());
                }
                let is_tracks = matches!(ev, Event::Tracks { .. });
                if let Some(mut segment) = segmenter.push(ev) {
                    let keep = match align.as_mut() {
                        Some(a) => a.place(inner, &mut segment, &mut segmenter),
                        None => true,
                    };
                    // A stop() may have removed the entry meanwhile; do not bring it back.
                    if keep && !shutdown.is_cancelled() {
                        inner.push_segment(code, segment);
                    }
                }
                if is_tracks && !segmenter.skipped_tracks().is_empty() && !warned_skipped {
                    warned_skipped = true;
                    tracing::warn!(
                        stream = code,
                        skipped = ?segmenter.skipped_tracks(),
                        "hls: tracks with unsupported codecs are left out"
                    );
                }
            }
        }
    }
    tracing::debug!(stream = code, "hls: stream task stopped");
}

/// A rendition's segments numbered and dated as its source's.
struct Align {
    parent: String,
    /// A segment matched its source's: numbering continues from there.
    matched: bool,
    tries: u32,
}

impl Align {
    fn new(parent: String) -> Self {
        Align {
            parent,
            matched: false,
            tries: 0,
        }
    }

    /// Numbers and dates `segment`; false if it is dropped while the first match is sought.
    fn place(&mut self, inner: &Inner, segment: &mut Segment, segmenter: &mut Segmenter) -> bool {
        let twin = inner.source_match(&self.parent, segment);
        // The source's own date when its twin is held; otherwise `push_segment` counts from
        // the last one on media time, as it does for the source.
        segment.program_ms = twin.and_then(|(_, ms)| ms);
        if self.matched || self.tries >= ALIGN_TRIES {
            return true;
        }
        match twin {
            Some((seq, _)) => {
                segment.seq = seq;
                segmenter.continue_after(seq);
                self.matched = true;
                true
            }
            None => {
                self.tries += 1;
                if self.tries >= ALIGN_TRIES {
                    tracing::info!(parent = %self.parent, "hls: rendition segments do not line up with the source's; numbered on their own");
                }
                // Numbered on its own from here on if this was the last try.
                self.tries >= ALIGN_TRIES
            }
        }
    }
}

#[cfg(test)]
mod sequence_tests {
    use super::first_sequence;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn first_sequence_fits_a_signed_32_bit_parser_for_decades() {
        for year_secs in (0..130).map(|y| y * 31_557_600u64) {
            let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000 + year_secs);
            let seq = first_sequence(t);
            // With 2^30 segments of room before i32::MAX.
            assert!(seq < 1 << 30, "{seq}");
        }
        // Still tenths of a second apart between two starts (away from a wrap).
        let t = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        assert_eq!(
            first_sequence(t + Duration::from_secs(7)) - first_sequence(t),
            70
        );
    }
}
