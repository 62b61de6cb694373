//! The fragmented MP4 side of a recording: hub frames in, a `ftyp`+`moov` header and then a
//! `moof`+`mdat` per GOP (a `traf` per track) out, each file on its own timeline (its first
//! keyframe at 0). Sans-I/O: the writer does the files.

use bytes::BytesMut;
use fmp4::{Sample, TrackCodec, TrackInfo};
use media::{AudioCodec, Frame, MediaInfo, TrackKind, VideoCodec};

/// Track ids in the recorded files.
const VIDEO_TRACK_ID: u32 = 1;
const AUDIO_TRACK_ID: u32 = 2;
/// Both tracks keep the hub's 90 kHz clock, so sample times are exact.
const TIMESCALE: u32 = 90_000;
/// Payload queued for one fragment before it is written even in mid-GOP: a GOP of a very high
/// bitrate or a very long GOP must not grow memory without bound.
const MAX_QUEUED_BYTES: usize = 32 << 20;

/// Per-track state: the frame whose duration is not yet known, and the samples ready to write.
#[derive(Default)]
struct Track {
    id: u32,
    carried: bool,
    pending: Option<Frame>,
    queued: Vec<Sample>,
    /// Decode time (file ticks) of `queued[0]`.
    first_dts: Option<i64>,
    last_duration: u32,
}

/// Fragments one recorded file at a time.
pub(crate) struct Mp4Mux {
    header: Option<bytes::Bytes>,
    video: Track,
    audio: Track,
    /// Hub DTS at the file's time 0.
    base_dts: Option<i64>,
    sequence: u32,
    queued_bytes: usize,
}

impl Mp4Mux {
    pub(crate) fn new() -> Self {
        Mp4Mux {
            header: None,
            video: Track::default(),
            audio: Track::default(),
            base_dts: None,
            sequence: 0,
            queued_bytes: 0,
        }
    }

    /// Takes the stream's tracks; returns the codecs MP4 here cannot carry (left out).
    pub(crate) fn set_tracks(&mut self, info: &MediaInfo) -> Vec<String> {
        let mut skipped = Vec::new();
        let mut tracks = Vec::new();
        let video = info.video.as_ref().and_then(|v| match v {
            VideoCodec::H264(c) => Some(TrackCodec::Avc(c.clone())),
            VideoCodec::H265(c) => Some(TrackCodec::Hevc(c.clone())),
            VideoCodec::Av1(c) => Some(TrackCodec::Av1(c.clone())),
            VideoCodec::Opaque { .. } => {
                skipped.push(format!("video {v:?}"));
                None
            }
        });
        let audio = info.audio.as_ref().and_then(|a| match a {
            AudioCodec::Aac(c) => Some(TrackCodec::Aac(c.clone())),
            AudioCodec::Opus(c) => Some(TrackCodec::Opus(c.clone())),
            AudioCodec::Opaque { .. } => {
                skipped.push(format!("audio {a:?}"));
                None
            }
        });
        if let Some(codec) = video {
            tracks.push(TrackInfo {
                track_id: VIDEO_TRACK_ID,
                timescale: TIMESCALE,
                codec,
            });
        }
        if let Some(codec) = audio {
            tracks.push(TrackInfo {
                track_id: AUDIO_TRACK_ID,
                timescale: TIMESCALE,
                codec,
            });
        }
        self.header = if tracks.is_empty() {
            None
        } else {
            match fmp4::movie_header(&tracks) {
                Ok(h) => Some(h),
                Err(e) => {
                    skipped.push(format!("every track ({e})"));
                    None
                }
            }
        };
        let carried = |id| self.header.is_some() && tracks.iter().any(|t| t.track_id == id);
        let (v, a) = (carried(VIDEO_TRACK_ID), carried(AUDIO_TRACK_ID));
        self.video = Track {
            id: VIDEO_TRACK_ID,
            carried: v,
            // 30 fps and 1024 AAC samples at 48 kHz until a real duration is seen.
            last_duration: 3000,
            ..Track::default()
        };
        self.audio = Track {
            id: AUDIO_TRACK_ID,
            carried: a,
            last_duration: 1920,
            ..Track::default()
        };
        skipped
    }

    /// Whether frames of `kind` are recorded.
    pub(crate) fn carries(&self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Video => self.video.carried,
            TrackKind::Audio => self.audio.carried,
        }
    }

    /// Starts a file whose time 0 is `base_dts`; its header goes to `out`.
    pub(crate) fn start_file(&mut self, base_dts: i64, out: &mut BytesMut) {
        self.base_dts = Some(base_dts);
        self.sequence = 0;
        self.queued_bytes = 0;
        for t in [&mut self.video, &mut self.audio] {
            t.pending = None;
            t.queued.clear();
            t.first_dts = None;
        }
        if let Some(h) = &self.header {
            out.extend_from_slice(h);
        }
    }

    /// Takes a frame of the open file: the previous frame of its track now has a duration.
    pub(crate) fn push(&mut self, f: &Frame) {
        let Some(base) = self.base_dts else { return };
        if f.dts < base {
            // Audio decoded just before the keyframe the file opens on, arriving after it: an
            // MP4 track cannot start before 0 and the previous file is closed, so it is lost
            // (one audio frame at a rotation, at most).
            return;
        }
        let track = match f.track {
            TrackKind::Video => &mut self.video,
            TrackKind::Audio => &mut self.audio,
        };
        if let Some(prev) = track.pending.take() {
            let d = u32::try_from((f.dts - prev.dts).max(0)).unwrap_or(u32::MAX);
            track.last_duration = if d > 0 { d } else { track.last_duration };
            self.queued_bytes += prev.payload.len();
            queue(track, &prev, d, base);
        }
        track.pending = Some(f.clone());
    }

    /// Hub DTS just after the pending frames (the end of the file if it ended now).
    pub(crate) fn end_dts(&self) -> Option<i64> {
        [&self.video, &self.audio]
            .iter()
            .filter_map(|t| {
                t.pending
                    .as_ref()
                    .map(|p| p.dts + i64::from(t.last_duration))
            })
            .max()
    }

    /// Where hub DTS `dts` falls on the open file's timeline.
    pub(crate) fn file_time(&self, dts: i64) -> i64 {
        dts - self.base_dts.unwrap_or(dts)
    }

    /// Whether the queued samples should be written now although no GOP ended.
    pub(crate) fn overfull(&self) -> bool {
        self.queued_bytes >= MAX_QUEUED_BYTES
    }

    /// Writes the samples whose duration is known as one fragment.
    pub(crate) fn write_fragments(&mut self, out: &mut BytesMut) {
        self.write(None, out);
    }

    /// Writes everything, the pending frames too (the file ends): the video one lasts until
    /// `next_video_dts` (the frame that opens the next file) when given, the others their
    /// track's last duration.
    pub(crate) fn finish(&mut self, next_video_dts: Option<i64>, out: &mut BytesMut) {
        self.write(Some(next_video_dts), out);
    }

    fn write(&mut self, finish: Option<Option<i64>>, out: &mut BytesMut) {
        let Some(base) = self.base_dts else { return };
        for track in [&mut self.video, &mut self.audio] {
            if let Some(next) = finish
                && let Some(prev) = track.pending.take()
            {
                let d = match next {
                    Some(dts) if track.id == VIDEO_TRACK_ID && dts > prev.dts => {
                        u32::try_from(dts - prev.dts).unwrap_or(track.last_duration)
                    }
                    _ => track.last_duration,
                };
                queue(track, &prev, d, base);
            }
        }
        if self.video.queued.is_empty() && self.audio.queued.is_empty() {
            return;
        }
        // One moof for both tracks, as ffmpeg's `frag_keyframe` writes: a player reading the
        // file in order (VLC) gets the GOP's audio with its video, not a GOP later.
        self.sequence = self.sequence.wrapping_add(1);
        let runs = [run(&self.video), run(&self.audio)];
        if let Err(e) = fmp4::movie_fragment_into(self.sequence, &runs, out) {
            tracing::debug!(error = %e, "recording: fragment not written");
        }
        for t in [&mut self.video, &mut self.audio] {
            t.queued.clear();
            t.first_dts = None;
        }
        self.queued_bytes = 0;
    }
}

fn run(t: &Track) -> fmp4::TrackRun<'_> {
    fmp4::TrackRun {
        track_id: t.id,
        base_decode_time: u64::try_from(t.first_dts.unwrap_or(0)).unwrap_or(0),
        samples: &t.queued,
    }
}

fn queue(track: &mut Track, f: &Frame, duration: u32, base: i64) {
    track.first_dts.get_or_insert(f.dts - base);
    track.queued.push(Sample {
        duration,
        cts_offset: i32::try_from(f.pts - f.dts).unwrap_or(0),
        sync: f.keyframe,
        data: f.payload.clone(),
    });
}
