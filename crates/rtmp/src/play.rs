//! Player side, sans I/O: hub tracks and frames -> RTMP messages for one player.

use crate::amf0::Amf0Value;
use crate::flv;
use crate::session::MessageWriter;
use media::{AudioCodec, Frame, MediaInfo, TrackKind, VideoCodec, ticks_to_ms};
use std::sync::Arc;

/// FLV packet types of the AVC/AAC tag headers.
const SEQUENCE_HEADER: u8 = 0;
const CODED_FRAME: u8 = 1;

/// Per-player mapping state.
#[derive(Debug)]
pub struct Play {
    stream_id: u32,
    name: String,
    info: Option<Arc<MediaInfo>>,
    session: Option<u64>,
    /// Added to hub milliseconds so a republish (which restarts timestamps) stays monotonic.
    offset_ms: i64,
    rebase: bool,
    last_ms: Option<i64>,
    started: bool,
}

impl Play {
    /// A player on `stream_id` of the stream `name`.
    pub fn new(stream_id: u32, name: &str) -> Self {
        Play {
            stream_id,
            name: name.to_owned(),
            info: None,
            session: None,
            offset_ms: 0,
            rebase: false,
            last_ms: None,
            started: false,
        }
    }

    /// Whether playback has started (the first tracks were sent).
    pub fn started(&self) -> bool {
        self.started
    }

    /// Publish session of the tracks last sent, if any.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Message stream id this player plays on.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// New or changed tracks: status messages, metadata, then sequence headers.
    pub fn tracks(&mut self, s: &mut MessageWriter, info: Arc<MediaInfo>, session: u64) {
        if !self.started {
            self.started = true;
            s.accept_play(self.stream_id, &self.name);
        } else if self.session != Some(session) {
            s.play_published(self.stream_id, &self.name);
            self.rebase = true;
        }
        self.session = Some(session);
        s.send_metadata(self.stream_id, metadata(&info));
        let ts = self.last_ms.map_or(0, |m| m as u32);
        match &info.video {
            Some(VideoCodec::H264(cfg)) => {
                let h = flv::avc_video_header(true, SEQUENCE_HEADER, 0);
                s.send_media(self.stream_id, true, ts, &h, &cfg.record);
            }
            Some(VideoCodec::Opaque {
                sequence_header: Some(body),
                ..
            }) => s.send_media(self.stream_id, true, ts, &[], body),
            _ => {}
        }
        match &info.audio {
            Some(AudioCodec::Aac(cfg)) => {
                let h = flv::aac_audio_header(cfg, SEQUENCE_HEADER);
                s.send_media(self.stream_id, false, ts, &h, &cfg.asc);
            }
            Some(AudioCodec::Opaque {
                sequence_header: Some(body),
                ..
            }) => s.send_media(self.stream_id, false, ts, &[], body),
            _ => {}
        }
        self.info = Some(info);
    }

    /// One frame; returns the bytes of payload queued.
    pub fn frame(&mut self, s: &mut MessageWriter, frame: &Frame) -> usize {
        let Some(m) = self.map(frame) else { return 0 };
        s.send_media(
            self.stream_id,
            m.video,
            m.timestamp,
            m.prefix(),
            &frame.payload,
        );
        frame.payload.len()
    }

    /// How `frame` goes out to this player (timestamp, tag header), advancing its clock;
    /// `None` if the frame's track is not being played.
    pub fn map(&mut self, frame: &Frame) -> Option<Mapped> {
        let info = self.info.as_ref()?;
        let (video, prefix, len) = match frame.track {
            TrackKind::Video => match info.video.as_ref()? {
                VideoCodec::H264(_) => {
                    let cts = ticks_to_ms(frame.pts - frame.dts);
                    let cts = cts.clamp(-(1 << 23), (1 << 23) - 1) as i32;
                    let h = flv::avc_video_header(frame.keyframe, CODED_FRAME, cts);
                    (true, pad(&h), h.len())
                }
                VideoCodec::Opaque { .. } => (true, [0; 5], 0),
            },
            TrackKind::Audio => match info.audio.as_ref()? {
                AudioCodec::Aac(cfg) => {
                    let h = flv::aac_audio_header(cfg, CODED_FRAME);
                    (false, pad(&h), h.len())
                }
                AudioCodec::Opaque { .. } => (false, [0; 5], 0),
            },
        };
        let ms = ticks_to_ms(frame.dts);
        if self.rebase {
            self.rebase = false;
            // Continue one frame after the last timestamp sent before the republish.
            if let Some(last) = self.last_ms {
                self.offset_ms = last + 1 - ms;
            }
        }
        let out_ms = ms + self.offset_ms;
        self.last_ms = Some(out_ms);
        Some(Mapped {
            video,
            // RTMP timestamps are 32-bit and wrap by definition.
            timestamp: out_ms as u32,
            prefix,
            prefix_len: len as u8,
        })
    }

    /// The player stopped its play (`deleteStream`, `closeStream`).
    pub fn stop(&mut self, s: &mut MessageWriter) {
        if self.started {
            s.play_stopped(self.stream_id, &self.name);
        }
        self.info = None;
    }

    /// The publisher left.
    pub fn end(&mut self, s: &mut MessageWriter) {
        if self.started {
            s.play_unpublished(self.stream_id, &self.name);
        }
        self.info = None;
    }
}

/// A frame as one player receives it: the message's timestamp and its FLV tag header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapped {
    /// Video (else audio) message.
    pub video: bool,
    /// RTMP timestamp in ms.
    pub timestamp: u32,
    prefix: [u8; 5],
    prefix_len: u8,
}

impl Mapped {
    /// The FLV tag header that precedes the payload.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len as usize]
    }
}

fn pad(h: &[u8]) -> [u8; 5] {
    let mut p = [0; 5];
    let n = h.len().min(5);
    p[..n].copy_from_slice(&h[..n]);
    p
}

/// `onMetaData` for players, built from the hub's view of the tracks.
pub fn metadata(info: &MediaInfo) -> Amf0Value {
    let mut fields: Vec<(String, Amf0Value)> = vec![("duration".into(), 0.0.into())];
    match &info.video {
        Some(VideoCodec::H264(cfg)) => {
            fields.push(("width".into(), f64::from(cfg.width).into()));
            fields.push(("height".into(), f64::from(cfg.height).into()));
            fields.push(("videocodecid".into(), 7.0.into()));
        }
        Some(VideoCodec::Opaque {
            codec: media::OpaqueCodec::FlvId(id),
            ..
        }) => fields.push(("videocodecid".into(), f64::from(*id).into())),
        _ => {}
    }
    if let Some(fps) = info.framerate.or_else(|| info.avc().and_then(|c| c.fps)) {
        fields.push(("framerate".into(), fps.into()));
    }
    match &info.audio {
        Some(AudioCodec::Aac(cfg)) => {
            fields.push(("audiocodecid".into(), 10.0.into()));
            fields.push(("audiosamplerate".into(), f64::from(cfg.sample_rate).into()));
            fields.push(("audiosamplesize".into(), 16.0.into()));
            fields.push(("stereo".into(), (cfg.channel_config >= 2).into()));
        }
        Some(AudioCodec::Opaque {
            codec: media::OpaqueCodec::FlvId(id),
            ..
        }) => fields.push(("audiocodecid".into(), f64::from(*id).into())),
        _ => {}
    }
    fields.push(("encoder".into(), "ferrocast".into()));
    Amf0Value::EcmaArray(fields)
}
