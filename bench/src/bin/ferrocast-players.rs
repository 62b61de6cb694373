//! ferrocast-players: N RTMP players and no publisher, for soak and shutdown tests. Reports how
//! every connection ended (clean close, reset, error status) and, periodically, whether media
//! is still flowing to each player.
//!
//! One JSON object per line on stdout: a progress line every `--report-every` seconds and one
//! final line with `"final": true`.
#![allow(clippy::print_stdout, clippy::print_stderr)]

// The bench tool's thin tokio driver, shared as a file rather than a library target.
#[path = "../cli.rs"]
// The report formatter in it is for the tools that print reports.
#[allow(dead_code)]
mod cli;
#[path = "../conn.rs"]
mod conn;

use crate::conn::{Conn, ConnError, Target};
use cli::{count, number};
use rtmp::client::{ClientEvent, ClientRole, ClientState, MAX_EVENTS};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

const USAGE: &str = "Usage: ferrocast-players --url rtmp://IP:PORT/APP/NAME --players N
                         [--duration 60] [--ramp-ms 2] [--report-every 10] [--reconnect]

N players play NAME until the server ends them or --duration seconds pass. Without
--reconnect a player that ends stays ended (the tool exits once every player has ended); with
it, it plays again after 1 s. Prints one JSON line every --report-every seconds and a final one.";

/// A player with no media for this long is counted as stalled in progress lines.
const STALL: Duration = Duration::from_secs(5);
/// Pause before a --reconnect attempt.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

const CONNECTING: u8 = 0;
const PLAYING: u8 = 1;
const ENDED: u8 = 2;

struct Args {
    url: String,
    players: usize,
    duration: Duration,
    ramp: Duration,
    report_every: Duration,
    reconnect: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut players = None;
    let mut duration = 60.0;
    let mut ramp_ms = 2.0;
    let mut report_every = 10.0;
    let mut reconnect = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--players" => players = Some(count("--players", value("--players")?)?),
            "--duration" => duration = number("--duration", value("--duration")?)?,
            "--ramp-ms" => ramp_ms = number("--ramp-ms", value("--ramp-ms")?)?,
            "--report-every" => report_every = number("--report-every", value("--report-every")?)?,
            "--reconnect" => reconnect = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let players = players.ok_or("--players is required")?;
    if players > 20_000 || duration > 86_400.0 || ramp_ms > 10_000.0 {
        return Err("limits: --players <= 20000, --duration <= 86400, --ramp-ms <= 10000".into());
    }
    if duration < 1.0 || report_every < 1.0 {
        return Err("--duration and --report-every must be at least 1 s".into());
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        players,
        duration: Duration::from_secs_f64(duration),
        ramp: Duration::from_secs_f64(ramp_ms / 1000.0),
        report_every: Duration::from_secs_f64(report_every),
        reconnect,
    })
}

fn main() -> ExitCode {
    let args = match cli::args("ferrocast-players", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrocast-players: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-players: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Live counters of one player, read by the reporter.
#[derive(Default)]
struct Stat {
    state: AtomicU8,
    /// Media payload bytes received, all connections.
    bytes: AtomicU64,
    /// Video frames received, all connections.
    frames: AtomicU64,
    /// Milliseconds since start of the last media message (0: none yet).
    last_media_ms: AtomicU64,
    /// Connections after the first.
    reconnects: AtomicU64,
}

/// How one connection ended, and what the server said before.
struct End {
    reason: String,
    /// onStatus codes received on this connection, in order, without repeats.
    statuses: Vec<String>,
    played: bool,
    at_unix_ms: u64,
}

struct Shared {
    target: Target,
    t0: Instant,
    deadline: Instant,
    reconnect: bool,
    stats: Vec<Stat>,
    ends: Mutex<Vec<End>>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn since_ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn run(args: Args) -> Result<(), String> {
    let target = Target::parse(&args.url)?;
    let t0 = Instant::now();
    let shared = Arc::new(Shared {
        target,
        t0,
        deadline: t0 + args.duration,
        reconnect: args.reconnect,
        stats: (0..args.players).map(|_| Stat::default()).collect(),
        ends: Mutex::new(Vec::new()),
    });

    let reporter = {
        let s = shared.clone();
        let every = args.report_every;
        tokio::spawn(async move {
            let mut prev_bytes = vec![0u64; s.stats.len()];
            let mut next = s.t0 + every;
            while next < s.deadline {
                sleep_until(next).await;
                next += every;
                println!("{}", progress(&s, &mut prev_bytes));
            }
        })
    };

    let mut handles = Vec::with_capacity(args.players);
    for i in 0..args.players {
        let s = shared.clone();
        handles.push(tokio::spawn(async move { player(&s, i).await }));
        if !args.ramp.is_zero() {
            sleep(args.ramp).await;
        }
    }
    for h in handles {
        // Every player ends by the deadline; the margin covers a final flush.
        let _ = tokio::time::timeout_at(shared.deadline + Duration::from_secs(5), h).await;
    }
    reporter.abort();
    println!("{}", summary(&shared));
    Ok(())
}

/// One progress line: players connected now, media flowing since the last line, stalled.
fn progress(s: &Shared, prev_bytes: &mut [u64]) -> serde_json::Value {
    let now_ms = since_ms(s.t0);
    let stall_ms = u64::try_from(STALL.as_millis()).unwrap_or(u64::MAX);
    let (mut playing, mut flowing, mut stalled, mut bytes, mut reconnects) = (0, 0, 0, 0u64, 0u64);
    for (st, prev) in s.stats.iter().zip(prev_bytes.iter_mut()) {
        let b = st.bytes.load(Ordering::Relaxed);
        bytes += b;
        reconnects += st.reconnects.load(Ordering::Relaxed);
        if b > *prev {
            flowing += 1;
        }
        *prev = b;
        if st.state.load(Ordering::Relaxed) == PLAYING {
            playing += 1;
            let last = st.last_media_ms.load(Ordering::Relaxed);
            if last == 0 || now_ms.saturating_sub(last) > stall_ms {
                stalled += 1;
            }
        }
    }
    json!({
        "t_s": now_ms as f64 / 1000.0,
        "players": s.stats.len(),
        "playing": playing,
        "flowing": flowing,
        "stalled": stalled,
        "bytes": bytes,
        "reconnects": reconnects,
        "ended": s.ends.lock().map(|e| e.len()).unwrap_or(0),
    })
}

fn summary(s: &Shared) -> serde_json::Value {
    let ends = s
        .ends
        .lock()
        .map(|e| e.iter().map(clone_end).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_status: BTreeMap<String, u64> = BTreeMap::new();
    let (mut unpublish, mut play_stop, mut played_ends) = (0u64, 0u64, 0u64);
    for e in &ends {
        *reasons.entry(e.reason.clone()).or_default() += 1;
        if e.played {
            played_ends += 1;
        }
        if e.statuses
            .iter()
            .any(|c| c == "NetStream.Play.UnpublishNotify")
        {
            unpublish += 1;
        }
        if e.statuses.iter().any(|c| c == "NetStream.Play.Stop") {
            play_stop += 1;
        }
        let last = e.statuses.last().cloned().unwrap_or_else(|| "-".into());
        *last_status.entry(last).or_default() += 1;
    }
    let ever = s
        .stats
        .iter()
        .filter(|st| st.frames.load(Ordering::Relaxed) > 0)
        .count();
    let by_end: Vec<u64> = ends
        .iter()
        .filter(|e| e.reason != "deadline")
        .map(|e| e.at_unix_ms)
        .collect();
    json!({
        "final": true,
        "players": s.stats.len(),
        "ever_played": ever,
        "still_playing": s.stats.iter().filter(|st| st.state.load(Ordering::Relaxed) == PLAYING).count(),
        "connections_ended": ends.len(),
        "ended_after_playing": played_ends,
        "end_reasons": reasons,
        "last_status_before_end": last_status,
        "saw_unpublish_notify": unpublish,
        "saw_play_stop": play_stop,
        "first_end_unix_ms": by_end.iter().min(),
        "last_end_unix_ms": by_end.iter().max(),
        "bytes": s.stats.iter().map(|st| st.bytes.load(Ordering::Relaxed)).sum::<u64>(),
        "video_frames": s.stats.iter().map(|st| st.frames.load(Ordering::Relaxed)).sum::<u64>(),
        "reconnects": s.stats.iter().map(|st| st.reconnects.load(Ordering::Relaxed)).sum::<u64>(),
    })
}

fn clone_end(e: &End) -> End {
    End {
        reason: e.reason.clone(),
        statuses: e.statuses.clone(),
        played: e.played,
        at_unix_ms: e.at_unix_ms,
    }
}

async fn player(s: &Shared, i: usize) {
    let st = &s.stats[i];
    let mut attempt = 0u64;
    loop {
        if attempt > 0 {
            st.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        st.state.store(CONNECTING, Ordering::Relaxed);
        let mut statuses = Vec::new();
        let mut played = false;
        let reason = play_once(
            s,
            st,
            1000 + i as u64 + attempt * 100_000,
            &mut statuses,
            &mut played,
        )
        .await;
        st.state.store(ENDED, Ordering::Relaxed);
        let done = reason == "deadline";
        if let Ok(mut ends) = s.ends.lock() {
            ends.push(End {
                reason,
                statuses,
                played,
                at_unix_ms: unix_ms(),
            });
        }
        attempt += 1;
        if done || !s.reconnect || Instant::now() + RECONNECT_DELAY >= s.deadline {
            return;
        }
        sleep(RECONNECT_DELAY).await;
    }
}

/// Classifies how a connection ended: `eof` (the server closed cleanly), `reset`, `io:<kind>`,
/// `rtmp:<error>`, `status:<code>` (an error onStatus), `connect:...` or `deadline`.
fn classify(e: &ConnError) -> String {
    match e {
        ConnError::Closed => "eof".into(),
        ConnError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionReset => "reset".into(),
        ConnError::Io(io) => format!("io:{:?}", io.kind()),
        ConnError::Rtmp(r) => format!("rtmp:{r}"),
    }
}

async fn play_once(
    s: &Shared,
    st: &Stat,
    seed: u64,
    statuses: &mut Vec<String>,
    played: &mut bool,
) -> String {
    let role = ClientRole::Play {
        name: s.target.name.clone(),
    };
    let mut conn = match timeout_at(s.deadline, Conn::open(&s.target, role, seed)).await {
        Ok(Ok(c)) => c,
        Ok(Err(ConnError::Io(e))) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return "connect:refused".into();
        }
        Ok(Err(e)) => return format!("connect:{}", classify(&e)),
        Err(_) => return "deadline".into(),
    };
    loop {
        tokio::select! {
            res = conn.read() => {
                if let Err(e) = res {
                    return classify(&e);
                }
            }
            _ = sleep_until(s.deadline) => break,
        }
        loop {
            if let Err(e) = conn.feed() {
                return classify(&e);
            }
            if conn.session.state() == ClientState::Playing {
                st.state.store(PLAYING, Ordering::Relaxed);
            }
            let mut n = 0;
            while let Some(ev) = conn.session.poll_event() {
                n += 1;
                match ev {
                    ClientEvent::Video { payload, .. } => {
                        *played = true;
                        st.frames.fetch_add(1, Ordering::Relaxed);
                        st.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                        st.last_media_ms
                            .store(since_ms(s.t0).max(1), Ordering::Relaxed);
                    }
                    ClientEvent::Audio { payload, .. } => {
                        st.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
                        st.last_media_ms
                            .store(since_ms(s.t0).max(1), Ordering::Relaxed);
                    }
                    ClientEvent::Status { level, code, .. } => {
                        if statuses.last() != Some(&code) {
                            statuses.push(code.clone());
                        }
                        if level == "error" {
                            return format!("status:{code}");
                        }
                    }
                    ClientEvent::Error { command, .. } => return format!("error:{command}"),
                    _ => {}
                }
            }
            if !conn.session.out().is_empty() && conn.flush().await.is_err() {
                return "write-failed".into();
            }
            if n < MAX_EVENTS {
                break;
            }
        }
    }
    conn.session.close();
    let _ = conn.flush().await;
    "deadline".into()
}
