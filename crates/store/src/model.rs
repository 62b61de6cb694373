//! The persisted stream configuration.

use serde::{Deserialize, Serialize};

/// One configured stream as stored. Timestamps are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// `[A-Za-z0-9_-]{1,128}`, the primary key.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Labels for grouping and search.
    pub tags: Vec<String>,
    /// Secret required to publish (`?key=`), if set.
    pub stream_key: Option<String>,
    /// A disabled stream refuses publishers.
    pub disabled: bool,
    /// Which outputs run for this stream.
    pub protocols: Protocols,
    /// Remote destinations the stream is pushed to.
    pub push: Vec<PushDestination>,
    /// Sources of the stream, tried by priority; empty means "whoever publishes".
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    /// How the stream chooses among its inputs.
    #[serde(default)]
    pub failover: Failover,
    /// Whether and how the stream is recorded to disk.
    #[serde(default)]
    pub recording: RecordingSpec,
    /// Renditions made from the stream by an ffmpeg child (an ABR ladder).
    #[serde(default)]
    pub transcode: TranscodeSpec,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
}

/// Output switches; every one defaults to on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Protocols {
    /// HLS playlist and segments.
    pub hls: bool,
    /// DASH MPD and segments.
    pub dash: bool,
    /// RTMP play.
    pub rtmp: bool,
    /// SRT play.
    pub srt: bool,
    /// RTSP play.
    pub rtsp: bool,
    /// MPEG-TS over HTTP.
    pub mpegts: bool,
}

impl Default for Protocols {
    fn default() -> Self {
        Protocols {
            hls: true,
            dash: true,
            rtmp: true,
            srt: true,
            rtsp: true,
            mpegts: true,
        }
    }
}

/// One push destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PushDestination {
    /// `rtmp://` or `rtmps://` URL including the stream key.
    pub url: String,
    /// Whether a worker runs for it.
    pub enabled: bool,
    /// Connect + handshake budget in seconds.
    pub timeout_s: u32,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Consecutive failed attempts before giving up; 0 = never.
    pub limit: u32,
    /// Free text.
    pub comment: String,
    /// Which rendition of the stream's ladder is pushed (`720p`); empty: the stream itself.
    #[serde(default)]
    pub rendition: String,
}

/// Exponential backoff with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// First delay, seconds.
    pub initial_s: f64,
    /// Largest delay, seconds.
    pub max_s: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_s: 1.0,
            max_s: 30.0,
        }
    }
}

/// One source of a stream: an encoder publishing to the gateway (`publish://`) or a source
/// the gateway pulls (`rtmp://`, `rtmps://`, `rtsp://`, `rtsps://`, `srt://` caller, `udp://`
/// MPEG-TS, `http(s)://` MPEG-TS or HLS `.m3u8`, `file://` looped).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InputSpec {
    /// Where the media comes from; credentials and keys in it are write-only in the API.
    pub url: String,
    /// Lower is preferred; equal priorities keep list order.
    pub priority: u32,
    /// A disabled input is never started.
    pub enabled: bool,
    /// RTSP only: `tcp` (interleaved, the default), `udp`.
    pub rtsp_transport: RtspTransport,
    /// Free text.
    pub comment: String,
}

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            url: String::new(),
            priority: 0,
            enabled: true,
            rtsp_transport: RtspTransport::Tcp,
            comment: String::new(),
        }
    }
}

/// How RTP travels for an `rtsp://` input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved on the RTSP connection: works through NAT and firewalls.
    #[default]
    Tcp,
    /// RTP/RTCP over UDP ports the gateway picks.
    Udp,
}

/// Health and switching rules of a stream with inputs (Open-Streamer and MediaMTX names).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Failover {
    /// An input that delivers nothing for this long is down, seconds (>= 1).
    pub packet_timeout_s: f64,
    /// A preferred input must stay healthy this long before the stream returns to it, seconds.
    pub failback_after_s: f64,
    /// Pull only while someone reads the stream (MediaMTX `sourceOnDemand`).
    pub on_demand: bool,
    /// With `on_demand`, stop pulling after this long without readers, seconds.
    pub close_after_s: f64,
    /// Reconnect backoff of pulled inputs.
    pub retry: RetryPolicy,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            packet_timeout_s: 30.0,
            failback_after_s: 10.0,
            on_demand: false,
            close_after_s: 10.0,
            retry: RetryPolicy {
                initial_s: 1.0,
                max_s: 10.0,
            },
        }
    }
}

/// Recording of a stream to disk (issue 15): what the recorder writes and how long it keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordingSpec {
    /// Record every publish of this stream.
    pub enabled: bool,
    /// File format of the recordings.
    pub format: RecordingFormat,
    /// Start a new file at the first keyframe after this many seconds (>= 1).
    pub rotate_s: f64,
    /// Also start a new file once the current one reaches this many bytes (0: no limit; else
    /// >= 1 MiB).
    pub rotate_bytes: u64,
    /// Delete files older than this many seconds (0: keep forever).
    pub max_age_s: f64,
    /// Delete the oldest files while this stream's recordings exceed this many bytes (0: no
    /// limit; else >= 1 MiB).
    pub max_bytes: u64,
    /// Daily windows (`HH:MM-HH:MM`, UTC; one may cross midnight) outside which the stream is
    /// not recorded; empty: always.
    pub schedule: Vec<String>,
}

impl RecordingSpec {
    /// The schedule as (start, stop) minutes of the UTC day; entries that do not parse are
    /// left out (validation refuses them before they are stored).
    pub fn windows(&self) -> Vec<(u32, u32)> {
        self.schedule
            .iter()
            .filter_map(|w| parse_window(w))
            .collect()
    }
}

/// `HH:MM-HH:MM` as (start, stop) minutes of the day; `None` unless both are valid times and
/// differ.
pub fn parse_window(w: &str) -> Option<(u32, u32)> {
    let minutes = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (a, b) = w.split_once('-')?;
    let (a, b) = (minutes(a)?, minutes(b)?);
    (a != b).then_some((a, b))
}

impl Default for RecordingSpec {
    fn default() -> Self {
        RecordingSpec {
            enabled: false,
            format: RecordingFormat::Ts,
            rotate_s: 600.0,
            rotate_bytes: 0,
            max_age_s: 0.0,
            max_bytes: 0,
            schedule: Vec::new(),
        }
    }
}

/// File format of a stream's recordings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingFormat {
    /// MPEG-TS files (`.ts`): playable while being written and after a crash.
    #[default]
    Ts,
    /// Fragmented MP4 files (`.mp4`, ISO BMFF with a fragment per GOP): what editors and
    /// browsers take, also playable while being written and after a crash.
    Fmp4,
}

impl RecordingFormat {
    /// The name in JSON and in the API (`ts`, `fmp4`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingFormat::Ts => "ts",
            RecordingFormat::Fmp4 => "fmp4",
        }
    }
}

/// Renditions of a stream (issue 15): an ffmpeg child per live stream reads it from the hub
/// and writes each rung of the ladder back as the hub stream `<code>_<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscodeSpec {
    /// Run the ladder whenever the stream is live.
    pub enabled: bool,
    /// The ladder, best first; `source` is the stream itself, untouched.
    pub profiles: Vec<RenditionSpec>,
    /// Which video encoder family to use; `auto` probes once and falls back to software.
    pub hwaccel: HwAccel,
    /// Keyframe cadence of the renditions, seconds, when the ladder has no `source` rung (with
    /// one, keyframes follow the source's so segments align with it).
    pub keyframe_interval_s: f64,
    /// What the renditions carry as audio.
    pub audio: TranscodeAudio,
    /// An image drawn over every rendition.
    pub watermark: Option<Watermark>,
    /// Text (and optionally the wall-clock time) burnt into every rendition.
    pub text: Option<TextOverlay>,
}

impl Default for TranscodeSpec {
    fn default() -> Self {
        TranscodeSpec {
            enabled: false,
            profiles: Vec::new(),
            hwaccel: HwAccel::Auto,
            keyframe_interval_s: 2.0,
            audio: TranscodeAudio::default(),
            watermark: None,
            text: None,
        }
    }
}

/// The code a rung of `code`'s ladder is published under (`<code>_<name>`).
pub fn rendition_code(code: &str, name: &str) -> String {
    format!("{code}_{name}")
}

impl TranscodeSpec {
    /// The rung named `name`, other than `source` (which is the stream itself).
    pub fn rung(&self, name: &str) -> Option<&RenditionSpec> {
        self.profiles
            .iter()
            .find(|p| !p.is_source() && p.name == name)
    }

    /// Whether a ladder runs: enabled, with at least one rung that is not `source`.
    pub fn active(&self) -> bool {
        self.enabled && self.profiles.iter().any(|p| !p.is_source())
    }

    /// Whether the ladder lists the source itself.
    pub fn has_source(&self) -> bool {
        self.profiles.iter().any(RenditionSpec::is_source)
    }
}

/// One rung of a ladder. A preset name (`1080p`, `720p`, `480p`, `360p`, `240p`) fills every
/// field left at 0 or empty; `source` passes the original through.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RenditionSpec {
    /// `[a-z0-9-]{1,16}`: the suffix of the rendition's code (`<code>_<name>`).
    pub name: String,
    /// Output width; 0 keeps the source's aspect ratio from `height`.
    pub width: u32,
    /// Output height; 0 takes the preset's.
    pub height: u32,
    /// Video bitrate, kbit/s; 0 takes the preset's.
    pub video_bitrate_kbps: u32,
    /// Frame rate cap; 0 keeps the source's.
    pub max_framerate: f64,
    /// H.264 profile (`baseline`, `main`, `high`); empty takes the preset's.
    pub profile: String,
    /// H.264 level (`3.1`, `4.1`, ...); empty takes the preset's.
    pub level: String,
}

/// A rung with its blanks filled from the preset of its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendition {
    /// The rung's name.
    pub name: String,
    /// 0: from `height` keeping the aspect ratio.
    pub width: u32,
    /// Output height.
    pub height: u32,
    /// Video bitrate, kbit/s.
    pub video_bitrate_kbps: u32,
    /// 0: the source's rate.
    pub max_framerate: f64,
    /// H.264 profile.
    pub profile: String,
    /// H.264 level.
    pub level: String,
}

/// Preset rungs: name, height, kbit/s, fps cap, profile, level (round figures near common
/// published ladders, not any one vendor's table).
pub const PRESETS: &[(&str, u32, u32, f64, &str, &str)] = &[
    ("1080p", 1080, 5000, 60.0, "high", "4.2"),
    ("720p", 720, 2800, 60.0, "high", "3.2"),
    ("480p", 480, 1400, 30.0, "main", "3.1"),
    ("360p", 360, 800, 30.0, "main", "3.0"),
    ("240p", 240, 400, 30.0, "baseline", "3.0"),
];

impl RenditionSpec {
    /// The rung that passes the original through.
    pub fn is_source(&self) -> bool {
        self.name == "source"
    }

    /// The rung with its preset applied; `None` for `source` and for a rung that names no
    /// preset and lacks a height or a bitrate.
    pub fn resolve(&self) -> Option<Rendition> {
        if self.is_source() {
            return None;
        }
        let preset = PRESETS.iter().find(|p| p.0 == self.name);
        let pick = |v: u32, p: Option<u32>| if v > 0 { Some(v) } else { p };
        let height = pick(self.height, preset.map(|p| p.1))?;
        let video_bitrate_kbps = pick(self.video_bitrate_kbps, preset.map(|p| p.2))?;
        let text = |v: &str, p: Option<&str>, d: &str| {
            if v.is_empty() {
                p.unwrap_or(d).to_owned()
            } else {
                v.to_owned()
            }
        };
        Some(Rendition {
            name: self.name.clone(),
            width: self.width,
            height,
            video_bitrate_kbps,
            max_framerate: if self.max_framerate > 0.0 {
                self.max_framerate
            } else {
                preset.map_or(0.0, |p| p.3)
            },
            profile: text(&self.profile, preset.map(|p| p.4), "main"),
            level: text(&self.level, preset.map(|p| p.5), "4.0"),
        })
    }
}

/// The video encoder family of a ladder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HwAccel {
    /// The first hardware encoder that works (NVENC, then VA-API, then Quick Sync), else x264.
    #[default]
    Auto,
    /// x264 in software.
    None,
    /// NVIDIA NVENC (`h264_nvenc`).
    Nvenc,
    /// VA-API (`h264_vaapi`, `/dev/dri/renderD128`).
    Vaapi,
    /// Intel Quick Sync (`h264_qsv`).
    Qsv,
}

impl HwAccel {
    /// The name in JSON and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            HwAccel::Auto => "auto",
            HwAccel::None => "none",
            HwAccel::Nvenc => "nvenc",
            HwAccel::Vaapi => "vaapi",
            HwAccel::Qsv => "qsv",
        }
    }
}

/// Audio of the renditions.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TranscodeAudio {
    /// `passthrough` copies the source's audio; `aac` encodes it.
    pub mode: AudioMode,
    /// With `aac`: kbit/s.
    pub bitrate_kbps: u32,
}

impl Default for TranscodeAudio {
    fn default() -> Self {
        TranscodeAudio {
            mode: AudioMode::Passthrough,
            bitrate_kbps: 128,
        }
    }
}

/// How the renditions get their audio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioMode {
    /// The source's audio, untouched.
    #[default]
    Passthrough,
    /// Encoded to AAC-LC.
    Aac,
}

/// A corner of the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corner {
    /// Top left.
    TopLeft,
    /// Top right.
    #[default]
    TopRight,
    /// Bottom left.
    BottomLeft,
    /// Bottom right.
    BottomRight,
}

/// An image over the picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Watermark {
    /// A PNG (or any image ffmpeg reads) on the gateway's disk.
    pub path: String,
    /// Where it goes.
    pub position: Corner,
    /// 0 (invisible) to 1 (opaque).
    pub opacity: f64,
    /// Pixels from the edges.
    pub margin: u32,
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark {
            path: String::new(),
            position: Corner::TopRight,
            opacity: 0.8,
            margin: 16,
        }
    }
}

/// Text burnt into the picture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextOverlay {
    /// Fixed text; may be empty when `timestamp` is on.
    pub text: String,
    /// Also draw the wall-clock time (UTC, to the millisecond) of each frame.
    pub timestamp: bool,
    /// Where it goes.
    pub position: Corner,
    /// Glyph height in pixels of the 720p picture; scaled with each rendition.
    pub font_size: u32,
}

impl Default for TextOverlay {
    fn default() -> Self {
        TextOverlay {
            text: String::new(),
            timestamp: true,
            position: Corner::BottomLeft,
            font_size: 28,
        }
    }
}
