//! Sans-I/O segmenter: hub events in, complete TS segments out.

use bytes::{Bytes, BytesMut};
use hub::Event;
use media::{MediaInfo, TrackKind};
use mpegts::TsMuxer;
use std::sync::Arc;
use std::time::Duration;

/// A frame further back than this (or [`MAX_FORWARD_JUMP`] ahead) of the previous one on its
/// track means the publisher's clock restarted: the segment is closed with a discontinuity.
const MAX_BACKWARD_JUMP: i64 = media::TIMEBASE;
const MAX_FORWARD_JUMP: i64 = 10 * media::TIMEBASE;
/// A frame gap above this is not used to estimate frame duration.
const MAX_FRAME_DURATION: i64 = media::TIMEBASE;

/// One finished media segment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// Media sequence number; consecutive across the segmenter's life (republishes included).
    pub seq: u64,
    /// Real duration: from its first DTS to the next segment's first DTS.
    pub duration: Duration,
    /// The timeline restarts here (`#EXT-X-DISCONTINUITY` before it).
    pub discontinuity: bool,
    /// Transport stream, starting with PAT/PMT and (with video) a keyframe.
    pub data: Bytes,
    /// Wall clock (Unix ms) of its first frame, `EXT-X-PROGRAM-DATE-TIME`: set by whoever
    /// has a clock (the segmenter has none).
    pub program_ms: Option<i64>,
    /// Hub PTS of its first frame (the keyframe that opens it): the renditions of a stream
    /// match their segments to the source's by it. Not the DTS: a source with B-frames decodes
    /// its keyframes ahead of their presentation, a rendition without them does not.
    pub start_pts: i64,
}

#[derive(Debug)]
struct OpenSegment {
    first_dts: i64,
    first_pts: i64,
    /// Estimated end: the latest frame's DTS plus its duration.
    end_dts: i64,
    buf: BytesMut,
    discontinuity: bool,
}

/// Cuts a stream into TS segments at keyframes once the target duration is reached.
#[derive(Debug)]
pub struct Segmenter {
    target: i64,
    max_bytes: usize,
    mux: TsMuxer,
    info: Option<Arc<MediaInfo>>,
    session: Option<u64>,
    skipped: Vec<String>,
    open: Option<OpenSegment>,
    next_seq: u64,
    first_seq: u64,
    /// Added to every timestamp so the output timeline stays continuous across a republish or
    /// a clock jump (the new publisher's clock starts anywhere, usually at 0). Players that
    /// honour EXT-X-DISCONTINUITY do not need it; ffmpeg's HLS reader and many TVs do.
    offset: i64,
    rebase: bool,
    /// End of the last frame written, output timeline.
    out_end: Option<i64>,
    discontinuity_pending: bool,
    /// Per track (video, audio): last DTS and last frame duration.
    last_dts: [Option<i64>; 2],
    frame_duration: [i64; 2],
    mux_errors: u64,
}

fn track_index(t: TrackKind) -> usize {
    match t {
        TrackKind::Video => 0,
        TrackKind::Audio => 1,
    }
}

fn ticks_to_duration(ticks: i64) -> Duration {
    let ticks = u64::try_from(ticks).unwrap_or(0);
    // 1 tick = 100_000 / 9 ns; saturating keeps absurd spans from wrapping.
    Duration::from_nanos(ticks.saturating_mul(100_000) / 9)
}

impl Segmenter {
    /// Creates a segmenter cutting after `segment_duration`, or at `max_segment_bytes`.
    pub fn new(segment_duration: Duration, max_segment_bytes: usize) -> Self {
        let target = i64::try_from(segment_duration.as_micros() * 9 / 100).unwrap_or(i64::MAX);
        Segmenter {
            target,
            max_bytes: max_segment_bytes.max(mpegts::PACKET_SIZE),
            mux: TsMuxer::new().without_opus(),
            info: None,
            session: None,
            skipped: Vec::new(),
            open: None,
            next_seq: 0,
            first_seq: 0,
            offset: 0,
            rebase: false,
            out_end: None,
            discontinuity_pending: false,
            last_dts: [None; 2],
            frame_duration: [0; 2],
            mux_errors: 0,
        }
    }

    /// Numbers segments from `seq` on instead of 0.
    pub fn starting_at(mut self, seq: u64) -> Self {
        self.next_seq = seq;
        self.first_seq = seq;
        self
    }

    /// Track names of the current session that HLS cannot carry (skipped).
    pub fn skipped_tracks(&self) -> &[String] {
        &self.skipped
    }

    /// Frames dropped because the muxer rejected their payload.
    pub fn mux_errors(&self) -> u64 {
        self.mux_errors
    }

    /// Sequence number the next segment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Numbers the segments after the one just returned from `seq + 1` on (a rendition
    /// taking its source's numbering).
    pub fn continue_after(&mut self, seq: u64) {
        self.next_seq = seq + 1;
    }

    /// Feeds one hub event; returns the segment it completed, if any.
    pub fn push(&mut self, event: Event) -> Option<Segment> {
        match event {
            Event::Tracks { info, session } => self.tracks(info, session),
            Event::End => {
                self.last_dts = [None; 2];
                self.close()
            }
            Event::Frame(frame) => self.frame(&frame),
        }
    }

    /// Closes the open segment at its estimated end (publisher gone, shutdown).
    pub fn flush(&mut self) -> Option<Segment> {
        self.close()
    }

    fn tracks(&mut self, info: Arc<MediaInfo>, session: u64) -> Option<Segment> {
        let new_session = self.session.is_some_and(|s| s != session);
        let changed = self.info.as_ref().is_some_and(|old| **old != *info);
        self.session = Some(session);
        if !new_session && !changed && self.info.is_some() {
            return None;
        }
        let closed = self.close();
        if new_session || changed {
            // Nothing to mark before the very first segment.
            self.discontinuity_pending = self.next_seq > self.first_seq;
            self.last_dts = [None; 2];
        }
        self.rebase |= new_session;
        self.skipped = self.mux.set_tracks(&info);
        self.info = Some(info);
        closed
    }

    fn frame(&mut self, frame: &media::Frame) -> Option<Segment> {
        if !self.mux.carries(frame.track) {
            return None;
        }
        let ti = track_index(frame.track);
        let mut closed = None;
        if let Some(last) = self.last_dts[ti] {
            let delta = frame.dts.saturating_sub(last);
            if !(-MAX_BACKWARD_JUMP..=MAX_FORWARD_JUMP).contains(&delta) {
                closed = self.close();
                self.discontinuity_pending = self.next_seq > self.first_seq;
                self.last_dts = [None; 2];
                self.rebase = true;
            } else if delta > 0 && delta <= MAX_FRAME_DURATION {
                self.frame_duration[ti] = delta;
            }
        }

        let has_video = self.mux.carries(TrackKind::Video);
        let random_access = !has_video || (frame.track == TrackKind::Video && frame.keyframe);
        // Keyframes may come a little early (see `media::cut_slack`); audio-only streams cut
        // at any frame, exactly at the target.
        let slack = if has_video {
            media::cut_slack(self.target)
        } else {
            0
        };
        let due = self.open.as_ref().is_some_and(|open| {
            (random_access && frame.dts.saturating_sub(open.first_dts) >= self.target - slack)
                || open.buf.len() >= self.max_bytes
        });
        if due {
            // The new segment starts here, so this DTS is the exact end of the previous one.
            if let Some(open) = self.open.as_mut() {
                open.end_dts = frame.dts;
            }
            closed = self.close();
        }
        if self.open.is_none() {
            if !random_access && !due {
                // Before the first keyframe nothing is decodable.
                return closed;
            }
            let mut buf = BytesMut::new();
            if !(frame.track == TrackKind::Video && frame.keyframe) {
                // The muxer writes tables itself before video keyframes.
                self.mux.write_tables(&mut buf);
            }
            self.open = Some(OpenSegment {
                first_dts: frame.dts,
                first_pts: frame.pts,
                end_dts: frame.dts,
                buf,
                discontinuity: std::mem::take(&mut self.discontinuity_pending),
            });
        }
        if self.rebase {
            self.rebase = false;
            if let Some(end) = self.out_end {
                self.offset = end - frame.dts;
            }
        }
        let shifted;
        let out = if self.offset == 0 {
            frame
        } else {
            shifted = media::Frame {
                dts: frame.dts.saturating_add(self.offset),
                pts: frame.pts.saturating_add(self.offset),
                ..frame.clone()
            };
            &shifted
        };
        let out_end = out.dts.saturating_add(self.frame_duration[ti]);
        self.out_end = Some(self.out_end.map_or(out_end, |e| e.max(out_end)));
        if let Some(open) = self.open.as_mut() {
            if self.mux.write_frame(out, &mut open.buf).is_err() {
                // Counted and visible in stats; one bad frame must not end the stream.
                self.mux_errors += 1;
            }
            open.end_dts = open
                .end_dts
                .max(frame.dts.saturating_add(self.frame_duration[ti]));
        }
        self.last_dts[ti] = Some(frame.dts);
        closed
    }

    fn close(&mut self) -> Option<Segment> {
        let open = self.open.take()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Segment {
            seq,
            duration: ticks_to_duration(open.end_dts.saturating_sub(open.first_dts)),
            discontinuity: open.discontinuity,
            data: open.buf.freeze(),
            program_ms: None,
            start_pts: open.first_pts,
        })
    }
}
