//! Webhooks (events out, issue 13) against the real binary: a receiver that checks the
//! `X-Ferrocast-Signature` of every request with Python's own `hmac`, a hook with a small
//! queue configured through `/api/v1/hooks`, ffmpeg publishing and MPEG-TS readers coming and
//! going to make events. The receiver goes down for 20 s and comes back: the batch in flight
//! is retried until it gets through, the queue keeps the newest events within its bound, and
//! what it dropped beyond that is exactly the one gap in the ids, counted in `/metrics`.

use crate::support::api::Api;
use crate::support::proc::{ChildGuard, read_lossy};
use crate::support::server::free_addrs;
use crate::support::{Fixture, Server, http, wait_until};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The operator's receiver: verifies the signature of each POST over the exact body bytes,
/// answers 204 (401 for a bad signature) and appends `{"ok", "events"}` per request to a file.
const RECEIVER: &str = r#"
import hashlib, hmac, json, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
port, secret, out = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        given = self.headers.get("X-Ferrocast-Signature", "")
        want = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(given, want)
        record = {"ok": ok, "path": self.path, "events": json.loads(body) if ok else None}
        with lock, open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.send_response(204 if ok else 401)
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer.allow_reuse_address = True
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

const SECRET: &str = "e2e-webhook-secret";
/// The hook's queue bound: small, so 20 s of downtime overflows it.
const QUEUE_MAX: u64 = 12;
const DOWNTIME: Duration = Duration::from_secs(20);

/// The receiver process on a fixed port, so it can come back where the hook points.
struct Receiver {
    port: u16,
    out: PathBuf,
    log_dir: PathBuf,
    child: Option<ChildGuard>,
    starts: u32,
}

impl Receiver {
    fn new(dir: &Path) -> Receiver {
        let mut r = Receiver {
            port: free_addrs().0.port(),
            out: dir.join("received.jsonl"),
            log_dir: dir.to_owned(),
            child: None,
            starts: 0,
        };
        r.up();
        r
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn up(&mut self) {
        self.starts += 1;
        let log = self.log_dir.join(format!("receiver-{}.log", self.starts));
        let mut cmd = Command::new("python3");
        cmd.args(["-c", RECEIVER])
            .arg(self.port.to_string())
            .arg(SECRET)
            .arg(&self.out);
        self.child = Some(ChildGuard::spawn("webhook receiver", &mut cmd, &log));
        let addr = self.addr();
        wait_until("the receiver to listen", Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
    }

    /// Killed outright: the port refuses connections until [`Receiver::up`].
    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.signal("KILL");
            c.wait_timeout(Duration::from_secs(5));
        }
        let addr = self.addr();
        wait_until("the receiver to be gone", Duration::from_secs(5), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .is_err()
                .then_some(())
        });
    }

    /// Every request so far: (signature valid, events).
    fn requests(&self) -> Vec<(bool, Vec<Value>)> {
        read_lossy(&self.out)
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("receiver line");
                let events = v["events"].as_array().cloned().unwrap_or_default();
                (v["ok"] == true, events)
            })
            .collect()
    }

    /// Every event received, by id (a redelivered id must be the same event).
    fn events(&self) -> BTreeMap<u64, Value> {
        let mut by_id = BTreeMap::new();
        for (ok, events) in self.requests() {
            assert!(
                ok,
                "a request without a valid signature reached the receiver"
            );
            for e in events {
                let id = e["id"].as_u64().expect("event id");
                if let Some(old) = by_id.insert(id, e.clone()) {
                    assert_eq!(old, e, "id {id} delivered twice with different contents");
                }
            }
        }
        by_id
    }

    fn has(&self, kind: &str, pred: impl Fn(&Value) -> bool) -> bool {
        self.events().values().any(|e| e["type"] == kind && pred(e))
    }
}

/// One MPEG-TS reader of `code`: connects, takes the first bytes, hangs up.
fn read_briefly(server: &Server, code: &str) {
    let mut s = http::open(
        server.http,
        &format!("/live/{code}/mpegts"),
        Duration::from_secs(5),
    )
    .expect("open mpegts");
    assert_eq!(s.status, 200);
    s.next_piece().expect("first bytes").expect("a piece");
}

fn readers(api: &Api) -> usize {
    api.sessions("")
        .iter()
        .filter(|s| s["role"] == "reader")
        .count()
}

/// The value of the sample `name{hook="rx",kind="http"}` in `/metrics`.
fn metric(server: &Server, name: &str) -> u64 {
    let text = server.get("/metrics").text();
    let prefix = format!("{name}{{hook=\"rx\",kind=\"http\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} not in /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn a_receiver_down_for_20_s_loses_nothing_within_the_queue_bound() {
    let server = Server::builder().set("events.node", "e2e-node").start();
    let api = Api::new(server.http);
    let mut rx = Receiver::new(server.dir());

    let created = api
        .post(
            "hooks",
            &json!({
                "id": "rx",
                "url": format!("http://{}/in?token=t0k3n", rx.addr()),
                "secret": SECRET,
                "queue_max": QUEUE_MAX,
                "batch_max": 4,
                "batch_delay_ms": 200,
                "timeout_ms": 2000,
            }),
        )
        .ok(201);
    assert_eq!(created["has_secret"], true);
    assert_eq!(created["url"], format!("http://{}/in?****", rx.addr()));

    // The test delivery: signed, answered, and outside the hook's own sequence.
    let test = api.post("hooks/rx/test", &json!({})).ok(200);
    assert_eq!(test["ok"], true, "{test}");
    assert_eq!(test["status"], 204);
    let test_id = test["event"]["id"].as_u64().unwrap();
    assert!(rx.has("hook.test", |e| e["id"] == test_id));

    // Up: a publisher and readers (`wait_live` is one too), all delivered.
    let mut publisher = server.publish("wh", Fixture::Small);
    server.wait_live("wh");
    for _ in 0..2 {
        read_briefly(&server, "wh");
    }
    wait_until("readers gone", Duration::from_secs(10), || {
        (readers(&api) == 0).then_some(())
    });
    wait_until(
        "stream.started and the readers' ends at the receiver",
        Duration::from_secs(15),
        || {
            let ends = rx
                .events()
                .values()
                .filter(|e| e["type"] == "session.closed" && e["data"]["role"] == "reader")
                .count();
            (ends >= 2 && rx.has("stream.started", |_| true)).then_some(())
        },
    );
    let up_events = rx.events();
    let started = up_events
        .values()
        .find(|e| e["type"] == "stream.started")
        .unwrap();
    assert_eq!(started["stream"], "wh");
    assert_eq!(started["node"], "e2e-node");
    assert_eq!(started["data"]["protocol"], "rtmp");
    assert!(started["at"].as_str().unwrap().ends_with('Z'), "{started}");
    let reader = up_events
        .values()
        .find(|e| e["type"] == "session.opened" && e["data"]["role"] == "reader")
        .unwrap();
    assert_eq!(reader["data"]["protocol"], "mpegts");
    assert!(
        up_events
            .values()
            .any(|e| e["type"] == "session.opened" && e["data"]["role"] == "publisher")
    );

    // Down for 20 s while readers keep coming and going: far more events than the queue holds.
    rx.down();
    let went_down = Instant::now();
    // 15 sessions, 30 events: the batch in flight holds at most 4, the queue 12.
    for _ in 0..15 {
        read_briefly(&server, "wh");
    }
    assert!(
        went_down.elapsed() < Duration::from_secs(15),
        "readers too slow"
    );
    wait_until("readers gone", Duration::from_secs(10), || {
        (readers(&api) == 0).then_some(())
    });
    let st = api.get("hooks/rx").ok(200);
    assert!(st["runtime"]["dropped"].as_u64().unwrap() > 0, "{st}");
    assert!(st["runtime"]["in_flight"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["runtime"]["queued"], QUEUE_MAX, "{st}");
    assert!(st["runtime"]["last_error"].as_str().is_some(), "{st}");
    std::thread::sleep(DOWNTIME.saturating_sub(went_down.elapsed()));

    // Back: the batch in flight gets through on its next retry (1, 5, 30 s), then the queue.
    rx.up();
    publisher.stop();
    wait_until(
        "stream.stopped at the receiver",
        Duration::from_secs(40),
        || {
            rx.has("stream.stopped", |e| e["stream"] == "wh")
                .then_some(())
        },
    );
    wait_until("the queue to drain", Duration::from_secs(10), || {
        let st = api.get("hooks/rx").ok(200);
        (st["runtime"]["queued"] == 0 && st["runtime"]["in_flight"] == 0).then_some(st)
    });

    // Every id after the test event up to the last reached the receiver, but one run of ids:
    // what the full queue dropped.
    let events = rx.events();
    let ids: Vec<u64> = events.keys().copied().filter(|id| *id > test_id).collect();
    let (first, last) = (ids[0], *ids.last().unwrap());
    let missing: Vec<u64> = (first..=last)
        .filter(|id| !events.contains_key(id))
        .collect();
    assert!(!missing.is_empty(), "nothing was dropped: {ids:?}");
    let gap_start = missing[0];
    assert_eq!(
        missing,
        (gap_start..gap_start + missing.len() as u64).collect::<Vec<_>>(),
        "one contiguous gap (the oldest of the queue); received: {ids:?}"
    );
    let after_gap = ids.iter().filter(|id| **id > gap_start).count() as u64;
    assert!(
        after_gap >= QUEUE_MAX,
        "the {QUEUE_MAX} newest events survive the downtime: {ids:?}"
    );
    let dropped = missing.len() as u64;
    assert_eq!(
        metric(&server, "ferrocast_webhook_events_dropped_total"),
        dropped
    );
    assert_eq!(metric(&server, "ferrocast_webhook_events_failed_total"), 0);
    assert_eq!(
        metric(&server, "ferrocast_webhook_events_delivered_total"),
        ids.len() as u64
    );
    assert!(metric(&server, "ferrocast_webhook_retries_total") >= 2);
    let st = api.get("hooks/rx").ok(200);
    assert_eq!(st["runtime"]["dropped"], dropped);
    assert_eq!(st["runtime"]["delivered"], ids.len());
    assert_eq!(st["runtime"]["last_status"], 204);
    // The stream's end is among what was kept, after every session of it ended.
    let stopped = events
        .values()
        .find(|e| e["type"] == "stream.stopped")
        .unwrap();
    assert_eq!(stopped["data"]["session"], started["data"]["session"]);
    assert!(rx.requests().iter().all(|(ok, _)| *ok));
    assert_openmetrics_parses(&server);
}

/// The page with a hook's series still passes the Prometheus project's strict OpenMetrics
/// parser (when installed; `scripts/test` installs it).
fn assert_openmetrics_parses(server: &Server) {
    let r = http::request(
        server.http,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        None,
    )
    .expect("GET /metrics");
    let file = server.dir().join("metrics.openmetrics");
    std::fs::write(&file, r.body).expect("write page");
    let check = "import sys\nfrom prometheus_client.openmetrics.parser import text_string_to_metric_families as om\nfams = {f.name: f for f in om(open(sys.argv[1]).read())}\nassert fams['ferrocast_webhook_events_dropped'].samples[0].labels == {'hook': 'rx', 'kind': 'http'}\n";
    let out = crate::support::proc::run(
        Command::new("python3").args(["-c", check]).arg(&file),
        Duration::from_secs(30),
    );
    if out.stderr.contains("No module named 'prometheus_client'") {
        assert!(
            std::env::var_os("FERROCAST_REQUIRE_BROWSER").is_none(),
            "python3 prometheus_client is missing"
        );
        return;
    }
    assert!(out.success(), "OpenMetrics parser: {}", out.stderr);
}
