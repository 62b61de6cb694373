//! Push to remote `rtmp://` and `rtmps://` destinations, against real peers: nginx-rtmp
//! (Debian's libnginx-mod-rtmp), a second ferrocast over RTMP and RTMPS with a self-signed
//! certificate, a port nobody listens on and a peer that accepts TCP but never answers. The
//! push state is read where an operator reads it: `GET /api/v1/streams/{code}` ->
//! `runtime.pushes`. Also RTMPS ingest with ffmpeg and a certificate swapped on disk.

use crate::support::api::Api;
use crate::support::ffmpeg::{self, stream_of};
use crate::support::nginx::Nginx;
use crate::support::proc::ChildGuard;
use crate::support::server::{ServerBuilder, Stop, free_addrs};
use crate::support::tls::{self, CertPair};
use crate::support::{Fixture, ScratchDir, Server, wait_until};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The origin's stream code in every test.
const SRC: &str = "src";

/// A server without HLS and DASH: these tests are about RTMP in and out, on two cores.
fn server() -> ServerBuilder {
    Server::builder()
        .set("hls.enabled", false)
        .set("dash.enabled", false)
}

/// A server that also listens RTMPS on `addr` with `pair`.
fn rtmps_server(addr: SocketAddr, pair: &CertPair) -> ServerBuilder {
    server()
        .set("rtmps.listen", addr)
        .set("rtmps.cert_file", pair.cert.display())
        .set("rtmps.key_file", pair.key.display())
}

/// One push destination; small backoff values keep the tests fast.
fn dest(url: &str, timeout_s: u32, initial_s: f64, max_s: f64, limit: u32) -> Value {
    json!({
        "url": url,
        "timeout_s": timeout_s,
        "retry": {"initial_s": initial_s, "max_s": max_s},
        "limit": limit,
        "comment": "e2e",
    })
}

/// Creates the origin stream `SRC` with `push` as its destination list.
fn configure(api: &Api, push: &[Value]) {
    api.put(&format!("streams/{SRC}"), &json!({ "push": push }))
        .ok(201);
}

/// `runtime.pushes[0]` of `SRC`, if a worker runs.
fn push_state(api: &Api) -> Option<Value> {
    api.stream(SRC)["runtime"]["pushes"].get(0).cloned()
}

/// Polls `runtime.pushes[0]` every 50 ms until `ok` accepts it; the failure names the last
/// state seen.
#[track_caller]
fn wait_push(api: &Api, what: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    let mut last = None;
    loop {
        if let Some(p) = push_state(api) {
            if ok(&p) {
                return p;
            }
            last = Some(p);
        }
        assert!(
            start.elapsed() < timeout,
            "push not {what} within {timeout:?}; last state: {last:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status(p: &Value) -> &str {
    p["status"].as_str().unwrap_or("")
}

fn attempt(p: &Value) -> u64 {
    p["attempt"].as_u64().unwrap_or(0)
}

/// Messages of `last_errors`, newest first.
fn errors(p: &Value) -> Vec<String> {
    p["last_errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Unix milliseconds of an API timestamp (`2026-11-21T13:31:00.123Z`, UTC, as the API writes).
fn unix_ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a timestamp: {v}"));
    let num = |r: std::ops::Range<usize>| -> i64 {
        s.get(r)
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("bad timestamp {s:?}"))
    };
    assert!(
        s.len() == 24 && s.ends_with('Z'),
        "timestamp {s:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"
    );
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    secs * 1000 + num(20..23)
}

/// `ffprobe` of `url`: H.264 of `width`x`height` and AAC 48 kHz stereo.
#[track_caller]
fn assert_codecs(url: &str, width: u64, height: u64) {
    let streams = ffmpeg::streams(url);
    let v = stream_of(&streams, "video");
    assert_eq!(v["codec_name"], "h264", "{url}: {v:#}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(width), Some(height))
    );
    let a = stream_of(&streams, "audio");
    assert_eq!(a["codec_name"], "aac", "{url}: {a:#}");
    assert_eq!(a["sample_rate"], "48000", "{url}: {a:#}");
    assert_eq!(a["channels"], 2, "{url}: {a:#}");
}

/// Decodes `secs` s of `url` live: both tracks present, about real-time media.
#[track_caller]
fn assert_plays(url: &str, secs: f64) {
    let d = ffmpeg::decode(url, secs, Duration::from_secs(30));
    assert!(
        d.run.success(),
        "{url}: ffmpeg failed ({:?} after {:?}):\n{}",
        d.run.status,
        d.run.elapsed,
        d.run.stderr
    );
    d.assert_duration(url, secs, Fixture::FPS);
}

/// The publisher session of `code` on a server, if live.
fn publisher_session(api: &Api, code: &str) -> Option<u64> {
    let r = api.get(&format!("streams/{code}"));
    (r.status == 200 && r.json["runtime"]["status"] == "live")
        .then(|| r.json["runtime"]["publisher"]["session_id"].as_u64())
        .flatten()
}

/// Waits until `code` is live on a destination (it goes live once the pushed tracks are
/// parsed, a moment after the push is accepted); its publisher session.
#[track_caller]
fn wait_dest_live(api: &Api, code: &str) -> u64 {
    wait_until(
        &format!("{code:?} to be live on the destination"),
        Duration::from_secs(5),
        || publisher_session(api, code),
    )
}

/// Live push to nginx-rtmp: `starting` -> `active` with its counters, the codecs, resolution
/// and a real-time duration as nginx serves them, and timestamps that start at 0 for the push
/// session (not at the publisher's clock) and never go back. A destination added to a live
/// stream starts at once; disabled, its worker stops and closes the session cleanly.
#[test]
fn pushes_to_nginx_rtmp_with_right_codecs_and_timestamps_from_zero() {
    let nginx = Nginx::start();
    let origin = server().start();
    let api = Api::new(origin.http);
    configure(&api, &[]);
    let mut publisher = origin.publish(SRC, Fixture::Hd720);
    origin.wait_live(SRC);
    // Let the publisher's clock run ahead, so a push starting at 0 is told from one that
    // forwards the publisher's timestamps.
    std::thread::sleep(Duration::from_secs(5));

    let url = nginx.url("pushed");
    api.patch(
        &format!("streams/{SRC}"),
        &json!({"push": [dest(&url, 5, 0.3, 1.0, 0)]}),
    )
    .ok(200);
    let p = wait_push(&api, "active", Duration::from_secs(10), |p| {
        status(p) == "active"
    });
    let active_at = Instant::now();
    assert_eq!(attempt(&p), 1, "{p:#}");
    assert!(p["connected_at"].is_string(), "{p:#}");
    assert!(p["next_retry_at"].is_null(), "{p:#}");
    assert_eq!(errors(&p), Vec::<String>::new(), "{p:#}");
    assert_eq!(
        p["url"],
        format!("rtmp://{}/live/****", nginx.rtmp),
        "key masked"
    );

    assert_codecs(&url, 1280, 720);
    let (probe, packets) = ffmpeg::packets(&url, "%+3", None);
    assert!(
        packets.len() > 50,
        "ffprobe read {} packets from nginx ({:?}):\n{}",
        packets.len(),
        probe.status,
        probe.stderr
    );
    ffmpeg::assert_monotonic_dts("nginx-rtmp", &packets);
    let first = packets
        .iter()
        .filter_map(|p| p.dts)
        .fold(f64::INFINITY, f64::min);
    let session_secs = active_at.elapsed().as_secs_f64();
    let publisher_secs = publisher.started.elapsed().as_secs_f64();
    // The session starts on the cached GOP (<= 2 s old) at 0; the publisher is >= 5 s ahead.
    assert!(
        first <= session_secs + Fixture::Hd720.gop_secs() + 0.5,
        "nginx sees timestamps from {first:.2} s; the push session is {session_secs:.2} s \
         old and the publisher {publisher_secs:.2} s: not rebased to 0 per session"
    );
    assert_plays(&url, 3.0);

    // ~2.6 Mbit/s in (2.5 video + audio + FLV overhead); the rate is over 5 s.
    let p = wait_push(&api, "reporting a bitrate", Duration::from_secs(15), |p| {
        p["bitrate_kbps"].as_u64().is_some_and(|b| b > 0)
    });
    let kbps = p["bitrate_kbps"].as_u64().unwrap_or(0);
    assert!((1500..=5000).contains(&kbps), "bitrate_kbps {kbps}: {p:#}");
    assert!(
        p["bytes_sent"].as_u64().unwrap_or(0) > 1_000_000,
        "bytes_sent: {p:#}"
    );
    assert_eq!(p["status"], "active", "{p:#}");
    publisher.assert_running("while pushing");

    // Disabled: the worker stops, closing its session cleanly (nginx sees deleteStream; no
    // player is connected any more, so any new one is the push's).
    assert!(
        nginx.log().contains("publish: name='pushed'"),
        "{}",
        nginx.log()
    );
    let closes = || nginx.log().matches("deleteStream").count();
    let before = closes();
    let mut disabled = dest(&url, 5, 0.3, 1.0, 0);
    disabled["enabled"] = json!(false);
    api.patch(&format!("streams/{SRC}"), &json!({ "push": [disabled] }))
        .ok(200);
    wait_until("the disabled push to stop", Duration::from_secs(5), || {
        push_state(&api).is_none().then_some(())
    });
    wait_until(
        "nginx to see the push close",
        Duration::from_secs(5),
        || (closes() > before).then_some(()),
    );
    api.post(&format!("streams/{SRC}/push/0/retry"), &json!({}))
        .error(409, "CONFLICT", &["disabled"]);
    // Removed: nothing runs either.
    api.patch(&format!("streams/{SRC}"), &json!({"push": []}))
        .ok(200);
    assert!(push_state(&api).is_none());
    publisher.assert_running("at the end");
}

/// A second ferrocast listens RTMPS with a self-signed certificate; the origin trusts it via
/// `tls.extra_ca_file` and its push reaches the second instance, which serves it. An origin
/// trusting only the platform roots records the certificate error instead.
#[test]
fn pushes_over_rtmps_to_a_second_ferrocast_with_a_self_signed_certificate() {
    let certs = ScratchDir::new();
    let pair = tls::self_signed(certs.path(), "dest", "ferrocast-e2e-dest");
    let rtmps = free_addrs().0;
    let dest_server = rtmps_server(rtmps, &pair).start();
    let dest_api = Api::new(dest_server.http);
    let origin = server()
        .set("tls.extra_ca_file", pair.cert.display())
        .start();
    let api = Api::new(origin.http);
    let url = format!("rtmps://{rtmps}/live/x");
    configure(&api, &[dest(&url, 5, 0.3, 1.0, 0)]);
    let _publisher = origin.publish(SRC, Fixture::Small);

    let p = wait_push(&api, "active", Duration::from_secs(15), |p| {
        status(p) == "active"
    });
    assert_eq!(attempt(&p), 1, "{p:#}");
    assert_eq!(p["url"], format!("rtmps://{rtmps}/live/****"), "key masked");
    wait_dest_live(&dest_api, "x");
    let x = dest_api.stream("x");
    let tracks = &x["runtime"]["tracks"];
    assert_eq!(tracks[0]["codec"], "h264", "{x:#}");
    assert_eq!(
        (tracks[0]["width"].as_u64(), tracks[0]["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(tracks[1]["codec"], "aac", "{x:#}");
    assert_codecs(&dest_server.rtmp_url("x"), 320, 240);
    assert_plays(&dest_server.rtmp_url("x"), 2.0);

    // Platform roots only: the self-signed certificate is refused, and the reason shown.
    let untrusting = server().start();
    let api2 = Api::new(untrusting.http);
    configure(
        &api2,
        &[dest(&format!("rtmps://{rtmps}/live/y"), 5, 0.3, 1.0, 0)],
    );
    let _publisher2 = untrusting.publish(SRC, Fixture::Small);
    let p = wait_push(
        &api2,
        "failing on the certificate",
        Duration::from_secs(15),
        |p| !errors(p).is_empty(),
    );
    let e = &errors(&p)[0];
    assert!(
        e.starts_with("TLS") && e.to_lowercase().contains("certificate"),
        "expected a TLS certificate error, got {e:?}"
    );
    assert_ne!(status(&p), "active", "{p:#}");
    assert!(
        publisher_session(&dest_api, "y").is_none(),
        "y must not be live"
    );
}

/// A destination that is down from the start: `starting` -> `reconnecting` with an error per
/// attempt and a growing delay, `failed` after `limit` attempts (and it stays failed);
/// `POST .../push/0/retry` starts over.
#[test]
fn destination_down_from_the_start_backs_off_then_fails_at_limit() {
    let down = free_addrs().0; // bound, then released: nothing listens there
    let origin = server().start();
    let api = Api::new(origin.http);
    let limit = 5;
    configure(
        &api,
        &[dest(&format!("rtmp://{down}/live/k"), 2, 0.3, 1.0, limit)],
    );
    let _publisher = origin.publish(SRC, Fixture::Small);

    // Record every state seen until `failed`.
    let mut seen: Vec<Value> = Vec::new();
    let start = Instant::now();
    let last = loop {
        if let Some(p) = push_state(&api) {
            let done = status(&p) == "failed";
            seen.push(p.clone());
            if done {
                break p;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not failed after 20 s; last states: {:#?}",
            &seen[seen.len().saturating_sub(3)..]
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let order = ["starting", "reconnecting", "failed"];
    let ranks: Vec<usize> = seen
        .iter()
        .map(|p| {
            order
                .iter()
                .position(|s| *s == status(p))
                .unwrap_or_else(|| panic!("unexpected state {p:#}"))
        })
        .collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "states out of order: {:?}",
        seen.iter().map(status).collect::<Vec<_>>()
    );
    assert!(ranks.contains(&1), "never seen reconnecting");

    // While reconnecting, next_retry_at is set and grows from attempt to attempt.
    let mut retry_at: Vec<(u64, i64)> = seen
        .iter()
        .filter(|p| status(p) == "reconnecting" && p["next_retry_at"].is_string())
        .map(|p| (attempt(p), unix_ms(&p["next_retry_at"])))
        .collect();
    retry_at.dedup_by_key(|(a, _)| *a);
    assert!(retry_at.len() >= 3, "next_retry_at seen for {retry_at:?}");
    assert!(
        retry_at.windows(2).all(|w| w[1].1 > w[0].1),
        "next_retry_at does not grow: {retry_at:?}"
    );

    assert_eq!(attempt(&last), u64::from(limit), "{last:#}");
    assert!(last["next_retry_at"].is_null(), "{last:#}");
    assert!(last["connected_at"].is_null(), "{last:#}");
    assert_eq!(last["bytes_sent"], 0, "{last:#}");
    let errs = errors(&last);
    assert_eq!(errs.len(), 5, "{last:#}");
    assert!(
        errs.iter().all(|e| e.contains("refused")),
        "errors: {errs:?}"
    );
    // Errors are newest first; the gaps between attempts are the backoff: 0.3 s, 0.6 s, then
    // the 1 s cap, each with +-20 % jitter (plus a little scheduling).
    let at: Vec<i64> = last["last_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|e| unix_ms(&e["at"]))
        .collect();
    let gaps: Vec<i64> = at.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([300.0, 600.0, 1000.0, 1000.0]) {
        let (lo, hi) = ((want * 0.8) as i64 - 20, (want * 1.2) as i64 + 300);
        assert!(
            (lo..=hi).contains(gap),
            "backoff gaps {gaps:?} ms: {gap} not in {lo}..={hi}"
        );
    }
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2],
        "backoff does not grow: {gaps:?} ms"
    );

    // Failed stays failed: no more attempts.
    std::thread::sleep(Duration::from_millis(1500));
    let p = push_state(&api).expect("push state");
    assert_eq!(
        (status(&p), attempt(&p)),
        ("failed", u64::from(limit)),
        "{p:#}"
    );

    // A manual retry starts again, with a fresh failure count: its failure leaves the push
    // reconnecting, not failed.
    let r = api
        .post(&format!("streams/{SRC}/push/0/retry"), &json!({}))
        .ok(202);
    assert!(r["url"].is_string(), "retry answers the push state: {r:#}");
    let newest = at.last().copied().unwrap_or(0);
    let p = wait_push(&api, "retried", Duration::from_secs(5), |p| {
        attempt(p) > u64::from(limit) && unix_ms(&p["last_errors"][0]["at"]) > newest
    });
    assert_eq!(status(&p), "reconnecting", "{p:#}");
    // Still at most five errors, newest first.
    assert_eq!(errors(&p).len(), 5, "{p:#}");
    let at_now: Vec<i64> = (0..5)
        .map(|i| unix_ms(&p["last_errors"][i]["at"]))
        .collect();
    assert!(
        at_now.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {p:#}"
    );
    api.post(&format!("streams/{SRC}/push/1/retry"), &json!({}))
        .error(404, "NOT_FOUND", &["push"]);
}

/// The destination (a second ferrocast) is killed mid-stream: `reconnecting` with the error,
/// and once it is back, `active` again within the backoff, with playback on it resuming.
#[test]
fn destination_killed_mid_stream_reconnects_and_playback_resumes() {
    let mut dest_server = server().start();
    let origin = server().start();
    let api = Api::new(origin.http);
    configure(&api, &[dest(&dest_server.rtmp_url("x"), 2, 0.3, 1.0, 0)]);
    let mut publisher = origin.publish(SRC, Fixture::Small);

    let first = wait_push(&api, "active", Duration::from_secs(15), |p| {
        status(p) == "active"
    });
    assert_codecs(&dest_server.rtmp_url("x"), 320, 240);

    dest_server.process().signal("KILL");
    assert!(
        dest_server
            .process()
            .wait_timeout(Duration::from_secs(10))
            .is_some(),
        "destination survived SIGKILL"
    );
    let p = wait_push(&api, "reconnecting", Duration::from_secs(10), |p| {
        status(p) == "reconnecting" && !errors(p).is_empty()
    });
    let broke = errors(&p).pop().unwrap_or_default();
    assert!(
        ["closed", "reset", "pipe", "refused"]
            .iter()
            .any(|w| broke.contains(w)),
        "first error after the kill: {broke:?}"
    );
    assert!(p["connected_at"].is_null(), "{p:#}");
    // It keeps trying while the destination is down.
    let n = attempt(&p);
    wait_push(&api, "retrying", Duration::from_secs(5), |p| {
        status(p) == "reconnecting" && attempt(p) >= n + 2
    });

    dest_server.restart(Stop::Kill); // already dead: starts it again on the same ports
    let back = Instant::now();
    let p = wait_push(&api, "active again", Duration::from_secs(10), |p| {
        status(p) == "active"
    });
    // Retries are at most 1 s (+20 % jitter) apart; connecting takes milliseconds.
    assert!(
        back.elapsed() < Duration::from_millis(3000),
        "active again only {:?} after the destination came back",
        back.elapsed()
    );
    assert!(attempt(&p) > n, "{p:#}");
    assert!(
        unix_ms(&p["connected_at"]) > unix_ms(&first["connected_at"]),
        "connected_at not renewed: {p:#}"
    );
    assert_codecs(&dest_server.rtmp_url("x"), 320, 240);
    assert_plays(&dest_server.rtmp_url("x"), 2.0);
    publisher.assert_running("through the destination's restart");
}

/// The publisher leaves and comes back while the push waits out a long backoff: its worker
/// stops with the stream and the republish starts it at once, attempt count and errors reset.
#[test]
fn republish_restarts_pushes_at_once() {
    let dest_server = server().start();
    let dest_api = Api::new(dest_server.http);
    // The destination refuses at first (wrong key): the push backs off for ~4-5 s.
    dest_api
        .put("streams/x", &json!({"stream_key": "other-key"}))
        .ok(201);
    let origin = server().start();
    let api = Api::new(origin.http);
    let url = format!("{}?key=push-key", dest_server.rtmp_url("x"));
    configure(&api, &[dest(&url, 5, 2.0, 30.0, 0)]);
    let mut publisher = origin.publish(SRC, Fixture::Small);
    let p = wait_push(
        &api,
        "in its second backoff",
        Duration::from_secs(15),
        |p| status(p) == "reconnecting" && attempt(p) >= 2 && p["next_retry_at"].is_string(),
    );
    assert_eq!(errors(&p).len(), 2, "{p:#}");

    dest_api
        .patch("streams/x", &json!({"stream_key": "push-key"}))
        .ok(200);
    publisher.stop();
    wait_until(
        "the push to stop with the stream",
        Duration::from_secs(5),
        || push_state(&api).is_none().then_some(()),
    );
    let republished = Instant::now();
    let _publisher = origin.publish(SRC, Fixture::Small);
    let p = wait_push(
        &api,
        "active after the republish",
        Duration::from_secs(10),
        |p| status(p) == "active",
    );
    assert!(
        republished.elapsed() < Duration::from_secs(4),
        "push active only {:?} after the republish (a backoff was waited out?)",
        republished.elapsed()
    );
    assert_eq!(attempt(&p), 1, "attempt not reset: {p:#}");
    assert_eq!(errors(&p), Vec::<String>::new(), "errors not reset: {p:#}");
    wait_dest_live(&dest_api, "x");
    assert_codecs(&dest_server.rtmp_url("x"), 320, 240);
}

/// A peer that accepts TCP connections and never says a word; closes them on drop.
struct SilentPeer {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentPeer {
    fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentPeer {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A destination that accepts TCP but never answers the handshake: each attempt gives up after
/// `timeout_s` with a timeout error, and `limit` such attempts end in `failed`.
#[test]
fn silent_destination_respects_timeout_s() {
    let peer = SilentPeer::start();
    let origin = server().start();
    let api = Api::new(origin.http);
    configure(
        &api,
        &[dest(
            &format!("rtmp://{}/live/k", peer.addr),
            2,
            0.3,
            1.0,
            2,
        )],
    );
    let _publisher = origin.publish(SRC, Fixture::Small);

    let p = wait_push(&api, "starting", Duration::from_secs(15), |p| {
        status(p) == "starting"
    });
    let seen_starting = Instant::now();
    assert_eq!(attempt(&p), 1, "{p:#}");
    assert_eq!(errors(&p), Vec::<String>::new(), "{p:#}");
    // Still waiting for the handshake 1 s later: not given up early.
    std::thread::sleep(Duration::from_millis(1000));
    let p = push_state(&api).expect("push state");
    if seen_starting.elapsed() < Duration::from_millis(1700) {
        assert_eq!(status(&p), "starting", "gave up before timeout_s: {p:#}");
    }

    let p = wait_push(&api, "failed", Duration::from_secs(15), |p| {
        status(p) == "failed"
    });
    assert_eq!(attempt(&p), 2, "{p:#}");
    let errs = errors(&p);
    assert_eq!(errs.len(), 2, "{p:#}");
    assert!(
        errs.iter().all(|e| e.contains("timed out after 2s")),
        "errors: {errs:?}"
    );
    // The second attempt started ~0.3 s after the first failed and took the full 2 s.
    let gap = unix_ms(&p["last_errors"][0]["at"]) - unix_ms(&p["last_errors"][1]["at"]);
    assert!(
        (2200..=3200).contains(&gap),
        "{gap} ms between the two timeouts, expected 2 s + ~0.3 s backoff"
    );
    assert_eq!(
        peer.accepted.load(Ordering::Relaxed),
        2,
        "one connection per attempt"
    );
}

/// A destination that refuses `publish` with an onStatus error (a second ferrocast, wrong
/// stream key): its code and description are recorded; once fixed there, `POST .../retry`
/// connects at once instead of waiting out the 30 s backoff.
#[test]
fn refused_publish_records_the_remote_status_and_retry_connects_now() {
    let dest_server = server().start();
    let dest_api = Api::new(dest_server.http);
    dest_api
        .put("streams/x", &json!({"stream_key": "right-key"}))
        .ok(201);
    let origin = server().start();
    let api = Api::new(origin.http);
    let url = format!("{}?key=wrong-key", dest_server.rtmp_url("x"));
    configure(&api, &[dest(&url, 5, 30.0, 60.0, 0)]);
    let _publisher = origin.publish(SRC, Fixture::Small);

    let p = wait_push(&api, "refused", Duration::from_secs(15), |p| {
        !errors(p).is_empty()
    });
    assert_eq!((status(&p), attempt(&p)), ("reconnecting", 1), "{p:#}");
    let e = &errors(&p)[0];
    assert!(
        e.contains("NetStream.Publish.BadName") && e.contains("invalid stream key"),
        "the remote's onStatus code and description are not in {e:?}"
    );
    assert!(
        !p.to_string().contains("wrong-key"),
        "stream key shown: {p:#}"
    );
    let wait_ms = unix_ms(&p["next_retry_at"]) - unix_ms(&p["last_errors"][0]["at"]);
    assert!(
        (23_000..=37_000).contains(&wait_ms),
        "next retry in {wait_ms} ms"
    );

    dest_api
        .patch("streams/x", &json!({"stream_key": "wrong-key"}))
        .ok(200);
    let asked = Instant::now();
    api.post(&format!("streams/{SRC}/push/0/retry"), &json!({}))
        .ok(202);
    let p = wait_push(&api, "active after retry", Duration::from_secs(10), |p| {
        status(p) == "active"
    });
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "retry took {:?}",
        asked.elapsed()
    );
    assert_eq!(attempt(&p), 2, "{p:#}");
    wait_dest_live(&dest_api, "x");
}

/// Replaces `dst` with `src`'s content atomically (write + rename), as a certificate
/// manager would.
fn swap_file(src: &Path, dst: &Path) {
    let tmp = dst.with_extension("new");
    std::fs::copy(src, &tmp).expect("copy certificate file");
    std::fs::rename(&tmp, dst).expect("rename certificate file");
}

/// RTMPS ingest: ffmpeg publishes over `rtmps://` and players play over RTMPS and RTMP. A new
/// certificate on disk is served to new connections without dropping the live publisher; a
/// broken one is refused, logged, and the previous one kept.
#[test]
fn rtmps_ingest_with_ffmpeg_and_certificate_swap_keeps_the_publisher() {
    let certs = ScratchDir::new();
    let a = tls::self_signed(certs.path(), "a", "ferrocast-e2e-a");
    let b = tls::self_signed(certs.path(), "b", "ferrocast-e2e-b");
    // The files the server reads; the certificates above are copied over them.
    let live = CertPair {
        cert: certs.path().join("live.crt"),
        key: certs.path().join("live.key"),
    };
    swap_file(&a.cert, &live.cert);
    swap_file(&a.key, &live.key);
    let addr = free_addrs().0;
    let server = rtmps_server(addr, &live)
        .set("rtmps.reload_interval", "200ms")
        .start();
    let api = Api::new(server.http);
    let rtmps_url = format!("rtmps://{addr}/live/s");
    let mut publisher = ChildGuard::spawn(
        "rtmps publisher",
        ffmpeg::ffmpeg()
            .args(["-re", "-stream_loop", "-1", "-i"])
            .arg(Fixture::Small.path())
            .args(["-c", "copy", "-f", "flv", "-tls_verify", "0", &rtmps_url]),
        &server.dir().join("rtmps-publisher.log"),
    );
    server.wait_live("s");
    let session = publisher_session(&api, "s").expect("s is live");
    assert!(tls::presented_subject(addr).contains("ferrocast-e2e-a"));
    assert_codecs(&rtmps_url, 320, 240);
    assert_codecs(&server.rtmp_url("s"), 320, 240);

    let reloads = |s: &Server| s.log().matches("TLS certificate reloaded").count();
    let rejects = |s: &Server| s.log().matches("new TLS certificate rejected").count();
    let before = reloads(&server);
    swap_file(&b.cert, &live.cert);
    swap_file(&b.key, &live.key);
    wait_until(
        "the new certificate to be served",
        Duration::from_secs(10),
        || {
            (reloads(&server) > before && tls::presented_subject(addr).contains("ferrocast-e2e-b"))
                .then_some(())
        },
    );
    assert!(
        publisher.is_running(),
        "publisher dropped by the reload:\n{}",
        publisher.log()
    );
    assert_eq!(
        publisher_session(&api, "s"),
        Some(session),
        "publisher reconnected"
    );
    assert_codecs(&rtmps_url, 320, 240);

    // A broken certificate keeps the previous one, and says why.
    let before = rejects(&server);
    std::fs::write(certs.path().join("garbage.crt"), "not a certificate\n").expect("write");
    swap_file(&certs.path().join("garbage.crt"), &live.cert);
    wait_until(
        "the rejection to be logged",
        Duration::from_secs(10),
        || (rejects(&server) > before).then_some(()),
    );
    let why = server
        .log()
        .lines()
        .rfind(|l| l.contains("new TLS certificate rejected"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        why.contains("live.crt"),
        "the rejection does not say which file: {why}"
    );
    assert!(tls::presented_subject(addr).contains("ferrocast-e2e-b"));
    assert!(
        publisher.is_running(),
        "publisher dropped:\n{}",
        publisher.log()
    );
    assert_eq!(
        publisher_session(&api, "s"),
        Some(session),
        "publisher reconnected"
    );
}
