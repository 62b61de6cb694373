//! What the API shows about a stream's inputs.

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

/// Errors kept per input, newest first.
pub const MAX_ERRORS: usize = 5;
/// Switches kept per stream, newest last.
pub const MAX_HISTORY: usize = 32;

/// Where an input is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputState {
    /// Disabled, or not started (on-demand stream without readers).
    Stopped,
    /// Connecting to the source, or waiting for its first media.
    Connecting,
    /// Delivering media within `packet_timeout`.
    Up,
    /// Connected but silent for longer than `packet_timeout`, or its publisher left.
    Down,
    /// Failed; waiting to reconnect.
    Retrying,
}

impl InputState {
    /// Lower-case name for the API.
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::Stopped => "stopped",
            InputState::Connecting => "connecting",
            InputState::Up => "up",
            InputState::Down => "down",
            InputState::Retrying => "retrying",
        }
    }
}

/// One failure of an input.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRecord {
    /// What went wrong (URLs masked).
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// One input as the API shows it.
#[derive(Clone, Debug)]
pub struct InputSnapshot {
    /// Position in the stream's `inputs` list.
    pub index: usize,
    /// The URL with its secrets masked.
    pub url: String,
    /// `publish`, `rtsp`, ...
    pub kind: &'static str,
    /// Lower is preferred.
    pub priority: u32,
    /// Configured on.
    pub enabled: bool,
    /// Where it is now.
    pub state: InputState,
    /// Whether readers see this input now.
    pub active: bool,
    /// Connection attempts since the input started (1 = first).
    pub attempts: u64,
    /// Up to [`MAX_ERRORS`], newest first.
    pub last_errors: Vec<ErrorRecord>,
    /// Last media received.
    pub last_packet_at: Option<SystemTime>,
    /// Next reconnection attempt, while retrying.
    pub next_retry_at: Option<SystemTime>,
    /// Media bitrate over the last second.
    pub bitrate_kbps: u64,
    /// Payload bytes received since the input started.
    pub bytes_in: u64,
    /// Frames received since the input started.
    pub frames_in: u64,
}

/// One change of the active input.
#[derive(Clone, Debug, PartialEq)]
pub struct SwitchRecord {
    /// When.
    pub at: SystemTime,
    /// Index of the input readers saw before, if any.
    pub from: Option<usize>,
    /// Index of the input readers see now; `None` when every input is down.
    pub to: Option<usize>,
    /// Why: `started`, `input down: ...`, `failback`, `manual`, `restart`, ...
    pub reason: String,
}

/// A stream's inputs as the API shows them.
#[derive(Clone, Debug, Default)]
pub struct StreamInputs {
    /// Index of the active input.
    pub active: Option<usize>,
    /// Index of an input chosen by hand (`switch`), kept until it goes down.
    pub pinned: Option<usize>,
    /// Every configured input, in configuration order.
    pub inputs: Vec<InputSnapshot>,
    /// Switches, oldest first, at most [`MAX_HISTORY`].
    pub history: Vec<SwitchRecord>,
}

/// Connection state a pull input's worker keeps for the supervisor's snapshots.
#[derive(Debug, Default)]
pub(crate) struct WorkerStatus {
    pub(crate) attempts: u64,
    pub(crate) connecting: bool,
    pub(crate) next_retry: Option<(Instant, SystemTime)>,
    pub(crate) errors: VecDeque<ErrorRecord>,
}

impl WorkerStatus {
    pub(crate) fn record_error(&mut self, message: String) {
        if self.errors.len() == MAX_ERRORS {
            self.errors.pop_back();
        }
        self.errors.push_front(ErrorRecord {
            message,
            at: SystemTime::now(),
        });
    }
}
