//! ferrocast-http: N simulated HLS or DASH players of one live stream, each on its own
//! keep-alive HTTP/1.1 connection; reports requests/s, response times and bytes by request
//! kind, and the server's CPU per request and per GB served.
#![allow(clippy::print_stdout, clippy::print_stderr)]

// Shared with the RTMP tool as files rather than a library target.
#[path = "../cli.rs"]
mod cli;
#[path = "../http/mod.rs"]
mod http;
#[path = "../procfs.rs"]
mod procfs;

use crate::http::player::{self, ClientReport, Ctx, KINDS, Mode, Reload};
use cli::{count, number};
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};

const USAGE: &str = "Usage: ferrocast-http --url http://IP:PORT/PATH/index.m3u8|.mpd --clients N
                      [--duration 20] [--warmup 5] [--ramp-ms 10] [--server-pid PID]
                      [--mode hls|dash] [--reload spec|half] [--threads T] [--timeout 10]
                      [--json]

N players of one live stream (HLS for .m3u8, DASH for .mpd, or --mode), one every --ramp-ms.
After the last one started and --warmup seconds passed, --duration seconds are measured.";

/// Time given to requests in flight at the end of the window before the players are dropped.
const JOIN_GRACE: Duration = Duration::from_secs(6);

struct Args {
    url: String,
    addr: SocketAddr,
    path: String,
    mode: Mode,
    reload: Reload,
    clients: usize,
    duration: Duration,
    warmup: Duration,
    ramp: Duration,
    server_pid: Option<u32>,
    threads: Option<usize>,
    timeout: Duration,
    json: bool,
}

fn parse_url(url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--url must start with http://: {url:?}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = authority
        .parse::<SocketAddr>()
        .map_err(|_| format!("--url needs IP:PORT, not a host name: {authority:?}"))?;
    let path = if path.is_empty() { "/" } else { path };
    Ok((addr, path.to_owned()))
}

fn parse_args() -> Result<Args, String> {
    let mut url = None;
    let mut mode = None;
    let mut reload = Reload::Spec;
    let mut clients = None;
    let mut duration = 20.0;
    let mut warmup = 5.0;
    let mut ramp_ms = 10.0;
    let mut server_pid = None;
    let mut threads = None;
    let mut timeout = 10.0;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--clients" => clients = Some(count("--clients", value("--clients")?)?),
            "--duration" => duration = number("--duration", value("--duration")?)?,
            "--warmup" => warmup = number("--warmup", value("--warmup")?)?,
            "--ramp-ms" => ramp_ms = number("--ramp-ms", value("--ramp-ms")?)?,
            "--timeout" => timeout = number("--timeout", value("--timeout")?)?,
            "--threads" => threads = Some(count("--threads", value("--threads")?)?.max(1)),
            "--server-pid" => {
                let v = value("--server-pid")?;
                server_pid = Some(
                    v.parse::<u32>()
                        .map_err(|_| format!("--server-pid: {v:?}"))?,
                );
            }
            "--mode" => {
                mode = Some(match value("--mode")?.as_str() {
                    "hls" => Mode::Hls,
                    "dash" => Mode::Dash,
                    v => return Err(format!("--mode: hls or dash, not {v:?}")),
                });
            }
            "--reload" => {
                reload = match value("--reload")?.as_str() {
                    "spec" => Reload::Spec,
                    "half" => Reload::Half,
                    v => return Err(format!("--reload: spec or half, not {v:?}")),
                };
            }
            "--json" => json = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let (addr, path) = parse_url(&url)?;
    let mode = match mode {
        Some(m) => m,
        None if path.ends_with(".mpd") => Mode::Dash,
        None if path.ends_with(".m3u8") => Mode::Hls,
        None => {
            return Err("--mode is required when the URL ends in neither .m3u8 nor .mpd".into());
        }
    };
    let clients = clients.ok_or("--clients is required")?;
    if clients > 20_000
        || duration > 3600.0
        || warmup > 3600.0
        || ramp_ms > 10_000.0
        || timeout > 600.0
    {
        return Err("limits: --clients <= 20000, --duration/--warmup <= 3600, \
                    --ramp-ms <= 10000, --timeout <= 600"
            .into());
    }
    if duration < 1.0 || timeout < 0.1 {
        return Err("--duration must be at least 1 s and --timeout 0.1 s".into());
    }
    Ok(Args {
        url,
        addr,
        path,
        mode,
        reload,
        clients,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        ramp: Duration::from_secs_f64(ramp_ms / 1000.0),
        server_pid,
        threads,
        timeout: Duration::from_secs_f64(timeout),
        json,
    })
}

fn main() -> ExitCode {
    let args = match cli::args("ferrocast-http", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(t) = args.threads {
        builder.worker_threads(t);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrocast-http: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-http: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Busy and total jiffies of the whole machine, all cores summed (/proc/stat).
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    let idle = v.get(3)? + v.get(4)?;
    Some((busy, busy + idle))
}

/// /proc readings at one instant.
struct Sample {
    at: Instant,
    server_ticks: Option<u64>,
    self_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
    server_mem: Option<(u64, u64)>,
}

fn sample(pid: Option<&str>) -> Sample {
    Sample {
        at: Instant::now(),
        server_ticks: pid.and_then(procfs::cpu_ticks),
        self_ticks: procfs::cpu_ticks("self"),
        machine: machine_ticks(),
        server_mem: pid.and_then(procfs::memory_kib),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let pid = args.server_pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    if let Some(p) = pid
        && procfs::cpu_ticks(p).is_none()
    {
        return Err(format!("--server-pid {p}: no such process"));
    }
    let tck = procfs::clock_ticks();
    let t0 = Instant::now();
    let ramp_total = args.ramp * u32::try_from(args.clients).unwrap_or(u32::MAX);
    let window_start = t0 + ramp_total + args.warmup;
    let window_end = window_start + args.duration;
    let ctx = Arc::new(Ctx {
        addr: args.addr,
        host: args.addr.to_string(),
        path: args.path.clone(),
        mode: args.mode,
        reload: args.reload,
        window_start,
        window_end,
        request_timeout: args.timeout,
    });

    let mut handles = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move { player::run(&ctx).await }));
        if !args.ramp.is_zero() {
            sleep(args.ramp).await;
        }
    }
    sleep_until(window_start).await;
    let start = sample(pid);
    sleep_until(window_end).await;
    let end = sample(pid);

    let mut reports = Vec::with_capacity(handles.len());
    let mut unfinished = 0;
    for h in handles {
        match timeout_at(window_end + JOIN_GRACE, h).await {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(_)) | Err(_) => unfinished += 1,
        }
    }
    let out = summarize(&args, &reports, unfinished, &start, &end, tck);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print_text(&out);
    }
    Ok(())
}

fn percentile_ms(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    Some(f64::from(sorted[i]) / 1000.0)
}

fn summarize(
    args: &Args,
    reports: &[ClientReport],
    unfinished: usize,
    start: &Sample,
    end: &Sample,
    tck: f64,
) -> serde_json::Value {
    let wall = (end.at - start.at).as_secs_f64().max(0.001);
    let mut kinds = serde_json::Map::new();
    let (mut responses, mut errors, mut bytes) = (0u64, 0u64, 0u64);
    for (k, name) in KINDS.iter().enumerate() {
        let n: u64 = reports.iter().map(|r| r.kinds[k].responses).sum();
        let e: u64 = reports.iter().map(|r| r.kinds[k].errors).sum();
        let b: u64 = reports.iter().map(|r| r.kinds[k].bytes).sum();
        let mut lat: Vec<u32> = reports
            .iter()
            .flat_map(|r| r.kinds[k].latency_us.iter().copied())
            .collect();
        lat.sort_unstable();
        responses += n;
        errors += e;
        bytes += b;
        kinds.insert(
            (*name).to_owned(),
            json!({
                "responses": n,
                "per_s": n as f64 / wall,
                "errors": e,
                "bytes": b,
                "mbyte_s": b as f64 / 1e6 / wall,
                "p50_ms": percentile_ms(&lat, 0.50),
                "p99_ms": percentile_ms(&lat, 0.99),
                "max_ms": lat.last().map(|m| f64::from(*m) / 1000.0),
            }),
        );
    }
    let mut error_texts: BTreeMap<&str, u64> = BTreeMap::new();
    for r in reports {
        for (e, n) in &r.errors {
            *error_texts.entry(e.as_str()).or_default() += n;
        }
    }
    let ticks = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    let window = end.at - start.at;
    let pct = |t: Option<u64>| t.map(|t| procfs::cpu_percent(t, tck, window));
    let server_t = ticks(start.server_ticks, end.server_ticks);
    let tool_t = ticks(start.self_ticks, end.self_ticks);
    let machine_t = ticks(start.machine.map(|m| m.0), end.machine.map(|m| m.0));
    let others_t = machine_t
        .zip(tool_t)
        .map(|(m, t)| m.saturating_sub(t + server_t.unwrap_or(0)));
    let server_s = server_t.map(|t| t as f64 / tck);
    json!({
        "url": args.url,
        "mode": match args.mode { Mode::Hls => "hls", Mode::Dash => "dash" },
        "reload": match args.reload { Reload::Spec => "spec", Reload::Half => "half" },
        "clients": args.clients,
        "active": reports.iter().filter(|r| r.active).count(),
        "unfinished": unfinished,
        "duration_s": wall,
        "warmup_s": args.warmup.as_secs_f64(),
        "requests": kinds,
        "total": {
            "responses": responses,
            "per_s": responses as f64 / wall,
            "errors": errors,
            "bytes": bytes,
            "mbit_s": bytes as f64 * 8.0 / 1e6 / wall,
        },
        "errors": error_texts,
        "skipped_segments": reports.iter().map(|r| r.skipped).sum::<u64>(),
        "reconnects": reports.iter().map(|r| r.reconnects).sum::<u64>(),
        "server": {
            "pid": args.server_pid,
            "cpu_percent": pct(server_t),
            // CPU µs per request is the same number as CPU ms per 1,000 requests.
            "cpu_ms_per_1000_requests": server_s
                .filter(|_| responses > 0)
                .map(|s| s * 1e6 / responses as f64),
            "cpu_s_per_gb": server_s
                .filter(|_| bytes > 0)
                .map(|s| s / (bytes as f64 / 1e9)),
            "rss_kib": end.server_mem.map(|m| m.0),
            "hwm_kib": end.server_mem.map(|m| m.1),
        },
        "tool": { "cpu_percent": pct(tool_t) },
        "machine": {
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "cpu_percent": pct(machine_t),
            "others_cpu_percent": pct(others_t),
        },
    })
}

fn print_text(v: &serde_json::Value) {
    let f = |p: &str| cli::shown(v, p);
    println!(
        "ferrocast-http  {}  {}  clients {} (active {})  window {} s",
        f("/mode"),
        f("/url"),
        f("/clients"),
        f("/active"),
        f("/duration_s")
    );
    for k in KINDS {
        println!(
            "{k:<9} {:>8} req/s  errors {:>5}  {:>8} MB/s  p50 {:>7} ms  p99 {:>7} ms  max {:>7} ms",
            f(&format!("/requests/{k}/per_s")),
            f(&format!("/requests/{k}/errors")),
            f(&format!("/requests/{k}/mbyte_s")),
            f(&format!("/requests/{k}/p50_ms")),
            f(&format!("/requests/{k}/p99_ms")),
            f(&format!("/requests/{k}/max_ms")),
        );
    }
    println!(
        "total     {} req/s  {} Mbit/s  errors {}  skipped segments {}  reconnects {}",
        f("/total/per_s"),
        f("/total/mbit_s"),
        f("/total/errors"),
        f("/skipped_segments"),
        f("/reconnects")
    );
    if let Some(errors) = v.pointer("/errors").and_then(|e| e.as_object()) {
        for (e, n) in errors {
            println!("  error x{n}: {e}");
        }
    }
    println!(
        "server    CPU {} % of a core  {} ms per 1000 requests  {} CPU-s per GB  RSS {} KiB",
        f("/server/cpu_percent"),
        f("/server/cpu_ms_per_1000_requests"),
        f("/server/cpu_s_per_gb"),
        f("/server/rss_kib")
    );
    println!(
        "tool      CPU {} %   machine {} % ({} cores; others {} %)",
        f("/tool/cpu_percent"),
        f("/machine/cpu_percent"),
        f("/machine/cores"),
        f("/machine/others_cpu_percent")
    );
}
