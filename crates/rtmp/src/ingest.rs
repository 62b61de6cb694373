//! Publisher side, sans I/O: FLV tags from an RTMP publisher -> hub track info and frames.
//!
//! Tracks are announced once every track the publisher declared in `onMetaData` has its
//! decoder configuration, so outputs never start with a half-known program (a TS muxer that
//! learns of audio late would have to change its PMT mid-segment). Frames that arrive before
//! that are held in a bounded queue and released after the announcement.

use crate::amf0::Amf0Value;
use crate::flv::{self, AudioTag, ExAudioCodec, ExVideoCodec, VideoTag};
use bytes::Bytes;
use media::{
    AacConfig, AudioCodec, Av1Config, AvcConfig, Frame, HevcConfig, MediaInfo, OpaqueCodec,
    OpusConfig, TrackKind, VideoCodec, ms_to_ticks,
};
use std::collections::VecDeque;

/// Frames held while waiting for every declared track's configuration.
const MAX_PENDING_FRAMES: usize = 600;
/// Media span after which tracks are announced even if a declared one never showed up.
const MAX_WAIT_MS: i64 = 3000;

/// What the driver forwards to the hub.
#[derive(Clone, Debug, PartialEq)]
pub enum IngestOutput {
    /// Announce (or re-announce after a configuration change) these tracks.
    Announce(Box<MediaInfo>),
    /// Write this frame.
    Frame(Frame),
}

/// Errors that end a publish session.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A tag body could not be parsed.
    #[error("FLV tag: {0}")]
    Flv(#[from] flv::FlvError),
    /// A decoder configuration could not be parsed.
    #[error("codec configuration: {0}")]
    Config(#[from] media::MediaError),
}

/// Maps one publisher's RTMP media messages to hub frames.
#[derive(Debug, Default)]
pub struct Ingest {
    video: Option<VideoCodec>,
    audio: Option<AudioCodec>,
    framerate: Option<f64>,
    /// The latest Enhanced RTMP video metadata (`colorInfo`), passed on with the tracks.
    video_metadata: Option<Bytes>,
    expect_video: bool,
    expect_audio: bool,
    announced: bool,
    pending: VecDeque<Frame>,
    first_pending_ms: Option<i64>,
    clock: Unwrap,
    warned_no_config: bool,
}

/// Extends 32-bit wrapping RTMP milliseconds to a monotonic-capable 64-bit count.
#[derive(Debug, Default)]
struct Unwrap {
    last: Option<(u32, i64)>,
}

impl Unwrap {
    fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            // A signed 32-bit difference follows wraps forward and small steps back (audio and
            // video interleave slightly out of order).
            Some((raw, ext)) => ext + i64::from(ts.wrapping_sub(raw) as i32),
            None => i64::from(ts),
        };
        self.last = Some((ts, ext));
        ext
    }
}

impl Ingest {
    /// A fresh mapper for one publish session.
    pub fn new() -> Self {
        Ingest::default()
    }

    /// Tracks announced so far, if any.
    pub fn info(&self) -> Option<MediaInfo> {
        self.announced.then(|| self.current_info())
    }

    fn current_info(&self) -> MediaInfo {
        MediaInfo {
            video: self.video.clone(),
            audio: self.audio.clone(),
            framerate: self.framerate,
            video_metadata: self.video_metadata.clone(),
        }
    }

    /// Takes the publisher's `onMetaData` object.
    pub fn metadata(&mut self, meta: &Amf0Value, out: &mut Vec<IngestOutput>) {
        let num = |k: &str| meta.get(k).and_then(|v| v.as_f64());
        let flag = |k: &str| meta.get(k).and_then(|v| v.as_bool());
        // ffmpeg writes videocodecid/audiocodecid; some hardware encoders only hasVideo/hasAudio.
        self.expect_video |= num("videocodecid").is_some() || flag("hasVideo") == Some(true);
        self.expect_audio |= num("audiocodecid").is_some() || flag("hasAudio") == Some(true);
        if let Some(fps) = num("framerate").or_else(|| num("videoframerate"))
            && fps.is_finite()
            && fps > 0.0
            && fps < 1000.0
        {
            self.framerate = Some(fps);
        }
        self.maybe_announce(false, out);
    }

    /// Takes a video message.
    pub fn video(
        &mut self,
        timestamp: u32,
        body: &Bytes,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), IngestError> {
        let ms = self.clock.extend(timestamp);
        self.expect_video = true;
        match flv::parse_video_tag(body)? {
            // The video twin of the empty AAC header above (extradata not known yet).
            VideoTag::AvcSequenceHeader(record) if record.is_empty() => {
                tracing::debug!("empty AVC sequence header ignored; waiting for the real one");
            }
            VideoTag::AvcSequenceHeader(record) => {
                let cfg = AvcConfig::parse(record)?;
                self.set_video(VideoCodec::H264(cfg), out);
            }
            VideoTag::ExSequenceStart { record, .. } if record.is_empty() => {
                tracing::debug!("empty Enhanced RTMP sequence start ignored");
            }
            VideoTag::ExSequenceStart { codec, record } => {
                let parsed = match codec {
                    ExVideoCodec::Avc => AvcConfig::parse(record).map(VideoCodec::H264),
                    ExVideoCodec::Hevc => HevcConfig::parse(record).map(VideoCodec::H265),
                    ExVideoCodec::Av1 => Av1Config::parse(record).map(VideoCodec::Av1),
                };
                let cfg = parsed.unwrap_or_else(|e| {
                    // A record we cannot read still plays over RTMP and FLV, passed through
                    // as before these codecs were modelled; the packaged outputs skip it.
                    tracing::warn!(error = %e, "Enhanced RTMP video config not understood; passed through");
                    VideoCodec::Opaque {
                        codec: OpaqueCodec::FourCc(codec.fourcc()),
                        sequence_header: Some(body.clone()),
                    }
                });
                self.set_video(cfg, out);
            }
            VideoTag::ExCodedFrame {
                codec,
                keyframe,
                cts_ms,
                data,
            } => {
                let known = matches!(
                    (codec, &self.video),
                    (ExVideoCodec::Avc, Some(VideoCodec::H264(_)))
                        | (ExVideoCodec::Hevc, Some(VideoCodec::H265(_)))
                        | (ExVideoCodec::Av1, Some(VideoCodec::Av1(_)))
                );
                let passed_through = matches!(&self.video,
                    Some(VideoCodec::Opaque { codec: OpaqueCodec::FourCc(cc), .. }) if *cc == codec.fourcc());
                if passed_through {
                    self.video_frame(true, keyframe, 0, body.clone(), ms, out);
                } else {
                    self.video_frame(known, keyframe, cts_ms, data, ms, out);
                }
            }
            VideoTag::ExMetadata { data, .. } => {
                if self.video_metadata.as_ref() != Some(&data) {
                    tracing::debug!(bytes = data.len(), "Enhanced RTMP video metadata");
                    self.video_metadata = Some(data);
                    self.maybe_announce(true, out);
                }
            }
            VideoTag::Ignored(what) => tracing::trace!(what, "video packet not carried"),
            VideoTag::AvcNalu {
                keyframe,
                cts_ms,
                data,
            } => {
                let known = matches!(self.video, Some(VideoCodec::H264(_)));
                self.video_frame(known, keyframe, cts_ms, data, ms, out);
            }
            VideoTag::AvcEndOfSequence | VideoTag::Command => {}
            VideoTag::Opaque {
                codec,
                keyframe,
                sequence_header,
                body,
            } => {
                if sequence_header {
                    self.set_video(
                        VideoCodec::Opaque {
                            codec,
                            sequence_header: Some(body),
                        },
                        out,
                    );
                } else {
                    if !matches!(&self.video, Some(VideoCodec::Opaque { codec: c, .. }) if *c == codec)
                    {
                        self.set_video(
                            VideoCodec::Opaque {
                                codec,
                                sequence_header: None,
                            },
                            out,
                        );
                    }
                    self.video_frame(true, keyframe, 0, body, ms, out);
                }
            }
        }
        Ok(())
    }

    /// Takes an audio message.
    pub fn audio(
        &mut self,
        timestamp: u32,
        body: &Bytes,
        out: &mut Vec<IngestOutput>,
    ) -> Result<(), IngestError> {
        let ms = self.clock.extend(timestamp);
        self.expect_audio = true;
        match flv::parse_audio_tag(body)? {
            // ffmpeg `-c copy` from MPEG-TS sends an empty AAC sequence header first: the
            // AudioSpecificConfig only exists once aac_adtstoasc has seen a packet, and a
            // second, real header follows. nginx-rtmp and SRS ignore the empty one too.
            AudioTag::AacSequenceHeader(asc) if asc.is_empty() => {
                tracing::debug!("empty AAC sequence header ignored; waiting for the real one");
            }
            AudioTag::AacSequenceHeader(asc) => {
                let cfg = AacConfig::parse(asc)?;
                self.set_audio(AudioCodec::Aac(cfg), out);
            }
            AudioTag::ExSequenceStart { config, .. } if config.is_empty() => {
                tracing::debug!("empty Enhanced RTMP audio sequence start ignored");
            }
            AudioTag::ExSequenceStart { codec, config } => {
                let parsed = match codec {
                    ExAudioCodec::Aac => AacConfig::parse(config).map(AudioCodec::Aac),
                    ExAudioCodec::Opus => OpusConfig::parse(config).map(AudioCodec::Opus),
                };
                let cfg = parsed.unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "Enhanced RTMP audio config not understood; passed through");
                    AudioCodec::Opaque {
                        codec: OpaqueCodec::FourCc(codec.fourcc()),
                        sequence_header: Some(body.clone()),
                    }
                });
                self.set_audio(cfg, out);
            }
            AudioTag::Ignored(what) => tracing::trace!(what, "audio packet not carried"),
            AudioTag::AacRaw(data) => {
                let known = matches!(self.audio, Some(AudioCodec::Aac(_)));
                self.audio_frame(known, data, ms, out);
            }
            AudioTag::ExCodedFrame { codec, data } => {
                let known = matches!(
                    (codec, &self.audio),
                    (ExAudioCodec::Aac, Some(AudioCodec::Aac(_)))
                        | (ExAudioCodec::Opus, Some(AudioCodec::Opus(_)))
                );
                let passed_through = matches!(&self.audio,
                    Some(AudioCodec::Opaque { codec: OpaqueCodec::FourCc(cc), .. }) if *cc == codec.fourcc());
                if passed_through {
                    self.audio_frame(true, body.clone(), ms, out);
                } else {
                    self.audio_frame(known, data, ms, out);
                }
            }
            AudioTag::Opaque {
                codec,
                sequence_header,
                body,
            } => {
                if sequence_header {
                    self.set_audio(
                        AudioCodec::Opaque {
                            codec,
                            sequence_header: Some(body),
                        },
                        out,
                    );
                } else {
                    if !matches!(&self.audio, Some(AudioCodec::Opaque { codec: c, .. }) if *c == codec)
                    {
                        self.set_audio(
                            AudioCodec::Opaque {
                                codec,
                                sequence_header: None,
                            },
                            out,
                        );
                    }
                    self.audio_frame(true, body, ms, out);
                }
            }
        }
        Ok(())
    }

    /// A video frame of the configured codec (`known`), else dropped until its header comes.
    fn video_frame(
        &mut self,
        known: bool,
        keyframe: bool,
        cts_ms: i32,
        data: Bytes,
        ms: i64,
        out: &mut Vec<IngestOutput>,
    ) {
        if !known {
            self.warn_no_config("video");
            return;
        }
        let dts = ms_to_ticks(ms);
        self.frame(
            Frame {
                track: TrackKind::Video,
                dts,
                pts: dts + ms_to_ticks(i64::from(cts_ms)),
                keyframe,
                payload: data,
            },
            ms,
            out,
        );
    }

    /// An audio frame of the configured codec (`known`), else dropped until its header comes.
    fn audio_frame(&mut self, known: bool, data: Bytes, ms: i64, out: &mut Vec<IngestOutput>) {
        if !known {
            self.warn_no_config("audio");
            return;
        }
        let dts = ms_to_ticks(ms);
        self.frame(
            Frame {
                track: TrackKind::Audio,
                dts,
                pts: dts,
                keyframe: true,
                payload: data,
            },
            ms,
            out,
        );
    }

    fn warn_no_config(&mut self, what: &str) {
        if !self.warned_no_config {
            self.warned_no_config = true;
            tracing::warn!(
                track = what,
                "media before its sequence header; dropping until it comes"
            );
        }
    }

    fn set_video(&mut self, codec: VideoCodec, out: &mut Vec<IngestOutput>) {
        if self.video.as_ref() == Some(&codec) {
            return;
        }
        // Colour metadata describes the sequence it follows: a new one brings its own.
        self.video_metadata = None;
        self.video = Some(codec);
        self.maybe_announce(true, out);
    }

    fn set_audio(&mut self, codec: AudioCodec, out: &mut Vec<IngestOutput>) {
        if self.audio.as_ref() == Some(&codec) {
            return;
        }
        self.audio = Some(codec);
        self.maybe_announce(true, out);
    }

    fn ready(&self) -> bool {
        (self.video.is_some() || self.audio.is_some())
            && (!self.expect_video || self.video.is_some())
            && (!self.expect_audio || self.audio.is_some())
    }

    fn maybe_announce(&mut self, changed: bool, out: &mut Vec<IngestOutput>) {
        if self.announced {
            if changed {
                out.push(IngestOutput::Announce(Box::new(self.current_info())));
            }
            return;
        }
        if self.ready() {
            self.announce(out);
        }
    }

    fn announce(&mut self, out: &mut Vec<IngestOutput>) {
        self.announced = true;
        out.push(IngestOutput::Announce(Box::new(self.current_info())));
        out.extend(self.pending.drain(..).map(IngestOutput::Frame));
        self.first_pending_ms = None;
    }

    fn frame(&mut self, frame: Frame, ms: i64, out: &mut Vec<IngestOutput>) {
        if self.announced {
            out.push(IngestOutput::Frame(frame));
            return;
        }
        let first = *self.first_pending_ms.get_or_insert(ms);
        self.pending.push_back(frame);
        // A declared track that never sends its configuration must not hold the stream back.
        if self.pending.len() >= MAX_PENDING_FRAMES || ms - first >= MAX_WAIT_MS {
            if self.video.is_some() || self.audio.is_some() {
                tracing::warn!(
                    has_video = self.video.is_some(),
                    has_audio = self.audio.is_some(),
                    "a track declared in onMetaData never arrived; starting without it"
                );
                self.announce(out);
            } else {
                self.pending.clear();
                self.first_pending_ms = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ffmpeg -i in.ts -c copy -f flv rtmp://...` sends empty sequence headers before the
    /// real ones; they are skipped, not fatal, and the real ones then configure the tracks.
    #[test]
    fn empty_sequence_headers_from_ffmpeg_copy_are_skipped() {
        let mut ingest = Ingest::new();
        let mut out = Vec::new();
        // AAC, sequence header, no AudioSpecificConfig.
        ingest
            .audio(0, &Bytes::from_static(&[0xAF, 0x00]), &mut out)
            .expect("empty AAC header skipped");
        // AVC keyframe, sequence header, composition time 0, no record.
        ingest
            .video(0, &Bytes::from_static(&[0x17, 0x00, 0, 0, 0]), &mut out)
            .expect("empty AVC header skipped");
        assert!(out.is_empty(), "{out:?}");
        // The real AAC header (LC, 48 kHz, stereo) is taken.
        ingest
            .audio(0, &Bytes::from_static(&[0xAF, 0x00, 0x11, 0x90]), &mut out)
            .expect("real AAC header");
        assert!(ingest.audio.is_some());
    }
}

#[cfg(test)]
mod enhanced_tests {
    use super::*;
    use crate::flv::ExVideoCodec;
    use crate::flv_mux::FlvMuxer;
    use crate::flv_stream::{FlvReader, FlvTag, TAG_AUDIO, TAG_VIDEO};
    use std::sync::Arc;

    /// ffmpeg 9's Enhanced FLV (see testdata/README.md): HEVC with B-frames + Opus, and AV1.
    const HEVC_OPUS: &[u8] = include_bytes!("../../../testdata/hevc-opus-160x90.flv");
    const AV1: &[u8] = include_bytes!("../../../testdata/av1-160x90.flv");

    fn tags(file: &[u8]) -> Vec<FlvTag> {
        let mut r = FlvReader::default();
        r.push(file);
        let mut tags = Vec::new();
        while let Some(t) = r.next_tag().expect("valid FLV") {
            tags.push(t);
        }
        tags
    }

    /// Feeds every tag of `file` to an `Ingest`; returns the last announcement and the frames.
    fn ingest(file: &[u8]) -> (MediaInfo, Vec<Frame>) {
        let mut ingest = Ingest::new();
        let mut out = Vec::new();
        for t in tags(file) {
            match t.tag_type {
                TAG_VIDEO => ingest.video(t.timestamp, &t.body, &mut out).unwrap(),
                TAG_AUDIO => ingest.audio(t.timestamp, &t.body, &mut out).unwrap(),
                _ => {}
            }
        }
        let mut info = None;
        let mut frames = Vec::new();
        for o in out {
            match o {
                IngestOutput::Announce(i) => info = Some(*i),
                IngestOutput::Frame(f) => frames.push(f),
            }
        }
        (info.expect("tracks announced"), frames)
    }

    #[test]
    fn hevc_and_opus_from_ffmpeg_are_modelled() {
        let (info, frames) = ingest(HEVC_OPUS);
        let hevc = info.hevc().expect("H.265 track");
        assert_eq!((hevc.width, hevc.height), (160, 90));
        let Some(AudioCodec::Opus(opus)) = &info.audio else {
            panic!("{:?}", info.audio)
        };
        assert_eq!(opus.channels, 2);
        let video: Vec<&Frame> = frames
            .iter()
            .filter(|f| f.track == TrackKind::Video)
            .collect();
        // 1 s at 10 fps, GOP 5: IRAP pictures exactly where ffmpeg flagged keyframes.
        assert_eq!(video.len(), 10);
        for f in &video {
            assert_eq!(
                f.keyframe,
                media::hevc::contains_irap(&f.payload, hevc.nal_length_size),
                "{f:?}"
            );
        }
        assert_eq!(video.iter().filter(|f| f.keyframe).count(), 2);
        // B-frames: some composition offsets are positive (CodedFrames), some frames come as
        // CodedFramesX (offset 0).
        assert!(video.iter().any(|f| f.pts > f.dts));
        assert!(video.iter().any(|f| f.pts == f.dts));
        let audio = frames
            .iter()
            .filter(|f| f.track == TrackKind::Audio)
            .count();
        assert!(audio >= 45, "{audio} Opus packets");
        for f in frames.iter().filter(|f| f.track == TrackKind::Audio) {
            assert_eq!(media::opus::packet_samples(&f.payload), Some(960));
        }
    }

    /// An hvcC we cannot read (no arrays) and an unknown packet type do not drop the
    /// publisher: the track is passed through whole, as before HEVC was modelled.
    #[test]
    fn an_unreadable_enhanced_config_is_passed_through() {
        let mut ingest = Ingest::new();
        let mut out = Vec::new();
        let seq = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        ingest.video(0, &seq, &mut out).unwrap();
        let frame = Bytes::from_static(&[0x91, b'h', b'v', b'c', b'1', 0, 0, 0, 0, 0, 0, 1, 0x26]);
        ingest.video(40, &frame, &mut out).unwrap();
        ingest
            .video(
                80,
                &Bytes::from_static(&[0x95, b'h', b'v', b'c', b'1', 9]),
                &mut out,
            )
            .unwrap();
        let Some(IngestOutput::Announce(info)) = out.first() else {
            panic!("{out:?}")
        };
        assert!(matches!(
            &info.video,
            Some(VideoCodec::Opaque { codec: OpaqueCodec::FourCc(cc), sequence_header: Some(b) }) if cc == b"hvc1" && *b == seq
        ));
        let frames: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                IngestOutput::Frame(f) => Some(f.payload.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(frames, [frame]);
    }

    #[test]
    fn av1_from_ffmpeg_is_modelled() {
        let (info, frames) = ingest(AV1);
        let Some(VideoCodec::Av1(av1)) = &info.video else {
            panic!("{:?}", info.video)
        };
        assert_eq!((av1.width, av1.height), (160, 90));
        assert_eq!(info.video_size(), Some((160, 90)));
        assert_eq!(frames.len(), 10);
        assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
    }

    /// What an Enhanced RTMP player gets back (through the same tag headers as RTMP play):
    /// every frame's tag parses to the codec, keyframe flag, composition time and payload the
    /// publisher sent.
    #[test]
    fn enhanced_tags_round_trip_through_the_flv_muxer() {
        for file in [HEVC_OPUS, AV1] {
            let (info, frames) = ingest(file);
            let mut m = FlvMuxer::new();
            m.tracks(Arc::new(info.clone()), 1);
            for f in &frames {
                assert_eq!(m.frame(f), f.payload.len());
            }
            let mut all = Vec::new();
            for piece in m.take() {
                all.extend_from_slice(&piece);
            }
            let (again, frames_again) = ingest(&all);
            assert_eq!(again.video, info.video);
            assert_eq!(again.audio, info.audio);
            assert_eq!(frames_again.len(), frames.len());
            for (a, b) in frames.iter().zip(&frames_again) {
                assert_eq!(
                    (a.track, a.keyframe, &a.payload),
                    (b.track, b.keyframe, &b.payload)
                );
                assert_eq!(a.pts - a.dts, b.pts - b.dts);
            }
            let first = tags(&all)
                .into_iter()
                .find(|t| t.tag_type == TAG_VIDEO)
                .unwrap();
            let cc = match info.video {
                Some(VideoCodec::H265(_)) => ExVideoCodec::Hevc.fourcc(),
                _ => ExVideoCodec::Av1.fourcc(),
            };
            // An Enhanced SequenceStart keyframe with the FourCC.
            assert_eq!(first.body[0], 0x90);
            assert_eq!(first.body[1..5], cc);
        }
    }
}
