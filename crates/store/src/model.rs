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
