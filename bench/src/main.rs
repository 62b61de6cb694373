//! ferrocast-bench: one real-time RTMP publisher and N players against an RTMP server;
//! reports first-frame time, delivery latency, loss, and the server's CPU and memory.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod conn;
mod flv;
mod player;
mod procfs;
mod publisher;

use crate::conn::Target;
use crate::player::{PHASE_DONE, PHASE_MEASURE, PHASE_WARMUP, PlayerReport, Shared};
use crate::publisher::SendLog;
use serde_json::json;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until};

const USAGE: &str =
    "Usage: ferrocast-bench --url rtmp://IP:PORT/APP/NAME --input FILE.flv --players N
                       [--duration 30] [--warmup 5] [--server-pid PID] [--ramp-ms 2] [--json]

One publisher sends FILE.flv in real time (looped); N players play it. After all players have
started and --warmup seconds have passed, --duration seconds are measured.";

/// Time the publisher gets to go live (and the server to cache a GOP) before players start.
const PUBLISH_LEAD: Duration = Duration::from_millis(2300);
/// Time players keep reading after the window, so in-flight messages are not lost.
const DRAIN: Duration = Duration::from_millis(1500);

struct Args {
    url: String,
    input: String,
    players: usize,
    duration: Duration,
    warmup: Duration,
    server_pid: Option<u32>,
    ramp: Duration,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut input = None;
    let mut players = None;
    let mut duration = 30.0;
    let mut warmup = 5.0;
    let mut server_pid = None;
    let mut ramp_ms = 2.0;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        let num = |name: &str, v: String| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("{name}: not a non-negative number: {v:?}"))
        };
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--input" => input = Some(value("--input")?),
            "--players" => {
                let v = value("--players")?;
                players = Some(
                    v.parse::<usize>()
                        .map_err(|_| format!("--players: {v:?}"))?,
                );
            }
            "--duration" => duration = num("--duration", value("--duration")?)?,
            "--warmup" => warmup = num("--warmup", value("--warmup")?)?,
            "--ramp-ms" => ramp_ms = num("--ramp-ms", value("--ramp-ms")?)?,
            "--server-pid" => {
                let v = value("--server-pid")?;
                server_pid = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("--server-pid: {v:?}"))?,
                );
            }
            "--json" => json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let players = players.ok_or("--players is required")?;
    if players > 20_000 || duration > 3600.0 || warmup > 3600.0 || ramp_ms > 10_000.0 {
        return Err(
            "limits: --players <= 20000, --duration/--warmup <= 3600, --ramp-ms <= 10000".into(),
        );
    }
    if duration < 1.0 {
        return Err("--duration must be at least 1 s".into());
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        input: input.ok_or("--input is required")?,
        players,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        server_pid,
        ramp: Duration::from_secs_f64(ramp_ms / 1000.0),
        json,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("ferrocast-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrocast-bench: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// /proc readings at one instant.
struct Sample {
    at: Instant,
    server_ticks: Option<u64>,
    self_ticks: Option<u64>,
    server_mem: Option<(u64, u64)>,
}

fn sample(pid: Option<&str>) -> Sample {
    Sample {
        at: Instant::now(),
        server_ticks: pid.and_then(procfs::cpu_ticks),
        self_ticks: procfs::cpu_ticks("self"),
        server_mem: pid.and_then(procfs::memory_kib),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let target = Target::parse(&args.url)?;
    let tags = publisher::load(&args.input)?;
    let pid = args.server_pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    if let Some(p) = pid
        && procfs::cpu_ticks(p).is_none()
    {
        return Err(format!("--server-pid {p}: no such process"));
    }
    let tck = procfs::clock_ticks();

    let t0 = Instant::now();
    let ramp_total = args.ramp * u32::try_from(args.players).unwrap_or(u32::MAX);
    let measure_start = t0 + PUBLISH_LEAD + ramp_total + args.warmup;
    let measure_end = measure_start + args.duration;
    let deadline = measure_end + DRAIN;
    let shared = Arc::new(Shared {
        target: target.clone(),
        log: RwLock::new(SendLog::default()),
        phase: AtomicU8::new(PHASE_WARMUP),
        measure_end,
        deadline,
    });

    // The publisher stops at the end of the window; players drain for DRAIN more.
    let pub_shared = shared.clone();
    let publisher = tokio::spawn(async move {
        publisher::run(
            pub_shared.target.clone(),
            tags,
            &pub_shared.log,
            measure_end,
        )
        .await
    });

    sleep_until(t0 + PUBLISH_LEAD).await;
    if publisher.is_finished() {
        let report = publisher.await.map_err(|e| e.to_string())?;
        return Err(report
            .error
            .unwrap_or_else(|| "publisher ended early".into()));
    }
    let before_players = sample(pid);

    let mut handles = Vec::with_capacity(args.players);
    for i in 0..args.players {
        let s = shared.clone();
        handles.push(tokio::spawn(async move {
            player::run(&s, 1000 + i as u64).await
        }));
        if !args.ramp.is_zero() {
            sleep(args.ramp).await;
        }
    }

    sleep_until(measure_start).await;
    shared.phase.store(PHASE_MEASURE, Ordering::Relaxed);
    let start = sample(pid);
    sleep_until(measure_end).await;
    let end = sample(pid);
    shared.phase.store(PHASE_DONE, Ordering::Relaxed);
    let sent = shared.log.read().map(|l| l.sent()).unwrap_or_default();

    let mut reports = Vec::with_capacity(handles.len());
    for h in handles {
        match tokio::time::timeout_at(deadline + Duration::from_secs(5), h).await {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => reports.push(PlayerReport {
                error: Some(format!("task: {e}")),
                ..PlayerReport::default()
            }),
            Err(_) => reports.push(PlayerReport {
                error: Some("did not finish".into()),
                ..PlayerReport::default()
            }),
        }
    }
    let pub_report = tokio::time::timeout(Duration::from_secs(5), publisher)
        .await
        .map_err(|_| "publisher did not finish".to_owned())?
        .map_err(|e| e.to_string())?;

    let out = summarize(
        &args,
        &reports,
        &pub_report,
        sent,
        &before_players,
        &start,
        &end,
        tck,
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_text(&out);
    }
    Ok(())
}

fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    Some(f64::from(sorted[i]) / 1000.0)
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn dist(mut v: Vec<u32>) -> serde_json::Value {
    v.sort_unstable();
    json!({
        "n": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p90_ms": percentile(&v, 0.90),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": v.last().map(|m| f64::from(*m) / 1000.0),
    })
}

#[allow(clippy::too_many_arguments)]
fn summarize(
    args: &Args,
    reports: &[PlayerReport],
    pub_report: &publisher::PublishReport,
    sent: [u64; 2],
    before: &Sample,
    start: &Sample,
    end: &Sample,
    tck: f64,
) -> serde_json::Value {
    let connected = reports.iter().filter(|r| r.first_frame.is_some()).count();
    let failed = reports.len() - connected;
    let mut errors: Vec<(String, usize)> = Vec::new();
    for e in reports.iter().filter_map(|r| r.error.as_deref()) {
        if let Some((_, n)) = errors.iter_mut().find(|(m, _)| m == e) {
            *n += 1;
        } else if errors.len() < 10 {
            errors.push((e.to_owned(), 1));
        }
    }
    let first_frame = dist(
        reports
            .iter()
            .filter_map(|r| r.first_frame.map(ms))
            .collect(),
    );
    let first_key = dist(reports.iter().filter_map(|r| r.first_key.map(ms)).collect());
    let mut lat = Vec::with_capacity(reports.iter().map(|r| r.latency_us.len()).sum());
    for r in reports {
        lat.extend_from_slice(&r.latency_us);
    }
    let latency = dist(lat);
    let missing: u64 = reports.iter().map(|r| r.missing).sum();
    let expected: u64 = reports.iter().map(|r| r.expected).sum();
    let wall = end.at - start.at;
    let cpu = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(procfs::cpu_percent(b.saturating_sub(a), tck, wall)),
        _ => None,
    };
    let rss_before = before.server_mem.map(|m| m.0);
    let rss_loaded = end.server_mem.map(|m| m.0);
    let rss_per_player = match (rss_before, rss_loaded) {
        (Some(b), Some(l)) if connected > 0 => Some((l as f64 - b as f64) / connected as f64),
        _ => None,
    };
    json!({
        "url": args.url,
        "players": args.players,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "connected": connected,
        "failed": failed,
        "disconnected": reports.iter().filter(|r| r.disconnected).count(),
        "stalled": reports.iter().filter(|r| r.stalled).count(),
        "errors": errors.iter().map(|(m, n)| json!({"error": m, "count": n})).collect::<Vec<_>>(),
        "first_frame": first_frame,
        "first_keyframe": first_key,
        "latency": latency,
        "loss": {
            "missing": missing,
            "expected": expected,
            "percent": if expected > 0 { missing as f64 * 100.0 / expected as f64 } else { 0.0 },
            "reordered": reports.iter().map(|r| r.reordered).sum::<u64>(),
            "unmatched": reports.iter().map(|r| r.unmatched).sum::<u64>(),
            "retimed": reports.iter().map(|r| r.retimed).sum::<u64>(),
        },
        "received_mbit_s": reports.iter().map(|r| r.window_bytes).sum::<u64>() as f64 * 8.0
            / 1e6 / wall.as_secs_f64().max(0.001),
        "publisher": {
            "messages": pub_report.messages,
            "audio_sent": sent[0],
            "video_sent": sent[1],
            "loops": pub_report.loops,
            "max_lateness_ms": pub_report.max_lateness.as_secs_f64() * 1000.0,
            "error": pub_report.error,
        },
        "server": {
            "cpu_percent": cpu(start.server_ticks, end.server_ticks),
            "rss_kib": rss_loaded,
            "hwm_kib": end.server_mem.map(|m| m.1),
            "rss_before_players_kib": rss_before,
            "rss_per_player_kib": rss_per_player,
        },
        "tool": { "cpu_percent": cpu(start.self_ticks, end.self_ticks) },
    })
}

fn print_text(v: &serde_json::Value) {
    let f = |p: &str| -> String {
        match v.pointer(p) {
            Some(serde_json::Value::Number(n)) => match n.as_f64() {
                Some(x) if n.is_f64() => format!("{x:.1}"),
                _ => n.to_string(),
            },
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => "-".into(),
        }
    };
    println!(
        "ferrocast-bench  {}  players {}  window {} s after {} s warmup",
        f("/url"),
        f("/players"),
        f("/duration_s"),
        f("/warmup_s")
    );
    println!(
        "players      connected {}  failed {}  disconnected {}  stalled {}",
        f("/connected"),
        f("/failed"),
        f("/disconnected"),
        f("/stalled")
    );
    if let Some(errors) = v.pointer("/errors").and_then(|e| e.as_array()) {
        for e in errors {
            println!(
                "  error x{}: {}",
                e["count"],
                e["error"].as_str().unwrap_or("")
            );
        }
    }
    for (label, key) in [
        ("first frame", "first_frame"),
        ("first key", "first_keyframe"),
    ] {
        println!(
            "{label:<12} p50 {} ms  p99 {} ms  max {} ms",
            f(&format!("/{key}/p50_ms")),
            f(&format!("/{key}/p99_ms")),
            f(&format!("/{key}/max_ms"))
        );
    }
    println!(
        "latency      p50 {} ms  p90 {} ms  p99 {} ms  max {} ms  ({} samples)",
        f("/latency/p50_ms"),
        f("/latency/p90_ms"),
        f("/latency/p99_ms"),
        f("/latency/max_ms"),
        f("/latency/n")
    );
    let pct = v
        .pointer("/loss/percent")
        .and_then(|p| p.as_f64())
        .unwrap_or(0.0);
    println!(
        "loss         {pct:.3} %  ({} of {} messages; reordered {}, retimed {}, unmatched {})",
        f("/loss/missing"),
        f("/loss/expected"),
        f("/loss/reordered"),
        f("/loss/retimed"),
        f("/loss/unmatched")
    );
    let kib = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_f64())
            .map_or("-".into(), |k| format!("{:.1} MiB", k / 1024.0))
    };
    println!(
        "server       CPU {} % of one core  RSS {} (HWM {}, {} before players)  RSS/player {} KiB",
        f("/server/cpu_percent"),
        kib("/server/rss_kib"),
        kib("/server/hwm_kib"),
        kib("/server/rss_before_players_kib"),
        f("/server/rss_per_player_kib")
    );
    println!(
        "tool         CPU {} % of one core  received {} Mbit/s  publisher late max {} ms{}",
        f("/tool/cpu_percent"),
        f("/received_mbit_s"),
        f("/publisher/max_lateness_ms"),
        match v.pointer("/publisher/error").and_then(|e| e.as_str()) {
            Some(e) => format!("  PUBLISHER ERROR: {e}"),
            None => String::new(),
        }
    );
}
