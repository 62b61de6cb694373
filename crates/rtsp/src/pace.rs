//! Pacing of a reader's catch-up over UDP: a token bucket in media time.
//!
//! A reader that joins gets the GOP cache first: up to a whole GOP (2 s of a 2.5 Mbit/s stream
//! is ~620 kB, ~450 RTP packets) that is already old. Sent at once over UDP it overflows the
//! player's socket buffer (ffmpeg asks for 384 KiB, a default Linux socket gets 208 KiB of
//! kernel memory, ~90 full-size packets), and the kernel drops the rest: the player sees RTP
//! sequence gaps and broken macroblocks in the first frames. TCP has flow control and needs none
//! of this.
//!
//! [`Pacer`] releases each frame when a schedule that advances [`CATCHUP_SPEED`] times faster
//! than real time reaches the frame's decode time. The schedule never falls more than
//! [`SLACK`] behind the wall clock, so live frames (which arrive at 1x) always go out at once,
//! and any backlog, the GOP cache or a clump after an ingest stall, goes out at a bounded
//! multiple of the stream's own bitrate. Pacing works on whole frames: the packets of one frame
//! still leave together, as they do for a live keyframe.
//!
//! Sans-I/O: the driver passes the time it read and sleeps itself.

use std::time::{Duration, Instant};

/// How many times faster than real time a backlog is sent.
pub const CATCHUP_SPEED: u32 = 4;

/// How far the schedule may fall behind the wall clock: the media time that can leave at once
/// is `SLACK * CATCHUP_SPEED` (80 ms, ~25 kB of a 2.5 Mbit/s stream).
pub const SLACK: Duration = Duration::from_millis(20);

/// A forward jump in decode time larger than this is a timestamp discontinuity, not a backlog:
/// the frame goes out at once and the schedule restarts from it.
pub const MAX_STEP: i64 = 90_000;

/// Ticks per second of the hub's media clock.
const MEDIA_HZ: u64 = 90_000;

/// Token bucket over decode timestamps (90 kHz), refilled at [`CATCHUP_SPEED`].
#[derive(Clone, Debug, Default)]
pub struct Pacer {
    /// Largest decode time scheduled so far, and the wall time it was scheduled for.
    last: Option<(i64, Instant)>,
    /// Frames that had to wait, for the session's statistics.
    held: u64,
}

impl Pacer {
    /// A pacer with nothing scheduled yet.
    pub fn new() -> Self {
        Pacer::default()
    }

    /// Schedules the frame with decode time `dts`, read at `now`: `None` sends it now,
    /// `Some(at)` sends it at `at` (and nothing after it before then).
    ///
    /// Frames not later than the newest one scheduled (the other track's, slightly behind)
    /// cost nothing and go at once.
    pub fn schedule(&mut self, dts: i64, now: Instant) -> Option<Instant> {
        let Some((last_dts, last_at)) = self.last else {
            self.last = Some((dts, now));
            return None;
        };
        if dts <= last_dts {
            return None;
        }
        let step = dts - last_dts;
        if step > MAX_STEP {
            self.last = Some((dts, now));
            return None;
        }
        // A full bucket: the schedule is at most SLACK behind now.
        let floor = now.checked_sub(SLACK).unwrap_or(now);
        let base = last_at.max(floor);
        // step <= MAX_STEP, so the product cannot overflow.
        let nanos = step.unsigned_abs() * 1_000_000_000 / (MEDIA_HZ * u64::from(CATCHUP_SPEED));
        let at = base + Duration::from_nanos(nanos);
        self.last = Some((dts, at));
        if at <= now {
            None
        } else {
            self.held += 1;
            Some(at)
        }
    }

    /// Forgets the schedule: timestamps after a new track configuration (a republish) need not
    /// continue the old ones.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Frames that had to wait so far.
    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
#[path = "pace_tests.rs"]
mod tests;
