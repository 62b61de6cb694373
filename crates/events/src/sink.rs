//! One sink: its queue, its delivery task and its transport (HTTP or file).
//!
//! The task takes a batch once `batch_max` events wait or the oldest has waited
//! `batch_delay`, and delivers it before taking the next, so a receiver sees events in order.
//! A failed batch is tried again after each of [`RETRY_DELAYS`], then dropped and counted as
//! failed; while it is retried the queue keeps filling, within its bound.

use crate::filter::Filter;
use crate::queue::{Queue, Queued};
use crate::sign::{SIGNATURE_HEADER, Signer};
use crate::{Event, Subscriber};
use bytes::Bytes;
use serde::Serialize;
use std::error::Error as _;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime};
use store::HookKind;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

/// Waits before the second, third and fourth attempt at a batch; after the fourth fails the
/// batch is dropped.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Most bytes of a receiver's answer read (and thrown away) so its connection can be reused.
const MAX_REPLY_DRAIN: usize = 64 << 10;

/// The outcome of one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Delivered: a 2xx answer, or the lines written.
    pub ok: bool,
    /// The HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed (never the URL: it may hold credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time from sending to the answer (or to the failure).
    pub latency_ms: u64,
}

pub(crate) type SendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<u16>, String>> + Send + 'a>>;

/// Where a sink's batches go.
pub(crate) trait Transport: Send + Sync + 'static {
    /// The bytes of one delivery of `events`.
    fn encode(&self, events: &[Arc<Event>]) -> Bytes;
    /// Delivers `body`: `Ok(Some(status))` for an HTTP answer (any status), `Ok(None)` when
    /// written without a status (a file), `Err` when nothing was delivered.
    fn send(&self, body: Bytes) -> SendFuture<'_>;
}

/// A JSON array of events; `Event` serializes infallibly (strings, numbers, a JSON value).
fn json_array(events: &[Arc<Event>]) -> Bytes {
    let refs: Vec<&Event> = events.iter().map(|e| e.as_ref()).collect();
    Bytes::from(serde_json::to_vec(&refs).unwrap_or_else(|_| b"[]".to_vec()))
}

/// POST of a JSON array, signed when the sink has a secret.
pub(crate) struct HttpTransport {
    pub(crate) url: reqwest::Url,
    pub(crate) client: reqwest::Client,
    pub(crate) signer: Option<Signer>,
    pub(crate) hook: String,
}

impl HttpTransport {
    /// A client per sink: its own connection pool, the sink's timeout, no redirects (a
    /// redirect would carry the signed body to a host nobody configured).
    pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(concat!("ferrocast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| innermost(&e))
    }
}

impl Transport for HttpTransport {
    fn encode(&self, events: &[Arc<Event>]) -> Bytes {
        json_array(events)
    }

    fn send(&self, body: Bytes) -> SendFuture<'_> {
        Box::pin(async move {
            let mut req = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("x-ferrocast-hook", self.hook.as_str());
            if let Some(signer) = &self.signer {
                req = req.header(SIGNATURE_HEADER, signer.sign(&body));
            }
            let mut resp = req.body(body).send().await.map_err(|e| describe(&e))?;
            let status = resp.status().as_u16();
            let mut drained = 0;
            while drained < MAX_REPLY_DRAIN {
                match resp.chunk().await {
                    Ok(Some(c)) => drained += c.len(),
                    _ => break,
                }
            }
            Ok(Some(status))
        })
    }
}

/// What went wrong, without the URL reqwest puts in its own message.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{what}: {}", innermost(e))
}

/// The most specific cause ("Connection refused (os error 111)").
fn innermost(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = e.source();
    let mut last = None;
    while let Some(c) = cause {
        last = Some(c);
        cause = c.source();
    }
    match last {
        Some(c) => c.to_string(),
        None => {
            // reqwest's own message ends with the URL ("... for url (...)"): cut it off.
            let s = e.to_string();
            match s.find(" for url (") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// Appends one JSON event per line. The file is opened for each batch, so an external
/// rotation (logrotate's rename) takes effect at the next batch.
pub(crate) struct FileTransport {
    pub(crate) path: PathBuf,
}

/// One writer at a time over all file sinks: two sinks (or a sink and a test delivery) on one
/// file must not interleave partial lines.
static FILE_WRITES: Mutex<()> = Mutex::new(());

impl Transport for FileTransport {
    fn encode(&self, events: &[Arc<Event>]) -> Bytes {
        let mut out = Vec::with_capacity(events.len() * 256);
        for e in events {
            if serde_json::to_writer(&mut out, e.as_ref()).is_ok() {
                out.push(b'\n');
            }
        }
        Bytes::from(out)
    }

    fn send(&self, body: Bytes) -> SendFuture<'_> {
        let path = self.path.clone();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                let _one = FILE_WRITES.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                f.write_all(&body)?;
                f.flush()
            })
            .await;
            match written {
                Ok(Ok(())) => Ok(None),
                Ok(Err(e)) => Err(format!("cannot write: {e}")),
                Err(e) => Err(format!("writer task failed: {e}")),
            }
        })
    }
}

/// What a sink does with its events; replaced whole when the sink is reconfigured.
pub(crate) struct SinkConfig {
    pub(crate) kind: HookKind,
    pub(crate) filter: Filter,
    pub(crate) batch_max: usize,
    pub(crate) batch_delay: Duration,
    pub(crate) timeout: Duration,
    pub(crate) transport: Arc<dyn Transport>,
}

#[derive(Debug, Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct Status {
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    last_delivery_at: Option<SystemTime>,
    last_status: Option<u16>,
    /// The last attempt failed: the next success is logged as a recovery.
    failing: bool,
}

/// A sink's numbers, for the API and `/metrics`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    /// The sink's id.
    pub id: String,
    /// `http` or `file`.
    pub kind: &'static str,
    /// Whether it is enabled (takes events).
    pub enabled: bool,
    /// Events waiting in the queue.
    pub queued: usize,
    /// Events in the batch being delivered (or waiting for its retry).
    pub in_flight: usize,
    /// The queue's bound.
    pub queue_max: usize,
    /// Events delivered.
    pub delivered: u64,
    /// Events in batches given up after every retry.
    pub failed: u64,
    /// Events dropped because the queue was full (or the sink disabled with events queued).
    pub dropped: u64,
    /// Delivery attempts that were retries.
    pub retries: u64,
    /// Status of the last HTTP answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it happened, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<String>,
    /// The last successful delivery, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<String>,
}

/// One sink: queue, counters and current configuration, shared by the bus and its task.
pub(crate) struct Sink {
    pub(crate) id: String,
    config: RwLock<Arc<SinkConfig>>,
    pub(crate) queue: Queue,
    counters: Counters,
    status: Mutex<Status>,
}

impl Subscriber for Sink {
    fn offer(&self, event: &Arc<Event>) {
        if !self.config().filter.matches(event) {
            return;
        }
        let dropped = self.queue.push(event.clone());
        if dropped > 0 {
            let total = self.queue.dropped();
            // Powers of two: a dead receiver under a busy gateway would flood the log.
            if total.is_power_of_two() {
                tracing::warn!(hook = %self.id, dropped = total, "event sink queue full; oldest events dropped");
            }
        }
    }
}

impl Sink {
    pub(crate) fn new(id: &str, config: SinkConfig, queue_max: usize) -> Sink {
        Sink {
            id: id.to_owned(),
            config: RwLock::new(Arc::new(config)),
            queue: Queue::new(queue_max),
            counters: Counters::default(),
            status: Mutex::new(Status::default()),
        }
    }

    pub(crate) fn config(&self) -> Arc<SinkConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Installs a new configuration; the queue keeps its events within the new bound.
    pub(crate) fn reconfigure(&self, config: SinkConfig, queue_max: usize) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.queue.set_max(queue_max);
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        // Field assignments only: a poisoned status is consistent.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self, enabled: bool, queue_max: usize) -> SinkStats {
        let st = self.status();
        SinkStats {
            id: self.id.clone(),
            kind: self.config().kind.as_str(),
            enabled,
            queued: self.queue.len(),
            in_flight: self.counters.in_flight.load(Ordering::Relaxed),
            queue_max,
            delivered: self.counters.delivered.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.queue.dropped(),
            retries: self.counters.retries.load(Ordering::Relaxed),
            last_status: st.last_status,
            last_error: st.last_error.clone(),
            last_error_at: st.last_error_at.map(crate::rfc3339),
            last_delivery_at: st.last_delivery_at.map(crate::rfc3339),
        }
    }

    /// One attempt at delivering `body` (`count` events), bounded by the sink's timeout.
    pub(crate) async fn attempt(config: &SinkConfig, body: Bytes) -> Delivery {
        let started = Instant::now();
        // The HTTP client has the same timeout; this one also bounds a stuck file write.
        let result = tokio::time::timeout(config.timeout, config.transport.send(body)).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (ok, status, error) = match result {
            Ok(Ok(None)) => (true, None, None),
            Ok(Ok(Some(s))) if (200..300).contains(&s) => (true, Some(s), None),
            Ok(Ok(Some(s))) => (false, Some(s), Some(format!("HTTP {s}"))),
            Ok(Err(e)) => (false, None, Some(e)),
            Err(_) => (
                false,
                None,
                Some(format!("timed out after {:?}", config.timeout)),
            ),
        };
        Delivery {
            ok,
            status,
            error,
            latency_ms,
        }
    }

    fn record(&self, d: &Delivery, events: usize, attempt: usize) {
        let mut st = self.status();
        if d.status.is_some() {
            st.last_status = d.status;
        }
        if d.ok {
            st.last_delivery_at = Some(SystemTime::now());
            if st.failing {
                st.failing = false;
                tracing::info!(hook = %self.id, "event sink delivering again");
            }
            self.counters
                .delivered
                .fetch_add(events as u64, Ordering::Relaxed);
        } else {
            let error = d.error.clone().unwrap_or_default();
            if !st.failing {
                st.failing = true;
                tracing::warn!(hook = %self.id, %error, "event sink delivery failed; retrying");
            } else {
                tracing::debug!(hook = %self.id, %error, attempt, "event sink delivery failed");
            }
            st.last_error = Some(error);
            st.last_error_at = Some(SystemTime::now());
        }
    }

    /// Delivers until `stop`; on the global `shutdown` makes one last attempt at everything
    /// queued within `grace`, otherwise (a reconfiguration) puts the unfinished batch back.
    pub(crate) async fn run(
        self: Arc<Sink>,
        stop: CancellationToken,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        let mut pending: Vec<Queued> = Vec::new();
        loop {
            match self.next_batch(&stop).await {
                Some(batch) => pending = batch,
                None => break,
            }
            self.counters
                .in_flight
                .store(pending.len(), Ordering::Relaxed);
            if !self.deliver(&pending, &stop).await {
                break;
            }
            pending.clear();
            self.counters.in_flight.store(0, Ordering::Relaxed);
        }
        self.counters.in_flight.store(0, Ordering::Relaxed);
        if shutdown.is_cancelled() {
            self.final_flush(pending, grace).await;
        } else {
            self.queue.requeue(pending);
        }
    }

    /// Waits for a full batch or for the oldest event's delay; `None` once stopped.
    async fn next_batch(&self, stop: &CancellationToken) -> Option<Vec<Queued>> {
        loop {
            let config = self.config();
            let (len, oldest) = self.queue.peek();
            let deadline = oldest.map(|at| at + config.batch_delay);
            if len >= config.batch_max || deadline.is_some_and(|d| d <= Instant::now()) {
                return Some(self.queue.take(config.batch_max));
            }
            tokio::select! {
                biased;
                () = stop.cancelled() => return None,
                () = self.queue.notify.notified() => {}
                () = async {
                    match deadline {
                        Some(d) => sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
    }

    /// Delivers one batch with retries; `false` when stopped before it was settled.
    async fn deliver(&self, batch: &[Queued], stop: &CancellationToken) -> bool {
        let config = self.config();
        let events: Vec<Arc<Event>> = batch.iter().map(|q| q.event.clone()).collect();
        let body = config.transport.encode(&events);
        for attempt in 0..=RETRY_DELAYS.len() {
            if attempt > 0 {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => return false,
                    () = sleep(RETRY_DELAYS[attempt - 1]) => {}
                }
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            let d = tokio::select! {
                biased;
                () = stop.cancelled() => return false,
                d = Sink::attempt(&config, body.clone()) => d,
            };
            self.record(&d, batch.len(), attempt + 1);
            if d.ok {
                return true;
            }
        }
        self.counters
            .failed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        tracing::warn!(
            hook = %self.id,
            events = batch.len(),
            first_id = batch.first().map(|q| q.event.id),
            "event batch dropped after {} attempts",
            RETRY_DELAYS.len() + 1
        );
        true
    }

    /// Shutdown: one attempt per batch for what is pending and queued, within `grace`; the
    /// first failure ends it (the receiver is down, and the process is leaving).
    async fn final_flush(&self, mut pending: Vec<Queued>, grace: Duration) {
        let config = self.config();
        let flushed = tokio::time::timeout(grace, async {
            loop {
                if pending.is_empty() {
                    pending = self.queue.take(config.batch_max);
                    if pending.is_empty() {
                        return;
                    }
                }
                let events: Vec<Arc<Event>> = pending.iter().map(|q| q.event.clone()).collect();
                let d = Sink::attempt(&config, config.transport.encode(&events)).await;
                self.record(&d, events.len(), 1);
                if !d.ok {
                    return;
                }
                pending.clear();
            }
        })
        .await;
        let left = pending.len() + self.queue.len();
        if left > 0 || flushed.is_err() {
            self.counters
                .failed
                .fetch_add(left as u64, Ordering::Relaxed);
            tracing::warn!(hook = %self.id, events = left, "events not delivered at shutdown");
        }
    }
}

#[cfg(test)]
mod tests;
