//! Per-stream counters and a fixed-window bitrate meter.

use media::MediaInfo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::{Duration, Instant, SystemTime};

/// Bitrates are averaged over this many whole seconds.
const WINDOW_SECS: usize = 5;

/// Bitrate samples kept per stream: five minutes at the sampler's one-second cadence, enough
/// for a dashboard graph that is full when it opens, and bounded whatever the uptime.
pub const HISTORY_LEN: usize = 300;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    /// Decode time of the last frame written (hub ticks); meaningful once `frames_in` > 0.
    pub(crate) last_dts: AtomicI64,
    pub(crate) dropped: AtomicU64,
    /// Mirror of the subscriber count, readable without the state lock.
    pub(crate) readers: AtomicU64,
}

/// Bytes per one-second bucket over the last [`WINDOW_SECS`] complete seconds.
#[derive(Default)]
pub(crate) struct RateMeter {
    origin: Option<Instant>,
    /// Index (seconds since origin) of `buckets[0]`'s second, modulo the ring.
    current: u64,
    buckets: [u64; WINDOW_SECS + 1],
}

impl RateMeter {
    fn second(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        now.saturating_duration_since(origin).as_secs()
    }

    fn roll(&mut self, sec: u64) {
        if sec <= self.current {
            return;
        }
        let gap = (sec - self.current).min(self.buckets.len() as u64);
        for i in 1..=gap {
            let idx = ((self.current + i) % self.buckets.len() as u64) as usize;
            self.buckets[idx] = 0;
        }
        self.current = sec;
    }

    pub(crate) fn add(&mut self, now: Instant, bytes: u64) {
        let sec = self.second(now);
        self.roll(sec);
        let idx = (sec % self.buckets.len() as u64) as usize;
        self.buckets[idx] += bytes;
    }

    /// Average over the complete seconds in the window (the running second is excluded so the
    /// figure does not sag at the start of every second).
    pub(crate) fn kbps(&mut self, now: Instant) -> u64 {
        if self.origin.is_none() {
            return 0;
        }
        let sec = self.second(now);
        self.roll(sec);
        let complete = sec.min(WINDOW_SECS as u64);
        if complete == 0 {
            return 0;
        }
        let cur = (sec % self.buckets.len() as u64) as usize;
        let total: u64 = (0..self.buckets.len())
            .filter(|&i| i != cur)
            .map(|i| self.buckets[i])
            .sum();
        total * 8 / 1000 / complete
    }
}

/// Bitrate from periodic samples of a running total, so writers only bump an atomic: many
/// readers report bytes sent, and a lock there would be contended on every write.
#[derive(Default)]
pub(crate) struct Sampler {
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl Sampler {
    /// Records `total` if the last sample is about a second old.
    pub(crate) fn sample(&mut self, now: Instant, total: u64) {
        let due = self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= Duration::from_millis(900));
        if due {
            self.samples.push_back((now, total));
            while self.samples.len() > WINDOW_SECS + 1 {
                self.samples.pop_front();
            }
        }
    }

    /// Average over the sampled window (up to [`WINDOW_SECS`] seconds).
    pub(crate) fn kbps(&mut self, now: Instant, total: u64) -> u64 {
        self.sample(now, total);
        let Some(&(t0, b0)) = self.samples.front() else {
            return 0;
        };
        let secs = now.saturating_duration_since(t0).as_secs_f64();
        if secs < 0.5 {
            return 0;
        }
        (total.saturating_sub(b0) as f64 * 8.0 / 1000.0 / secs) as u64
    }
}

/// One point of a stream's bitrate history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSample {
    /// Wall-clock time of the sample.
    pub at: SystemTime,
    /// Ingest bitrate then (averaged like [`StreamStats::bitrate_in_kbps`]).
    pub in_kbps: u64,
    /// Output bitrate then (averaged like [`StreamStats::bitrate_out_kbps`]).
    pub out_kbps: u64,
}

/// The last [`HISTORY_LEN`] samples, oldest first.
#[derive(Default)]
pub(crate) struct History {
    samples: std::collections::VecDeque<(Instant, RateSample)>,
}

impl History {
    /// Appends a sample unless the last one is under a second old (the sampler may be called
    /// more often than once a second; the graph's time axis assumes a steady cadence).
    pub(crate) fn push(&mut self, now: Instant, sample: RateSample) {
        let due = self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= Duration::from_millis(900));
        if !due {
            return;
        }
        if self.samples.len() == HISTORY_LEN {
            self.samples.pop_front();
        }
        self.samples.push_back((now, sample));
    }

    pub(crate) fn to_vec(&self) -> Vec<RateSample> {
        self.samples.iter().map(|(_, s)| *s).collect()
    }
}

/// The publisher of a live stream.
#[derive(Clone, Debug)]
pub struct PublisherSnapshot {
    /// Publish session id.
    pub session: u64,
    /// Id in [`crate::Hub::sessions`], for kicking.
    pub session_id: u64,
    /// Ingest protocol.
    pub protocol: &'static str,
    /// Publisher's remote address.
    pub remote_addr: Option<SocketAddr>,
    /// Id an external system gave the session at admission.
    pub external_id: Option<String>,
    /// Wall-clock start of the session.
    pub started_at: SystemTime,
    /// Time since the session started.
    pub uptime: Duration,
}

/// A point-in-time view of one stream for the API and metrics.
#[derive(Clone, Debug)]
pub struct StreamStats {
    /// Stream code.
    pub code: String,
    /// Whether a publisher is live and announced its tracks.
    pub live: bool,
    /// The current publisher, if any.
    pub publisher: Option<PublisherSnapshot>,
    /// Current tracks, if live.
    pub info: Option<Arc<MediaInfo>>,
    /// Readers per protocol.
    pub readers: Vec<(&'static str, u32)>,
    /// Frames in the GOP cache.
    pub gop_cache_frames: usize,
    /// Payload bytes in the GOP cache.
    pub gop_cache_bytes: usize,
    /// Ingest bitrate over the last few seconds.
    pub bitrate_in_kbps: u64,
    /// Bitrate sent to all readers over the last few seconds.
    pub bitrate_out_kbps: u64,
    /// Payload bytes written by publishers since the stream entry was created.
    pub bytes_in: u64,
    /// Bytes outputs reported as sent.
    pub bytes_out: u64,
    /// Frames written by publishers.
    pub frames_in: u64,
    /// Frames lost by slow readers.
    pub frames_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampler_averages_over_its_window() {
        let t0 = Instant::now();
        let mut s = Sampler::default();
        for sec in 0..4u64 {
            s.sample(t0 + Duration::from_secs(sec), sec * 125_000);
        }
        assert_eq!(s.kbps(t0 + Duration::from_secs(4), 4 * 125_000), 1000);
        assert_eq!(Sampler::default().kbps(t0, 10), 0);
    }

    #[test]
    fn history_is_bounded_and_keeps_a_steady_cadence() {
        let t0 = Instant::now();
        let mut h = History::default();
        let sample = |n: u64| RateSample {
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(n),
            in_kbps: n,
            out_kbps: 2 * n,
        };
        for n in 0..(HISTORY_LEN as u64 + 10) {
            h.push(t0 + Duration::from_secs(n), sample(n));
            // A second call within the same second is not a new point.
            h.push(t0 + Duration::from_millis(n * 1000 + 300), sample(9999));
        }
        let v = h.to_vec();
        assert_eq!(v.len(), HISTORY_LEN);
        assert_eq!(v[0].in_kbps, 10, "the oldest ten were dropped");
        assert_eq!(v[HISTORY_LEN - 1].out_kbps, 2 * (HISTORY_LEN as u64 + 9));
        assert!(v.iter().all(|s| s.in_kbps != 9999));
    }

    #[test]
    fn meter_averages_complete_seconds() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for s in 0..4u64 {
            // 125 kB per second = 1000 kbit/s.
            m.add(t0 + Duration::from_secs(s), 125_000);
        }
        assert_eq!(m.kbps(t0 + Duration::from_millis(3500)), 1000);
        // Idle for longer than the window: back to zero.
        assert_eq!(m.kbps(t0 + Duration::from_secs(20)), 0);
    }
}
