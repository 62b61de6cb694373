//! Publisher side, sans I/O: FLV tags from an RTMP publisher -> hub track info and frames.
//!
//! Tracks are announced once every track the publisher declared in `onMetaData` has its
//! decoder configuration, so outputs never start with a half-known program (a TS muxer that
//! learns of audio late would have to change its PMT mid-segment). Frames that arrive before
//! that are held in a bounded queue and released after the announcement.

use crate::amf0::Amf0Value;
use crate::flv::{self, AudioTag, VideoTag};
use bytes::Bytes;
use media::{
    AacConfig, AudioCodec, AvcConfig, Frame, MediaInfo, TrackKind, VideoCodec, ms_to_ticks,
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
    Announce(MediaInfo),
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
            VideoTag::AvcNalu {
                keyframe,
                cts_ms,
                data,
            } => {
                if self.video.is_none() {
                    self.warn_no_config("video");
                    return Ok(());
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
                    let dts = ms_to_ticks(ms);
                    self.frame(
                        Frame {
                            track: TrackKind::Video,
                            dts,
                            pts: dts,
                            keyframe,
                            payload: body,
                        },
                        ms,
                        out,
                    );
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
            AudioTag::AacRaw(data) => {
                if self.audio.is_none() {
                    self.warn_no_config("audio");
                    return Ok(());
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
                    let dts = ms_to_ticks(ms);
                    self.frame(
                        Frame {
                            track: TrackKind::Audio,
                            dts,
                            pts: dts,
                            keyframe: true,
                            payload: body,
                        },
                        ms,
                        out,
                    );
                }
            }
        }
        Ok(())
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
                out.push(IngestOutput::Announce(self.current_info()));
            }
            return;
        }
        if self.ready() {
            self.announce(out);
        }
    }

    fn announce(&mut self, out: &mut Vec<IngestOutput>) {
        self.announced = true;
        out.push(IngestOutput::Announce(self.current_info()));
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
