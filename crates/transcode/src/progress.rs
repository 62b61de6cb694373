//! ffmpeg's `-progress` key=value blocks, and a limit on how much of its stderr reaches the
//! log (a broken input can make ffmpeg print thousands of lines a second).

use std::time::{Duration, Instant};

/// Lines logged per window before the rest are dropped.
const LOG_BURST: u32 = 5;
/// The log window.
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// One complete progress block.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Update {
    /// Frames encoded so far.
    pub frames: u64,
    /// Frames per second.
    pub fps: f64,
    /// Speed relative to real time.
    pub speed: f64,
}

/// Accumulates lines until a block's `progress=` line ends it. ffmpeg's own `fps` and `speed`
/// are averages since it started (a slow start shows for minutes), so the rates reported are
/// over the last block instead, once there is one before it.
#[derive(Debug, Default)]
pub struct Progress {
    current: Update,
    out_time_us: u64,
    /// Frames, output time and arrival of the previous block.
    last: Option<(u64, u64, Instant)>,
}

impl Progress {
    /// Takes one line received at `now`; returns the block it completed, if any.
    pub fn line(&mut self, line: &str, now: Instant) -> Option<Update> {
        let (k, v) = line.trim().split_once('=')?;
        let v = v.trim();
        match k {
            "frame" => self.current.frames = v.parse().unwrap_or(self.current.frames),
            "fps" => self.current.fps = v.parse().unwrap_or(0.0),
            // `speed=1.01x`, or `N/A` before the first frame.
            "speed" => self.current.speed = v.trim_end_matches('x').parse().unwrap_or(0.0),
            "out_time_us" => self.out_time_us = v.parse().unwrap_or(self.out_time_us),
            "progress" => {
                let mut u = self.current;
                if let Some((frames, out_us, at)) = self.last {
                    let wall = now.duration_since(at).as_secs_f64();
                    if wall > 0.2 {
                        u.fps = self.current.frames.saturating_sub(frames) as f64 / wall;
                        u.speed = self.out_time_us.saturating_sub(out_us) as f64 / 1e6 / wall;
                    }
                }
                self.last = Some((self.current.frames, self.out_time_us, now));
                return Some(u);
            }
            _ => {}
        }
        None
    }
}

/// What to do with one stderr line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Log it.
    Log,
    /// Log it and say how many were dropped before it.
    LogWithSuppressed(u64),
    /// Drop it.
    Drop,
}

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`].
#[derive(Debug, Default)]
pub struct LogLimiter {
    window: Option<Instant>,
    logged: u32,
    dropped: u64,
}

impl LogLimiter {
    /// Decides for a line seen at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= LOG_WINDOW)
        {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged >= LOG_BURST {
            self.dropped += 1;
            return Admit::Drop;
        }
        self.logged += 1;
        match std::mem::take(&mut self.dropped) {
            0 => Admit::Log,
            n => Admit::LogWithSuppressed(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_reports_frames_and_rates_over_the_last_second() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        let first = "frame=0\nfps=0.00\nout_time_us=0\nspeed=N/A\nprogress=continue";
        let u: Vec<_> = first.lines().filter_map(|l| p.line(l, t0)).collect();
        assert_eq!(
            u,
            [Update {
                frames: 0,
                fps: 0.0,
                speed: 0.0
            }]
        );
        // ffmpeg's averages since its start say 20 fps at 0.7x; the last second was real time.
        let t1 = t0 + Duration::from_secs(1);
        let second = "frame=30\nfps=20.0\nout_time_us=1000000\nspeed=0.7x\nprogress=continue";
        let u: Vec<_> = second.lines().filter_map(|l| p.line(l, t1)).collect();
        assert_eq!(
            u,
            [Update {
                frames: 30,
                fps: 30.0,
                speed: 1.0
            }]
        );
        assert_eq!(p.line("garbage without equals", t1), None);
    }

    #[test]
    fn a_flood_of_stderr_is_cut_to_a_few_lines_per_window() {
        let t0 = Instant::now();
        let mut l = LogLimiter::default();
        let first: Vec<_> = (0..100).map(|_| l.admit(t0)).collect();
        assert_eq!(first.iter().filter(|a| **a == Admit::Log).count(), 5);
        assert_eq!(l.admit(t0 + LOG_WINDOW), Admit::LogWithSuppressed(95));
        assert_eq!(l.admit(t0 + LOG_WINDOW), Admit::Log);
    }
}
