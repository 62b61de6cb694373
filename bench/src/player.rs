//! One player: connect, play, and measure first frame, delivery latency and loss.

use crate::conn::{Conn, Target};
use crate::flv;
use crate::publisher::{AUDIO, SendLog, VIDEO};
use rtmp::client::{ClientEvent, ClientRole, ClientState, MAX_EVENTS};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout_at};

/// Phases of the run, shared by all tasks.
pub const PHASE_WARMUP: u8 = 0;
pub const PHASE_MEASURE: u8 = 1;
pub const PHASE_DONE: u8 = 2;

/// A player that received nothing for this long at the end of the window is stalled.
const STALL: Duration = Duration::from_secs(2);

/// What one player saw.
#[derive(Debug, Default)]
pub struct PlayerReport {
    pub error: Option<String>,
    /// Lost the connection after playing started.
    pub disconnected: bool,
    pub stalled: bool,
    /// play sent -> first video frame (not a sequence header).
    pub first_frame: Option<Duration>,
    /// play sent -> first video keyframe.
    pub first_key: Option<Duration>,
    /// Delivery latencies in microseconds, measurement window only.
    pub latency_us: Vec<u32>,
    /// Messages whose (track, timestamp) the publisher never logged (rebased timestamps).
    pub unmatched: u64,
    /// Sequence numbers skipped during the window (lost messages).
    pub missing: u64,
    /// Sequence advance during the window (messages that should have arrived).
    pub expected: u64,
    /// Messages found only at a timestamp 1-2 ms off (nginx-rtmp re-times some audio).
    pub retimed: u64,
    /// Messages at or behind the last sequence number seen.
    pub reordered: u64,
    pub messages: u64,
    /// Media bytes received during the window.
    pub window_bytes: u64,
}

/// Shared by all players.
pub struct Shared {
    pub target: Target,
    pub log: RwLock<SendLog>,
    pub phase: AtomicU8,
    pub measure_end: Instant,
    pub deadline: Instant,
}

pub async fn run(shared: &Shared, seed: u64) -> PlayerReport {
    let mut r = PlayerReport::default();
    if let Err(e) = play(shared, seed, &mut r).await {
        if r.first_frame.is_some() || r.messages > 0 {
            r.disconnected = true;
        }
        r.error = Some(e);
    }
    r
}

/// Finds the send record of a message, allowing the server to have moved its timestamp by up
/// to 2 ms (nginx-rtmp occasionally sends an audio timestamp 1 ms off); `false` if it had to.
fn lookup(shared: &Shared, track: usize, ts: u32) -> Option<(Instant, u64, bool)> {
    let log = shared.log.read().ok()?;
    if let Some((at, seq)) = log.lookup(track, ts) {
        return Some((at, seq, true));
    }
    [
        ts.wrapping_sub(1),
        ts.wrapping_add(1),
        ts.wrapping_sub(2),
        ts.wrapping_add(2),
    ]
    .into_iter()
    .find_map(|t| log.lookup(track, t))
    .map(|(at, seq)| (at, seq, false))
}

async fn play(shared: &Shared, seed: u64, r: &mut PlayerReport) -> Result<(), String> {
    let role = ClientRole::Play {
        name: shared.target.name.clone(),
    };
    let opened = timeout_at(shared.deadline, Conn::open(&shared.target, role, seed)).await;
    let mut conn = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect: timed out".into()),
    };
    let mut play_sent: Option<Instant> = None;
    let mut last_seq: [Option<u64>; 2] = [None, None];
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            res = conn.read() => res.map_err(|e| e.to_string())?,
            _ = sleep_until(shared.deadline) => break,
        }
        let now = Instant::now();
        let measuring = shared.phase.load(Ordering::Relaxed) == PHASE_MEASURE;
        loop {
            let before = conn.session.state();
            conn.feed().map_err(|e| e.to_string())?;
            if before != ClientState::Starting && conn.session.state() == ClientState::Starting {
                // play is queued now; it leaves with the flush below.
                play_sent = Some(now);
            }
            let mut n = 0;
            while let Some(ev) = conn.session.poll_event() {
                n += 1;
                let (video, ts, payload) = match ev {
                    ClientEvent::Video { timestamp, payload } => (true, timestamp, payload),
                    ClientEvent::Audio { timestamp, payload } => (false, timestamp, payload),
                    ClientEvent::Error {
                        command,
                        description,
                    } => return Err(format!("{command} failed: {description}")),
                    ClientEvent::Status { level, code, .. } if level == "error" => {
                        return Err(code);
                    }
                    _ => continue,
                };
                r.messages += 1;
                if measuring {
                    r.window_bytes += payload.len() as u64;
                }
                last_rx = now;
                if flv::is_sequence_header(video, &payload) {
                    continue;
                }
                if video && let Some(sent) = play_sent {
                    if r.first_frame.is_none() {
                        r.first_frame = Some(now - sent);
                    }
                    if r.first_key.is_none() && flv::is_keyframe(&payload) {
                        r.first_key = Some(now - sent);
                    }
                }
                let track = if video { VIDEO } else { AUDIO };
                let Some((sent_at, seq, exact)) = lookup(shared, track, ts) else {
                    r.unmatched += 1;
                    continue;
                };
                if !exact {
                    r.retimed += 1;
                }
                match last_seq[track] {
                    Some(last) if seq <= last => r.reordered += 1,
                    Some(last) => {
                        if measuring {
                            r.expected += seq - last;
                            r.missing += seq - last - 1;
                        }
                        last_seq[track] = Some(seq);
                    }
                    None => last_seq[track] = Some(seq),
                }
                if measuring {
                    let us = now.saturating_duration_since(sent_at).as_micros();
                    r.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            if !conn.session.out().is_empty() {
                conn.flush().await.map_err(|e| format!("write: {e}"))?;
            }
            if n < MAX_EVENTS {
                break;
            }
        }
    }
    r.stalled = last_rx + STALL < shared.measure_end;
    conn.session.close();
    let _ = conn.flush().await;
    Ok(())
}
