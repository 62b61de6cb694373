//! /proc samples, and the summary of a run as JSON and as text.

use crate::player::PlayerReport;
use crate::procfs;
use crate::publisher::PublishReport;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// /proc readings at one instant.
pub struct Sample {
    pub at: Instant,
    pub server_ticks: Option<u64>,
    pub self_ticks: Option<u64>,
    /// Sum over the worker processes (`Some(0)` without workers); `None` if one is gone.
    pub worker_ticks: Option<u64>,
    pub server_mem: Option<(u64, u64)>,
    /// Busy ticks of all CPUs together (/proc/stat), to see what else ran during the window.
    pub machine_ticks: Option<u64>,
}

/// user + nice + system + irq + softirq + steal of the first line of /proc/stat: every busy
/// tick of every CPU, in the unit of /proc/PID/stat.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

pub fn sample(pid: Option<&str>, workers: &[u32]) -> Sample {
    Sample {
        at: Instant::now(),
        server_ticks: pid.and_then(procfs::cpu_ticks),
        self_ticks: procfs::cpu_ticks("self"),
        worker_ticks: workers
            .iter()
            .map(|w| procfs::cpu_ticks(&w.to_string()))
            .sum(),
        server_mem: pid.and_then(procfs::memory_kib),
        machine_ticks: machine_busy_ticks(),
    }
}

/// The shape of the run, as asked for.
pub struct Setup<'a> {
    pub url: &'a str,
    pub streams: usize,
    pub players_per_stream: usize,
    pub procs: usize,
    pub duration: Duration,
    pub warmup: Duration,
}

/// What the tool itself saw besides the players.
pub struct Tool {
    pub tck: f64,
    /// Send records the workers never got (queue full or pipe broken).
    pub forward_dropped: u64,
    /// Largest delay between a worker stamping its hello and the parent reading it.
    pub hello_lag: Option<Duration>,
}

/// Samples before the publishers, before the players, and at both ends of the window.
pub struct Samples {
    pub idle: Sample,
    pub before: Sample,
    pub start: Sample,
    pub end: Sample,
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

pub fn summarize(
    setup: &Setup<'_>,
    reports: &[PlayerReport],
    publisher: &PublishReport,
    sent: [u64; 2],
    samples: &Samples,
    tool: &Tool,
) -> serde_json::Value {
    let Samples {
        idle,
        before,
        start,
        end,
    } = samples;
    let streams = setup.streams.max(1) as f64;
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
        (Some(a), Some(b)) => Some(procfs::cpu_percent(b.saturating_sub(a), tool.tck, wall)),
        _ => None,
    };
    let server_cpu = cpu(start.server_ticks, end.server_ticks);
    let parent_cpu = cpu(start.self_ticks, end.self_ticks);
    let workers_cpu = cpu(start.worker_ticks, end.worker_ticks);
    let tool_cpu = match (parent_cpu, workers_cpu) {
        (Some(p), Some(w)) => Some(p + w),
        _ => None,
    };
    let machine_cpu = cpu(start.machine_ticks, end.machine_ticks);
    let rss_idle = idle.server_mem.map(|m| m.0);
    let rss_before = before.server_mem.map(|m| m.0);
    let rss_loaded = end.server_mem.map(|m| m.0);
    let rss_per_player = match (rss_before, rss_loaded) {
        (Some(b), Some(l)) if connected > 0 => Some((l as f64 - b as f64) / connected as f64),
        _ => None,
    };
    json!({
        "url": setup.url,
        "streams": setup.streams,
        "players_per_stream": setup.players_per_stream,
        "players": setup.streams * setup.players_per_stream,
        "procs": setup.procs,
        "duration_s": setup.duration.as_secs_f64(),
        "warmup_s": setup.warmup.as_secs_f64(),
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
            "deferred": reports.iter().map(|r| r.deferred).sum::<u64>(),
        },
        "received_mbit_s": reports.iter().map(|r| r.window_bytes).sum::<u64>() as f64 * 8.0
            / 1e6 / wall.as_secs_f64().max(0.001),
        "publisher": {
            "count": setup.streams,
            "messages": publisher.messages,
            "audio_sent": sent[0],
            "video_sent": sent[1],
            "loops": publisher.loops,
            "max_lateness_ms": publisher.max_lateness.as_secs_f64() * 1000.0,
            "error": publisher.error,
        },
        "server": {
            "cpu_percent": server_cpu,
            "cpu_percent_per_stream": server_cpu.map(|c| c / streams),
            "rss_kib": rss_loaded,
            "hwm_kib": end.server_mem.map(|m| m.1),
            "rss_idle_kib": rss_idle,
            "rss_before_players_kib": rss_before,
            "rss_per_player_kib": rss_per_player,
            "rss_per_stream_kib": rss_loaded.map(|r| r as f64 / streams),
            "rss_per_stream_above_idle_kib": match (rss_idle, rss_loaded) {
                (Some(i), Some(l)) => Some((l as f64 - i as f64) / streams),
                _ => None,
            },
        },
        "machine": {
            "cores": std::thread::available_parallelism().map_or(0, usize::from),
            "busy_cpu_percent": machine_cpu,
            "other_cpu_percent": machine_cpu.map(|m| {
                (m - server_cpu.unwrap_or(0.0) - tool_cpu.unwrap_or(0.0)).max(0.0)
            }),
        },
        "tool": {
            "cpu_percent": tool_cpu,
            "parent_cpu_percent": parent_cpu,
            "workers_cpu_percent": if setup.procs > 1 { workers_cpu } else { None },
            "forward_dropped": tool.forward_dropped,
            "clock_errors": reports.iter().map(|r| r.early).sum::<u64>(),
            "worker_hello_lag_ms": tool.hello_lag.map(|d| d.as_secs_f64() * 1000.0),
        },
    })
}

pub fn print_text(v: &serde_json::Value) {
    let f = |p: &str| crate::cli::shown(v, p);
    println!(
        "ferrocast-bench  {}  streams {} x players {}  procs {}  window {} s after {} s warmup",
        f("/url"),
        f("/streams"),
        f("/players_per_stream"),
        f("/procs"),
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
        "loss         {pct:.3} %  ({} of {} messages; reordered {}, retimed {}, unmatched {}, \
         matched late {})",
        f("/loss/missing"),
        f("/loss/expected"),
        f("/loss/reordered"),
        f("/loss/retimed"),
        f("/loss/unmatched"),
        f("/loss/deferred")
    );
    let kib = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_f64())
            .map_or("-".into(), |k| format!("{:.1} MiB", k / 1024.0))
    };
    println!(
        "server       CPU {} % of one core  RSS {} (HWM {}, {} before players, {} idle)  \
         RSS/player {} KiB",
        f("/server/cpu_percent"),
        kib("/server/rss_kib"),
        kib("/server/hwm_kib"),
        kib("/server/rss_before_players_kib"),
        kib("/server/rss_idle_kib"),
        f("/server/rss_per_player_kib")
    );
    if v.pointer("/streams").and_then(|s| s.as_u64()) > Some(1) {
        println!(
            "per stream   CPU {} %  RSS {} KiB ({} KiB above idle)",
            f("/server/cpu_percent_per_stream"),
            f("/server/rss_per_stream_kib"),
            f("/server/rss_per_stream_above_idle_kib")
        );
    }
    println!(
        "tool         CPU {} % of one core (parent {}, workers {})  received {} Mbit/s  \
         publisher late max {} ms{}",
        f("/tool/cpu_percent"),
        f("/tool/parent_cpu_percent"),
        f("/tool/workers_cpu_percent"),
        f("/received_mbit_s"),
        f("/publisher/max_lateness_ms"),
        match v.pointer("/publisher/error").and_then(|e| e.as_str()) {
            Some(e) => format!("  PUBLISHER ERROR: {e}"),
            None => String::new(),
        }
    );
    println!(
        "machine      busy {} % of one core over {} cores, of which {} % neither server nor \
         tool (other processes, unattributed softirq)",
        f("/machine/busy_cpu_percent"),
        f("/machine/cores"),
        f("/machine/other_cpu_percent")
    );
    if let Some(d) = v.pointer("/tool/forward_dropped").and_then(|d| d.as_u64())
        && d > 0
    {
        println!("  WARNING: {d} send records never reached the workers (counted as unmatched)");
    }
    if let Some(n) = v.pointer("/tool/clock_errors").and_then(|d| d.as_u64())
        && n > 0
    {
        println!("  WARNING: {n} messages received before they were sent: clock mapping error");
    }
}
