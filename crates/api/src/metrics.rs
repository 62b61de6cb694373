//! `/metrics` in the Prometheus text format, rendered from the hub's and the API's counters.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
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

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(4096);
    let streams = state.hub.list();
    let totals = state.hub.totals();
    let sessions = state.hub.sessions();

    let mut gauge = |name: &str, help: &str, kind: &str| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    gauge(
        "ferrocast_streams_live",
        "Streams with a live publisher.",
        "gauge",
    );
    let _ = writeln!(
        out,
        "ferrocast_streams_live {}",
        streams.iter().filter(|s| s.live).count()
    );

    let mut readers: BTreeMap<&str, u64> = BTreeMap::new();
    let mut publishers: BTreeMap<&str, u64> = BTreeMap::new();
    for s in &sessions {
        let m = match s.role {
            hub::SessionRole::Reader => &mut readers,
            hub::SessionRole::Publisher => &mut publishers,
        };
        *m.entry(s.protocol).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP ferrocast_readers Connected readers per protocol.\n# TYPE ferrocast_readers gauge"
    );
    for (p, n) in &readers {
        let _ = writeln!(out, "ferrocast_readers{{protocol=\"{p}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP ferrocast_publishers Connected publishers per protocol.\n# TYPE ferrocast_publishers gauge"
    );
    for (p, n) in &publishers {
        let _ = writeln!(out, "ferrocast_publishers{{protocol=\"{p}\"}} {n}");
    }

    let counters = [
        (
            "ferrocast_bytes_in_total",
            "Payload bytes received from publishers.",
            totals.bytes_in,
        ),
        (
            "ferrocast_bytes_out_total",
            "Bytes sent to readers.",
            totals.bytes_out,
        ),
        (
            "ferrocast_frames_in_total",
            "Frames received from publishers.",
            totals.frames_in,
        ),
        (
            "ferrocast_frames_dropped_total",
            "Frames slow readers skipped to catch up.",
            totals.frames_dropped,
        ),
        (
            "ferrocast_sessions_opened_total",
            "Sessions opened.",
            totals.sessions_opened,
        ),
        (
            "ferrocast_sessions_closed_total",
            "Sessions closed.",
            totals.sessions_closed,
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }

    type Field = fn(&hub::StreamStats) -> u64;
    let per_stream: [(&str, &str, Field); 2] = [
        (
            "ferrocast_stream_bitrate_in_kbps",
            "Ingest bitrate per live stream.",
            |s| s.bitrate_in_kbps,
        ),
        (
            "ferrocast_stream_bitrate_out_kbps",
            "Bitrate sent per live stream.",
            |s| s.bitrate_out_kbps,
        ),
    ];
    for (name, help, field) in per_stream {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in streams.iter().filter(|s| s.live) {
            let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", escape(&s.code), field(s));
        }
    }

    let _ = writeln!(
        out,
        "# HELP ferrocast_push_status Push destinations by state (1 for the current state).\n# TYPE ferrocast_push_status gauge"
    );
    if let Some(push) = state.control.push() {
        for (code, st) in push.all_status() {
            for s in [
                push::PushState::Starting,
                push::PushState::Active,
                push::PushState::Reconnecting,
                push::PushState::Failed,
            ] {
                let _ = writeln!(
                    out,
                    "ferrocast_push_status{{stream=\"{}\",url=\"{}\",status=\"{}\"}} {}",
                    escape(&code),
                    escape(&push::url::masked(&st.url)),
                    s.as_str(),
                    u8::from(st.state == s)
                );
            }
            let _ = writeln!(
                out,
                "ferrocast_push_bytes_sent{{stream=\"{}\",url=\"{}\"}} {}",
                escape(&code),
                escape(&push::url::masked(&st.url)),
                st.bytes_sent
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP ferrocast_api_requests_total API requests by route and status.\n# TYPE ferrocast_api_requests_total counter"
    );
    let counts = state
        .requests
        .counts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ((route, status), n) in counts {
        let _ = writeln!(
            out,
            "ferrocast_api_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
            escape(&route)
        );
    }

    let _ = writeln!(
        out,
        "# HELP ferrocast_api_event_streams Open API event streams (dashboards).\n# TYPE ferrocast_api_event_streams gauge\nferrocast_api_event_streams {}",
        state.requests.event_streams.load(Ordering::Relaxed)
    );

    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
