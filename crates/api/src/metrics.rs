//! `/metrics`: the hub's, the pushes', the API's and the process's numbers, encoded by
//! prometheus-client (the Prometheus project's own crate) in the Prometheus text format, or in
//! OpenMetrics when the scraper asks for it.
//!
//! Everything is read at scrape time from snapshots (a [`Collector`]), so a stream that ends
//! leaves no stale series behind. Names follow the Prometheus conventions: base units
//! (`_bytes`, `_seconds`, bits per second), `_total` on counters, one family per name.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// API request counts by route template and status, and the event streams open now.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: Mutex<BTreeMap<(String, u16), u64>>,
    /// Open `GET /api/v1/events` streams (capped at [`crate::events::MAX_EVENT_STREAMS`]).
    pub(crate) event_streams: Arc<AtomicUsize>,
}

impl RequestCounts {
    fn add(&self, route: &str, status: u16) {
        let mut m = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_owned(), status)).or_default() += 1;
    }
}

/// Counts `/api` requests by matched route (a template, so codes cannot blow up the labels).
pub async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    state.requests.add(&route, resp.status().as_u16());
    resp
}

/// Labels of one sample.
type Labels = Vec<(&'static str, String)>;

/// One metric family: name (counters without `_total`, the encoder adds it), help, type and
/// samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, f64)>,
}

impl Family {
    fn gauge(name: &'static str, help: &'static str) -> Self {
        Family {
            name,
            help,
            kind: MetricType::Gauge,
            samples: Vec::new(),
        }
    }

    fn counter(name: &'static str, help: &'static str) -> Self {
        Family {
            kind: MetricType::Counter,
            ..Self::gauge(name, help)
        }
    }

    fn with(mut self, labels: Labels, v: f64) -> Self {
        self.samples.push((labels, v));
        self
    }

    fn add(&mut self, labels: Labels, v: f64) {
        self.samples.push((labels, v));
    }
}

/// Every family of one scrape.
#[derive(Debug)]
struct Snapshot(Vec<Family>);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut m = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, v) in &f.samples {
                if labels.is_empty() {
                    sample(f.kind, *v, m.encode_family(&NoLabels)?)?;
                } else {
                    sample(f.kind, *v, m.encode_family(labels)?)?;
                }
            }
        }
        Ok(())
    }
}

/// An empty label set (prometheus-client's own is not public in every encoder path).
#[derive(Debug)]
struct NoLabels;

impl EncodeLabelSet for NoLabels {
    fn encode(
        &self,
        _: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

fn sample(
    kind: MetricType,
    v: f64,
    enc: prometheus_client::encoding::MetricEncoder,
) -> Result<(), std::fmt::Error> {
    // Whole numbers print as such (`3`, not `3.0`); only rates and the like need decimals.
    let whole = v.fract() == 0.0 && v.abs() < 9.0e15;
    match (kind, whole) {
        (MetricType::Counter, true) => ConstCounter::new(v as u64).encode(enc),
        (MetricType::Counter, false) => ConstCounter::new(v).encode(enc),
        (_, true) => ConstGauge::new(v as i64).encode(enc),
        (_, false) => ConstGauge::new(v).encode(enc),
    }
}

/// Renders every metric: Prometheus text by default, OpenMetrics when `Accept` asks for it.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot(&state)));
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let mut out = String::with_capacity(8192);
    let (r, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut out, &registry),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "metrics not encoded");
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut resp = out.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn snapshot(state: &AppState) -> Snapshot {
    let streams = state.hub.list();
    let totals = state.hub.totals();
    let sessions = state.hub.sessions();
    let mut f = Vec::new();
    f.push(
        Family::gauge(
            "ferrocast_build_info",
            "Build of this process (the value is always 1).",
        )
        .with(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], 1.0),
    );
    f.push(
        Family::gauge("ferrocast_streams_live", "Streams with a live publisher.")
            .with(vec![], streams.iter().filter(|s| s.live).count() as f64),
    );
    f.push(
        Family::gauge("ferrocast_streams_configured", "Streams in the store.")
            .with(vec![], state.control.list().len() as f64),
    );

    let mut by_role: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for s in &sessions {
        *by_role.entry((s.protocol, s.role.as_str())).or_default() += 1;
    }
    let mut readers = Family::gauge("ferrocast_readers", "Connected readers per protocol.");
    let mut publishers =
        Family::gauge("ferrocast_publishers", "Connected publishers per protocol.");
    let mut all = Family::gauge(
        "ferrocast_sessions",
        "Open sessions per protocol and role (publisher or reader).",
    );
    for ((protocol, role), n) in &by_role {
        let labels = vec![("protocol", (*protocol).to_owned())];
        match *role {
            "reader" => readers.add(labels.clone(), *n as f64),
            "publisher" => publishers.add(labels.clone(), *n as f64),
            _ => {}
        }
        let mut labels = labels;
        labels.push(("role", (*role).to_owned()));
        all.add(labels, *n as f64);
    }
    f.extend([readers, publishers, all]);

    for (name, help, v) in [
        (
            "ferrocast_received_bytes",
            "Payload bytes received from publishers.",
            totals.bytes_in,
        ),
        (
            "ferrocast_sent_bytes",
            "Bytes sent to readers.",
            totals.bytes_out,
        ),
        (
            "ferrocast_received_frames",
            "Frames received from publishers.",
            totals.frames_in,
        ),
        (
            "ferrocast_dropped_frames",
            "Frames slow readers skipped to catch up.",
            totals.frames_dropped,
        ),
        (
            "ferrocast_sessions_opened",
            "Sessions opened.",
            totals.sessions_opened,
        ),
        (
            "ferrocast_sessions_closed",
            "Sessions closed.",
            totals.sessions_closed,
        ),
    ] {
        f.push(Family::counter(name, help).with(vec![], v as f64));
    }

    let live: Vec<&hub::StreamStats> = streams.iter().filter(|s| s.live).collect();
    let per_stream = |name,
                      help,
                      kind: fn(&'static str, &'static str) -> Family,
                      v: fn(&hub::StreamStats) -> f64| {
        let mut fam = kind(name, help);
        for s in &live {
            fam.add(vec![("stream", s.code.clone())], v(s));
        }
        fam
    };
    f.push(per_stream(
        "ferrocast_stream_received_bits_per_second",
        "Ingest bitrate of each live stream, over the last second.",
        Family::gauge,
        |s| (s.bitrate_in_kbps * 1000) as f64,
    ));
    f.push(per_stream(
        "ferrocast_stream_sent_bits_per_second",
        "Bitrate sent to the readers of each live stream, over the last second.",
        Family::gauge,
        |s| (s.bitrate_out_kbps * 1000) as f64,
    ));
    f.push(per_stream(
        "ferrocast_stream_received_bytes",
        "Payload bytes received for each live stream in this publish session.",
        Family::counter,
        |s| s.bytes_in as f64,
    ));
    f.push(per_stream(
        "ferrocast_stream_sent_bytes",
        "Bytes sent to the readers of each live stream in this publish session.",
        Family::counter,
        |s| s.bytes_out as f64,
    ));
    f.push(per_stream(
        "ferrocast_stream_dropped_frames",
        "Frames the slow readers of each live stream skipped.",
        Family::counter,
        |s| s.frames_dropped as f64,
    ));
    f.push(per_stream(
        "ferrocast_stream_readers",
        "Readers of each live stream, all protocols together.",
        Family::gauge,
        |s| s.readers.iter().map(|(_, n)| f64::from(*n)).sum(),
    ));

    let mut status = Family::gauge(
        "ferrocast_push_status",
        "Push destinations by state (1 for the current state).",
    );
    let mut sent = Family::counter(
        "ferrocast_push_sent_bytes",
        "Bytes each push destination was sent.",
    );
    let mut attempts = Family::gauge(
        "ferrocast_push_attempt",
        "Connection attempt each push destination is on.",
    );
    if let Some(push) = state.control.push() {
        for (code, st) in push.all_status() {
            let labels = vec![
                ("stream", code.clone()),
                ("url", push::url::masked(&st.url)),
            ];
            for s in [
                push::PushState::Starting,
                push::PushState::Active,
                push::PushState::Reconnecting,
                push::PushState::Failed,
            ] {
                let mut l = labels.clone();
                l.push(("status", s.as_str().to_owned()));
                status.add(l, f64::from(u8::from(st.state == s)));
            }
            sent.add(labels.clone(), st.bytes_sent as f64);
            attempts.add(labels, st.attempt as f64);
        }
    }
    f.extend([status, sent, attempts]);

    let mut requests = Family::counter(
        "ferrocast_api_requests",
        "API requests by route and status.",
    );
    let counts = state
        .requests
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((route, code), n) in counts {
        requests.add(
            vec![("route", route), ("status", code.to_string())],
            n as f64,
        );
    }
    f.push(requests);
    f.push(
        Family::gauge(
            "ferrocast_api_event_streams",
            "Open API event streams (dashboards).",
        )
        .with(
            vec![],
            state.requests.event_streams.load(Ordering::Relaxed) as f64,
        ),
    );
    f.extend(webhook_families(&state.webhooks));
    f.extend(process::families());
    Snapshot(f)
}

/// The event bus and each sink of `/api/v1/hooks`, labelled by sink id.
fn webhook_families(hooks: &::events::Webhooks) -> Vec<Family> {
    let mut queued = Family::gauge(
        "ferrocast_webhook_events_queued",
        "Events waiting in each event sink's queue.",
    );
    let mut in_flight = Family::gauge(
        "ferrocast_webhook_events_in_flight",
        "Events in the batch each event sink is delivering or retrying.",
    );
    let mut delivered = Family::counter(
        "ferrocast_webhook_events_delivered",
        "Events each event sink delivered.",
    );
    let mut failed = Family::counter(
        "ferrocast_webhook_events_failed",
        "Events in batches each event sink gave up on after its retries.",
    );
    let mut dropped = Family::counter(
        "ferrocast_webhook_events_dropped",
        "Events each event sink dropped because its queue was full (oldest first).",
    );
    let mut retries = Family::counter(
        "ferrocast_webhook_retries",
        "Delivery attempts each event sink retried.",
    );
    for s in hooks.stats() {
        let l = vec![("hook", s.id.clone()), ("kind", s.kind.to_owned())];
        queued.add(l.clone(), s.queued as f64);
        in_flight.add(l.clone(), s.in_flight as f64);
        delivered.add(l.clone(), s.delivered as f64);
        failed.add(l.clone(), s.failed as f64);
        dropped.add(l.clone(), s.dropped as f64);
        retries.add(l, s.retries as f64);
    }
    let emitted = Family::counter("ferrocast_events", "Events emitted on the event bus.")
        .with(vec![], hooks.bus().emitted() as f64);
    vec![
        emitted, queued, in_flight, delivered, failed, dropped, retries,
    ]
}

/// The standard `process_*` metrics, read from `/proc/self` (Linux; none elsewhere).
mod process {
    use super::Family;

    /// Linux reports CPU times and start time in these ticks (USER_HZ, 100 on every
    /// architecture Linux ships; the kernel ABI fixes it).
    const TICKS: f64 = 100.0;

    pub(super) fn families() -> Vec<Family> {
        let mut out = Vec::new();
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return out;
        };
        // Fields after "(comm) ", 1-based from field 3 (state).
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            return out;
        };
        let field = |n: usize| -> Option<f64> { rest.split(' ').nth(n - 3)?.parse().ok() };
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            out.push(
                Family::counter(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                )
                .with(vec![], (utime + stime) / TICKS),
            );
        }
        if let Some(threads) = field(20) {
            out.push(
                Family::gauge("process_threads", "Number of OS threads.").with(vec![], threads),
            );
        }
        if let Some(vsize) = field(23) {
            out.push(
                Family::gauge(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                )
                .with(vec![], vsize),
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            out.push(
                Family::gauge(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                )
                .with(vec![], boot + start / TICKS),
            );
        }
        if let Some(rss_kb) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            })
        {
            out.push(
                Family::gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                )
                .with(vec![], rss_kb * 1024.0),
            );
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            out.push(
                Family::gauge("process_open_fds", "Number of open file descriptors.")
                    .with(vec![], fds.count() as f64),
            );
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse::<f64>().ok())
            })
        {
            out.push(
                Family::gauge(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                )
                .with(vec![], max),
            );
        }
        out
    }
}
