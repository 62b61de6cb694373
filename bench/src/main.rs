//! ferrocast-bench: real-time RTMP publishers and N players per stream against an RTMP server;
//! reports first-frame time, delivery latency, loss, and the server's CPU and memory.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod conn;
mod flv;
mod player;
mod procfs;
mod publisher;
mod report;
mod sys;
mod worker;
mod workers;

use crate::conn::Target;
use crate::player::{PHASE_DONE, PHASE_MEASURE, PHASE_WARMUP, PlayerReport, Shared};
use crate::publisher::{PublishReport, SendLog};
use crate::workers::{Plan, Workers, stream_of};
use cli::{count, number};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

const USAGE: &str =
    "Usage: ferrocast-bench --url rtmp://IP:PORT/APP/NAME --input FILE.flv --players N
                       [--streams 1] [--procs 1] [--duration 30] [--warmup 5]
                       [--server-pid PID] [--ramp-ms 2] [--json]

One publisher sends FILE.flv in real time (looped); N players play it. After all players have
started and --warmup seconds have passed, --duration seconds are measured.

--streams S   S publishers (NAME0 .. NAME{S-1}, starts spread over one GOP), N players each.
--procs K     run the players in K worker processes (this binary again); the publishers and
              the measurement stay here. 1 = players in this process.";

/// Time the publisher gets to go live (and the server to cache a GOP) before players start.
const PUBLISH_LEAD: Duration = Duration::from_millis(2300);
/// Time players keep reading after the window, so in-flight messages are not lost.
const DRAIN: Duration = Duration::from_millis(1500);
/// GOP assumed when the file has fewer than two keyframes (spreads publisher starts).
const DEFAULT_GOP: Duration = Duration::from_secs(2);
/// The most players of all streams together.
const MAX_PLAYERS: usize = 20_000;

struct Args {
    url: String,
    input: String,
    players: usize,
    streams: usize,
    procs: usize,
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
    let mut streams = 1;
    let mut procs = 1;
    let mut duration = 30.0;
    let mut warmup = 5.0;
    let mut server_pid = None;
    let mut ramp_ms = 2.0;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value("--url")?),
            "--input" => input = Some(value("--input")?),
            "--players" => players = Some(count("--players", value("--players")?)?),
            "--streams" => streams = count("--streams", value("--streams")?)?,
            "--procs" => procs = count("--procs", value("--procs")?)?,
            "--duration" => duration = number("--duration", value("--duration")?)?,
            "--warmup" => warmup = number("--warmup", value("--warmup")?)?,
            "--ramp-ms" => ramp_ms = number("--ramp-ms", value("--ramp-ms")?)?,
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
    if streams == 0 || streams > 1000 || !(1..=64).contains(&procs) {
        return Err("limits: 1 <= --streams <= 1000, 1 <= --procs <= 64".into());
    }
    if players.saturating_mul(streams) > MAX_PLAYERS
        || duration > 3600.0
        || warmup > 3600.0
        || ramp_ms > 10_000.0
    {
        return Err(format!(
            "limits: --players x --streams <= {MAX_PLAYERS}, --duration/--warmup <= 3600, \
             --ramp-ms <= 10000"
        ));
    }
    if duration < 1.0 {
        return Err("--duration must be at least 1 s".into());
    }
    Ok(Args {
        url: url.ok_or("--url is required")?,
        input: input.ok_or("--input is required")?,
        players,
        streams,
        procs,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        server_pid,
        ramp: Duration::from_secs_f64(ramp_ms / 1000.0),
        json,
    })
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--worker") {
        return worker::main();
    }
    let args = match cli::args("ferrocast-bench", USAGE, parse_args) {
        Ok(a) => a,
        Err(code) => return code,
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
    // `run` is polled on this (the main) thread, so workers it spawns are children of a thread
    // that lives as long as the process, which PR_SET_PDEATHSIG relies on.
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One target per stream: the URL's own name for one stream, NAME0..NAME{S-1} for several.
fn stream_targets(base: &Target, streams: usize) -> Vec<Target> {
    if streams <= 1 {
        return vec![base.clone()];
    }
    (0..streams)
        .map(|i| Target {
            name: format!("{}{i}", base.name),
            ..base.clone()
        })
        .collect()
}

/// Start offset of player `g` within the ramp.
fn ramp_at(ramp: Duration, g: usize) -> Duration {
    ramp * u32::try_from(g).unwrap_or(u32::MAX)
}

/// Waits for player tasks (bounded by `deadline` plus a grace), keeping their indices.
async fn join_players(
    handles: Vec<(usize, JoinHandle<PlayerReport>)>,
    deadline: Instant,
) -> Vec<(usize, PlayerReport)> {
    let mut reports = Vec::with_capacity(handles.len());
    for (g, h) in handles {
        let r = match timeout_at(deadline + Duration::from_secs(5), h).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => PlayerReport {
                error: Some(format!("task: {e}")),
                ..PlayerReport::default()
            },
            Err(_) => PlayerReport {
                error: Some("did not finish".into()),
                ..PlayerReport::default()
            },
        };
        reports.push((g, r));
    }
    reports
}

/// All publishers as one: sums, the worst lateness, the first error (named by stream).
fn merge_publishers(reports: Vec<(String, PublishReport)>) -> PublishReport {
    let several = reports.len() > 1;
    let mut all = PublishReport {
        loops: u32::MAX,
        ..PublishReport::default()
    };
    for (name, r) in reports {
        all.messages += r.messages;
        all.bytes += r.bytes;
        all.loops = all.loops.min(r.loops);
        all.max_lateness = all.max_lateness.max(r.max_lateness);
        if all.error.is_none()
            && let Some(e) = r.error
        {
            all.error = Some(if several { format!("{name}: {e}") } else { e });
        }
    }
    if all.loops == u32::MAX {
        all.loops = 0;
    }
    all
}

async fn run(args: Args) -> Result<(), String> {
    let base = Target::parse(&args.url)?;
    let targets = stream_targets(&base, args.streams);
    let tags = publisher::load(&args.input)?;
    let pid = args.server_pid.map(|p| p.to_string());
    let pid = pid.as_deref();
    if let Some(p) = pid
        && procfs::cpu_ticks(p).is_none()
    {
        return Err(format!("--server-pid {p}: no such process"));
    }
    let tck = procfs::clock_ticks();
    let idle = report::sample(pid, &[]);

    // The schedule, as offsets from t0. Publisher i starts at i * stagger, so many streams'
    // keyframes (and the server's bursts) are spread over one GOP instead of aligned.
    let (t0_std, t0_ns) = sys::clock_pair();
    let t0 = Instant::from_std(t0_std);
    let streams = targets.len();
    let stagger = if streams > 1 {
        publisher::keyframe_interval(&tags).unwrap_or(DEFAULT_GOP) / streams as u32
    } else {
        Duration::ZERO
    };
    let players_total = args.players * streams;
    let players_start = stagger * (streams as u32 - 1) + PUBLISH_LEAD;
    let measure_start = players_start + ramp_at(args.ramp, players_total) + args.warmup;
    let measure_end = measure_start + args.duration;
    let deadline = measure_end + DRAIN;
    let shared = Arc::new(Shared {
        targets: targets.clone(),
        logs: (0..streams)
            .map(|_| RwLock::new(SendLog::default()))
            .collect(),
        phase: AtomicU8::new(PHASE_WARMUP),
        measure_end: t0 + measure_end,
        deadline: t0 + deadline,
    });

    let mut workers = if args.procs > 1 {
        let plan = Plan {
            url: args.url.clone(),
            streams,
            players_total,
            ramp: args.ramp,
            players_start,
            measure_start,
            measure_end,
            deadline,
        };
        Some(Workers::spawn(&plan, args.procs, (t0, t0_ns), false)?)
    } else {
        None
    };
    let worker_pids = workers.as_ref().map(Workers::pids).unwrap_or_default();

    // Publishers stop at the end of the window; players drain for DRAIN more.
    let mut publishers = Vec::with_capacity(streams);
    for (i, target) in targets.iter().enumerate() {
        let s = shared.clone();
        let (target, tags) = (target.clone(), tags.clone());
        let tap = workers.as_ref().and_then(|w| w.tap(i));
        let start = t0 + stagger * i as u32;
        publishers.push(tokio::spawn(async move {
            sleep_until(start).await;
            publisher::run(target, tags, &s.logs[i], tap, t0 + measure_end).await
        }));
    }

    sleep_until(t0 + players_start).await;
    if let Some(i) = publishers.iter().position(JoinHandle::is_finished) {
        let report = publishers.swap_remove(i).await.map_err(|e| e.to_string())?;
        let e = report.error.unwrap_or_else(|| "ended early".into());
        return Err(format!("publisher of {}: {e}", targets[i].name));
    }
    let before = report::sample(pid, &worker_pids);

    let mut handles = Vec::new();
    if let Some(w) = &workers {
        w.go();
    } else {
        handles.reserve(players_total);
        for g in 0..players_total {
            sleep_until(t0 + players_start + ramp_at(args.ramp, g)).await;
            let s = shared.clone();
            let stream = stream_of(g, streams);
            handles.push((
                g,
                tokio::spawn(async move { player::run(&s, stream, 1000 + g as u64).await }),
            ));
        }
    }

    sleep_until(t0 + measure_start).await;
    shared.phase.store(PHASE_MEASURE, Ordering::Relaxed);
    let start = report::sample(pid, &worker_pids);
    sleep_until(t0 + measure_end).await;
    let end = report::sample(pid, &worker_pids);
    shared.phase.store(PHASE_DONE, Ordering::Relaxed);
    let mut sent = [0u64; 2];
    for log in &shared.logs {
        if let Ok(l) = log.read() {
            sent[0] += l.sent()[0];
            sent[1] += l.sent()[1];
        }
    }

    let reports = match workers.as_mut() {
        Some(w) => w.finish(players_total, t0 + deadline).await,
        None => join_players(handles, t0 + deadline)
            .await
            .into_iter()
            .map(|(_, r)| r)
            .collect(),
    };
    let mut pub_reports = Vec::with_capacity(streams);
    for (i, p) in publishers.into_iter().enumerate() {
        let r = timeout(Duration::from_secs(5), p)
            .await
            .map_err(|_| format!("publisher of {} did not finish", targets[i].name))?
            .map_err(|e| e.to_string())?;
        pub_reports.push((targets[i].name.clone(), r));
    }

    let out = report::summarize(
        &report::Setup {
            url: &args.url,
            streams,
            players_per_stream: args.players,
            procs: args.procs,
            duration: args.duration,
            warmup: args.warmup,
        },
        &reports,
        &merge_publishers(pub_reports),
        sent,
        &report::Samples {
            idle,
            before,
            start,
            end,
        },
        &report::Tool {
            tck,
            forward_dropped: workers.as_ref().map_or(0, Workers::forward_dropped),
            hello_lag: workers.as_ref().map(|w| w.hello_lag),
        },
    );
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        report::print_text(&out);
    }
    Ok(())
}
