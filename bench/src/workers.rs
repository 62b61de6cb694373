//! The parent's side of `--procs K`: players run in K child processes (this binary with
//! `--worker`) so the load generator is not one process competing with the server for two
//! cores. The parent keeps the publishers and all measurement.
//!
//! Pipes, one line each way per event:
//! - parent -> worker stdin: one JSON [`Plan`] line; `g` (start the players); then
//!   `r STREAM TRACK TS SEQ AT_NS` for every media message a publisher sends (only the streams
//!   that worker plays). EOF means the parent is gone: the worker exits.
//! - worker -> parent stdout: `{"hello": NS}`, then after the run one [`player::to_wire`] line
//!   per player and `{"done": true}`.
//!
//! Time: every instant crosses as nanoseconds since the parent's `t0`, and the parent sends
//! `t0` as a CLOCK_MONOTONIC reading. A worker reads its own (Instant, CLOCK_MONOTONIC) pair and
//! finds its Instant of `t0` as `local_instant - (local_ns - t0_ns)`: one clock, one machine, so
//! there is no skew to estimate, only the width of the pair reads (well under a microsecond).

use crate::player::{self, PlayerReport};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// Send records buffered between the publishers and the forwarding thread (several seconds of
/// 200 streams); beyond that records are dropped and counted, never waited for.
const FORWARD_QUEUE: usize = 1 << 16;
/// A worker must say hello within this.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// A worker still running this long after the deadline is killed.
const EXIT_GRACE: Duration = Duration::from_secs(15);

/// What a worker is told: everything as offsets from the parent's `t0`.
pub struct Plan {
    pub url: String,
    pub streams: usize,
    pub players_total: usize,
    pub ramp: Duration,
    pub players_start: Duration,
    pub measure_start: Duration,
    pub measure_end: Duration,
    pub deadline: Duration,
}

/// Player `g` (global index) plays stream `g % streams` in worker `g % procs`, so a ramp and
/// every stream spread over all workers.
pub fn stream_of(g: usize, streams: usize) -> usize {
    g % streams
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Plan {
    fn to_line(&self, index: usize, procs: usize, t0_ns: u64) -> String {
        json!({
            "parent_pid": std::process::id(),
            "index": index,
            "procs": procs,
            "t0_ns": t0_ns,
            "url": self.url,
            "streams": self.streams,
            "players_total": self.players_total,
            "ramp_ns": nanos(self.ramp),
            "players_start_ns": nanos(self.players_start),
            "measure_start_ns": nanos(self.measure_start),
            "measure_end_ns": nanos(self.measure_end),
            "deadline_ns": nanos(self.deadline),
        })
        .to_string()
    }
}

/// A plan as a worker reads it.
pub struct WorkerPlan {
    pub parent_pid: u32,
    pub index: usize,
    pub procs: usize,
    pub t0_ns: u64,
    pub plan: Plan,
}

impl WorkerPlan {
    pub fn parse(line: &str) -> Result<WorkerPlan, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("plan: {e}"))?;
        let u = |k: &str| {
            v.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("plan: missing {k}"))
        };
        let us = |k: &str| u(k).and_then(|n| usize::try_from(n).map_err(|e| e.to_string()));
        let d = |k: &str| u(k).map(Duration::from_nanos);
        Ok(WorkerPlan {
            parent_pid: u32::try_from(u("parent_pid")?).map_err(|e| e.to_string())?,
            index: us("index")?,
            procs: us("procs")?.max(1),
            t0_ns: u("t0_ns")?,
            plan: Plan {
                url: v
                    .get("url")
                    .and_then(Value::as_str)
                    .ok_or("plan: missing url")?
                    .to_owned(),
                streams: us("streams")?.max(1),
                players_total: us("players_total")?,
                ramp: d("ramp_ns")?,
                players_start: d("players_start_ns")?,
                measure_start: d("measure_start_ns")?,
                measure_end: d("measure_end_ns")?,
                deadline: d("deadline_ns")?,
            },
        })
    }

    /// Global indices of this worker's players.
    pub fn players(&self) -> impl Iterator<Item = usize> + use<> {
        (self.index..self.plan.players_total).step_by(self.procs)
    }
}

enum Fwd {
    Go,
    Record {
        stream: u32,
        track: u8,
        ts: u32,
        seq: u64,
        at_ns: u64,
    },
}

/// A publisher's handle for copying its send records to the workers.
pub struct Tap {
    tx: SyncSender<Fwd>,
    stream: u32,
    t0: Instant,
    dropped: Arc<AtomicU64>,
}

impl Tap {
    pub fn record(&self, track: usize, ts: u32, seq: u64, at: Instant) {
        let rec = Fwd::Record {
            stream: self.stream,
            track: track as u8,
            ts,
            seq,
            at_ns: nanos(at.saturating_duration_since(self.t0)),
        };
        // Never block a publisher on a slow pipe: a dropped record shows up as `unmatched`
        // and in `tool.forward_dropped`.
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(rec) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the parent gets back from one worker.
type Collected = Result<Vec<(usize, PlayerReport)>, String>;

/// The running workers. Dropping it kills any that are still running.
pub struct Workers {
    children: Vec<Child>,
    readers: Vec<Option<JoinHandle<Collected>>>,
    tx: Option<SyncSender<Fwd>>,
    t0: Instant,
    dropped: Arc<AtomicU64>,
    /// Largest hello delay seen (worker's clock of the hello vs the parent's receipt).
    pub hello_lag: Duration,
}

impl Workers {
    /// Starts `procs` workers and checks each one's clock mapping by its hello. Must be called
    /// on the main thread (see [`crate::sys::die_with_parent`]).
    pub fn spawn(
        plan: &Plan,
        procs: usize,
        t0: (Instant, u64),
        quiet: bool,
    ) -> Result<Workers, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let dropped = Arc::new(AtomicU64::new(0));
        let mut w = Workers {
            children: Vec::with_capacity(procs),
            readers: Vec::with_capacity(procs),
            tx: None,
            t0: t0.0,
            dropped,
            hello_lag: Duration::ZERO,
        };
        let mut stdins = Vec::with_capacity(procs);
        let mut hellos = Vec::with_capacity(procs);
        for index in 0..procs {
            let spawned_at = Instant::now();
            let mut child = Command::new(&exe)
                .arg("--worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(if quiet {
                    Stdio::null()
                } else {
                    Stdio::inherit()
                })
                .spawn()
                .map_err(|e| format!("spawn worker {index}: {e}"))?;
            let mut stdin = child.stdin.take().ok_or("worker stdin")?;
            let stdout = child.stdout.take().ok_or("worker stdout")?;
            w.children.push(child);
            writeln!(stdin, "{}", plan.to_line(index, procs, t0.1))
                .and_then(|()| stdin.flush())
                .map_err(|e| format!("worker {index}: {e}"))?;
            let (hello_tx, hello_rx) = sync_channel(1);
            let handle = std::thread::Builder::new()
                .name(format!("worker-{index}-out"))
                .spawn(move || read_worker(index, stdout, hello_tx))
                .map_err(|e| format!("thread: {e}"))?;
            w.readers.push(Some(handle));
            let streams = (index..plan.players_total).step_by(procs).fold(
                vec![false; plan.streams],
                |mut s, g| {
                    s[stream_of(g, plan.streams)] = true;
                    s
                },
            );
            stdins.push((stdin, streams));
            hellos.push((index, spawned_at, hello_rx));
        }
        for (index, spawned_at, rx) in hellos {
            let (hello_ns, received_at) = rx
                .recv_timeout(HELLO_WAIT)
                .map_err(|_| format!("worker {index}: no hello within {HELLO_WAIT:?}"))??;
            // The worker stamped its hello between its spawn and our reading of it; anything
            // else means the clock mapping is wrong.
            let stamped = t0.0 + Duration::from_nanos(hello_ns);
            if stamped < spawned_at || stamped > received_at {
                return Err(format!(
                    "worker {index}: clock mapping off (hello stamped {:?} after t0, spawned \
                     {:?}, received {:?})",
                    Duration::from_nanos(hello_ns),
                    spawned_at - t0.0,
                    received_at - t0.0
                ));
            }
            w.hello_lag = w.hello_lag.max(received_at - stamped);
        }
        let (tx, rx) = sync_channel(FORWARD_QUEUE);
        std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || forward(rx, stdins))
            .map_err(|e| format!("thread: {e}"))?;
        w.tx = Some(tx);
        Ok(w)
    }

    pub fn tap(&self, stream: usize) -> Option<Tap> {
        Some(Tap {
            tx: self.tx.clone()?,
            stream: u32::try_from(stream).ok()?,
            t0: self.t0,
            dropped: self.dropped.clone(),
        })
    }

    /// Tells the workers to start their players (on the plan's schedule).
    pub fn go(&self) {
        if let Some(tx) = &self.tx {
            // Blocking is fine here: nothing is queued yet that the thread cannot drain.
            let _ = tx.send(Fwd::Go);
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    pub fn forward_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits for every worker to report and exit (killing those still running at `until`),
    /// then returns one report per player, in global order; players of a worker that failed
    /// carry its error.
    pub async fn finish(&mut self, players_total: usize, until: Instant) -> Vec<PlayerReport> {
        let hard = until + EXIT_GRACE;
        for child in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= hard => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => sleep(Duration::from_millis(20)).await,
                }
            }
        }
        let procs = self.readers.len();
        let mut out: Vec<Option<PlayerReport>> = (0..players_total).map(|_| None).collect();
        let mut worker_errors = vec![None; procs];
        for (index, handle) in self.readers.iter_mut().enumerate() {
            // The worker has exited, so its stdout is at EOF and the reader ends promptly.
            match handle.take().map(JoinHandle::join) {
                Some(Ok(Ok(reports))) => {
                    for (g, r) in reports {
                        if let Some(slot) = out.get_mut(g) {
                            *slot = Some(r);
                        }
                    }
                }
                Some(Ok(Err(e))) => worker_errors[index] = Some(e),
                _ => worker_errors[index] = Some(format!("worker {index}: reader failed")),
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(g, r)| {
                r.unwrap_or_else(|| PlayerReport {
                    error: Some(
                        worker_errors[g % procs.max(1)]
                            .clone()
                            .unwrap_or_else(|| format!("worker {}: no report", g % procs.max(1))),
                    ),
                    ..PlayerReport::default()
                })
            })
            .collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Reads one worker's stdout: the hello (handed over at once through `hello`), then its
/// reports until EOF.
fn read_worker(
    index: usize,
    stdout: std::process::ChildStdout,
    hello: SyncSender<Result<(u64, Instant), String>>,
) -> Collected {
    let mut lines = BufReader::with_capacity(1 << 20, stdout).lines();
    let first = lines.next();
    let received_at = Instant::now();
    let parsed = match first {
        Some(Ok(l)) => serde_json::from_str::<Value>(&l)
            .ok()
            .and_then(|v| v.get("hello")?.as_u64())
            .ok_or_else(|| format!("worker {index}: bad hello {l:?}")),
        Some(Err(e)) => Err(format!("worker {index}: {e}")),
        None => Err(format!("worker {index}: exited before its hello")),
    };
    let _ = hello.send(parsed.clone().map(|ns| (ns, received_at)));
    parsed?;
    let mut reports = Vec::new();
    for line in lines {
        let line = line.map_err(|e| format!("worker {index}: {e}"))?;
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("worker {index}: bad line: {e}"))?;
        if v.get("done").is_some() {
            return Ok(reports);
        }
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            return Err(format!("worker {index}: {e}"));
        }
        reports.push(player::from_wire(&v).ok_or_else(|| format!("worker {index}: bad report"))?);
    }
    Err(format!(
        "worker {index}: exited after {} reports, without finishing",
        reports.len()
    ))
}

/// Copies `g` and send records to the workers that need them, flushing whenever the queue is
/// empty. A worker whose pipe breaks is skipped from then on; its players report its error.
fn forward(rx: Receiver<Fwd>, stdins: Vec<(ChildStdin, Vec<bool>)>) {
    let mut outs: Vec<(Option<BufWriter<ChildStdin>>, Vec<bool>)> = stdins
        .into_iter()
        .map(|(s, streams)| (Some(BufWriter::with_capacity(64 << 10, s)), streams))
        .collect();
    let mut line = String::with_capacity(64);
    while let Ok(first) = rx.recv() {
        let mut msg = Some(first);
        while let Some(m) = msg.take().or_else(|| rx.try_recv().ok()) {
            line.clear();
            let stream = match m {
                Fwd::Go => {
                    line.push_str("g\n");
                    None
                }
                Fwd::Record {
                    stream,
                    track,
                    ts,
                    seq,
                    at_ns,
                } => {
                    use std::fmt::Write as _;
                    let _ = writeln!(line, "r {stream} {track} {ts} {seq} {at_ns}");
                    Some(stream as usize)
                }
            };
            for (out, streams) in &mut outs {
                let wanted = stream.is_none_or(|s| streams.get(s).copied().unwrap_or(false));
                if wanted
                    && let Some(w) = out
                    && w.write_all(line.as_bytes()).is_err()
                {
                    *out = None;
                }
            }
        }
        for (out, _) in &mut outs {
            if let Some(w) = out
                && w.flush().is_err()
            {
                *out = None;
            }
        }
    }
    // The queue closes only when `Workers` is dropped, which kills the workers anyway; the
    // pipes close here (EOF: the parent is gone).
}
