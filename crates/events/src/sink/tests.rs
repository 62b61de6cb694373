//! The delivery task under paused time with a scripted transport, and the real HTTP and file
//! transports.

use super::*;
use crate::{EventBus, EventKind};
use serde_json::json;
use std::collections::VecDeque;

/// A transport that records each attempt (time since the test began, the event ids) and
/// answers from a script; an empty script answers 200.
struct Script {
    start: Instant,
    answers: Mutex<VecDeque<Result<Option<u16>, String>>>,
    attempts: Mutex<Vec<(Duration, Vec<u64>)>>,
}

impl Script {
    fn new(answers: Vec<Result<Option<u16>, String>>) -> Arc<Script> {
        Arc::new(Script {
            start: Instant::now(),
            answers: Mutex::new(answers.into()),
            attempts: Mutex::new(Vec::new()),
        })
    }

    fn attempts(&self) -> Vec<(Duration, Vec<u64>)> {
        self.attempts.lock().unwrap().clone()
    }

    /// Ids of the attempts that succeeded, in order.
    fn delivered_ids(&self, ok: &[bool]) -> Vec<u64> {
        self.attempts()
            .into_iter()
            .zip(ok)
            .filter(|(_, ok)| **ok)
            .flat_map(|((_, ids), _)| ids)
            .collect()
    }
}

impl Transport for Arc<Script> {
    fn encode(&self, events: &[Arc<Event>]) -> Bytes {
        json_array(events)
    }

    fn send(&self, body: Bytes) -> SendFuture<'_> {
        let ids: Vec<u64> = serde_json::from_slice::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .iter()
            .map(|e| e["id"].as_u64().unwrap())
            .collect();
        self.attempts
            .lock()
            .unwrap()
            .push((self.start.elapsed(), ids));
        let answer = self.answers.lock().unwrap().pop_front();
        Box::pin(async move { answer.unwrap_or(Ok(Some(200))) })
    }
}

fn config(script: &Arc<Script>, batch_max: usize, delay_ms: u64) -> SinkConfig {
    SinkConfig {
        kind: HookKind::Http,
        filter: Filter::default(),
        batch_max,
        batch_delay: Duration::from_millis(delay_ms),
        timeout: Duration::from_secs(10),
        transport: Arc::new(script.clone()),
    }
}

struct Running {
    sink: Arc<Sink>,
    bus: EventBus,
    stop: CancellationToken,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(script: &Arc<Script>, batch_max: usize, delay_ms: u64, queue_max: usize) -> Running {
    let sink = Arc::new(Sink::new(
        "h1",
        config(script, batch_max, delay_ms),
        queue_max,
    ));
    let bus = EventBus::default();
    bus.set_subscribers(vec![sink.clone()]);
    let shutdown = CancellationToken::new();
    let stop = shutdown.child_token();
    let task = tokio::spawn(sink.clone().run(
        stop.clone(),
        shutdown.clone(),
        Duration::from_secs(2),
    ));
    Running {
        sink,
        bus,
        stop,
        shutdown,
        task,
    }
}

impl Running {
    fn emit(&self, n: usize) {
        for _ in 0..n {
            self.bus
                .emit(EventKind::SessionOpened, Some("cam"), json!({}));
        }
    }

    fn stats(&self) -> SinkStats {
        self.sink.stats(true, 0)
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn batches_by_size_at_once_and_the_rest_after_the_delay() {
    let script = Script::new(vec![]);
    let r = start(&script, 3, 1000, 100);
    r.emit(7);
    sleep(ms(1)).await;
    let a = script.attempts();
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], (ms(0), vec![1, 2, 3]));
    assert_eq!(a[1], (ms(0), vec![4, 5, 6]));
    // The seventh waits for its delay, counted from when it was queued.
    sleep(ms(998)).await;
    assert_eq!(script.attempts().len(), 2);
    sleep(ms(2)).await;
    assert_eq!(script.attempts()[2], (ms(1000), vec![7]));
    let st = r.stats();
    assert_eq!(
        (st.delivered, st.failed, st.dropped, st.queued),
        (7, 0, 0, 0)
    );
    assert_eq!(st.last_status, Some(200));
}

#[tokio::test(start_paused = true)]
async fn the_delay_runs_from_the_oldest_event() {
    let script = Script::new(vec![]);
    let r = start(&script, 100, 500, 100);
    r.emit(1);
    sleep(ms(300)).await;
    r.emit(2);
    sleep(ms(199)).await;
    assert!(script.attempts().is_empty());
    sleep(ms(2)).await;
    assert_eq!(script.attempts(), [(ms(500), vec![1, 2, 3])]);
    // A lone later event (queued at 501 ms) gets its own full delay.
    r.emit(1);
    sleep(ms(499)).await;
    assert_eq!(script.attempts().len(), 1);
    sleep(ms(2)).await;
    assert_eq!(script.attempts()[1], (ms(1001), vec![4]));
}

#[tokio::test(start_paused = true)]
async fn a_failing_batch_is_retried_after_1_5_and_30_s_then_dropped() {
    let fail = || Err::<Option<u16>, String>("cannot connect: refused".into());
    let script = Script::new(vec![fail(), Ok(Some(503)), fail(), Ok(Some(500))]);
    let r = start(&script, 10, 0, 100);
    r.emit(2);
    sleep(ms(1)).await;
    r.emit(1); // waits behind the failing batch
    sleep(Duration::from_secs(40)).await;
    let a = script.attempts();
    let times: Vec<Duration> = a.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [
            ms(0),
            ms(1000),
            ms(6000),
            ms(36_000),
            // The next batch goes as soon as the first is settled.
            ms(36_000),
        ]
    );
    assert!(a[..4].iter().all(|(_, ids)| ids == &[1, 2]), "{a:?}");
    assert_eq!(a[4].1, [3]);
    let st = r.stats();
    assert_eq!((st.failed, st.delivered, st.retries), (2, 1, 3));
    assert_eq!(st.last_error.as_deref(), Some("HTTP 500"));
    assert!(st.last_error_at.is_some() && st.last_delivery_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_gets_through_on_a_retry_is_delivered_once() {
    let script = Script::new(vec![Err("timed out".into()), Ok(Some(429))]);
    let r = start(&script, 10, 0, 100);
    r.emit(3);
    sleep(Duration::from_secs(10)).await;
    let a = script.attempts();
    assert_eq!(a.len(), 3);
    assert_eq!(a[2], (ms(6000), vec![1, 2, 3]));
    let st = r.stats();
    assert_eq!(
        (st.delivered, st.failed, st.retries, st.in_flight),
        (3, 0, 2, 0)
    );
}

/// The receiver is down: the batch in flight waits for its retries while the queue keeps only
/// the newest `queue_max` events. When it comes back, what was kept arrives in order and the
/// rest is counted as dropped, never silently lost.
#[tokio::test(start_paused = true)]
async fn while_down_the_queue_keeps_the_newest_and_counts_the_rest() {
    let down = || Err::<Option<u16>, String>("cannot connect".into());
    let script = Script::new(vec![down(), down()]);
    let r = start(&script, 2, 0, 5);
    r.emit(2); // ids 1, 2: the batch in flight
    sleep(ms(1)).await;
    assert_eq!(r.stats().in_flight, 2);
    r.emit(20); // ids 3..=22 into a queue of 5
    let st = r.stats();
    assert_eq!((st.queued, st.dropped), (5, 15));
    // The third attempt (6 s) gets through, then the queue drains in batches of two.
    sleep(Duration::from_secs(7)).await;
    let ok = [false, false, true, true, true, true];
    assert_eq!(script.attempts().len(), 6);
    assert_eq!(script.delivered_ids(&ok), [1, 2, 18, 19, 20, 21, 22]);
    let st = r.stats();
    assert_eq!(
        (st.delivered, st.dropped, st.failed, st.queued),
        (7, 15, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_what_is_queued_once() {
    let script = Script::new(vec![]);
    let mut r = start(&script, 2, 60_000, 100);
    r.emit(5);
    sleep(ms(1)).await;
    // Two full batches went; the fifth waits for its minute.
    assert_eq!(script.attempts().len(), 2);
    r.shutdown.cancel();
    (&mut r.task).await.unwrap();
    assert_eq!(script.attempts()[2].1, [5]);
    assert_eq!(r.stats().delivered, 5);
}

#[tokio::test(start_paused = true)]
async fn shutdown_gives_up_on_a_dead_receiver_within_the_grace() {
    let down = || Err::<Option<u16>, String>("cannot connect".into());
    let script = Script::new(vec![down(), down(), down()]);
    let mut r = start(&script, 2, 0, 100);
    r.emit(3);
    sleep(ms(1)).await;
    let began = Instant::now();
    r.shutdown.cancel();
    (&mut r.task).await.unwrap();
    assert!(began.elapsed() <= Duration::from_secs(2));
    // One last try of the batch in flight; it fails, so the rest is not tried.
    assert_eq!(script.attempts().len(), 2);
    let st = r.stats();
    assert_eq!((st.delivered, st.failed), (0, 3));
}

#[tokio::test(start_paused = true)]
async fn a_reconfiguration_puts_the_unfinished_batch_back_in_front() {
    let script = Script::new(vec![Err("down".into())]);
    let mut r = start(&script, 3, 0, 100);
    r.emit(3);
    sleep(ms(1)).await;
    r.emit(1);
    // Stopped (not shut down) while the batch waits for its retry.
    r.stop.cancel();
    (&mut r.task).await.unwrap();
    assert_eq!(r.stats().in_flight, 0);
    let back: Vec<u64> = r.sink.queue.take(10).iter().map(|q| q.event.id).collect();
    assert_eq!(back, [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn filters_decide_what_is_queued() {
    let script = Script::new(vec![]);
    let r = start(&script, 10, 0, 100);
    let filtered = config(&script, 10, 0);
    r.sink.reconfigure(
        SinkConfig {
            filter: Filter::new(&["stream.*".into()], &["cam".into()]).unwrap(),
            ..filtered
        },
        100,
    );
    r.bus.emit(EventKind::StreamStarted, Some("cam"), json!({}));
    r.bus
        .emit(EventKind::StreamStarted, Some("other"), json!({}));
    r.bus.emit(EventKind::SessionOpened, Some("cam"), json!({}));
    r.bus.emit(EventKind::StreamStopped, Some("cam"), json!({}));
    sleep(ms(1)).await;
    assert_eq!(script.delivered_ids(&[true, true]), [1, 4]);
}

// ---------------------------------------------------------------------------------------------
// The real transports

/// A one-shot HTTP/1.1 receiver: answers `status` to each request and hands back its raw head
/// and body.
async fn receiver(
    status: u16,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let n = s.read(&mut chunk).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse().unwrap())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        let n = s.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "EOF in body");
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    buf.drain(..end + 4 + len);
                    tx.send((head, body)).unwrap();
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
                    s.write_all(reply.as_bytes()).await.unwrap();
                }
            });
        }
    });
    (addr, rx)
}

fn http_config(addr: std::net::SocketAddr, secret: Option<&str>) -> SinkConfig {
    SinkConfig {
        kind: HookKind::Http,
        filter: Filter::default(),
        batch_max: 10,
        batch_delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        transport: Arc::new(HttpTransport {
            url: format!("http://{addr}/in?t=1").parse().unwrap(),
            client: HttpTransport::client(Duration::from_secs(5)).unwrap(),
            signer: secret.map(Signer::new),
            hook: "h1".into(),
        }),
    }
}

#[tokio::test]
async fn http_batches_are_signed_over_the_exact_body() {
    let (addr, mut rx) = receiver(204).await;
    let cfg = http_config(addr, Some("hunter2-secret"));
    let bus = EventBus::new(Some("n1".into()));
    let events: Vec<Arc<Event>> = (0..3)
        .map(|i| {
            Arc::new(bus.make(
                EventKind::SessionClosed,
                Some("cam"),
                json!({"bytes": i, "note": "ünïcödé \"quoted\""}),
            ))
        })
        .collect();
    let body = cfg.transport.encode(&events);
    let d = Sink::attempt(&cfg, body).await;
    assert!(d.ok, "{d:?}");
    assert_eq!(d.status, Some(204));
    let (head, got) = rx.recv().await.unwrap();
    assert!(head.starts_with("post /in?t=1 http/1.1"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("x-ferrocast-hook: h1"), "{head}");
    assert!(head.contains("user-agent: ferrocast/"), "{head}");
    let sig = head
        .lines()
        .find_map(|l| l.strip_prefix("x-ferrocast-signature: sha256="))
        .expect("signature header");
    // Checked with aws-lc's own verify over the bytes as received.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"hunter2-secret");
    let tag: Vec<u8> = (0..sig.len() / 2)
        .map(|i| u8::from_str_radix(&sig[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    aws_lc_rs::hmac::verify(&key, &got, &tag).expect("signature over the exact body");
    let parsed: Vec<serde_json::Value> = serde_json::from_slice(&got).unwrap();
    assert_eq!(parsed.len(), 3);
    assert_eq!(parsed[2]["data"]["note"], "ünïcödé \"quoted\"");
    assert_eq!(parsed[0]["node"], "n1");
}

#[tokio::test]
async fn http_without_a_secret_sends_no_signature_and_non_2xx_fails() {
    let (addr, mut rx) = receiver(500).await;
    let cfg = http_config(addr, None);
    let ev = Arc::new(EventBus::default().make(EventKind::HookTest, None, json!({})));
    let d = Sink::attempt(&cfg, cfg.transport.encode(&[ev])).await;
    assert_eq!(
        (d.ok, d.status, d.error.as_deref()),
        (false, Some(500), Some("HTTP 500"))
    );
    let (head, _) = rx.recv().await.unwrap();
    assert!(!head.contains("x-ferrocast-signature"), "{head}");
}

#[tokio::test]
async fn an_unreachable_receiver_is_an_error_without_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = http_config(port, Some("k"));
    let ev = Arc::new(EventBus::default().make(EventKind::HookTest, None, json!({})));
    let d = Sink::attempt(&cfg, cfg.transport.encode(&[ev])).await;
    assert!(!d.ok);
    let e = d.error.unwrap();
    assert!(e.starts_with("cannot connect"), "{e}");
    assert!(!e.contains("t=1") && !e.contains("127.0.0.1"), "{e}");
}

#[tokio::test]
async fn the_file_transport_appends_one_event_per_line() {
    let dir = std::env::temp_dir().join(format!(
        "ferrocast-events-file-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let path = dir.join("sub/events.jsonl");
    let cfg = SinkConfig {
        kind: HookKind::File,
        filter: Filter::default(),
        batch_max: 10,
        batch_delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        transport: Arc::new(FileTransport { path: path.clone() }),
    };
    let bus = EventBus::default();
    for n in [2, 1] {
        let events: Vec<Arc<Event>> = (0..n)
            .map(|_| Arc::new(bus.make(EventKind::StreamStarted, Some("a"), json!({"x": "a\nb"}))))
            .collect();
        let d = Sink::attempt(&cfg, cfg.transport.encode(&events)).await;
        assert!(d.ok && d.status.is_none(), "{d:?}");
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 3], "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
    // A path that cannot be a file is a delivery error, not a panic.
    let cfg = SinkConfig {
        transport: Arc::new(FileTransport {
            path: PathBuf::from("/proc/self/nonexistent-dir/x.jsonl"),
        }),
        ..cfg
    };
    let ev = Arc::new(bus.make(EventKind::HookTest, None, json!({})));
    let d = Sink::attempt(&cfg, cfg.transport.encode(&[ev])).await;
    assert!(!d.ok && d.error.unwrap().starts_with("cannot write"));
}
