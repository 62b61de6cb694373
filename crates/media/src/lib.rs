//! Codec-neutral media model: frames, tracks and codec configurations.
//!
//! Every timestamp inside the hub uses one 90 kHz timebase ([`TIMEBASE`]); each protocol converts
//! at its edge (RTMP milliseconds, MPEG-TS 90 kHz, MP4 track timescales). No I/O lives here.

pub mod aac;
pub mod av1;
pub mod avc;
pub mod bits;
pub mod crc;
pub mod hevc;
pub mod opus;

use bytes::Bytes;
use std::fmt;

pub use aac::AacConfig;
pub use av1::Av1Config;
pub use avc::AvcConfig;
pub use hevc::HevcConfig;
pub use opus::OpusConfig;

/// Ticks per second of every hub timestamp.
pub const TIMEBASE: i64 = 90_000;

/// Converts milliseconds to hub ticks.
pub const fn ms_to_ticks(ms: i64) -> i64 {
    ms * (TIMEBASE / 1000)
}

/// Converts hub ticks to milliseconds, rounding toward negative infinity.
pub const fn ticks_to_ms(ticks: i64) -> i64 {
    ticks.div_euclid(TIMEBASE / 1000)
}

/// Which elementary stream a frame belongs to; a stream carries at most one of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// The video track.
    Video,
    /// The audio track.
    Audio,
}

/// One access unit, stored once and shared by every output.
///
/// Payload layout depends on the track's codec: H.264 is AVCC (NAL units prefixed by
/// [`AvcConfig::nal_length_size`]-byte lengths), H.265 the same with
/// [`HevcConfig::nal_length_size`], AV1 is the temporal unit's OBUs in the low-overhead format
/// (as in ISOBMFF samples), AAC is one raw access unit without ADTS, Opus one packet, and an
/// [`VideoCodec::Opaque`]/[`AudioCodec::Opaque`] track carries the whole FLV tag body untouched.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Track this frame belongs to.
    pub track: TrackKind,
    /// Decode timestamp, [`TIMEBASE`] ticks.
    pub dts: i64,
    /// Presentation timestamp, [`TIMEBASE`] ticks (equal to `dts` when there is no reordering).
    pub pts: i64,
    /// A random access point: an IDR picture for video; every audio frame is one.
    pub keyframe: bool,
    /// Encoded data, shared by reference.
    pub payload: Bytes,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("track", &self.track)
            .field("dts", &self.dts)
            .field("pts", &self.pts)
            .field("keyframe", &self.keyframe)
            .field("len", &self.payload.len())
            .finish()
    }
}

/// Video codec of a track with its decoder configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoCodec {
    /// H.264 / AVC.
    H264(AvcConfig),
    /// H.265 / HEVC.
    H265(HevcConfig),
    /// AV1.
    Av1(Av1Config),
    /// A codec the gateway does not parse: frames are whole FLV video tag bodies, passed through
    /// to RTMP players untouched and skipped by outputs that need to understand them.
    Opaque {
        /// FLV codec id (low nibble of the first tag byte), or the Enhanced RTMP FourCC.
        codec: OpaqueCodec,
        /// The whole FLV tag body of the latest sequence header, if the codec has one.
        sequence_header: Option<Bytes>,
    },
}

/// Audio codec of a track with its decoder configuration.
#[derive(Clone, Debug, PartialEq)]
pub enum AudioCodec {
    /// AAC (MPEG-4 audio).
    Aac(AacConfig),
    /// Opus.
    Opus(OpusConfig),
    /// A codec the gateway does not parse; see [`VideoCodec::Opaque`].
    Opaque {
        /// FLV sound format id.
        codec: OpaqueCodec,
        /// The whole FLV tag body of the latest sequence header, if the codec has one.
        sequence_header: Option<Bytes>,
    },
}

/// Identity of a codec carried without parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpaqueCodec {
    /// Legacy FLV codec id.
    FlvId(u8),
    /// Enhanced RTMP FourCC, e.g. `hvc1`.
    FourCc([u8; 4]),
}

impl fmt::Display for OpaqueCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpaqueCodec::FlvId(id) => write!(f, "flv-codec-{id}"),
            OpaqueCodec::FourCc(cc) => write!(f, "{}", String::from_utf8_lossy(cc)),
        }
    }
}

impl VideoCodec {
    /// Short codec name for logs and stats (`h264`, `hvc1`, ...).
    pub fn name(&self) -> String {
        match self {
            VideoCodec::H264(_) => "h264".into(),
            VideoCodec::H265(_) => "h265".into(),
            VideoCodec::Av1(_) => "av1".into(),
            VideoCodec::Opaque { codec, .. } => codec.to_string(),
        }
    }

    /// RFC 6381 codec string (`avc1.64001f`, `hvc1.1.6.L93.90`, `av01.0.08M.08`), for the
    /// codecs whose configuration says it.
    pub fn codec_string(&self) -> Option<String> {
        match self {
            VideoCodec::H264(c) => Some(c.codec_string()),
            VideoCodec::H265(c) => Some(c.codec_string()),
            VideoCodec::Av1(c) => Some(c.codec_string()),
            VideoCodec::Opaque { .. } => None,
        }
    }
}

impl AudioCodec {
    /// Short codec name for logs and stats (`aac`, ...).
    pub fn name(&self) -> String {
        match self {
            AudioCodec::Aac(_) => "aac".into(),
            AudioCodec::Opus(_) => "opus".into(),
            AudioCodec::Opaque { codec, .. } => codec.to_string(),
        }
    }

    /// RFC 6381 codec string (`mp4a.40.2`; Opus in ISOBMFF is just `opus`).
    pub fn codec_string(&self) -> Option<String> {
        match self {
            AudioCodec::Aac(c) => Some(c.codec_string()),
            AudioCodec::Opus(_) => Some("opus".into()),
            AudioCodec::Opaque { .. } => None,
        }
    }
}

/// How much shorter than its target a segment may be and still be cut at a keyframe (5 %, at
/// most 100 ms), in [`TIMEBASE`] ticks. Keyframes every `target` seconds do not always land a
/// whole target apart in decode time: B-frames move a keyframe's DTS by a frame or two, and a
/// rendition (no B-frames, millisecond timestamps) must cut where its source cuts.
pub fn cut_slack(target: i64) -> i64 {
    (target / 20).clamp(0, TIMEBASE / 10)
}

/// The tracks of one publish session as announced to outputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MediaInfo {
    /// The video track, if the stream has one.
    pub video: Option<VideoCodec>,
    /// The audio track, if the stream has one.
    pub audio: Option<AudioCodec>,
    /// Frame rate announced by the publisher (e.g. RTMP `onMetaData.framerate`), if any.
    pub framerate: Option<f64>,
    /// The publisher's Enhanced RTMP video metadata (the AMF `colorInfo` of HDR video) as it
    /// came after the FourCC, passed on to RTMP and FLV players with the sequence start.
    pub video_metadata: Option<Bytes>,
}

impl MediaInfo {
    /// Whether `other` has the same tracks, whatever its video metadata: a change of
    /// `colorInfo` alone is no new configuration for a decoder.
    pub fn same_tracks(&self, other: &MediaInfo) -> bool {
        self.video == other.video && self.audio == other.audio && self.framerate == other.framerate
    }

    /// The H.264 configuration if the video track is H.264.
    pub fn avc(&self) -> Option<&AvcConfig> {
        match &self.video {
            Some(VideoCodec::H264(c)) => Some(c),
            _ => None,
        }
    }

    /// The H.265 configuration if the video track is H.265.
    pub fn hevc(&self) -> Option<&HevcConfig> {
        match &self.video {
            Some(VideoCodec::H265(c)) => Some(c),
            _ => None,
        }
    }

    /// The displayed picture size, for codecs whose configuration tells it.
    pub fn video_size(&self) -> Option<(u32, u32)> {
        match &self.video {
            Some(VideoCodec::H264(c)) => Some((c.width, c.height)),
            Some(VideoCodec::H265(c)) => Some((c.width, c.height)),
            Some(VideoCodec::Av1(c)) if c.width > 0 => Some((c.width, c.height)),
            _ => None,
        }
    }

    /// The frame rate: the publisher's announcement, else the codec's timing info.
    pub fn fps(&self) -> Option<f64> {
        self.framerate.or(match &self.video {
            Some(VideoCodec::H264(c)) => c.fps,
            Some(VideoCodec::H265(c)) => c.fps,
            _ => None,
        })
    }

    /// The AAC configuration if the audio track is AAC.
    pub fn aac(&self) -> Option<&AacConfig> {
        match &self.audio {
            Some(AudioCodec::Aac(c)) => Some(c),
            _ => None,
        }
    }
}

/// Errors from parsing codec configurations and bitstreams.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// Input ended before a complete structure.
    #[error("{what}: truncated at byte {offset}")]
    Truncated {
        /// The structure being parsed.
        what: &'static str,
        /// Byte offset where data ran out.
        offset: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{what}: {reason}")]
    Invalid {
        /// The structure being parsed.
        what: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A valid structure this implementation does not handle.
    #[error("{what}: unsupported {reason}")]
    Unsupported {
        /// The structure being parsed.
        what: &'static str,
        /// What is unsupported.
        reason: String,
    },
}

/// The wall clock now as Unix milliseconds, the unit of [`iso8601`] (0 before 1970).
pub fn unix_ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix milliseconds as an ISO 8601 UTC date: `2026-11-21T13:31:00.123Z` (MPD times, HLS
/// `EXT-X-PROGRAM-DATE-TIME`).
pub fn iso8601(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_iso8601(&mut out, ms);
    out
}

/// Appends [`iso8601`]`(ms)` to `out`.
pub fn write_iso8601(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Writing to a String cannot fail.
    let _ = std::fmt::Write::write_fmt(
        out,
        format_args!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        ),
    );
}
