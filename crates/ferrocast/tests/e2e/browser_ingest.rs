//! Browser ingest in real headless Chromium with its fake camera and microphone
//! (`tests/browser/ingest.mjs`): api.video's unchanged client over socket.io, the dashboard's
//! Go live page over the native WebSocket, and hostile pages. Asserts on what ffprobe and
//! ffmpeg decode back, on the errors the page received, and on the ffmpeg children left.

use crate::dash::browser_ready;
use crate::support::api::Api;
use crate::support::ffmpeg::{self, Fixture, decode, stream_of, streams};
use crate::support::nginx::Nginx;
use crate::support::proc::run;
use crate::support::{Server, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/ingest.mjs")
}

/// Runs the page script and returns its report (`report` of the JSON line).
fn page(args: &[&str], secs: u64) -> Value {
    let out = run(
        Command::new("node").arg(script()).args(args),
        Duration::from_secs(secs + 60),
    );
    let line = out.stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "ingest.mjs {args:?} printed no JSON ({e}):\n{}\n{}",
            out.stdout, out.stderr
        )
    });
    assert_eq!(
        v["ok"], true,
        "ingest.mjs {args:?} failed: {v}\n{}",
        out.stderr
    );
    v["report"].clone()
}

/// Runs the page script on a thread, for checks while it publishes.
fn page_in_background(args: Vec<String>, secs: u64) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        page(&args, secs)
    })
}

/// ffmpeg processes whose parent is the server.
fn ffmpeg_children(server: &mut Server) -> usize {
    let pid = server.process().pid();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...
            let Some((comm, rest)) = stat.split_once(") ") else {
                return false;
            };
            comm.ends_with("(ffmpeg")
                && rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .count()
}

fn wait_no_ffmpeg(server: &mut Server, when: &str) {
    let mut last = usize::MAX;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        last = ffmpeg_children(server);
        if last == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{last} ffmpeg children left {when}:\n{}",
        crate::support::proc::tail(&server.log(), 40)
    );
}

/// Like `Server::wait_live`, with room for a loaded machine: Chromium's capture and encoder
/// and the tab's ffmpeg all start before the first frame reaches the hub.
fn wait_live(server: &Server, code: &str) {
    let path = format!("/live/{code}/mpegts");
    wait_until(
        &format!("{code:?} to go live from a browser"),
        Duration::from_secs(60),
        || {
            let s = crate::support::http::open(server.http, &path, Duration::from_secs(5)).ok()?;
            (s.status == 200).then_some(())
        },
    );
}

fn errors(report: &Value) -> Vec<Value> {
    report["errors"].as_array().cloned().unwrap_or_default()
}

fn has_error(report: &Value, name: &str, needle: &str) -> bool {
    errors(report)
        .iter()
        .any(|e| e["name"] == name && e["message"].as_str().is_some_and(|m| m.contains(needle)))
}

fn server_with_stream(code: &str, key: &str) -> Server {
    let server = Server::builder().set("ingest.auto_create", false).start();
    Api::new(server.http)
        .post(
            "/api/v1/streams",
            &json!({"code": code, "name": "from a browser", "stream_key": key}),
        )
        .ok(201);
    server
}

fn assert_h264_aac(url: &str, profile: Option<&str>) {
    let s = streams(url);
    let v = stream_of(&s, "video");
    assert_eq!(v["codec_name"], "h264", "{url}: {v}");
    assert_eq!(v["width"], 1280, "{url}: {v}");
    assert_eq!(v["height"], 720, "{url}: {v}");
    if let Some(p) = profile {
        assert_eq!(v["profile"], p, "{url}: {v}");
    }
    assert_eq!(stream_of(&s, "audio")["codec_name"], "aac", "{url}");
}

#[test]
fn api_video_client_publishes_h264_and_aac_to_rtmp_and_hls() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let mut server = server_with_stream("tab", "k3y-tab");
    let origin = format!("http://{}", server.http);
    let target = "rtmp://127.0.0.1/live/tab?key=k3y-tab".to_owned();
    let publishing = page_in_background(vec!["apivideo".into(), origin, target, "30".into()], 30);
    wait_live(&server, "tab");
    assert_eq!(ffmpeg_children(&mut server), 1, "one transcode for one tab");
    let sessions = Api::new(server.http).sessions("");
    assert!(
        sessions
            .iter()
            .any(|s| s["protocol"] == "browser" && s["role"] == "publisher"),
        "the browser publisher is a session like any other: {sessions:?}"
    );

    // The RTMP publisher's view: H.264 + AAC, at the camera's size.
    assert_h264_aac(&server.rtmp_url("tab"), None);
    server.wait_playlist("tab", "two segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 2
    });
    assert_h264_aac(&server.hls_url("tab"), None);
    let d = decode(&server.hls_url("tab"), 3.0, Duration::from_secs(30));
    d.assert_clean("HLS of the api.video client");
    let report = publishing.join().expect("page thread");
    assert!(errors(&report).is_empty(), "page saw errors: {report}");
    assert!(
        report["events"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("started"))),
        "{report}"
    );
    wait_no_ffmpeg(&mut server, "after stop");
}

#[test]
fn go_live_page_publishes_webcodecs_h264_untouched_for_20_s() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let mut server = server_with_stream("golive", "k3y-go");
    let origin = format!("http://{}", server.http);
    let publishing = page_in_background(
        vec![
            "golive".into(),
            origin,
            "golive".into(),
            "k3y-go".into(),
            "26".into(),
            "--fps=25".into(),
        ],
        26,
    );
    wait_live(&server, "golive");
    // Passed through: the browser's own Constrained Baseline, not a server-side x264 Main.
    assert_h264_aac(&server.rtmp_url("golive"), Some("Constrained Baseline"));
    assert_eq!(
        ffmpeg_children(&mut server),
        1,
        "only the audio transcode runs for a native publisher"
    );
    server.wait_playlist("golive", "three segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 3
    });
    let d = decode(&server.hls_url("golive"), 12.0, Duration::from_secs(40));
    d.assert_clean("HLS of the Go live page");
    // Frames the tab's encoder skipped on a loaded machine leave whole-frame gaps, so the
    // count is checked against a rate well below the nominal 25.
    d.assert_duration("HLS of the Go live page", 12.0, 15.0);
    let report = publishing.join().expect("page thread");
    assert!(errors(&report).is_empty(), "page saw errors: {report}");
    assert_eq!(report["video"]["width"], 1280, "{report}");
    assert!(
        report["stats"]["frames"].as_u64().unwrap_or(0) > 300,
        "{report}"
    );
    wait_no_ffmpeg(&mut server, "after the page stopped");
}

#[test]
fn a_wrong_stream_key_is_refused_with_a_clear_error_in_the_page() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let mut server = server_with_stream("locked", "right-key");
    let origin = format!("http://{}", server.http);
    let r = page(&["golive", &origin, "locked", "wrong-key", "4"], 4);
    assert!(
        has_error(&r, "RTMP_CONNECTION_FAILED", "invalid stream key"),
        "Go live page: {r}"
    );
    assert_eq!(r["state"], "error", "{r}");
    let r = page(
        &[
            "apivideo",
            &origin,
            "rtmp://127.0.0.1/live/locked?key=wrong-key",
            "4",
        ],
        4,
    );
    assert!(
        has_error(&r, "RTMP_CONNECTION_FAILED", "invalid stream key"),
        "api.video client: {r}"
    );
    assert!(server.playlist("locked").is_none(), "nothing was published");
    wait_no_ffmpeg(&mut server, "after refused publishes");
}

#[test]
fn hostile_browsers_get_the_documented_errors_and_leave_nothing_behind() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let mut server = Server::builder()
        .set("browser.max_ffmpeg", 1)
        .set("browser.max_chunk_bytes", 65536)
        .set("browser.max_pending_bytes", 1 << 20)
        .start();
    let origin = format!("http://{}", server.http);
    // A stream that must not notice anything.
    let _other = server.publish("other", Fixture::Hd720);
    server.wait_playlist("other", "a segment", Duration::from_secs(20), |p| {
        !p.segments.is_empty()
    });
    let rtmp = "rtmp://127.0.0.1/live/hostile";

    let r = page(&["raw", &origin, "socket.io", "before-start"], 4);
    assert!(has_error(&r, "FFMPEG_NOT_RUNNING", "not running"), "{r}");
    assert_eq!(
        r["acks"][0]["fatal"], false,
        "not fatal, as api.video's: {r}"
    );

    let r = page(&["raw", &origin, "socket.io", "bad-start"], 4);
    assert!(
        has_error(
            &r,
            "INVALID_PARAMETERS",
            "Missing values: audioSampleRate, rtmp"
        ),
        "{r}"
    );
    assert_eq!(
        r["acks"][0]["name"], "INVALID_PARAMETERS",
        "a failed start is acked: {r}"
    );

    let r = page(
        &[
            "raw",
            &origin,
            "socket.io",
            "oversized",
            rtmp,
            "x",
            "100000",
        ],
        4,
    );
    assert!(
        has_error(&r, "INVALID_PARAMETERS", "65536-byte bound"),
        "{r}"
    );
    wait_no_ffmpeg(&mut server, "after an oversized chunk");

    let r = page(
        &["raw", &origin, "socket.io", "garbage", rtmp, "x", "60000"],
        4,
    );
    assert!(has_error(&r, "INVALID_PARAMETERS", "WebM or MP4"), "{r}");
    wait_no_ffmpeg(&mut server, "after garbage");

    let r = page(
        &[
            "raw",
            &origin,
            "socket.io",
            "garbage-webm",
            rtmp,
            "x",
            "60000",
        ],
        4,
    );
    assert!(
        errors(&r)
            .iter()
            .any(|e| e["name"] == "FFMPEG_UNEXPECTED_END" && e["fatal"] == true),
        "garbage ends ffmpeg and the client hears it: {r}"
    );
    wait_no_ffmpeg(&mut server, "after garbage in a WebM wrapper");

    // More browsers than the cap (1): the second is refused while the first holds its child.
    let holding = page_in_background(
        vec![
            "raw".into(),
            origin.clone(),
            "socket.io".into(),
            "hold".into(),
            "rtmp://127.0.0.1/live/first".into(),
            "long".into(),
        ],
        15,
    );
    wait_until(
        "the first browser's ffmpeg",
        Duration::from_secs(15),
        || (ffmpeg_children(&mut server) == 1).then_some(()),
    );
    let r = page(
        &[
            "raw",
            &origin,
            "socket.io",
            "hold",
            "rtmp://127.0.0.1/live/second",
        ],
        4,
    );
    assert!(has_error(&r, "CANT_START_FFMPEG", "at most 1"), "{r}");
    holding.join().expect("first page");
    wait_no_ffmpeg(&mut server, "after the holding tab closed");

    // The native socket: media before start, an unknown media kind.
    let r = page(&["raw", &origin, "ws", "ws-garbage", "", "wsg"], 4);
    assert!(has_error(&r, "FFMPEG_NOT_RUNNING", "before start"), "{r}");
    assert!(
        r["events"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("close 1008"))),
        "{r}"
    );
    let r = page(&["raw", &origin, "ws", "ws-bad-kind", "", "wsk"], 4);
    assert!(
        has_error(&r, "INVALID_PARAMETERS", "unknown media kind 77"),
        "{r}"
    );

    // Tabs closed mid-stream, on both paths: the child is reaped and the code released.
    page(
        &[
            "apivideo",
            &origin,
            "rtmp://127.0.0.1/live/closed1",
            "6",
            "--close",
        ],
        6,
    );
    wait_no_ffmpeg(&mut server, "after a closed api.video tab");
    page(&["golive", &origin, "closed2", "", "6", "--close"], 6);
    wait_no_ffmpeg(&mut server, "after a closed Go live tab");
    for code in ["closed1", "closed2", "hostile", "first"] {
        wait_until(
            &format!("{code} unpublished"),
            Duration::from_secs(10),
            || {
                let s = Api::new(server.http).sessions(&format!("?stream={code}"));
                s.iter().all(|s| s["role"] != "publisher").then_some(())
            },
        );
    }

    // The other stream played on throughout.
    server.wait_playlist("other", "still advancing", Duration::from_secs(10), |p| {
        p.segments.len() >= 3
    });
    let d = ffmpeg::decode(&server.hls_url("other"), 2.0, Duration::from_secs(30));
    d.assert_clean("the untouched stream");
    assert!(server.is_running(), "the server survived");
}

/// api.video's relay mode: a target on another server is pushed there by ffmpeg itself, only
/// when `browser.relay_allow` lists it; a dead target is reported as the client expects.
#[test]
fn api_video_relay_goes_only_where_the_allow_list_says() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let nginx = Nginx::start();
    let dead = crate::support::server::free_addrs().0;
    let mut server = Server::builder()
        .set(
            "browser.relay_allow",
            format!("[\"rtmp://{}/live/\", \"rtmp://{dead}/\"]", nginx.rtmp),
        )
        .start();
    let origin = format!("http://{}", server.http);
    let relayed = nginx.url("relayed");
    let publishing = page_in_background(
        vec![
            "apivideo".into(),
            origin.clone(),
            relayed.clone(),
            "60".into(),
        ],
        60,
    );
    // One software H.264 encode per tab: slow to start when the suite loads both cores (on
    // a 2-core machine it took over 40 s twice in a full run).
    let s = wait_until(
        "the relayed stream on nginx-rtmp",
        Duration::from_secs(60),
        || {
            let out = run(
                ffmpeg::ffprobe().args(["-show_streams", &relayed]),
                Duration::from_secs(15),
            );
            out.success()
                .then(|| serde_json::from_str::<Value>(&out.stdout).ok())
                .flatten()
                .and_then(|v| v["streams"].as_array().cloned())
                .filter(|s| s.len() >= 2)
        },
    );
    assert_eq!(stream_of(&s, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&s, "audio")["codec_name"], "aac");
    assert!(
        server.playlist("relayed").is_none(),
        "a relay does not publish here"
    );
    let report = publishing.join().expect("page thread");
    assert!(errors(&report).is_empty(), "{report}");

    let r = page(
        &["apivideo", &origin, &format!("rtmp://{dead}/live/x"), "8"],
        8,
    );
    assert!(
        has_error(&r, "RTMP_CONNECTION_FAILED", "failed"),
        "a dead relay target: {r}"
    );
    let r = page(
        &["apivideo", &origin, "rtmp://192.0.2.1/live/secret-key", "3"],
        3,
    );
    assert!(has_error(&r, "INVALID_PARAMETERS", "not allowed"), "{r}");
    assert!(
        !r.to_string().contains("secret-key"),
        "the refused target's key is not echoed: {r}"
    );
    wait_no_ffmpeg(&mut server, "after the relays");
}
