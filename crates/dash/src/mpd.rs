//! The dynamic MPD (ISO/IEC 23009-1, DASH-IF IOP live profile) over a sliding window of
//! segments, and the in-memory store of those segments.

use crate::segmenter::{MediaSegment, PeriodInfo};
use bytes::Bytes;
use media::TrackKind;
pub use media::iso8601;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

/// Path of the clock endpoint the MPD's `UTCTiming` points at (DASH-IF IOP 4.7).
pub const UTC_TIMING_PATH: &str = "/time";

/// Which player asks for the MPD, for the few interop quirks that cannot be expressed in one
/// document every player reads the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MpdClient {
    /// dash.js, Shaka Player, ffmpeg and anything else: the plain sliding window.
    #[default]
    Generic,
    /// GStreamer's `dashdemux` (legacy and `dashdemux2`, 1.21.2 and later). Its live seek
    /// (`gst_mpd_client_stream_seek`, commit 8a9821e8 "Fix computing repeat_index when seeking
    /// in stream with a start != 0 on the first fragment") computes the segment at the join
    /// time `ts` as `(ts - S.start + first_S.start) / S.d`: with a sliding window whose first
    /// `S` starts at presentation time `T`, it picks the segment `T` seconds in the future and
    /// waits that long (minutes, growing with the stream's age) before it downloads anything.
    /// The formula is right only when the timeline starts at the period start, so for it
    /// the timeline opens with one `S` covering everything before the window (segments outside
    /// the time-shift buffer are never requested, ISO/IEC 23009-1 5.3.9.6), and the
    /// `suggestedPresentationDelay` it seeks back by is kept inside the listed window.
    /// Not for other players: dash.js and Shaka Player take that long `S` for a real segment
    /// (Shaka's live edge moves back by its duration; both request it).
    GStreamer,
    /// A low-latency player (dash.js, Shaka Player's `lowLatencyMode`) reading `index-ll.mpd`,
    /// chosen by the URL rather than the `User-Agent`: the segment being written is listed
    /// (with the previous segment's duration as its expected one) as soon as its first part
    /// exists, `availabilityTimeOffset` makes it available from then, and its request is
    /// answered with chunked transfer, each part sent as it is cut (DASH-IF low-latency
    /// modes for DASH). A `ServiceDescription` gives the latency to aim for.
    LowLatency,
}

impl MpdClient {
    /// The client a `User-Agent` header names (GStreamer's `souphttpsrc` sends
    /// `GStreamer souphttpsrc <version> libsoup/<version>`).
    pub fn from_user_agent(user_agent: Option<&str>) -> Self {
        match user_agent {
            Some(ua) if ua.contains("GStreamer") => MpdClient::GStreamer,
            _ => MpdClient::Generic,
        }
    }
}

/// The clock a player synchronises to (DASH-IF IOP 4.7.2), filled in per request: the URL
/// must be absolute for the request's host, and the direct value is the time of the answer.
#[derive(Clone, Copy, Debug)]
pub struct MpdClock<'a> {
    /// `urn:mpeg:dash:utc:http-iso:2014` URL, e.g. `https://example.com/time`.
    pub time_url: &'a str,
    /// Server wall clock (Unix ms) for `urn:mpeg:dash:utc:direct:2014`.
    pub now_ms: i64,
}

/// Appends the `UTCTiming` elements and closes the MPD started by [`Manifest::render_body`].
///
/// The HTTP clock comes first (players measure its round trip), the inline server time
/// second as the fallback for players that cannot reach or parse the first: ISO/IEC
/// 23009-1 5.8.4.11 lets an MPD list several, in the order of the publisher's preference;
/// dash.js and Shaka Player try them in order, GStreamer takes the first it supports (it has
/// no direct scheme).
pub fn finish_mpd(body: &str, clock: &MpdClock<'_>) -> String {
    // One allocation per request: the body is shared, only this tail differs.
    let mut out = String::with_capacity(body.len() + 192 + clock.time_url.len() * 2);
    out.push_str(body);
    out.push_str(CLOCK_TAIL);
    out.push_str("\" value=\"");
    push_xml_escaped(&mut out, clock.time_url);
    out.push_str("\"/>\n  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"");
    media::write_iso8601(&mut out, clock.now_ms);
    out.push_str("\"/>\n</MPD>\n");
    out
}

/// Where the per-request tail [`finish_mpd`] appends begins.
const CLOCK_TAIL: &str = "  <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-iso:2014";

/// The body of an MPD [`finish_mpd`] wrote, without its per-request clock tail: another
/// node's MPD, to finish again for this node's player. `None` if `mpd` has no such tail.
pub fn mpd_body(mpd: &str) -> Option<&str> {
    mpd.rfind(CLOCK_TAIL).map(|at| &mpd[..at])
}

/// Appends `s` with the XML attribute metacharacters escaped (the URL is built from validated
/// headers, so this is a second line of defence).
fn push_xml_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

/// MPD timing settings.
#[derive(Clone, Debug)]
pub struct MpdTiming {
    /// `minimumUpdatePeriod`.
    pub minimum_update_period: Duration,
    /// `suggestedPresentationDelay`.
    pub suggested_presentation_delay: Duration,
    /// `minBufferTime`.
    pub min_buffer_time: Duration,
    /// Part (CMAF chunk) length; the low-latency MPD exists only with parts.
    pub part_duration: Option<Duration>,
}

/// Target latency of the low-latency MPD's `ServiceDescription`: six parts (1.5 s with the
/// default 250 ms), at least a second. dash.js reloads the MPD at most once a second, and the
/// segment being written is listed only from its first part on, so about a second is as low
/// as a player reading a `SegmentTimeline` can go without stalling.
pub fn low_latency_target(part: Duration) -> Duration {
    (part * 6).max(Duration::from_secs(1))
}

#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) period: u64,
    pub(crate) time: u64,
    pub(crate) duration: u64,
    /// The segment's pieces ([`crate::MediaSegment::data`]) as one buffer ([`join`]).
    pub(crate) data: Bytes,
}

/// Bytes in a segment's pieces.
pub(crate) fn pieces_len<'a>(pieces: impl IntoIterator<Item = &'a Bytes>) -> usize {
    pieces.into_iter().map(Bytes::len).sum()
}

/// A segment's pieces as one buffer (copied once; a single piece is not copied).
pub(crate) fn join(pieces: &[Bytes]) -> Bytes {
    match pieces {
        [one] => one.clone(),
        _ => Bytes::from(pieces.concat()),
    }
}

/// A part of a recent or open segment (LL-HLS).
#[derive(Debug)]
pub(crate) struct StoredPart {
    pub(crate) period: u64,
    /// `time` of its segment.
    pub(crate) segment: u64,
    pub(crate) index: u32,
    pub(crate) duration: u64,
    pub(crate) independent: bool,
    /// Its chunks.
    pub(crate) data: Vec<Bytes>,
}

/// The chunks so far of the part being written on a track.
#[derive(Debug)]
pub(crate) struct OpenPart {
    pub(crate) period: u64,
    /// `time` of its segment.
    pub(crate) segment: u64,
    pub(crate) index: u32,
    pub(crate) chunks: Vec<Bytes>,
}

/// Finished segments per track whose parts stay listed and fetchable (RFC 8216bis 4.4.4.9:
/// parts older than three target durations are removed from the playlist).
const PART_SEGMENTS_KEPT: usize = 3;

#[derive(Debug)]
pub(crate) struct Period {
    pub(crate) info: Arc<PeriodInfo>,
    /// Highest observed bit rate per track (video, audio), for `@bandwidth`.
    pub(crate) bandwidth: [u64; 2],
}

/// Sliding-window live manifest plus a few expired segments still fetchable.
#[derive(Debug)]
pub struct Manifest {
    window: usize,
    keep_expired: usize,
    pub(crate) periods: VecDeque<Period>,
    /// Per track (video, audio), oldest first; the last `window` are listed.
    pub(crate) segments: [VecDeque<Stored>; 2],
    /// Media sequence number of `segments[t][0]`.
    pub(crate) first_seq: [u64; 2],
    /// Discontinuity sequence of `segments[t][0]` (period changes dropped before it).
    pub(crate) first_disc: [u64; 2],
    /// Parts of the open segment and of the last few finished ones, per track, in order.
    pub(crate) parts: [VecDeque<StoredPart>; 2],
    /// The part being written, per track, from its first chunk until it is a part.
    pub(crate) open: [Option<OpenPart>; 2],
    /// Wall clock (Unix ms) of media time 0; fixed by the first segment.
    pub(crate) availability_start_ms: Option<i64>,
    /// Wall clock of the last change.
    publish_ms: i64,
    pub(crate) ended: bool,
}

pub(crate) fn index(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

/// `xs:duration` with microsecond precision: `PT12.345678S`.
fn xs_duration_us(us: u64) -> String {
    format!("PT{}S", seconds_us(us))
}

/// Seconds as an `xs:double` with microsecond precision: `1.75`.
fn seconds_us(us: u64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        s.to_string()
    } else {
        let f = format!("{frac:06}");
        format!("{s}.{}", f.trim_end_matches('0'))
    }
}

fn xs_duration(d: Duration) -> String {
    xs_duration_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Track ticks to microseconds.
pub(crate) fn ticks_us(ticks: u64, timescale: u32) -> u64 {
    let us = u128::from(ticks) * 1_000_000 / u128::from(timescale.max(1));
    u64::try_from(us).unwrap_or(u64::MAX)
}

/// The `<S>` entries of `segments`, continuing from `next_t` (see
/// [`fmp4::write_segment_timeline`]).
fn write_timeline<'a>(
    segments: impl Iterator<Item = &'a Stored>,
    next_t: Option<u64>,
    out: &mut String,
) {
    fmp4::write_segment_timeline(
        out,
        "          ",
        segments.map(|s| (s.time, s.duration)),
        next_t,
    );
}

/// `frameRate` as DASH wants it: an integer or `N/1001`.
pub(crate) fn frame_rate(fps: f64) -> String {
    let ntsc = fps * 1001.0;
    if (fps - fps.round()).abs() < 0.001 {
        format!("{}", fps.round() as u64)
    } else if (ntsc - ntsc.round()).abs() < 1.0 && (ntsc.round() as u64).is_multiple_of(1000) {
        format!("{}/1001", ntsc.round() as u64)
    } else {
        format!("{}/1000", (fps * 1000.0).round() as u64)
    }
}

impl Manifest {
    /// Creates an empty manifest listing `window` segments per track and keeping
    /// `keep_expired` more fetchable.
    pub fn new(window: usize, keep_expired: usize) -> Self {
        Manifest {
            window: window.max(1),
            keep_expired,
            periods: VecDeque::new(),
            segments: [VecDeque::new(), VecDeque::new()],
            first_seq: [0; 2],
            first_disc: [0; 2],
            parts: [VecDeque::new(), VecDeque::new()],
            open: [None, None],
            availability_start_ms: None,
            publish_ms: 0,
            ended: false,
        }
    }

    /// Starts a period; segments pushed afterwards with its id belong to it.
    pub fn start_period(&mut self, info: Arc<PeriodInfo>, now_ms: i64) {
        self.ended = false;
        self.publish_ms = now_ms;
        self.periods.push_back(Period {
            info,
            bandwidth: [0; 2],
        });
    }

    /// Adds a finished segment at wall-clock `now_ms` and slides the window.
    pub fn push(&mut self, seg: MediaSegment, now_ms: i64) {
        let whole = join(&seg.data);
        self.push_whole(seg, whole, now_ms);
    }

    /// [`Manifest::push`] with the segment's pieces already [`join`]ed into `whole` (by a
    /// caller that copies them before it takes a lock). The segment is kept and served as that
    /// one buffer: a video segment is a chunk per frame, and writing 60 pieces per request cost
    /// DASH more than nginx's one file. Its parts still listed are re-pointed into `whole`, so
    /// the chunks' memory is not held twice.
    pub(crate) fn push_whole(&mut self, seg: MediaSegment, whole: Bytes, now_ms: i64) {
        let ti = index(seg.track);
        self.share_parts(ti, &seg, &whole);
        // Chunks of a last part that failed to encode whole are in the segment already.
        if self.open[ti]
            .as_ref()
            .is_some_and(|o| (o.period, o.segment) == (seg.period, seg.time))
        {
            self.open[ti] = None;
        }
        let Some(period) = self.periods.iter_mut().find(|p| p.info.id == seg.period) else {
            return;
        };
        let timescale = match seg.track {
            TrackKind::Video => period.info.video.as_ref(),
            TrackKind::Audio => period.info.audio.as_ref(),
        }
        .map_or(1, |t| t.timescale);
        let us = ticks_us(seg.duration, timescale).max(1);
        let bps = (pieces_len(&seg.data) as u64).saturating_mul(8_000_000) / us;
        period.bandwidth[ti] = period.bandwidth[ti].max(bps);
        if self.availability_start_ms.is_none() {
            // Media time 0 is "now minus the media time this segment ends at": the segment
            // was completed by a frame that arrived live, so the wall clock and the media
            // timeline agree from here on (DASH-IF IOP 4.3.2.2).
            let end_us = ticks_us(seg.time.saturating_add(seg.duration), timescale);
            self.availability_start_ms =
                Some(now_ms - i64::try_from(end_us / 1000).unwrap_or(i64::MAX));
        }
        self.publish_ms = now_ms;
        let list = &mut self.segments[ti];
        list.push_back(Stored {
            period: seg.period,
            time: seg.time,
            duration: seg.duration,
            data: whole,
        });
        while list.len() > self.window + self.keep_expired {
            if let Some(gone) = list.pop_front() {
                self.first_seq[ti] += 1;
                if list.front().is_some_and(|next| next.period != gone.period) {
                    self.first_disc[ti] += 1;
                }
            }
        }
        // Parts of segments older than the last few finished ones go.
        let keep_from = list
            .iter()
            .rev()
            .nth(PART_SEGMENTS_KEPT - 1)
            .map(|s| (s.period, s.time));
        if let Some((period, time)) = keep_from {
            let parts = &mut self.parts[ti];
            while parts
                .front()
                .is_some_and(|p| (p.period, p.segment) < (period, time))
            {
                parts.pop_front();
            }
        }
        // Forget periods no stored segment refers to any more (never the newest).
        while self.periods.len() > 1 {
            let id = self.periods[0].info.id;
            if self.segments.iter().flatten().any(|s| s.period == id) {
                break;
            }
            self.periods.pop_front();
        }
    }

    /// Makes each stored part of `seg` a slice of `whole`, where its chunks are a run of the
    /// segment's pieces (they are: the segment is made of its parts' very buffers); a part
    /// that is not keeps its own chunks.
    fn share_parts(&mut self, ti: usize, seg: &MediaSegment, whole: &Bytes) {
        let mut starts = Vec::with_capacity(seg.data.len());
        let mut at = 0;
        for piece in &seg.data {
            starts.push(at);
            at += piece.len();
        }
        let same = |a: &Bytes, b: &Bytes| a.as_ptr() == b.as_ptr() && a.len() == b.len();
        for part in self.parts[ti]
            .iter_mut()
            .filter(|p| (p.period, p.segment) == (seg.period, seg.time))
        {
            let Some(first) = part.data.first() else {
                continue;
            };
            let Some(i) = seg.data.iter().position(|piece| same(piece, first)) else {
                continue;
            };
            let run = seg.data.get(i..i + part.data.len());
            if run.is_some_and(|run| run.iter().zip(&part.data).all(|(a, b)| same(a, b))) {
                let len = pieces_len(&part.data);
                part.data = vec![whole.slice(starts[i]..starts[i] + len)];
            }
        }
    }

    /// Adds a chunk of the part being written.
    pub fn push_chunk(&mut self, chunk: crate::MediaChunk) {
        let open = &mut self.open[index(chunk.track)];
        match open {
            Some(o)
                if (o.period, o.segment, o.index) == (chunk.period, chunk.segment, chunk.part) =>
            {
                o.chunks.push(chunk.data);
            }
            _ => {
                *open = Some(OpenPart {
                    period: chunk.period,
                    segment: chunk.segment,
                    index: chunk.part,
                    chunks: vec![chunk.data],
                });
            }
        }
    }

    /// The chunks so far of part `part` of `track` while it is being written.
    pub(crate) fn open_chunks(
        &self,
        track: TrackKind,
        period: u64,
        segment: u64,
        part: u32,
    ) -> Option<&[Bytes]> {
        self.open[index(track)]
            .as_ref()
            .filter(|o| (o.period, o.segment, o.index) == (period, segment, part))
            .map(|o| o.chunks.as_slice())
    }

    /// Every chunk so far of the open segment of `track` starting at `time` in `period`:
    /// its finished parts', then the part being written's.
    pub(crate) fn segment_chunks(
        &self,
        track: TrackKind,
        period: u64,
        time: u64,
    ) -> impl Iterator<Item = &Bytes> {
        let open = self.open[index(track)]
            .as_ref()
            .filter(move |o| (o.period, o.segment) == (period, time));
        self.parts_of(track, period, time)
            .flat_map(|p| p.data.iter())
            .chain(open.into_iter().flat_map(|o| o.chunks.iter()))
    }

    /// Adds a part of a segment still being written.
    pub fn push_part(&mut self, part: crate::MediaPart, now_ms: i64) {
        self.publish_ms = now_ms;
        let open = &mut self.open[index(part.track)];
        if open.as_ref().is_some_and(|o| {
            (o.period, o.segment, o.index) == (part.period, part.segment, part.index)
        }) {
            *open = None;
        }
        self.parts[index(part.track)].push_back(StoredPart {
            period: part.period,
            segment: part.segment,
            index: part.index,
            duration: part.duration,
            independent: part.independent,
            data: part.data,
        });
    }

    fn stored(&self, track: TrackKind, period: u64, time: u64) -> Option<&Stored> {
        self.segments[index(track)]
            .iter()
            .find(|s| s.period == period && s.time == time)
    }

    fn stored_part(
        &self,
        track: TrackKind,
        period: u64,
        segment: u64,
        part: u32,
    ) -> Option<&StoredPart> {
        self.parts[index(track)]
            .iter()
            .find(|p| p.period == period && p.segment == segment && p.index == part)
    }

    /// Whether the segment of `track` starting at `time` in `period` is finished and held.
    pub(crate) fn has_segment(&self, track: TrackKind, period: u64, time: u64) -> bool {
        self.stored(track, period, time).is_some()
    }

    /// Whether that part is finished and held.
    pub(crate) fn has_part(&self, track: TrackKind, period: u64, segment: u64, part: u32) -> bool {
        self.stored_part(track, period, segment, part).is_some()
    }

    /// A finished part of a recent or open segment, as its chunks.
    pub fn part(
        &self,
        track: TrackKind,
        period: u64,
        segment: u64,
        part: u32,
    ) -> Option<Vec<Bytes>> {
        self.stored_part(track, period, segment, part)
            .map(|p| p.data.clone())
    }

    /// Marks the presentation finished: `mediaPresentationDuration`, no more updates.
    pub fn end(&mut self, now_ms: i64) {
        if !self.ended {
            self.ended = true;
            self.publish_ms = now_ms;
        }
    }

    /// Whether [`Manifest::end`] was called since the last period started.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Segments held, all tracks (listed and expired).
    pub fn len(&self) -> usize {
        self.segments.iter().map(VecDeque::len).sum()
    }

    /// Whether no segment exists yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of segment data held.
    pub fn bytes(&self) -> usize {
        // A finished segment's parts are its own buffers: only the open ones add.
        let open: usize = (0..2)
            .flat_map(|ti| self.open_parts(ti))
            .map(|p| pieces_len(&p.data))
            .sum::<usize>()
            + self
                .open
                .iter()
                .flatten()
                .map(|o| pieces_len(&o.chunks))
                .sum::<usize>();
        self.segments
            .iter()
            .flatten()
            .map(|s| s.data.len())
            .sum::<usize>()
            + open
    }

    /// The init segment of `track` in `period`.
    pub fn init(&self, track: TrackKind, period: u64) -> Option<Bytes> {
        let p = self.periods.iter().find(|p| p.info.id == period)?;
        match track {
            TrackKind::Video => p.info.video.as_ref(),
            TrackKind::Audio => p.info.audio.as_ref(),
        }
        .map(|t| t.init.clone())
    }

    /// A listed or recently expired segment, as its pieces (refcounted, not copied).
    pub fn segment(&self, track: TrackKind, period: u64, time: u64) -> Option<Vec<Bytes>> {
        self.stored(track, period, time)
            .map(|s| vec![s.data.clone()])
    }

    pub(crate) fn listed(&self, ti: usize) -> impl Iterator<Item = &Stored> {
        let list = &self.segments[ti];
        list.iter().skip(list.len().saturating_sub(self.window))
    }

    pub(crate) fn timescale(&self, ti: usize, period: u64) -> u32 {
        self.periods
            .iter()
            .find(|p| p.info.id == period)
            .and_then(|p| {
                if ti == 0 {
                    p.info.video.as_ref()
                } else {
                    p.info.audio.as_ref()
                }
            })
            .map_or(1, |t| t.timescale)
    }

    /// Start and end (µs on the output timeline) of the listed segments of the main track.
    fn listed_span_us(&self) -> Option<(u64, u64)> {
        let ti = if self.segments[0].is_empty() { 1 } else { 0 };
        let first = self.listed(ti).next()?;
        let last = self.listed(ti).last()?;
        Some((
            ticks_us(first.time, self.timescale(ti, first.period)),
            ticks_us(last.time + last.duration, self.timescale(ti, last.period)),
        ))
    }

    /// The video of this stream's current period as one `Representation` of another
    /// stream's MPD (a rendition in its source's): its own `SegmentTemplate` under
    /// `prefix` (the rendition's directory relative to the source's), on the source's
    /// timeline, so the source's `presentationTimeOffset` applies. `None` without segments.
    pub fn video_representation(&self, id: &str, prefix: &str, pto: u64) -> Option<String> {
        let p = self.periods.back()?;
        let desc = p.info.video.as_ref()?;
        let listed = self.listed(0).filter(|s| s.period == p.info.id);
        let mut out = String::with_capacity(512 + self.window * 40);
        let _ = write!(
            out,
            "      <Representation id=\"{id}\" codecs=\"{}\" width=\"{}\" height=\"{}\" \
             sar=\"1:1\" bandwidth=\"{}\"",
            desc.codecs,
            desc.width,
            desc.height,
            p.bandwidth[0].max(1)
        );
        if let Some(fps) = desc.frame_rate {
            let _ = write!(out, " frameRate=\"{}\"", frame_rate(fps));
        }
        let _ = write!(
            out,
            ">\n        <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{pto}\" \
             initialization=\"{prefix}init-v-{pid}.mp4\" media=\"{prefix}v-{pid}-$Time$.m4s\">\n\
             \x20         <SegmentTimeline>\n",
            desc.timescale,
            pid = p.info.id,
        );
        let before = out.len();
        write_timeline(listed, None, &mut out);
        if out.len() == before {
            return None;
        }
        out.push_str(
            "          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n",
        );
        Some(out)
    }

    /// `presentationTimeOffset` of the current period's video, in its timescale.
    pub fn video_pto(&self) -> Option<u64> {
        let p = self.periods.back()?;
        let desc = p.info.video.as_ref()?;
        let start = u128::from(u64::try_from(p.info.start).unwrap_or(0));
        u64::try_from(start * u128::from(desc.timescale) / 90_000).ok()
    }

    /// Whether the current period has a video segment, audio, and no audio segment yet: an
    /// MPD then would list no audio segment, and a player that reads it (ffmpeg) asks for
    /// audio at time 0 and retries that 404 for ever.
    pub fn awaits_first_audio(&self) -> bool {
        self.periods
            .back()
            .is_some_and(|p| p.info.audio.is_some() && p.info.video.is_some())
            && !self.segments[0].is_empty()
            && self.segments[1].is_empty()
    }

    /// The whole MPD for `client` with `clock`; `None` until the first segment exists.
    pub fn render(
        &self,
        timing: &MpdTiming,
        client: MpdClient,
        clock: &MpdClock<'_>,
    ) -> Option<String> {
        Some(finish_mpd(&self.render_body(timing, client)?, clock))
    }

    /// The MPD for `client` up to its `UTCTiming` elements, which [`finish_mpd`] adds per
    /// request; `None` until the first segment exists.
    pub fn render_body(&self, timing: &MpdTiming, client: MpdClient) -> Option<String> {
        let ast = self.availability_start_ms?;
        let low_latency = match (client, timing.part_duration) {
            (MpdClient::LowLatency, Some(part)) => Some(part),
            (MpdClient::LowLatency, None) => return None,
            _ => None,
        };
        let (span_start, span_end) = self.listed_span_us()?;
        let max_segment_us = (0..2)
            .flat_map(|ti| {
                self.listed(ti)
                    .map(move |s| ticks_us(s.duration, self.timescale(ti, s.period)))
            })
            .max()
            .unwrap_or(0);
        let mut out = String::with_capacity(2048 + self.window * 80);
        // Writing to a String cannot fail, so the fmt::Results below are ignored.
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" \
             profiles=\"urn:mpeg:dash:profile:isoff-live:2011{}\" type=\"dynamic\" \
             availabilityStartTime=\"{}\" publishTime=\"{}\"",
            if low_latency.is_some() {
                ",http://www.dashif.org/guidelines/low-latency-live-v5"
            } else {
                ""
            },
            iso8601(ast),
            iso8601(self.publish_ms),
        );
        if self.ended {
            let _ = write!(
                out,
                " mediaPresentationDuration=\"{}\"",
                xs_duration_us(span_end)
            );
        } else {
            // A low-latency player must hear of each new segment within about a second of its
            // start (dash.js reloads at most once a second anyway).
            let period = match low_latency {
                Some(_) => timing.minimum_update_period.min(Duration::from_secs(1)),
                None => timing.minimum_update_period,
            };
            let _ = write!(out, " minimumUpdatePeriod=\"{}\"", xs_duration(period));
        }
        let depth_us = span_end.saturating_sub(span_start);
        let delay = match low_latency {
            Some(part) => low_latency_target(part),
            None => timing.suggested_presentation_delay,
        };
        let mut delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        if client == MpdClient::GStreamer {
            // dashdemux joins at `now - suggestedPresentationDelay` and needs a listed segment
            // there (see MpdClient::GStreamer); the newest segment may end up to a segment
            // duration before now.
            delay_us = delay_us.min(depth_us.saturating_sub(max_segment_us));
        }
        let _ = writeln!(
            out,
            " timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" \
             maxSegmentDuration=\"{}\" minBufferTime=\"{}\">",
            xs_duration_us(depth_us),
            xs_duration_us(delay_us),
            xs_duration_us(max_segment_us.div_ceil(1000) * 1000),
            xs_duration(timing.min_buffer_time),
        );
        if let Some(part) = low_latency {
            let target = low_latency_target(part).as_millis();
            let _ = writeln!(
                out,
                "  <ServiceDescription id=\"0\">\n\
                 \x20   <Latency target=\"{target}\" min=\"{}\" max=\"{}\"/>\n\
                 \x20   <PlaybackRate min=\"0.92\" max=\"1.08\"/>\n\
                 \x20 </ServiceDescription>",
                target / 2,
                target * 2
            );
        }
        let shown: Vec<&Period> = self
            .periods
            .iter()
            .enumerate()
            .filter(|(i, p)| {
                *i + 1 == self.periods.len()
                    || (0..2).any(|ti| self.listed(ti).any(|s| s.period == p.info.id))
            })
            .map(|(_, p)| p)
            .collect();
        for p in shown {
            self.render_period(p, client, low_latency, &mut out);
        }
        Some(out)
    }

    /// The segment of `ti` being written in `period`, for the low-latency MPD: its start and
    /// expected duration (the previous segment's, or `part` past what it already holds when it
    /// runs longer), once its first part exists.
    fn open_segment(&self, ti: usize, period: u64, part: Duration) -> Option<(u64, u64)> {
        let mut parts = self
            .open_parts(ti)
            .filter(|p| p.period == period)
            .peekable();
        let start = parts.peek()?.segment;
        let held: u64 = parts.map(|p| p.duration).sum();
        let timescale = u64::from(self.timescale(ti, period));
        let part_ticks = u64::try_from(part.as_micros()).unwrap_or(0) * timescale / 1_000_000;
        let expected = self
            .listed(ti)
            .filter(|s| s.period == period)
            .last()
            .map_or(part_ticks * 4, |s| s.duration);
        Some((start, expected.max(held + part_ticks)))
    }

    fn render_period(
        &self,
        p: &Period,
        client: MpdClient,
        low_latency: Option<Duration>,
        out: &mut String,
    ) {
        let info = &p.info;
        let start_us = ticks_us(u64::try_from(info.start).unwrap_or(0), 90_000);
        let _ = writeln!(
            out,
            "  <Period id=\"{}\" start=\"{}\">",
            info.id,
            xs_duration_us(start_us)
        );
        for (ti, desc) in [(0, info.video.as_ref()), (1, info.audio.as_ref())] {
            let Some(desc) = desc else { continue };
            let (kind, letter) = if ti == 0 {
                ("video", 'v')
            } else {
                ("audio", 'a')
            };
            let pto = u128::from(u64::try_from(info.start).unwrap_or(0))
                * u128::from(desc.timescale)
                / 90_000;
            let _ = writeln!(
                out,
                "    <AdaptationSet id=\"{ti}\" contentType=\"{kind}\" mimeType=\"{kind}/mp4\" \
                 segmentAlignment=\"true\" startWithSAP=\"1\"{}>",
                if ti == 1 { " lang=\"und\"" } else { "" }
            );
            let open = low_latency.and_then(|part| {
                let (start, expected) = self.open_segment(ti, info.id, part)?;
                Some((start, expected, part))
            });
            let _ = write!(
                out,
                "      <SegmentTemplate timescale=\"{}\" presentationTimeOffset=\"{pto}\" \
                 initialization=\"init-{letter}-{id}.mp4\" media=\"{letter}-{id}-$Time$.m4s\"",
                desc.timescale,
                id = info.id,
            );
            if let Some(part) = low_latency {
                // Available one part after it starts: the rest arrives over chunked transfer.
                let expected_us = match open {
                    Some((_, d, _)) => ticks_us(d, desc.timescale),
                    None => self
                        .listed(ti)
                        .last()
                        .map_or(0, |s| ticks_us(s.duration, desc.timescale)),
                };
                let part_us = u64::try_from(part.as_micros()).unwrap_or(0);
                let _ = write!(
                    out,
                    " availabilityTimeOffset=\"{}\" availabilityTimeComplete=\"false\"",
                    seconds_us(expected_us.saturating_sub(part_us))
                );
            }
            out.push_str(">\n        <SegmentTimeline>\n");
            let mut next_t: Option<u64> = None;
            let mut listed = self.listed(ti).filter(|s| s.period == info.id).peekable();
            if client == MpdClient::GStreamer
                && let Some(first) = listed.peek()
                && let Ok(pto) = u64::try_from(pto)
                && first.time > pto
            {
                // Everything before the window as one S from the period start (see
                // MpdClient::GStreamer); it ends where the first listed segment starts.
                let _ = writeln!(out, "          <S t=\"{pto}\" d=\"{}\"/>", first.time - pto);
                next_t = Some(first.time);
            }
            write_timeline(listed, next_t, out);
            if let Some((start, expected, _)) = open {
                let _ = writeln!(out, "          <S t=\"{start}\" d=\"{expected}\"/>");
            }
            out.push_str("        </SegmentTimeline>\n      </SegmentTemplate>\n");
            let bandwidth = p.bandwidth[ti].max(1);
            if ti == 0 {
                let _ = write!(
                    out,
                    "      <Representation id=\"v{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" \
                     sar=\"1:1\" bandwidth=\"{bandwidth}\"",
                    info.id, desc.codecs, desc.width, desc.height
                );
                if let Some(fps) = desc.frame_rate {
                    let _ = write!(out, " frameRate=\"{}\"", frame_rate(fps));
                }
                out.push_str("/>\n");
            } else {
                let _ = writeln!(
                    out,
                    "      <Representation id=\"a{}\" codecs=\"{}\" audioSamplingRate=\"{}\" \
                     bandwidth=\"{bandwidth}\">\n\
                     \x20       <AudioChannelConfiguration \
                     schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" \
                     value=\"{}\"/>\n      </Representation>",
                    info.id, desc.codecs, desc.sample_rate, desc.channels
                );
            }
            out.push_str("    </AdaptationSet>\n");
        }
        out.push_str("  </Period>\n");
    }
}
