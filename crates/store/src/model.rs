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
}

impl RecordingFormat {
    /// The name in JSON and in the API (`ts`), also the files' extension.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingFormat::Ts => "ts",
        }
    }
}
