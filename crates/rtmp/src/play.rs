//! Player side, sans I/O: hub tracks and frames -> RTMP messages for one player.

use crate::amf0::Amf0Value;
use crate::flv;
use crate::session::MessageWriter;
use media::{AudioCodec, Frame, MediaInfo, TrackKind, ticks_to_ms};
use std::sync::Arc;

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
        if let Some((h, body)) = info.video.as_ref().and_then(flv::video_sequence_header) {
            s.send_media(self.stream_id, true, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = flv::video_metadata_tag(&info) {
            s.send_media(self.stream_id, true, ts, h.as_slice(), &body);
        }
        if let Some((h, body)) = info.audio.as_ref().and_then(flv::audio_sequence_header) {
            s.send_media(self.stream_id, false, ts, h.as_slice(), &body);
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
        let (video, prefix) = match frame.track {
            TrackKind::Video => (true, flv::video_frame_prefix(info.video.as_ref()?, frame)),
            TrackKind::Audio => (false, flv::audio_frame_prefix(info.audio.as_ref()?)),
        };
        let ms = ticks_to_ms(frame.dts);
        if self.rebase {
            self.rebase = false;
            // Continue one frame after the last timestamp sent (see `flv::session_offset`).
            if let Some(last) = self.last_ms {
                self.offset_ms = flv::session_offset(self.offset_ms, ms, last + 1);
            }
        }
        let out_ms = ms + self.offset_ms;
        self.last_ms = Some(out_ms);
        Some(Mapped {
            video,
            // RTMP timestamps are 32-bit and wrap by definition.
            timestamp: out_ms as u32,
            prefix,
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
    prefix: flv::TagPrefix,
}

impl Mapped {
    /// The FLV tag header that precedes the payload.
    pub fn prefix(&self) -> &[u8] {
        self.prefix.as_slice()
    }
}

/// `onMetaData` for players, built from the hub's view of the tracks.
pub fn metadata(info: &MediaInfo) -> Amf0Value {
    let mut fields: Vec<(String, Amf0Value)> = vec![("duration".into(), 0.0.into())];
    if let Some(video) = &info.video {
        if let Some((w, h)) = info.video_size() {
            fields.push(("width".into(), f64::from(w).into()));
            fields.push(("height".into(), f64::from(h).into()));
        }
        fields.push(("videocodecid".into(), flv::video_codec_id(video).into()));
    }
    if let Some(fps) = info.fps() {
        fields.push(("framerate".into(), fps.into()));
    }
    if let Some(audio) = &info.audio {
        fields.push(("audiocodecid".into(), flv::audio_codec_id(audio).into()));
        match audio {
            AudioCodec::Aac(cfg) => {
                fields.push(("audiosamplerate".into(), f64::from(cfg.sample_rate).into()));
                fields.push(("audiosamplesize".into(), 16.0.into()));
                fields.push(("stereo".into(), (cfg.channel_config >= 2).into()));
            }
            AudioCodec::Opus(cfg) => {
                // Opus always decodes at 48 kHz whatever the input rate was.
                fields.push(("audiosamplerate".into(), 48_000.0.into()));
                fields.push(("audiosamplesize".into(), 16.0.into()));
                fields.push(("stereo".into(), (cfg.channels >= 2).into()));
            }
            AudioCodec::Opaque { .. } => {}
        }
    }
    fields.push(("encoder".into(), "ferrocast".into()));
    Amf0Value::EcmaArray(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tracks of the test capture (x264 + AAC, 320x240).
    fn info() -> Arc<MediaInfo> {
        crate::flv_mux::tests::from_file().0
    }

    fn frame(track: TrackKind, ms: i64, keyframe: bool) -> Frame {
        crate::flv_mux::tests::frame(track, ms, keyframe, &[0, 0, 0, 1, 0x65])
    }

    /// Plays `frames` of `session` and returns each one's (video, RTMP timestamp).
    fn play(p: &mut Play, session: u64, frames: &[Frame]) -> Vec<(bool, u32)> {
        let mut w = MessageWriter::new();
        p.tracks(&mut w, info(), session);
        frames
            .iter()
            .map(|f| {
                let m = p.map(f).expect("mapped");
                (m.video, m.timestamp)
            })
            .collect()
    }

    /// Each track's timestamps strictly increase over `sent`.
    fn assert_increasing(sent: &[(bool, u32)]) {
        for video in [true, false] {
            let ts: Vec<u32> = sent.iter().filter(|s| s.0 == video).map(|s| s.1).collect();
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "video {video}: {ts:?}");
        }
    }

    #[test]
    fn a_switch_that_continues_the_timeline_keeps_it_and_a_republish_is_rebased() {
        let mut p = Play::new(1, "live/a");
        let mut sent = play(
            &mut p,
            1,
            &[
                frame(TrackKind::Video, 10_000, true),
                frame(TrackKind::Audio, 10_010, false),
                frame(TrackKind::Video, 10_033, false),
                frame(TrackKind::Audio, 10_031, false),
            ],
        );
        // An input switch: the keyframe comes first at 33 ms past the newest frame, and the
        // new source's audio trails it by 20 ms (still after the last audio sent).
        let switched = play(
            &mut p,
            2,
            &[
                frame(TrackKind::Video, 10_066, true),
                frame(TrackKind::Audio, 10_046, false),
                frame(TrackKind::Audio, 10_067, false),
                frame(TrackKind::Video, 10_099, false),
            ],
        );
        assert_eq!(switched[0], (true, 10_066), "the timeline is kept");
        sent.extend(switched);
        // A republish from zero: continues one millisecond after the last timestamp sent.
        let republished = play(
            &mut p,
            3,
            &[
                frame(TrackKind::Video, 0, true),
                frame(TrackKind::Audio, 5, false),
            ],
        );
        assert_eq!(republished[0], (true, 10_100));
        sent.extend(republished);
        assert_increasing(&sent);
        // One far ahead (a publisher with its own wall clock) is rebased too.
        let ahead = play(&mut p, 4, &[frame(TrackKind::Video, 900_000, true)]);
        assert_eq!(ahead[0], (true, 10_106));
    }
}
