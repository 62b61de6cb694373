//! The child side of `--procs K` (`ferrocast-bench --worker`, not for people): reads its plan
//! and the parent's send records on stdin, plays its share of the players, and prints their
//! reports on stdout. Protocol and clock mapping: see `workers.rs`.

use crate::conn::Target;
use crate::player::{self, PHASE_DONE, PHASE_MEASURE, PHASE_WARMUP, PlayerReport, Shared};
use crate::publisher::SendLog;
use crate::sys;
use crate::workers::{WorkerPlan, stream_of};
use serde_json::json;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::time::{Instant, sleep_until, timeout_at};

/// A worker still alive this long after the deadline exits on its own, whatever it waits for.
const WATCHDOG: Duration = Duration::from_secs(20);

pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The parent reads stdout; stderr is for a person.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", json!({ "error": e }));
            let _ = out.flush();
            eprintln!("ferrocast-bench worker: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    if line.is_empty() {
        return Err("no plan on stdin (--worker is started by ferrocast-bench --procs)".into());
    }
    let wp = WorkerPlan::parse(line.trim())?;
    sys::die_with_parent(wp.parent_pid)?;
    let t0 = sys::instant_of(wp.t0_ns, sys::clock_pair())
        .ok_or("the parent's t0 is later than this worker's clock")?;
    let t0 = Instant::from_std(t0);
    let plan = &wp.plan;
    let base = Target::parse(&plan.url)?;
    let shared = Arc::new(Shared {
        targets: crate::stream_targets(&base, plan.streams),
        logs: (0..plan.streams)
            .map(|_| RwLock::new(SendLog::default()))
            .collect(),
        phase: AtomicU8::new(PHASE_WARMUP),
        measure_end: t0 + plan.measure_end,
        deadline: t0 + plan.deadline,
    });

    {
        let mut out = std::io::stdout().lock();
        let hello = u64::try_from((Instant::now() - t0).as_nanos()).unwrap_or(u64::MAX);
        writeln!(out, "{}", json!({ "hello": hello }))
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }

    let (go_tx, go_rx) = channel();
    let input = shared.clone();
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || read_input(&input, t0, &go_tx))
        .map_err(|e| format!("thread: {e}"))?;
    let hard = (shared.deadline + WATCHDOG).into_std();
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            while std::time::Instant::now() < hard {
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("ferrocast-bench worker: still running long after the deadline, exiting");
            std::process::exit(3);
        })
        .map_err(|e| format!("thread: {e}"))?;

    // One thread per worker: the parallelism comes from the processes.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let result = runtime.block_on(play_all(shared, &wp, t0, go_rx));
    // A blocking wait for `g` may still be parked; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(100));
    let reports = result?;

    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    for (g, r) in &reports {
        writeln!(out, "{}", player::to_wire(*g, r)).map_err(|e| format!("stdout: {e}"))?;
    }
    writeln!(out, "{}", json!({ "done": true }))
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    Ok(())
}

/// Applies the parent's lines: `g` starts the players, `r ...` is a send record. EOF means the
/// parent is gone, and with it anyone to report to.
fn read_input(shared: &Shared, t0: Instant, go: &Sender<()>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line == "g" {
            let _ = go.send(());
            continue;
        }
        let Some(rest) = line.strip_prefix("r ") else {
            continue;
        };
        let mut f = rest.split(' ').map(|x| x.parse::<u64>().ok());
        let (
            Some(Some(stream)),
            Some(Some(track)),
            Some(Some(ts)),
            Some(Some(seq)),
            Some(Some(at)),
        ) = (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let (Ok(stream), Ok(track), Ok(ts)) = (
            usize::try_from(stream),
            usize::try_from(track),
            u32::try_from(ts),
        ) else {
            continue;
        };
        if track > 1 {
            continue;
        }
        if let Some(Ok(mut log)) = shared.logs.get(stream).map(RwLock::write) {
            log.insert(track, ts, t0 + Duration::from_nanos(at), seq);
        }
    }
    std::process::exit(1);
}

async fn play_all(
    shared: Arc<Shared>,
    wp: &WorkerPlan,
    t0: Instant,
    go: Receiver<()>,
) -> Result<Vec<(usize, PlayerReport)>, String> {
    let plan = &wp.plan;
    let started = tokio::task::spawn_blocking(move || go.recv());
    match timeout_at(shared.deadline, started).await {
        Ok(Ok(Ok(()))) => {}
        _ => return Err("no start signal from the parent".into()),
    }
    let phases = shared.clone();
    let (measure_start, measure_end) = (t0 + plan.measure_start, t0 + plan.measure_end);
    let phase_task = tokio::spawn(async move {
        sleep_until(measure_start).await;
        phases.phase.store(PHASE_MEASURE, Ordering::Relaxed);
        sleep_until(measure_end).await;
        phases.phase.store(PHASE_DONE, Ordering::Relaxed);
    });

    let mut handles = Vec::new();
    for g in wp.players() {
        // The same schedule as the parent's in-process ramp: player g at start + g * ramp.
        sleep_until(t0 + plan.players_start + crate::ramp_at(plan.ramp, g)).await;
        let s = shared.clone();
        let stream = stream_of(g, plan.streams);
        handles.push((
            g,
            tokio::spawn(async move { player::run(&s, stream, 1000 + g as u64).await }),
        ));
    }
    let reports = crate::join_players(handles, shared.deadline).await;
    phase_task.abort();
    Ok(reports)
}
