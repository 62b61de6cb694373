//! Media into the hub: FLV that ffmpeg writes back, and (native path) video tags straight from
//! the browser, through the RTMP ingest mapper so tracks are announced exactly as for OBS.

use bytes::Bytes;
use hub::Publisher;
use rtmp::amf0::Amf0Value;
use rtmp::flv_stream::{FlvIngest, FlvIngestError, FlvStreamError, TAG_AUDIO};
use rtmp::ingest::{IngestError, IngestOutput};

/// Why a feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// ffmpeg's output is not FLV.
    #[error("ffmpeg output: {0}")]
    Flv(#[from] FlvStreamError),
    /// A tag could not be mapped (bad codec configuration, malformed tag).
    #[error("{0}")]
    Ingest(#[from] IngestError),
}

/// One publisher's media path into the hub.
#[derive(Debug)]
pub struct Feed {
    flv: FlvIngest,
    out: Vec<IngestOutput>,
    publisher: Publisher,
    /// Video comes from the browser, so only ffmpeg's audio is taken from its FLV.
    audio_only: bool,
    /// Added to ffmpeg's audio timestamps: the browser time of the first audio packet.
    audio_offset_ms: u32,
    frames: u64,
}

impl Feed {
    /// A feed of ffmpeg's whole FLV output (api.video path).
    pub fn flv(publisher: Publisher) -> Self {
        Self::new(publisher, false)
    }

    /// A feed whose video comes from [`Feed::video`] and audio, if `audio`, from ffmpeg
    /// (native path).
    pub fn native(publisher: Publisher, audio: bool) -> Self {
        let mut feed = Self::new(publisher, true);
        // Declares the tracks, so the mapper waits for both configurations before announcing.
        let meta = Amf0Value::ecma_array([
            ("hasVideo", Amf0Value::Boolean(true)),
            ("hasAudio", Amf0Value::Boolean(audio)),
        ]);
        feed.flv.ingest().metadata(&meta, &mut feed.out);
        feed.flush();
        feed
    }

    fn new(publisher: Publisher, audio_only: bool) -> Self {
        Feed {
            flv: FlvIngest::default(),
            out: Vec::new(),
            publisher,
            audio_only,
            audio_offset_ms: 0,
            frames: 0,
        }
    }

    /// The hub publisher.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Frames written to the hub so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Sets the browser time that ffmpeg's audio timestamp 0 stands for.
    pub fn set_audio_offset(&mut self, ms: u32) {
        self.audio_offset_ms = ms;
    }

    /// Bytes that ffmpeg wrote to stdout.
    pub fn ffmpeg_output(&mut self, data: &[u8]) -> Result<(), FeedError> {
        self.flv.push(data);
        let (audio_only, offset) = (self.audio_only, self.audio_offset_ms);
        loop {
            // Native path: video (and its metadata) come from the browser, not from ffmpeg.
            let r = self.flv.next(&mut self.out, |tag, ms| match tag {
                TAG_AUDIO => Some(ms.wrapping_add(offset)),
                _ => (!audio_only).then_some(ms),
            });
            self.flush();
            match r {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(FlvIngestError::Flv(e)) => return Err(FeedError::Flv(e)),
                Err(FlvIngestError::Ingest(e)) => return Err(FeedError::Ingest(e)),
            }
        }
    }

    /// One FLV video tag body from the browser (native path), at `ms` browser time.
    pub fn video(&mut self, ms: u32, body: &Bytes) -> Result<(), FeedError> {
        let r = self.flv.ingest().video(ms, body, &mut self.out);
        self.flush();
        Ok(r?)
    }

    fn flush(&mut self) {
        for o in self.out.drain(..) {
            match o {
                IngestOutput::Announce(info) => self.publisher.announce(*info),
                IngestOutput::Frame(f) => {
                    self.frames += 1;
                    self.publisher.write(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub::{Event, Hub, HubConfig, PublisherMeta};
    use rtmp::flv_stream::{FlvReader, TAG_VIDEO};

    const FLV: &[u8] = include_bytes!("../../../testdata/h264-aac-320x240.flv");

    #[tokio::test]
    async fn ffmpeg_flv_in_any_pieces_becomes_hub_tracks_and_frames() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish("f", PublisherMeta::default()).expect("publish");
        let mut sub = hub.subscribe("f", "test");
        let mut feed = Feed::flv(p);
        for piece in FLV.chunks(777) {
            feed.ffmpeg_output(piece).expect("valid FLV");
        }
        assert!(feed.frames() > 20, "{} frames", feed.frames());
        let mut tracks = None;
        while let Some(ev) = sub.try_recv() {
            if let Event::Tracks { info, .. } = ev {
                tracks = Some(info);
                break;
            }
        }
        let info = tracks.expect("tracks announced");
        assert!(info.video.is_some() && info.audio.is_some(), "{info:?}");
    }

    #[tokio::test]
    async fn native_feed_waits_for_audio_before_announcing() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish("n", PublisherMeta::default()).expect("publish");
        let mut feed = Feed::native(p, true);
        // Video tags from the file stand in for the browser's; no audio yet.
        let mut r = FlvReader::default();
        r.push(FLV);
        let mut audio = Vec::new();
        while let Some(t) = r.next_tag().expect("valid") {
            match t.tag_type {
                TAG_VIDEO => feed.video(t.timestamp, &t.body).expect("video"),
                TAG_AUDIO => audio.push(t),
                _ => {}
            }
        }
        assert_eq!(
            feed.frames(),
            0,
            "held until the audio configuration is known"
        );
        assert!(hub.stats("n").is_some());
        let _ = audio;
    }

    #[test]
    fn not_flv_is_an_error() {
        let hub = Hub::new(HubConfig::default());
        let p = hub.publish("x", PublisherMeta::default()).expect("publish");
        let mut feed = Feed::flv(p);
        assert!(matches!(
            feed.ffmpeg_output(b"\x1aE\xdf\xa3 not flv"),
            Err(FeedError::Flv(_))
        ));
    }
}
