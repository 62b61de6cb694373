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

/// Accumulates lines until a block's `progress=` line ends it.
#[derive(Debug, Default)]
pub struct Progress {
    current: Update,
}

impl Progress {
    /// Takes one line; returns the block it completed, if any.
    pub fn line(&mut self, line: &str) -> Option<Update> {
        let (k, v) = line.trim().split_once('=')?;
        let v = v.trim();
        match k {
            "frame" => self.current.frames = v.parse().unwrap_or(self.current.frames),
            "fps" => self.current.fps = v.parse().unwrap_or(0.0),
            // `speed=1.01x`, or `N/A` before the first frame.
            "speed" => self.current.speed = v.trim_end_matches('x').parse().unwrap_or(0.0),
            "progress" => return Some(self.current),
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
    fn a_block_reports_frames_fps_and_speed() {
        let mut p = Progress::default();
        let block = "frame=0\nfps=0.00\nbitrate=N/A\nspeed=N/A\nprogress=continue\nframe=61\nfps=30.1\nout_time_ms=2000000\nspeed=1.01x\nprogress=continue";
        let updates: Vec<_> = block.lines().filter_map(|l| p.line(l)).collect();
        assert_eq!(updates.len(), 2);
        assert_eq!(
            updates[0],
            Update {
                frames: 0,
                fps: 0.0,
                speed: 0.0
            }
        );
        assert_eq!(
            updates[1],
            Update {
                frames: 61,
                fps: 30.1,
                speed: 1.01
            }
        );
        assert_eq!(p.line("garbage without equals"), None);
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
