//! Sans-I/O segmenter: hub events in, fMP4 init and media segments out.
//!
//! Video is cut at the first keyframe once `segment_duration` has passed; audio is cut at the
//! same instant (the first audio frame at or after the video cut starts the next audio
//! segment), so both adaptation sets carry time-aligned segments. The output timeline starts
//! at 0 and stays continuous across republishes and clock jumps, like the HLS segmenter; a
//! republish whose codec configuration differs starts a new [`PeriodInfo`] (new init segments).

use bytes::Bytes;
use fmp4::{Sample, TrackCodec, TrackInfo};
use hub::Event;
use media::{AudioCodec, MediaInfo, TrackKind, VideoCodec};
use std::sync::Arc;
use std::time::Duration;

/// A frame further back than this (or [`MAX_FORWARD_JUMP`] ahead) of the previous one on its
/// track means the publisher's clock restarted: segments are closed and the timeline rebased.
const MAX_BACKWARD_JUMP: i64 = media::TIMEBASE;
const MAX_FORWARD_JUMP: i64 = 10 * media::TIMEBASE;
/// A frame gap above this is not used to estimate frame duration.
const MAX_FRAME_DURATION: i64 = media::TIMEBASE;
/// An audio chunk is cut once it holds this much (90 kHz): 100 ms, or half a part when parts
/// are shorter.
const AUDIO_CHUNK: i64 = media::TIMEBASE / 10;
/// Timescale of the video track: the hub's own, so no rounding happens.
pub const VIDEO_TIMESCALE: u32 = 90_000;
/// `track_ID` of the video track (one track per file).
pub const VIDEO_TRACK_ID: u32 = 1;
/// `track_ID` of the audio track.
pub const AUDIO_TRACK_ID: u32 = 2;

/// One adaptation set of a period: the init segment and what the MPD says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackDesc {
    /// `ftyp`+`moov`.
    pub init: Bytes,
    /// RFC 6381 codec string, e.g. `avc1.64001f`, `mp4a.40.2`.
    pub codecs: String,
    /// Ticks per second of this track's segment times.
    pub timescale: u32,
    /// Video size (0 for audio).
    pub width: u32,
    /// Video size (0 for audio).
    pub height: u32,
    /// Frames per second, if known.
    pub frame_rate: Option<f64>,
    /// Audio sampling rate (0 for video).
    pub sample_rate: u32,
    /// Audio channel configuration (0 for video).
    pub channels: u8,
}

/// A period: a span of the timeline with one set of init segments.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodInfo {
    /// Unique within the segmenter's life; part of every URL of the period.
    pub id: u64,
    /// Start on the output timeline, 90 kHz ticks.
    pub start: i64,
    /// The video adaptation set, if the stream has H.264 video.
    pub video: Option<TrackDesc>,
    /// The audio adaptation set, if the stream has AAC audio.
    pub audio: Option<TrackDesc>,
}

/// One finished media segment of one track.
#[derive(Clone, Debug)]
pub struct MediaSegment {
    /// Which adaptation set.
    pub track: TrackKind,
    /// [`PeriodInfo::id`] of its period.
    pub period: u64,
    /// `tfdt`: decode time of the first sample, track timescale (the `$Time$` in its URL).
    pub time: u64,
    /// Sum of its sample durations, track timescale.
    pub duration: u64,
    /// Samples in the `trun`.
    pub samples: usize,
    /// `styp`, then its `moof`+`mdat` fragments: the very buffers its parts were published
    /// as, so a segment never copies its media again and parts and segment share memory.
    pub data: Vec<Bytes>,
}

/// One part of a segment still being written: a CMAF chunk, an LL-HLS `EXT-X-PART`.
#[derive(Clone, Debug)]
pub struct MediaPart {
    /// Which adaptation set.
    pub track: TrackKind,
    /// [`PeriodInfo::id`] of its period.
    pub period: u64,
    /// `time` of the segment it belongs to (its first part's).
    pub segment: u64,
    /// Its place in the segment, from 0.
    pub index: u32,
    /// `tfdt`, track timescale.
    pub time: u64,
    /// Sum of its sample durations, track timescale.
    pub duration: u64,
    /// Starts with a sync sample (a video keyframe; every audio part).
    pub independent: bool,
    /// Its chunks' `moof`+`mdat`s: the very buffers published as [`Output::Chunk`]s.
    pub data: Vec<Bytes>,
}

/// A CMAF chunk of the part being written: one `moof`+`mdat` of the frames ready so far, so
/// a part can be sent while it grows (a video frame each; audio about every 100 ms).
#[derive(Clone, Debug)]
pub struct MediaChunk {
    /// Which adaptation set.
    pub track: TrackKind,
    /// [`PeriodInfo::id`] of its period.
    pub period: u64,
    /// `time` of the segment it belongs to.
    pub segment: u64,
    /// Index of the part it belongs to.
    pub part: u32,
    /// `moof`+`mdat`.
    pub data: Bytes,
}

/// What the segmenter produced for one input event.
#[derive(Clone, Debug)]
pub enum Output {
    /// A new period starts; its segments follow.
    Period(Arc<PeriodInfo>),
    /// A chunk of the part being written (only with [`Segmenter::with_parts`]); the part,
    /// made of its chunks, follows as an [`Output::Part`].
    Chunk(MediaChunk),
    /// A part of the open segment of a track (only with [`Segmenter::with_parts`]); the
    /// finished segment, made of its parts, follows as a [`Output::Segment`].
    Part(MediaPart),
    /// A finished segment.
    Segment(MediaSegment),
}

#[derive(Debug)]
struct Pending {
    /// Output timeline, track timescale.
    dts: i64,
    cts: i32,
    sync: bool,
    data: Bytes,
}

#[derive(Debug, Default)]
struct TrackBuf {
    samples: Vec<Pending>,
    bytes: usize,
    /// mfhd sequence number of the last fragment.
    seq: u32,
    /// `samples[fragment_from..]` are in no fragment yet.
    fragment_from: usize,
    /// `samples[part_from..]` are in no finished part yet.
    part_from: usize,
    /// `fragments[part_fragments..]` are the chunks of the part being written.
    part_fragments: usize,
    /// Index of the part being written.
    part_index: u32,
    /// The open segment's fragments so far.
    fragments: Vec<Bytes>,
    fragments_duration: u64,
}

impl TrackBuf {
    /// Empties the open segment (the fragment sequence number goes on).
    fn clear(&mut self) {
        self.samples.clear();
        self.bytes = 0;
        self.fragment_from = 0;
        self.part_from = 0;
        self.part_fragments = 0;
        self.part_index = 0;
        self.fragments.clear();
        self.fragments_duration = 0;
    }
}

/// Cuts a stream into per-track fMP4 segments. See the module docs.
#[derive(Debug)]
pub struct Segmenter {
    target: i64,
    /// Part duration (90 kHz); 0 = whole segments only.
    part_target: i64,
    max_bytes: usize,
    next_period: u64,
    info: Option<Arc<MediaInfo>>,
    session: Option<u64>,
    period: Option<Arc<PeriodInfo>>,
    /// A period whose init segments are ready, announced with its first segment.
    period_pending: bool,
    /// Added to every timestamp (90 kHz) so the output timeline stays continuous.
    offset: i64,
    /// The offset to take at the next rebase instead of continuing the timeline: a rendition
    /// takes its source's, so both have one timeline.
    follow: Option<i64>,
    rebase: bool,
    started: bool,
    /// End of the last frame written, output timeline 90 kHz.
    out_end: Option<i64>,
    last_dts: [Option<i64>; 2],
    frame_duration: [i64; 2],
    video: TrackBuf,
    audio: TrackBuf,
    /// Start of the open video segment, output 90 kHz.
    video_start: Option<i64>,
    /// Start of the open audio segment (audio-only streams), output 90 kHz.
    audio_start: Option<i64>,
    /// The video was cut here (output 90 kHz); the audio segment closes at the first audio
    /// frame at or after it.
    audio_cut: Option<i64>,
    /// Next audio decode time in the audio timescale: AAC frames last exactly
    /// `samples_per_frame`, while RTMP timestamps carry millisecond jitter.
    audio_clock: Option<i64>,
    /// The timeline was rebased and no audio frame came since.
    audio_rebased: bool,
    /// Samples in the latest audio frame, audio timescale.
    audio_spf: i64,
    encode_errors: u64,
}

/// An AV1 temporal delimiter OBU with its size field (type 2, `obu_has_size_field`, size 0).
const AV1_TEMPORAL_DELIMITER: [u8; 2] = [0x12, 0x00];

fn track_index(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

/// `ticks` (90 kHz) in a `timescale`, rounded to nearest.
fn rescale(ticks: i64, timescale: u32) -> i64 {
    let v = i128::from(ticks) * i128::from(timescale);
    let d = i128::from(media::TIMEBASE);
    i64::try_from((v + d / 2).div_euclid(d)).unwrap_or(i64::MAX)
}

impl Segmenter {
    /// Creates a segmenter cutting after `segment_duration` (at `max_segment_bytes` in any
    /// case); period ids count up from `first_period`.
    pub fn new(segment_duration: Duration, max_segment_bytes: usize, first_period: u64) -> Self {
        Segmenter {
            target: i64::try_from(segment_duration.as_micros() * 9 / 100).unwrap_or(i64::MAX),
            part_target: 0,
            max_bytes: max_segment_bytes.max(1024),
            next_period: first_period,
            info: None,
            session: None,
            period: None,
            period_pending: false,
            offset: 0,
            follow: None,
            rebase: false,
            started: false,
            out_end: None,
            last_dts: [None; 2],
            frame_duration: [0; 2],
            video: TrackBuf::default(),
            audio: TrackBuf::default(),
            video_start: None,
            audio_start: None,
            audio_cut: None,
            audio_clock: None,
            audio_rebased: false,
            audio_spf: 1024,
            encode_errors: 0,
        }
    }

    /// Also publishes each segment in parts of about `part` while it is written (low-latency
    /// HLS and DASH). A part ends at the first frame past `part`, so it is never shorter.
    pub fn with_parts(mut self, part: Duration) -> Self {
        self.part_target = i64::try_from(part.as_micros() * 9 / 100).unwrap_or(0);
        self
    }

    /// Segments that failed to encode (counted, never fatal).
    pub fn encode_errors(&self) -> u64 {
        self.encode_errors
    }

    /// The current period, once the tracks are known.
    pub fn period(&self) -> Option<&Arc<PeriodInfo>> {
        self.period.as_ref()
    }

    /// Whether audio frames wait in the open audio segment (it closes at the first audio frame
    /// past the video cut, which over MPEG-TS ingest can trail the video by half a second).
    pub fn audio_buffered(&self) -> bool {
        !self.audio.samples.is_empty()
    }

    /// What is added to hub timestamps to get output times, once the first frame came.
    pub fn offset(&self) -> Option<i64> {
        self.out_end.map(|_| self.offset)
    }

    /// Puts the next frames on the timeline whose output time is hub time plus `offset` (a
    /// rendition following its source), from the next rebase (first frame, republish) on.
    pub fn follow(&mut self, offset: i64) {
        self.follow = Some(offset);
    }

    /// Makes the next `Tracks` event start a new period even with unchanged tracks (the
    /// store that knew the current one was replaced).
    pub fn restart_period(&mut self) {
        self.period = None;
    }

    /// Feeds one hub event; returns what it completed.
    pub fn push(&mut self, event: Event) -> Vec<Output> {
        let mut out = Vec::new();
        match event {
            Event::Tracks { info, session } => self.tracks(info, session, &mut out),
            Event::End => {
                self.close_all(&mut out);
                self.last_dts = [None; 2];
            }
            Event::Frame(frame) => self.frame(&frame, &mut out),
        }
        out
    }

    /// Closes the open segments at their estimated end (publisher gone, shutdown).
    pub fn flush(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        self.close_all(&mut out);
        out
    }

    fn tracks(&mut self, info: Arc<MediaInfo>, session: u64, out: &mut Vec<Output>) {
        let new_session = self.session.is_some_and(|s| s != session);
        let changed = self.info.as_ref().is_some_and(|old| **old != *info);
        self.session = Some(session);
        if !new_session && !changed && self.info.is_some() {
            return;
        }
        self.close_all(out);
        self.last_dts = [None; 2];
        self.rebase |= new_session;
        let video = info.video.as_ref().and_then(|v| {
            let codec = match v {
                VideoCodec::H264(c) => TrackCodec::Avc(c.clone()),
                VideoCodec::H265(c) => TrackCodec::Hevc(c.clone()),
                VideoCodec::Av1(c) => TrackCodec::Av1(c.clone()),
                VideoCodec::Opaque { .. } => return None,
            };
            let codecs = v.codec_string()?;
            let (width, height) = info.video_size()?;
            let track = TrackInfo {
                track_id: VIDEO_TRACK_ID,
                timescale: VIDEO_TIMESCALE,
                codec,
            };
            let init = fmp4::init_segment(&track).ok()?;
            Some(TrackDesc {
                init,
                codecs,
                timescale: VIDEO_TIMESCALE,
                width,
                height,
                frame_rate: info.fps().filter(|f| *f > 0.0),
                sample_rate: 0,
                channels: 0,
            })
        });
        let audio = info.audio.as_ref().and_then(|a| {
            let (codec, sample_rate, channels) = match a {
                AudioCodec::Aac(c) => (TrackCodec::Aac(c.clone()), c.sample_rate, c.channel_config),
                // Opus always runs at 48 kHz.
                AudioCodec::Opus(c) => (TrackCodec::Opus(c.clone()), 48_000, c.channels),
                AudioCodec::Opaque { .. } => return None,
            };
            let codecs = a.codec_string()?;
            if sample_rate == 0 {
                return None;
            }
            let track = TrackInfo {
                track_id: AUDIO_TRACK_ID,
                timescale: sample_rate,
                codec,
            };
            let init = fmp4::init_segment(&track).ok()?;
            Some(TrackDesc {
                init,
                codecs,
                timescale: sample_rate,
                width: 0,
                height: 0,
                frame_rate: None,
                sample_rate,
                channels,
            })
        });
        let same = self
            .period
            .as_ref()
            .is_some_and(|p| p.video == video && p.audio == audio);
        if !same {
            // Identical init segments continue the period: the decoder only sees a new IDR
            // on a continuous timeline. Anything else needs new init segments, which players
            // load only at a period boundary.
            self.period = Some(Arc::new(PeriodInfo {
                id: self.next_period,
                start: 0,
                video,
                audio,
            }));
            self.next_period += 1;
            self.period_pending = true;
        }
        self.info = Some(info);
    }

    fn carries(&self, track: TrackKind) -> bool {
        self.period.as_ref().is_some_and(|p| match track {
            TrackKind::Video => p.video.is_some(),
            TrackKind::Audio => p.audio.is_some(),
        })
    }

    fn frame(&mut self, frame: &media::Frame, out: &mut Vec<Output>) {
        if !self.carries(frame.track) {
            return;
        }
        let ti = track_index(frame.track);
        if let Some(last) = self.last_dts[ti] {
            let delta = frame.dts.saturating_sub(last);
            if !(-MAX_BACKWARD_JUMP..=MAX_FORWARD_JUMP).contains(&delta) {
                self.close_all(out);
                self.last_dts = [None; 2];
                self.rebase = true;
            } else if delta > 0 && delta <= MAX_FRAME_DURATION {
                self.frame_duration[ti] = delta;
            }
        }
        let has_video = self.carries(TrackKind::Video);
        let is_key = frame.track == TrackKind::Video && frame.keyframe;
        if !self.started {
            // Nothing before the first video keyframe (or audio frame, audio-only) decodes.
            if has_video && !is_key {
                return;
            }
            self.started = true;
        }
        if self.rebase || self.out_end.is_none() {
            // A follower keeps to its source's timeline. A restarted rendition replays a GOP
            // older than what it already sent: its frames are dropped until a keyframe past
            // its own end, rather than taking the timeline back or leaving the source's.
            if let (Some(o), Some(end)) = (self.follow, self.out_end)
                && (frame.dts.saturating_add(o) < end || (has_video && !is_key))
            {
                return;
            }
            self.rebase = false;
            // The audio clock is kept: the rebased audio lands within a frame of it and snaps
            // to it, so audio stays gapless across a republish too.
            self.offset = match self.follow {
                Some(o) => o,
                None => self.out_end.unwrap_or(0) - frame.dts,
            };
            self.audio_rebased = true;
        }
        let dts = frame.dts.saturating_add(self.offset);
        let cts = frame.pts.saturating_sub(frame.dts);
        self.last_dts[ti] = Some(frame.dts);
        let end = dts.saturating_add(self.frame_duration[ti]);
        self.out_end = Some(self.out_end.map_or(end, |e| e.max(end)));

        match frame.track {
            TrackKind::Video => {
                let due = self.video_start.is_some_and(|start| {
                    (is_key
                        && dts.saturating_sub(start) >= self.target - media::cut_slack(self.target))
                        || self.video.bytes >= self.max_bytes
                });
                if due {
                    self.close_video(dts, out);
                    if self.audio_cut.is_some() {
                        // No audio frame reached the previous cut: close what there is.
                        self.close_audio(out);
                    }
                    self.audio_cut = Some(dts);
                }
                if self.video_start.is_none() {
                    self.video_start = Some(dts);
                    self.mark_period_start(dts);
                } else if self.part_target > 0
                    && self
                        .video
                        .samples
                        .get(self.video.part_from)
                        .is_some_and(|first| {
                            // Cut before the part would outgrow the target: a part may not be
                            // longer than the playlist's PART-TARGET.
                            dts - first.dts + self.frame_duration[0].max(1) > self.part_target
                        })
                {
                    self.cut_part(TrackKind::Video, dts, out);
                } else if self.part_target > 0 {
                    // Every frame is a chunk as soon as its duration is known.
                    self.cut_chunk(TrackKind::Video, dts, out);
                }
                let data = match self.info.as_deref().and_then(|i| i.video.as_ref()) {
                    // AV1-ISOBMFF 2.4: samples carry no temporal delimiter; Enhanced RTMP
                    // senders may leave one in front (a 2-byte OBU, no payload).
                    Some(VideoCodec::Av1(_))
                        if frame.payload.starts_with(&AV1_TEMPORAL_DELIMITER) =>
                    {
                        frame.payload.slice(AV1_TEMPORAL_DELIMITER.len()..)
                    }
                    _ => frame.payload.clone(),
                };
                self.video.bytes += data.len();
                self.video.samples.push(Pending {
                    dts,
                    cts: i32::try_from(cts).unwrap_or(0),
                    sync: frame.keyframe,
                    data,
                });
            }
            TrackKind::Audio => {
                let timescale = self.audio_timescale();
                // AAC frames are 1024 samples; an Opus packet says how long it is (2.5 to
                // 120 ms at 48 kHz), 20 ms being what encoders send.
                let spf = match self.info.as_deref().and_then(|i| i.audio.as_ref()) {
                    Some(AudioCodec::Opus(_)) => {
                        i64::from(media::opus::packet_samples(&frame.payload).unwrap_or(960))
                    }
                    _ => 1024,
                };
                let actual = rescale(dts, timescale);
                // Right after a rebase (republish, clock jump) the new audio usually starts
                // a few frames after the keyframe the timeline was rebased on (earlier
                // frames were dropped): snapping it onto the running clock keeps the audio
                // gapless at the cost of that small A/V offset. ffmpeg's DASH reader and some
                // MSE players stumble on a gap in the audio timeline.
                let tolerance = if self.audio_rebased {
                    i64::from(timescale) / 2
                } else {
                    spf
                };
                self.audio_rebased = false;
                let adts = match self.audio_clock {
                    // Within tolerance of the expected time: keep the exact cadence. Further
                    // off: follow the timestamps forward (a gap players skip), but never
                    // backward, since overlapping audio makes MSE drop what was appended.
                    Some(expected) if (actual - expected).abs() < tolerance => expected,
                    Some(expected) => actual.max(expected),
                    None => actual,
                };
                self.audio_clock = Some(adts + spf);
                self.audio_spf = spf;
                if has_video {
                    if self.audio_cut.is_some_and(|cut| dts >= cut) {
                        self.close_audio(out);
                        self.audio_cut = None;
                    }
                } else {
                    let due = self.audio_start.is_some_and(|start| {
                        dts.saturating_sub(start) >= self.target
                            || self.audio.bytes >= self.max_bytes
                    });
                    if due {
                        self.close_audio(out);
                    }
                    if self.audio_start.is_none() {
                        self.audio_start = Some(dts);
                        self.mark_period_start(dts);
                    }
                }
                if self.part_target > 0 {
                    let part = rescale(self.part_target, timescale);
                    let chunk = rescale((self.part_target / 2).min(AUDIO_CHUNK), timescale);
                    let since = |from: usize| self.audio.samples.get(from).map(|s| adts - s.dts);
                    if since(self.audio.part_from).is_some_and(|d| d + spf > part) {
                        self.cut_part(TrackKind::Audio, adts, out);
                    } else if since(self.audio.fragment_from).is_some_and(|d| d >= chunk) {
                        // Audio frames are small: a chunk each would double their bytes.
                        self.cut_chunk(TrackKind::Audio, adts, out);
                    }
                }
                self.audio.bytes += frame.payload.len();
                self.audio.samples.push(Pending {
                    dts: adts,
                    cts: 0,
                    sync: true,
                    data: frame.payload.clone(),
                });
            }
        }
    }

    fn audio_timescale(&self) -> u32 {
        self.period
            .as_ref()
            .and_then(|p| p.audio.as_ref())
            .map_or(48_000, |a| a.timescale)
    }

    /// Fixes the start of a period announced but not yet started.
    fn mark_period_start(&mut self, start: i64) {
        if self.period_pending
            && let Some(p) = self.period.as_mut()
        {
            Arc::make_mut(p).start = start;
        }
    }

    fn announce_period(&mut self, out: &mut Vec<Output>) {
        if self.period_pending
            && let Some(p) = &self.period
        {
            self.period_pending = false;
            out.push(Output::Period(p.clone()));
        }
    }

    /// Closes the open video segment, its last sample ending at `end` (output 90 kHz).
    fn close_video(&mut self, end: i64, out: &mut Vec<Output>) {
        self.video_start = None;
        self.finish_segment(TrackKind::Video, end, out);
    }

    fn close_audio(&mut self, out: &mut Vec<Output>) {
        self.audio_start = None;
        // The last frame lasts what the ones before it did (1024 samples for AAC, the TOC's
        // duration for Opus).
        let end = self
            .audio
            .samples
            .last()
            .map_or(0, |s| s.dts + self.audio_spf);
        self.finish_segment(TrackKind::Audio, end, out);
    }

    fn close_all(&mut self, out: &mut Vec<Output>) {
        // Whatever comes next (republish, clock jump) starts again at a keyframe.
        self.started = false;
        if let Some(last) = self.video.samples.last() {
            let end = last.dts + self.frame_duration[0].max(1);
            self.close_video(end, out);
        }
        self.close_audio(out);
        self.audio_cut = None;
    }

    fn buf(&mut self, track: TrackKind) -> (&mut TrackBuf, u32) {
        match track {
            TrackKind::Video => (&mut self.video, VIDEO_TRACK_ID),
            TrackKind::Audio => (&mut self.audio, AUDIO_TRACK_ID),
        }
    }

    /// Encodes the samples of `track`'s open segment not in a fragment yet as one `moof` +
    /// `mdat`, its last sample ending at `end` (track timescale).
    fn fragment(&mut self, track: TrackKind, end: i64) -> Option<Bytes> {
        let (buf, track_id) = self.buf(track);
        let pending = &buf.samples[buf.fragment_from.min(buf.samples.len())..];
        let first = pending.first()?;
        let ends = pending.iter().skip(1).map(|s| s.dts).chain([end]);
        let samples: Vec<Sample> = pending
            .iter()
            .zip(ends)
            .map(|(s, next)| Sample {
                duration: u32::try_from(next.saturating_sub(s.dts).max(0)).unwrap_or(u32::MAX),
                cts_offset: s.cts,
                sync: s.sync,
                data: s.data.clone(),
            })
            .collect();
        let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        let time = u64::try_from(first.dts).unwrap_or(0);
        buf.fragment_from = buf.samples.len();
        buf.seq = buf.seq.wrapping_add(1);
        match fmp4::media_fragment(track_id, buf.seq, time, &samples) {
            Ok(data) => {
                buf.fragments.push(data.clone());
                buf.fragments_duration += duration;
                Some(data)
            }
            Err(e) => {
                // Counted and visible; one bad fragment must not end the stream.
                self.encode_errors += 1;
                tracing::debug!(error = %e, "dash: fragment not written");
                None
            }
        }
    }

    /// The period and segment `track`'s open segment belongs to, once it has a sample.
    fn open_segment(&mut self, track: TrackKind) -> Option<(u64, u64)> {
        let period = self.period.as_ref()?.id;
        let (buf, _) = self.buf(track);
        let first = buf.samples.first()?;
        Some((period, u64::try_from(first.dts).unwrap_or(0)))
    }

    /// Publishes what `track` gathered since its last chunk as a chunk of the part being
    /// written, the last sample ending at `end` (track timescale).
    fn cut_chunk(&mut self, track: TrackKind, end: i64, out: &mut Vec<Output>) {
        let Some((period, segment)) = self.open_segment(track) else {
            return;
        };
        if let Some(data) = self.fragment(track, end) {
            self.announce_period(out);
            let (buf, _) = self.buf(track);
            out.push(Output::Chunk(MediaChunk {
                track,
                period,
                segment,
                part: buf.part_index,
                data,
            }));
        }
    }

    /// Publishes what `track` gathered since its last part as a part (LL-HLS `EXT-X-PART`),
    /// its last chunk ending at `end` (track timescale).
    fn cut_part(&mut self, track: TrackKind, end: i64, out: &mut Vec<Output>) {
        let Some((period, segment)) = self.open_segment(track) else {
            return;
        };
        self.cut_chunk(track, end, out);
        let (buf, _) = self.buf(track);
        let Some(first) = buf.samples.get(buf.part_from) else {
            return;
        };
        let time = first.dts;
        let independent = first.sync;
        let data = buf.fragments[buf.part_fragments.min(buf.fragments.len())..].to_vec();
        let index = buf.part_index;
        buf.part_from = buf.samples.len();
        buf.part_fragments = buf.fragments.len();
        buf.part_index += 1;
        if data.is_empty() {
            return;
        }
        out.push(Output::Part(MediaPart {
            track,
            period,
            segment,
            index,
            time: u64::try_from(time).unwrap_or(0),
            duration: u64::try_from(end.saturating_sub(time)).unwrap_or(0),
            independent,
            data,
        }));
    }

    /// Closes `track`'s open segment, its last sample ending at `end` (track timescale): the
    /// last part, then the whole segment made of every part.
    fn finish_segment(&mut self, track: TrackKind, end: i64, out: &mut Vec<Output>) {
        let period = self.period.as_ref().map(|p| p.id);
        let parts = self.part_target > 0;
        let (buf, _) = self.buf(track);
        let Some(first) = buf.samples.first().map(|s| s.dts) else {
            buf.clear();
            return;
        };
        let count = buf.samples.len();
        if parts {
            self.cut_part(track, end, out);
        } else {
            self.fragment(track, end);
        }
        let (buf, _) = self.buf(track);
        let fragments = std::mem::take(&mut buf.fragments);
        let duration = buf.fragments_duration;
        buf.clear();
        let Some(period) = period else {
            return;
        };
        if fragments.is_empty() {
            return;
        }
        self.announce_period(out);
        out.push(Output::Segment(MediaSegment {
            track,
            period,
            time: u64::try_from(first).unwrap_or(0),
            duration,
            samples: count,
            data: std::iter::once(fmp4::styp()).chain(fragments).collect(),
        }));
    }
}
