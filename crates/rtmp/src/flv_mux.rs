//! FLV as a byte stream for players (HTTP-FLV, WS-FLV), sans I/O: hub tracks and frames in,
//! the FLV header, `onMetaData`, sequence headers and tags out, as pieces of [`Bytes`].
//!
//! The tag bodies are those of RTMP play ([`crate::play`]): the same `onMetaData`, the same
//! AVC/AAC tag headers from [`crate::flv`], Enhanced RTMP and other opaque bodies passed
//! through. Layout per the FLV specification v10.1, E.2 (header) and E.3 (PreviousTagSize,
//! then tags with an 11-byte header).
//!
//! Payloads are never copied: a tag leaves as one small piece (the PreviousTagSize of the tag
//! before it, the 11-byte tag header and the codec header) followed by the frame's own
//! `Bytes`, so a writer with vectored I/O sends every viewer the buffers the publisher filled.
//!
//! Timestamps start at 0 for each viewer and keep increasing across a republish or an input
//! switch (a `Tracks` with a new session): the sequence headers come again and the new
//! session's frames continue one millisecond after the last tag sent, as with RTMP play.

use crate::flv;
use crate::flv_stream::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use crate::message;
use crate::play::metadata;
use bytes::{BufMut, Bytes, BytesMut};
use media::{Frame, MediaInfo, TrackKind, ticks_to_ms};
use std::sync::Arc;

/// Largest tag body FLV can describe (DataSize is UI24).
pub const MAX_TAG_BODY: usize = 0xFF_FFFF;

/// FLV header flag: the stream has audio tags.
const HAS_AUDIO: u8 = 0x04;
/// FLV header flag: the stream has video tags.
const HAS_VIDEO: u8 = 0x01;
/// Room reserved at a time for headers, so small pieces share one allocation.
const SMALL_CHUNK: usize = 4096;

/// One viewer's FLV stream.
#[derive(Debug)]
pub struct FlvMuxer {
    info: Option<Arc<MediaInfo>>,
    session: Option<u64>,
    header_written: bool,
    /// The next frame sets `offset_ms`: at the start, and after a new session.
    rebase: bool,
    /// Added to hub milliseconds.
    offset_ms: i64,
    /// Timestamp of the first frame.
    origin_ms: i64,
    /// Largest timestamp written, any track.
    last_ms: Option<i64>,
    /// Largest presentation time written (timestamp + composition offset), any track.
    last_pts_ms: Option<i64>,
    last_video: Option<i64>,
    last_audio: Option<i64>,
    /// Headers not yet cut into a piece.
    small: BytesMut,
    out: Vec<Bytes>,
    pending: usize,
    skipped_large: u64,
}

impl Default for FlvMuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvMuxer {
    /// A muxer that writes nothing until the first tracks.
    pub fn new() -> Self {
        FlvMuxer {
            info: None,
            session: None,
            header_written: false,
            rebase: true,
            offset_ms: 0,
            origin_ms: 0,
            last_ms: None,
            last_pts_ms: None,
            last_video: None,
            last_audio: None,
            small: BytesMut::new(),
            out: Vec::new(),
            pending: 0,
            skipped_large: 0,
        }
    }

    /// A muxer whose first frame is stamped `ms` instead of 0: a transcoder's input, so that
    /// an encoder's priming (AAC's starts ~21 ms early) never needs a negative timestamp.
    pub fn starting_at(ms: u32) -> Self {
        FlvMuxer {
            origin_ms: i64::from(ms),
            ..Self::new()
        }
    }

    /// What is added to hub milliseconds to get this stream's timestamps (set by the first
    /// frame, and again after a new session).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// Whether the FLV header went out (the first tracks arrived).
    pub fn started(&self) -> bool {
        self.header_written
    }

    /// Bytes written and not yet taken.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Frames skipped because their tag would exceed [`MAX_TAG_BODY`].
    pub fn skipped_large(&self) -> u64 {
        self.skipped_large
    }

    /// The pieces written since the last call, in order; their concatenation is the stream.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.cut_small();
        self.pending = 0;
        std::mem::take(&mut self.out)
    }

    /// New or changed tracks: the FLV header (first time), `onMetaData`, the sequence headers.
    /// A new `session` (republish, input switch) makes the next frame continue the timeline.
    pub fn tracks(&mut self, info: Arc<MediaInfo>, session: u64) {
        if !self.header_written {
            self.header_written = true;
            let mut flags = 0;
            if info.video.is_some() {
                flags |= HAS_VIDEO;
            }
            if info.audio.is_some() {
                flags |= HAS_AUDIO;
            }
            self.reserve(13);
            // Signature, version 1, flags, DataOffset 9, then PreviousTagSize0.
            self.small.put_slice(b"FLV\x01");
            self.small.put_u8(flags);
            self.small.put_u32(9);
            self.small.put_u32(0);
            self.pending += 13;
        }
        if self.session.is_some_and(|s| s != session) {
            self.rebase = true;
        }
        self.session = Some(session);
        let ts = self.last_ms.map_or(0, wrap);
        let script = message::data(&["onMetaData".into(), metadata(&info)]);
        self.tag(TAG_SCRIPT, ts, &script, &Bytes::new());
        if let Some((h, body)) = info.video.as_ref().and_then(flv::video_sequence_header) {
            self.tag(TAG_VIDEO, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = flv::video_metadata_tag(&info) {
            self.tag(TAG_VIDEO, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = info.audio.as_ref().and_then(flv::audio_sequence_header) {
            self.tag(TAG_AUDIO, ts, h.as_slice(), &body);
        }
        self.info = Some(info);
    }

    /// One frame; returns the payload bytes written (0 when the track is not carried).
    pub fn frame(&mut self, frame: &Frame) -> usize {
        let Some(info) = &self.info else { return 0 };
        // The codec header, on the stack: 5 bytes for AVC, 2 for AAC, 5 or 8 for Enhanced
        // RTMP FourCC headers, none for whole bodies.
        let (header, tag_type) = match frame.track {
            TrackKind::Video => match &info.video {
                Some(v) => (flv::video_frame_prefix(v, frame), TAG_VIDEO),
                None => return 0,
            },
            TrackKind::Audio => match &info.audio {
                Some(a) => (flv::audio_frame_prefix(a), TAG_AUDIO),
                None => return 0,
            },
        };
        let header = header.as_slice();
        if header.len() + frame.payload.len() > MAX_TAG_BODY {
            // Only a frame over 16 MiB gets here; players skip it, as over RTMP.
            self.skipped_large += 1;
            return 0;
        }
        let ts = self.stamp(frame);
        self.tag(tag_type, ts, header, &frame.payload);
        frame.payload.len()
    }

    /// The publisher left: frames are dropped until the next tracks.
    pub fn end(&mut self) {
        self.info = None;
    }

    /// The FLV timestamp of `frame`: hub milliseconds moved to this viewer's timeline, never
    /// below 0 nor below the track's previous tag.
    ///
    /// A new session continues after the latest *presentation* time sent, not the latest
    /// decode time: with B-frames the last pictures of the old session are shown up to a few
    /// frames after their decode time, and a decoder (ffmpeg's, MSE in the browser) that
    /// drains them after the new keyframe would otherwise see time go back.
    fn stamp(&mut self, frame: &Frame) -> u32 {
        let ms = ticks_to_ms(frame.dts);
        if self.rebase {
            self.rebase = false;
            self.offset_ms = match (self.last_ms, self.last_pts_ms) {
                (None, None) => self.origin_ms - ms,
                (a, b) => flv::session_offset(self.offset_ms, ms, a.max(b).unwrap_or(0) + 1),
            };
        }
        let floor = match frame.track {
            TrackKind::Video => &mut self.last_video,
            TrackKind::Audio => &mut self.last_audio,
        };
        let out = (ms + self.offset_ms).max(0).max(floor.unwrap_or(0));
        *floor = Some(out);
        self.last_ms = Some(self.last_ms.map_or(out, |l| l.max(out)));
        let pts = out + ticks_to_ms(frame.pts - frame.dts).max(0);
        self.last_pts_ms = Some(self.last_pts_ms.map_or(pts, |l| l.max(pts)));
        wrap(out)
    }

    /// Writes one tag: header and `prefix` into the small buffer, `payload` as its own piece.
    fn tag(&mut self, tag_type: u8, ts: u32, prefix: &[u8], payload: &Bytes) {
        let size = prefix.len() + payload.len();
        if size > MAX_TAG_BODY {
            self.skipped_large += 1;
            return;
        }
        self.reserve(11 + prefix.len() + 4);
        let s = &mut self.small;
        s.put_u8(tag_type);
        s.put_uint(size as u64, 3);
        // Timestamp: lower 24 bits, then TimestampExtended (the upper 8).
        s.put_uint(u64::from(ts & 0xFF_FFFF), 3);
        s.put_u8((ts >> 24) as u8);
        // StreamID, always 0.
        s.put_uint(0, 3);
        s.put_slice(prefix);
        if !payload.is_empty() {
            self.cut_small();
            self.out.push(payload.clone());
        }
        // 11 + size <= 11 + 0xFF_FFFF fits in u32.
        self.small.put_u32((11 + size) as u32);
        self.pending += 11 + size + 4;
    }

    fn reserve(&mut self, n: usize) {
        if self.small.capacity() - self.small.len() < n {
            self.small.reserve(n.max(SMALL_CHUNK));
        }
    }

    fn cut_small(&mut self) {
        if !self.small.is_empty() {
            self.out.push(self.small.split().freeze());
        }
    }
}

/// FLV timestamps are 32-bit milliseconds and wrap, as RTMP's do.
fn wrap(ms: i64) -> u32 {
    (ms as u64 & 0xFFFF_FFFF) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::amf0::{self, Amf0Value};
    use crate::flv::{AudioTag, VideoTag, parse_audio_tag, parse_video_tag};
    use crate::flv_stream::{FlvReader, FlvTag};
    use media::{AacConfig, AudioCodec, AvcConfig, OpaqueCodec, VideoCodec, ms_to_ticks};

    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    /// The tracks and frames ffmpeg wrote into the test file, as the hub would carry them.
    pub(crate) fn from_file() -> (Arc<MediaInfo>, Vec<(FlvTag, Frame)>) {
        let mut r = FlvReader::default();
        r.push(FLV);
        let mut video = None;
        let mut audio = None;
        let mut frames = Vec::new();
        while let Some(t) = r.next_tag().unwrap() {
            let ms = i64::from(t.timestamp);
            let frame = match t.tag_type {
                TAG_VIDEO => match parse_video_tag(&t.body).unwrap() {
                    VideoTag::AvcSequenceHeader(rec) => {
                        video = Some(VideoCodec::H264(AvcConfig::parse(rec).unwrap()));
                        None
                    }
                    tag => tag.into_frame(ms),
                },
                TAG_AUDIO => match parse_audio_tag(&t.body).unwrap() {
                    AudioTag::AacSequenceHeader(asc) => {
                        audio = Some(AudioCodec::Aac(AacConfig::parse(asc).unwrap()));
                        None
                    }
                    tag => tag.into_frame(ms),
                },
                _ => None,
            };
            if let Some(f) = frame {
                frames.push((t, f));
            }
        }
        let info = MediaInfo {
            video_metadata: None,
            video,
            audio,
            framerate: Some(25.0),
        };
        (Arc::new(info), frames)
    }

    fn read(pieces: &[Bytes]) -> (Vec<u8>, Vec<FlvTag>) {
        let all: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut r = FlvReader::default();
        r.push(&all);
        let mut tags = Vec::new();
        while let Some(t) = r.next_tag().expect("valid FLV") {
            tags.push(t);
        }
        (all, tags)
    }

    pub(crate) fn frame(track: TrackKind, ms: i64, key: bool, payload: &'static [u8]) -> Frame {
        Frame {
            track,
            dts: ms_to_ticks(ms),
            pts: ms_to_ticks(ms),
            keyframe: key,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn ffmpeg_file_round_trips_tag_for_tag() {
        let (info, frames) = from_file();
        let mut m = FlvMuxer::new();
        assert!(m.take().is_empty(), "nothing before the tracks");
        m.tracks(info.clone(), 1);
        for (_, f) in &frames {
            assert_eq!(m.frame(f), f.payload.len());
        }
        let pending = m.pending_bytes();
        let (all, tags) = read(&m.take());
        assert_eq!(m.pending_bytes(), 0);
        assert_eq!(all.len(), pending);
        let written: usize = tags.iter().map(|t| 11 + t.body.len() + 4).sum();
        assert_eq!(all.len(), 13 + written);
        // Header: FLV version 1 with audio and video, DataOffset 9, PreviousTagSize0 0.
        assert_eq!(&all[..13], b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");

        assert_eq!(tags[0].tag_type, TAG_SCRIPT);
        let values = amf0::decode_all(&tags[0].body).unwrap();
        assert_eq!(values[0], Amf0Value::from("onMetaData"));
        let Amf0Value::EcmaArray(fields) = &values[1] else {
            panic!("onMetaData is not an ECMA array: {values:?}")
        };
        let field = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(field("width"), Some(Amf0Value::Number(320.0)));
        assert_eq!(field("height"), Some(Amf0Value::Number(240.0)));
        assert_eq!(field("videocodecid"), Some(Amf0Value::Number(7.0)));
        assert_eq!(field("audiocodecid"), Some(Amf0Value::Number(10.0)));

        // The sequence headers as ffmpeg wrote them.
        let VideoCodec::H264(avc) = info.video.as_ref().unwrap() else {
            unreachable!()
        };
        assert_eq!(tags[1].tag_type, TAG_VIDEO);
        assert_eq!(tags[1].body[..5], [0x17, 0, 0, 0, 0]);
        assert_eq!(tags[1].body.slice(5..), avc.record);
        assert_eq!(tags[2].tag_type, TAG_AUDIO);
        assert_eq!(tags[2].body[..2], [0xAF, 0]);
        assert_eq!(tags[2].body.slice(2..), info.aac().unwrap().asc);

        // Every frame tag is byte for byte the tag ffmpeg wrote, at its timestamp (the file
        // starts at 0).
        assert_eq!(tags.len(), 3 + frames.len());
        for (got, (want, _)) in tags[3..].iter().zip(&frames) {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn payloads_are_shared_not_copied() {
        let (info, frames) = from_file();
        let mut m = FlvMuxer::new();
        m.tracks(info.clone(), 1);
        let seq = m.take();
        let VideoCodec::H264(avc) = info.video.as_ref().unwrap() else {
            unreachable!()
        };
        // The sequence headers are the hub's buffers too.
        assert!(seq.iter().any(|p| p.as_ptr() == avc.record.as_ptr()));
        for (_, f) in frames.iter().take(10) {
            m.frame(f);
            let pieces = m.take();
            // The headers, the payload itself, then the PreviousTagSize (which a batch of
            // several tags carries in the next tag's header piece).
            assert_eq!(pieces.len(), 3, "{pieces:?}");
            let codec_header = if f.track == TrackKind::Video { 5 } else { 2 };
            assert_eq!(pieces[0].len(), 11 + codec_header);
            assert_eq!(pieces[1].as_ptr(), f.payload.as_ptr());
            assert_eq!(pieces[1].len(), f.payload.len());
            assert_eq!(pieces[2].len(), 4);
        }
        for (_, f) in &frames[10..20] {
            m.frame(f);
        }
        assert_eq!(m.take().len(), 2 * 10 + 1, "headers shared between tags");
    }

    #[test]
    fn timestamps_start_at_zero_for_each_viewer() {
        let (info, frames) = from_file();
        let late = 3_600_000 + 123;
        let mut m = FlvMuxer::new();
        m.tracks(info, 1);
        for (_, f) in &frames {
            let mut f = f.clone();
            f.dts += ms_to_ticks(late);
            f.pts += ms_to_ticks(late);
            m.frame(&f);
        }
        let (_, tags) = read(&m.take());
        for (got, (want, _)) in tags[3..].iter().zip(&frames) {
            assert_eq!(got.timestamp, want.timestamp);
            // The composition time offset travels unchanged.
            assert_eq!(got.body, want.body);
        }
    }

    #[test]
    fn a_new_session_resends_headers_and_continues_the_timeline() {
        let (info, frames) = from_file();
        let mut m = FlvMuxer::new();
        m.tracks(info.clone(), 1);
        for (_, f) in &frames {
            m.frame(f);
        }
        let (_, first) = read(&m.take());
        let last = first.iter().map(|t| t.timestamp).max().unwrap();
        // Decode times, and presentation times of the pictures (the file has B-frames).
        let shown = first.iter().filter_map(pts).max().unwrap();
        let resume = last.max(shown) + 1;

        // The publisher leaves: frames are dropped until the next tracks.
        m.end();
        assert_eq!(m.frame(&frames[0].1), 0);
        // A republish restarts its clock at 0 (or anywhere else).
        m.tracks(info.clone(), 2);
        for (_, f) in &frames {
            m.frame(f);
        }
        let after = m.take();
        // No second FLV header: the bytes go on where the first batch stopped.
        let (_, tags) = read(&[vec![Bytes::from_static(&FLV[..13])], after].concat());
        assert_eq!(tags[0].tag_type, TAG_SCRIPT);
        assert_eq!(tags[1].body[..2], [0x17, 0], "AVC sequence header again");
        assert_eq!(tags[2].body[..2], [0xAF, 0], "AAC sequence header again");
        assert_eq!(tags[1].timestamp, last);
        let mut prev = [last, last];
        for (i, t) in tags[3..].iter().enumerate() {
            let slot = usize::from(t.tag_type == TAG_VIDEO);
            assert!(
                t.timestamp > prev[slot],
                "tag {i} at {} went back",
                t.timestamp
            );
            prev[slot] = t.timestamp;
        }
        // The new session starts after everything already shown, so no picture of it is
        // presented before the old session's last.
        assert_eq!(tags[3].timestamp, resume);
        assert_eq!(
            tags.last().unwrap().timestamp,
            resume + frames.last().unwrap().0.timestamp
        );
        let new_first_shown = tags[3..].iter().filter_map(pts).min().unwrap();
        assert!(new_first_shown > shown);

        // Tracks again in the same session (a codec change): headers, no jump.
        m.tracks(info, 2);
        let f = frame(TrackKind::Audio, 2_000, true, &[1, 2, 3]);
        m.frame(&f);
        let (_, tags) = read(&[vec![Bytes::from_static(&FLV[..13])], m.take()].concat());
        assert_eq!(tags.len(), 4);
        assert_eq!(tags[3].timestamp, resume + 2_000);
    }

    #[test]
    fn a_new_session_starts_after_the_last_picture_shown() {
        let (info, _) = from_file();
        let avc = |dts: i64, cts: i64, key: bool| Frame {
            pts: ms_to_ticks(dts + cts),
            ..frame(TrackKind::Video, dts, key, &[0, 0, 0, 1, 0x65])
        };
        let mut m = FlvMuxer::new();
        m.tracks(info.clone(), 1);
        // I P B: the P frame decoded at 40 ms is shown at 120 ms.
        m.frame(&avc(0, 40, true));
        m.frame(&avc(40, 80, false));
        m.frame(&avc(80, 0, false));
        m.frame(&frame(TrackKind::Audio, 90, true, &[1]));
        // An input switch: the backup's clock starts at 0.
        m.tracks(info, 2);
        m.frame(&avc(0, 40, true));
        let (_, tags) = read(&m.take());
        let ts: Vec<u32> = tags.iter().map(|t| t.timestamp).collect();
        assert_eq!(ts, [0, 0, 0, 0, 40, 80, 90, 90, 90, 90, 121]);
        assert_eq!(pts(&tags[10]), Some(161));
    }

    #[test]
    fn a_switch_that_continues_the_timeline_keeps_each_tracks_timestamps() {
        let (info, _) = from_file();
        let video = |ms: i64, key: bool| frame(TrackKind::Video, ms, key, &[0, 0, 0, 1, 0x65]);
        let audio = |ms: i64| frame(TrackKind::Audio, ms, true, &[1]);
        let mut m = FlvMuxer::new();
        m.tracks(info.clone(), 1);
        m.frame(&video(0, true));
        m.frame(&audio(10));
        m.frame(&video(33, false));
        // The inputs continue 33 ms after the newest frame, keyframe first, with the backup's
        // audio 20 ms before its keyframe but after the last audio sent.
        m.tracks(info, 2);
        m.frame(&video(66, true));
        m.frame(&audio(46));
        let (_, tags) = read(&m.take());
        let media: Vec<(u8, u32)> = tags
            .iter()
            .filter(|t| t.body.get(1) != Some(&0) && t.tag_type != TAG_SCRIPT)
            .map(|t| (t.tag_type, t.timestamp))
            .collect();
        assert_eq!(
            media,
            [
                (TAG_VIDEO, 0),
                (TAG_AUDIO, 10),
                (TAG_VIDEO, 33),
                (TAG_VIDEO, 66),
                (TAG_AUDIO, 46)
            ]
        );
    }

    /// Presentation time of an AVC picture tag: timestamp + composition time.
    fn pts(t: &FlvTag) -> Option<u32> {
        (t.tag_type == TAG_VIDEO && t.body.get(1) == Some(&flv::AVC_NALU)).then(|| {
            let cts = i32::from_be_bytes([t.body[2], t.body[3], t.body[4], 0]) >> 8;
            t.timestamp.wrapping_add_signed(cts)
        })
    }

    #[test]
    fn timestamps_never_go_back_within_a_track() {
        let info = Arc::new(MediaInfo {
            video_metadata: None,
            video: Some(VideoCodec::Opaque {
                codec: OpaqueCodec::FourCc(*b"hvc1"),
                sequence_header: Some(Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 9])),
            }),
            audio: None,
            framerate: None,
        });
        let mut m = FlvMuxer::new();
        m.tracks(info, 7);
        for ms in [1000, 1040, 1030, 900, 1080] {
            m.frame(&frame(
                TrackKind::Video,
                ms,
                false,
                &[0xA1, b'h', b'v', b'c', b'1'],
            ));
        }
        // An audio frame of a track the stream does not have is not written.
        assert_eq!(m.frame(&frame(TrackKind::Audio, 1000, true, &[1])), 0);
        let (all, tags) = read(&m.take());
        assert_eq!(all[4], 0x01, "video only");
        // Opaque bodies pass through whole: the Enhanced RTMP sequence start, then frames.
        assert_eq!(tags[1].body[..], [0x90, b'h', b'v', b'c', b'1', 9]);
        let ts: Vec<u32> = tags[2..].iter().map(|t| t.timestamp).collect();
        assert_eq!(ts, [0, 40, 40, 40, 80]);
        assert!(
            tags[2..]
                .iter()
                .all(|t| t.body[..] == [0xA1, b'h', b'v', b'c', b'1'])
        );
    }

    #[test]
    fn extended_timestamps_and_oversized_frames() {
        let info = Arc::new(MediaInfo {
            video_metadata: None,
            video: None,
            audio: Some(AudioCodec::Opaque {
                codec: OpaqueCodec::FlvId(2),
                sequence_header: None,
            }),
            framerate: None,
        });
        let mut m = FlvMuxer::new();
        m.tracks(info, 1);
        m.frame(&frame(TrackKind::Audio, 0, true, &[0x2f, 1]));
        // 5 h later: past the 24-bit timestamp, into TimestampExtended.
        m.frame(&frame(TrackKind::Audio, 18_000_000, true, &[0x2f, 2]));
        let big = Frame {
            payload: Bytes::from(vec![0x2f; MAX_TAG_BODY + 1]),
            ..frame(TrackKind::Audio, 18_000_040, true, &[])
        };
        assert_eq!(m.frame(&big), 0);
        assert_eq!(m.skipped_large(), 1);
        let (all, tags) = read(&m.take());
        assert_eq!(all[4], 0x04, "audio only");
        // onMetaData, then two audio tags: no sequence header for MP3.
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[2].timestamp, 18_000_000);
        assert_eq!(tags[2].body[..], [0x2f, 2]);
    }
}
