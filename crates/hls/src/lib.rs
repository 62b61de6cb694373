//! HLS output (RFC 8216): MPEG-TS segments cut at keyframes, sliding media playlists, and an
//! in-memory store the HTTP layer reads.
//!
//! [`Segmenter`] and [`MediaPlaylist`] are sans-I/O (events in, segments and text out);
//! [`HlsService`] is the thin tokio driver: one task per published stream code.

mod playlist;
mod segmenter;
mod service;

#[cfg(test)]
mod tests;

pub use playlist::MediaPlaylist;
pub use segmenter::{Segment, Segmenter};
pub use service::{EnabledFn, HlsService, HlsStreamStats, ParentFn, VariantStats};

use std::time::Duration;

/// Expired segments kept fetchable after they leave the playlist, for players slightly behind.
pub const EXPIRED_SEGMENTS_KEPT: usize = 3;

/// Tuning of every HLS stream.
#[derive(Clone, Debug)]
pub struct HlsConfig {
    /// Minimum segment length; segments are cut at the first video keyframe after it.
    pub segment_duration: Duration,
    /// Segments listed in the playlist.
    pub window: usize,
    /// How long a stream whose publisher left waits for a republish before `#EXT-X-ENDLIST`.
    pub end_grace: Duration,
    /// How long a finished (ENDLIST) stream stays served before it is forgotten.
    pub linger: Duration,
    /// A segment is cut at any frame once it holds this many bytes, so a stream without
    /// keyframes cannot grow memory without bound.
    pub max_segment_bytes: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_duration: Duration::from_secs(2),
            window: 6,
            end_grace: Duration::from_secs(10),
            linger: Duration::from_secs(60),
            max_segment_bytes: 32 << 20,
        }
    }
}
