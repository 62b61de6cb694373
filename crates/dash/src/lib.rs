//! DASH output (ISO/IEC 23009-1, DASH-IF IOP live): fMP4 segments cut at keyframes, one
//! adaptation set per track, a dynamic MPD with `SegmentTimeline`, and an in-memory store the
//! HTTP layer reads.
//!
//! [`Segmenter`] and [`Manifest`] are sans-I/O (events in, segments and text out);
//! [`DashService`] is the thin tokio driver: one task per published stream code.
//!
//! URLs, relative to the MPD: `init-v-<period>.mp4`, `init-a-<period>.mp4`,
//! `v-<period>-<time>.m4s`, `a-<period>-<time>.m4s` (`<time>` is the segment's `tfdt`, the
//! `$Time$` of the `SegmentTemplate`; DASH-IF IOP 4.4.2 recommends `$Time$` with a timeline).
//!
//! The same segments are served as HLS with fMP4 (CMAF), Low-Latency HLS when segments are
//! published in parts: see the `hls` module. One packaging per stream serves both.

mod hls;
mod mpd;
mod segmenter;
mod service;

#[cfg(test)]
mod tests;

pub use hls::{AudioGroup, HlsRequest, HlsTiming, HlsVariant, MULTIVARIANT, multivariant};
pub use mpd::{
    Manifest, MpdClient, MpdClock, MpdTiming, UTC_TIMING_PATH, finish_mpd, iso8601,
    low_latency_target, mpd_body,
};
pub use segmenter::{
    AUDIO_TRACK_ID, MediaChunk, MediaPart, MediaSegment, Output, PeriodInfo, Segmenter, TrackDesc,
    VIDEO_TIMESCALE, VIDEO_TRACK_ID,
};
pub use service::{
    DashService, DashStreamStats, EnabledFn, GrowingSegment, HlsAnswer, ParentFn, SegmentBody,
    SegmentCut,
};

use std::time::Duration;

/// Expired segments kept fetchable per track after they leave the MPD, for players slightly
/// behind.
pub const EXPIRED_SEGMENTS_KEPT: usize = 3;

/// Tuning of every DASH stream.
#[derive(Clone, Debug)]
pub struct DashConfig {
    /// Minimum segment length; segments are cut at the first video keyframe after it.
    pub segment_duration: Duration,
    /// Segments per track listed in the MPD (the time-shift buffer).
    pub window: usize,
    /// How long a stream whose publisher left waits for a republish before the presentation
    /// ends (`mediaPresentationDuration` set, no `minimumUpdatePeriod`).
    pub end_grace: Duration,
    /// How long an ended presentation stays served before it is forgotten.
    pub linger: Duration,
    /// A segment is cut at any frame once it holds this many bytes, so a stream without
    /// keyframes cannot grow memory without bound.
    pub max_segment_bytes: usize,
    /// MPD `minimumUpdatePeriod`: how often players reload the MPD.
    pub minimum_update_period: Duration,
    /// MPD `suggestedPresentationDelay`: how far behind the live edge players aim to play.
    pub suggested_presentation_delay: Duration,
    /// MPD `minBufferTime`.
    pub min_buffer_time: Duration,
    /// Segments are also published in parts of about this long while they are written, for
    /// Low-Latency HLS (`None`: whole segments only).
    pub part_duration: Option<Duration>,
}

impl Default for DashConfig {
    fn default() -> Self {
        DashConfig {
            segment_duration: Duration::from_secs(2),
            window: 6,
            end_grace: Duration::from_secs(10),
            linger: Duration::from_secs(60),
            max_segment_bytes: 32 << 20,
            minimum_update_period: Duration::from_secs(2),
            suggested_presentation_delay: Duration::from_secs(6),
            min_buffer_time: Duration::from_secs(2),
            part_duration: Some(Duration::from_millis(250)),
        }
    }
}
