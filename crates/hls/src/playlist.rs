//! RFC 8216 media playlist over a bounded window of segments.

use crate::segmenter::Segment;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt::Write;

/// Sliding-window live playlist plus a few expired segments still fetchable.
#[derive(Debug)]
pub struct MediaPlaylist {
    window: usize,
    keep_expired: usize,
    /// Oldest first; the last `window` are listed, the ones before are expired but served.
    segments: VecDeque<Segment>,
    /// Whole seconds; only grows (RFC 8216 6.2.1: it MUST NOT change).
    target_duration: u64,
    /// Discontinuity tags that slid out of the listed window (RFC 8216 4.3.3.3).
    discontinuity_sequence: u64,
    ended: bool,
}

/// EXTINF as written, in milliseconds, so the target duration agrees with the printed value.
fn extinf_ms(segment: &Segment) -> u64 {
    u64::try_from((segment.duration.as_micros() + 500) / 1000).unwrap_or(u64::MAX)
}

impl MediaPlaylist {
    /// Creates an empty playlist listing `window` segments and keeping `keep_expired` more.
    pub fn new(window: usize, keep_expired: usize) -> Self {
        let window = window.max(1);
        MediaPlaylist {
            window,
            keep_expired,
            segments: VecDeque::with_capacity(window + keep_expired + 1),
            target_duration: 1,
            discontinuity_sequence: 0,
            ended: false,
        }
    }

    /// Starts the target duration at the configured segment length, so it only changes if a
    /// GOP is longer than that.
    pub fn with_target(mut self, segment_duration: std::time::Duration) -> Self {
        let ms = u64::try_from(segment_duration.as_millis()).unwrap_or(u64::MAX);
        self.target_duration = self.target_duration.max((ms + 500) / 1000);
        self
    }

    /// Appends a finished segment, sliding the window and dropping the oldest expired one.
    pub fn push(&mut self, segment: Segment) {
        // RFC 8216 4.3.3.1 bounds EXTINF *rounded to the nearest integer*; rounding up would
        // raise the target (which must not change) whenever one segment runs a little long.
        self.target_duration = self.target_duration.max((extinf_ms(&segment) + 500) / 1000);
        self.segments.push_back(segment);
        if self.segments.len() > self.window {
            let left = self.segments.len() - self.window - 1;
            if self.segments.get(left).is_some_and(|s| s.discontinuity) {
                self.discontinuity_sequence += 1;
            }
        }
        while self.segments.len() > self.window + self.keep_expired {
            self.segments.pop_front();
        }
    }

    /// Marks the stream finished: `#EXT-X-ENDLIST`, no more segments.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// Whether `#EXT-X-ENDLIST` was written.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn listed(&self) -> impl Iterator<Item = &Segment> {
        self.segments
            .iter()
            .skip(self.segments.len().saturating_sub(self.window))
    }

    /// Media sequence number of the first listed segment; `None` while empty.
    pub fn media_sequence(&self) -> Option<u64> {
        self.listed().next().map(|s| s.seq)
    }

    /// Current `#EXT-X-TARGETDURATION`.
    pub fn target_duration(&self) -> u64 {
        self.target_duration
    }

    /// Segments held (listed and expired).
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether no segment has been completed yet.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes of segment data held.
    pub fn bytes(&self) -> usize {
        self.segments.iter().map(|s| s.data.len()).sum()
    }

    /// The held segment that starts at hub PTS `start_pts` (within `tolerance` ticks): its
    /// sequence number and program date.
    pub fn find_start(&self, start_pts: i64, tolerance: i64) -> Option<(u64, Option<i64>)> {
        self.segments
            .iter()
            .rev()
            .find(|s| s.start_pts.abs_diff(start_pts) <= tolerance.unsigned_abs())
            .map(|s| (s.seq, s.program_ms))
    }

    /// Peak and average bits per second of the held segments (`BANDWIDTH` and
    /// `AVERAGE-BANDWIDTH` of a multivariant playlist); `None` while empty.
    pub fn bandwidth(&self) -> Option<(u64, u64)> {
        let mut bits = 0u64;
        let mut micros = 0u64;
        let mut peak = 0u64;
        for s in &self.segments {
            let us = u64::try_from(s.duration.as_micros()).unwrap_or(u64::MAX);
            let b = (s.data.len() as u64).saturating_mul(8);
            bits = bits.saturating_add(b);
            micros = micros.saturating_add(us);
            // A short segment (a flush at the end) says little about the peak.
            if us >= 500_000 {
                peak = peak.max(b.saturating_mul(1_000_000) / us);
            }
        }
        if micros == 0 {
            return None;
        }
        let avg = bits.saturating_mul(1_000_000) / micros;
        Some((peak.max(avg), avg))
    }

    /// A listed or recently expired segment by sequence number.
    pub fn segment(&self, seq: u64) -> Option<Bytes> {
        let first = self.segments.front()?.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.segments
            .get(index)
            .filter(|s| s.seq == seq)
            .map(|s| s.data.clone())
    }

    /// The playlist text; `None` until the first segment exists (players need one).
    pub fn render(&self) -> Option<String> {
        let first = self.media_sequence()?;
        let mut out = String::with_capacity(256 + self.window * 48);
        // Writing to a String cannot fail, so the fmt::Results below are ignored.
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{first}\n",
            self.target_duration
        );
        if self.discontinuity_sequence > 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        for s in self.listed() {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            // Every segment carries its own date (RFC 8216 4.3.2.6 allows it): players measure
            // their latency by it, and a rendition's segments carry the same dates as their
            // source's, which only holds if no date is left to be inferred from durations.
            if let Some(ms) = s.program_ms {
                out.push_str("#EXT-X-PROGRAM-DATE-TIME:");
                media::write_iso8601(&mut out, ms);
                out.push('\n');
            }
            let ms = extinf_ms(s);
            let _ = write!(
                out,
                "#EXTINF:{}.{:03},\n{}.ts\n",
                ms / 1000,
                ms % 1000,
                s.seq
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        Some(out)
    }
}
