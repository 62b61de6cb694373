//! One player: connect, play, and measure first frame, delivery latency and loss.

use crate::conn::{Conn, Target};
use crate::flv;
use crate::publisher::{AUDIO, SendLog, VIDEO};
use rtmp::client::{ClientEvent, ClientRole, ClientState, MAX_EVENTS};
use serde_json::{Value, json};
use std::collections::VecDeque;
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
/// How long a received message waits for its send record before it counts as unmatched. In a
/// worker process records come from the parent over a pipe and may arrive after the media
/// they describe; in one process they are logged before the publisher writes.
const RECORD_WAIT: Duration = Duration::from_secs(2);

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
    /// Messages whose send record was not known yet when they arrived (matched later).
    pub deferred: u64,
    /// Messages received before their recorded send instant: impossible on one clock (the
    /// publisher stamps before it writes), so a count above zero means the cross-process clock
    /// mapping is wrong.
    pub early: u64,
    pub messages: u64,
    /// Media bytes received during the window.
    pub window_bytes: u64,
}

/// Shared by all players of a process: one target and send log per stream.
pub struct Shared {
    pub targets: Vec<Target>,
    pub logs: Vec<RwLock<SendLog>>,
    pub phase: AtomicU8,
    pub measure_end: Instant,
    pub deadline: Instant,
}

/// Plays stream `stream` of `shared` until the deadline.
pub async fn run(shared: &Shared, stream: usize, seed: u64) -> PlayerReport {
    let mut r = PlayerReport::default();
    let mut m = Matcher::default();
    if let Err(e) = play(shared, stream, seed, &mut m, &mut r).await {
        if r.first_frame.is_some() || r.messages > 0 {
            r.disconnected = true;
        }
        r.error = Some(e);
    }
    m.resolve(&shared.logs[stream], Instant::now(), true, &mut r);
    r
}

/// A media message waiting to be matched with its send record.
struct Received {
    track: usize,
    ts: u32,
    at: Instant,
    measuring: bool,
}

/// Matches received messages with send records in arrival order, so loss and reordering are
/// judged as if each were matched the moment it arrived.
#[derive(Default)]
struct Matcher {
    pending: VecDeque<Received>,
    last_seq: [Option<u64>; 2],
}

impl Matcher {
    /// Matches what it can. A message whose record is missing holds back those behind it until
    /// the record comes or [`RECORD_WAIT`] passes (`finish`: now).
    fn resolve(&mut self, log: &RwLock<SendLog>, now: Instant, finish: bool, r: &mut PlayerReport) {
        if self.pending.is_empty() {
            return;
        }
        let Ok(log) = log.read() else { return };
        while let Some(m) = self.pending.front() {
            let Some((sent_at, seq, exact)) = lookup(&log, m.track, m.ts) else {
                if finish || now.saturating_duration_since(m.at) >= RECORD_WAIT {
                    r.unmatched += 1;
                    self.pending.pop_front();
                    continue;
                }
                break;
            };
            if m.at != now {
                r.deferred += 1;
            }
            if !exact {
                r.retimed += 1;
            }
            match self.last_seq[m.track] {
                Some(last) if seq <= last => r.reordered += 1,
                Some(last) => {
                    if m.measuring {
                        r.expected += seq - last;
                        r.missing += seq - last - 1;
                    }
                    self.last_seq[m.track] = Some(seq);
                }
                None => self.last_seq[m.track] = Some(seq),
            }
            if m.at < sent_at {
                r.early += 1;
            }
            if m.measuring {
                let us = m.at.saturating_duration_since(sent_at).as_micros();
                r.latency_us.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            self.pending.pop_front();
        }
    }
}

/// Finds the send record of a message, allowing the server to have moved its timestamp by up
/// to 2 ms (nginx-rtmp occasionally sends an audio timestamp 1 ms off); `false` if it had to.
fn lookup(log: &SendLog, track: usize, ts: u32) -> Option<(Instant, u64, bool)> {
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

async fn play(
    shared: &Shared,
    stream: usize,
    seed: u64,
    m: &mut Matcher,
    r: &mut PlayerReport,
) -> Result<(), String> {
    let target = &shared.targets[stream];
    let log = &shared.logs[stream];
    let role = ClientRole::Play {
        name: target.name.clone(),
    };
    let opened = timeout_at(shared.deadline, Conn::open(target, role, seed)).await;
    let mut conn = match opened {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(format!("connect: {e}")),
        Err(_) => return Err("connect: timed out".into()),
    };
    let mut play_sent: Option<Instant> = None;
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
                m.pending.push_back(Received {
                    track: if video { VIDEO } else { AUDIO },
                    ts,
                    at: now,
                    measuring,
                });
            }
            // One read lock per batch rather than per message.
            m.resolve(log, now, false, r);
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

/// Compact JSON of a report for the worker-to-parent pipe (durations in nanoseconds).
pub fn to_wire(g: usize, r: &PlayerReport) -> Value {
    let ns = |d: Option<Duration>| d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    json!({
        "g": g, "err": r.error, "disc": r.disconnected, "stall": r.stalled,
        "ff": ns(r.first_frame), "fk": ns(r.first_key), "um": r.unmatched, "mi": r.missing,
        "ex": r.expected, "rt": r.retimed, "ro": r.reordered, "df": r.deferred, "ea": r.early,
        "m": r.messages, "wb": r.window_bytes, "lat": r.latency_us,
    })
}

/// The inverse of [`to_wire`]: the player's global index and its report.
pub fn from_wire(v: &Value) -> Option<(usize, PlayerReport)> {
    let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let d = |k: &str| v.get(k).and_then(Value::as_u64).map(Duration::from_nanos);
    let g = usize::try_from(v.get("g")?.as_u64()?).ok()?;
    let latency_us = v
        .get("lat")?
        .as_array()?
        .iter()
        .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect::<Option<Vec<u32>>>()?;
    Some((
        g,
        PlayerReport {
            error: v.get("err").and_then(Value::as_str).map(str::to_owned),
            disconnected: v.get("disc").and_then(Value::as_bool).unwrap_or(false),
            stalled: v.get("stall").and_then(Value::as_bool).unwrap_or(false),
            first_frame: d("ff"),
            first_key: d("fk"),
            latency_us,
            unmatched: u("um"),
            missing: u("mi"),
            expected: u("ex"),
            retimed: u("rt"),
            reordered: u("ro"),
            deferred: u("df"),
            early: u("ea"),
            messages: u("m"),
            window_bytes: u("wb"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip() {
        let r = PlayerReport {
            error: Some("connect: refused".into()),
            disconnected: true,
            first_frame: Some(Duration::from_nanos(1_234_567)),
            latency_us: vec![1, 20_000, u32::MAX],
            missing: 3,
            expected: 90,
            deferred: 7,
            early: 1,
            window_bytes: 1 << 40,
            ..PlayerReport::default()
        };
        let line = serde_json::to_string(&to_wire(42, &r)).unwrap();
        let (g, back) = from_wire(&serde_json::from_str(&line).unwrap()).unwrap();
        assert_eq!(g, 42);
        assert_eq!(format!("{back:?}"), format!("{r:?}"));
    }

    #[test]
    fn late_records_match_in_arrival_order() {
        let t = Instant::now();
        let log = RwLock::new(SendLog::default());
        let mut m = Matcher::default();
        let mut r = PlayerReport::default();
        for (i, ts) in [0u32, 33, 66].into_iter().enumerate() {
            m.pending.push_back(Received {
                track: VIDEO,
                ts,
                at: t + Duration::from_millis(5 + 33 * i as u64),
                measuring: true,
            });
        }
        // No records yet: everything waits.
        m.resolve(&log, t + Duration::from_millis(80), false, &mut r);
        assert_eq!((m.pending.len(), r.unmatched), (3, 0));
        {
            let mut l = log.write().unwrap();
            l.insert(VIDEO, 0, t, 0);
            l.insert(VIDEO, 66, t + Duration::from_millis(66), 2);
        }
        // ts 33 was lost by the server: it is never recorded here, so after RECORD_WAIT it is
        // unmatched, and 66 is matched after it with the latency of its own arrival.
        m.resolve(&log, t + Duration::from_millis(100), false, &mut r);
        assert_eq!((m.pending.len(), r.latency_us.clone()), (2, vec![5_000]));
        m.resolve(
            &log,
            t + RECORD_WAIT + Duration::from_millis(50),
            false,
            &mut r,
        );
        assert!(m.pending.is_empty());
        assert_eq!(r.latency_us, vec![5_000, 5_000]);
        assert_eq!(
            (r.unmatched, r.deferred, r.missing, r.expected),
            (1, 2, 1, 2)
        );
    }
}
