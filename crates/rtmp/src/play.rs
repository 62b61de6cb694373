//! Player side, sans I/O: hub tracks and frames -> RTMP messages for one player.

use crate::amf0::Amf0Value;
use crate::flv;
use crate::session::ServerSession;
use bytes::Bytes;
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

    /// Message stream id this player plays on.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// New or changed tracks: status messages, metadata, then sequence headers.
    pub fn tracks(&mut self, s: &mut ServerSession, info: Arc<MediaInfo>, session: u64) {
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
    pub fn frame(&mut self, s: &mut ServerSession, frame: &Frame) -> usize {
        let Some(info) = &self.info else { return 0 };
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
        // RTMP timestamps are 32-bit and wrap by definition.
        let ts = out_ms as u32;
        let empty = Bytes::new();
        match frame.track {
            TrackKind::Video => match &info.video {
                Some(VideoCodec::H264(_)) => {
                    let cts = ticks_to_ms(frame.pts - frame.dts);
                    let cts = cts.clamp(-(1 << 23), (1 << 23) - 1) as i32;
                    let h = flv::avc_video_header(frame.keyframe, CODED_FRAME, cts);
                    s.send_media(self.stream_id, true, ts, &h, &frame.payload);
                }
                Some(VideoCodec::Opaque { .. }) => {
                    s.send_media(self.stream_id, true, ts, &[], &frame.payload)
                }
                None => return 0,
            },
            TrackKind::Audio => match &info.audio {
                Some(AudioCodec::Aac(cfg)) => {
                    let h = flv::aac_audio_header(cfg, CODED_FRAME);
                    s.send_media(self.stream_id, false, ts, &h, &frame.payload);
                }
                Some(AudioCodec::Opaque { .. }) => {
                    s.send_media(self.stream_id, false, ts, &[], &frame.payload)
                }
                None => return 0,
            },
        }
        let _ = empty;
        frame.payload.len()
    }

    /// The publisher left.
    pub fn end(&mut self, s: &mut ServerSession) {
        if self.started {
            s.play_unpublished(self.stream_id, &self.name);
        }
        self.info = None;
    }
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
