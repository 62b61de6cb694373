//! Inputs the gateway pulls, from sources no one here wrote: GStreamer's RTSP server as a
//! camera (TCP and UDP, Basic auth), srt-live-transmit in listener mode, ffmpeg sending UDP
//! MPEG-TS, serving MPEG-TS over HTTP and writing HLS (TS and fMP4) behind a plain HTTP
//! server, nginx-rtmp as an RTMP origin, and a looped file. Then failover: the primary dies
//! while ffmpeg and hls.js play, the stream switches to the backup and fails back, and both
//! switches are in the runtime history.

use crate::dash::browser_ready;
use crate::support::api::Api;
use crate::support::ffmpeg::{self, stream_of};
use crate::support::nginx::Nginx;
use crate::support::proc::{self, ChildGuard};
use crate::support::server::{free_addrs, free_udp_addr};
use crate::support::{Fixture, Server, wait_until};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A server without DASH (unless a test asks): these tests are about the inputs.
fn server() -> Server {
    Server::builder().set("dash.enabled", false).start()
}

fn free_port() -> u16 {
    free_addrs().0.port()
}

/// Starts `cmd` with its output in the server's directory.
fn spawn(server: &Server, name: &str, cmd: &mut Command) -> ChildGuard {
    let log = server.dir().join(format!("{name}.log"));
    ChildGuard::spawn(name, cmd, &log)
}

/// ffmpeg sending the small fixture, looped in real time, as MPEG-TS to `url`.
fn ts_sender(server: &Server, name: &str, url: &str) -> ChildGuard {
    let mut cmd = ffmpeg::ffmpeg();
    cmd.args(["-re", "-stream_loop", "-1", "-i"])
        .arg(Fixture::Small.path())
        .args(["-c", "copy", "-f", "mpegts"]);
    if url.starts_with("http") {
        // ffmpeg itself serves the stream to one HTTP client.
        cmd.args(["-listen", "1"]);
    }
    cmd.arg(url);
    spawn(server, name, &mut cmd)
}

/// GStreamer's RTSP server as a camera on `port`, optionally behind Basic auth.
fn camera(server: &Server, port: u16, auth: Option<&str>) -> ChildGuard {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/rtsp/camera.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script).arg(port.to_string());
    if let Some(a) = auth {
        cmd.arg(a);
    }
    let mut cam = spawn(server, "camera", &mut cmd);
    wait_until("the RTSP camera", Duration::from_secs(15), || {
        assert!(cam.is_running(), "camera exited:\n{}", cam.log());
        cam.log().contains("camera ready").then_some(())
    });
    cam
}

/// Creates `code` with `inputs` and fast failover settings.
fn create(api: &Api, code: &str, inputs: Value) {
    api.post(
        "/api/v1/streams",
        &json!({
            "code": code,
            "inputs": inputs,
            "failover": {
                "packet_timeout_s": 1,
                "failback_after_s": 3,
                "retry": {"initial_s": 0.5, "max_s": 2}
            }
        }),
    )
    .ok(201);
}

/// `runtime.inputs` of `code`.
fn inputs(api: &Api, code: &str) -> Value {
    api.stream(code)["runtime"]["inputs"].clone()
}

/// Waits until input `index` of `code` is up and readers see it.
fn wait_active(api: &Api, code: &str, index: u64, timeout: Duration) -> Value {
    wait_until(
        &format!("input {index} of {code:?} to be active"),
        timeout,
        || {
            let i = inputs(api, code);
            (i["active"] == index && i["inputs"][index as usize]["state"] == "up").then_some(i)
        },
    )
}

/// Decodes `secs` of `code`'s HLS output and checks it is clean and complete.
fn assert_plays_hls(server: &Server, code: &str, secs: f64, fps: f64) {
    server.wait_playlist(code, "two segments", Duration::from_secs(20), |p| {
        p.segments.len() >= 2
    });
    let d = ffmpeg::decode(&server.hls_url(code), secs, Duration::from_secs(60));
    d.assert_clean(&format!("HLS of {code}"));
    d.assert_duration(&format!("HLS of {code}"), secs, fps);
}

#[test]
fn rtsp_camera_over_tcp_plays_on_hls_rtmp_and_dash() {
    let server = Server::builder().start();
    let api = Api::new(server.http);
    let port = free_port();
    let _cam = camera(&server, port, None);
    create(
        &api,
        "cam",
        json!([{ "url": format!("rtsp://127.0.0.1:{port}/cam") }]),
    );
    let state = wait_active(&api, "cam", 0, Duration::from_secs(20));
    assert_eq!(state["inputs"][0]["kind"], "rtsp");
    assert_eq!(state["history"][0]["reason"], "started");
    assert_plays_hls(&server, "cam", 3.0, 25.0);
    let rtmp = ffmpeg::decode(&server.rtmp_url("cam"), 2.0, Duration::from_secs(30));
    rtmp.assert_clean("RTMP play of the camera");
    rtmp.assert_duration("RTMP play of the camera", 2.0, 25.0);
    let mpd = format!("http://{}/live/cam/index.mpd", server.http);
    wait_until("the camera's MPD", Duration::from_secs(20), || {
        (server.get("/live/cam/index.mpd").status == 200).then_some(())
    });
    let streams = ffmpeg::streams(&mpd);
    assert_eq!(stream_of(&streams, "video")["codec_name"], "h264");
    assert_eq!(stream_of(&streams, "video")["width"], 320);
    assert_eq!(stream_of(&streams, "audio")["codec_name"], "aac");
    let state = inputs(&api, "cam");
    assert!(
        state["inputs"][0]["bitrate_kbps"].as_u64().unwrap_or(0) > 0,
        "{state:#}"
    );
    assert_eq!(state["inputs"][0]["attempts"], 1, "{state:#}");
}

#[test]
fn rtsp_camera_with_basic_auth_over_udp() {
    let server = server();
    let api = Api::new(server.http);
    let port = free_port();
    let _cam = camera(&server, port, Some("viewer:s3cret"));
    create(
        &api,
        "door",
        json!([{ "url": format!("rtsp://viewer:wrong@127.0.0.1:{port}/cam"), "rtsp_transport": "udp" }]),
    );
    // A wrong password: the input retries and says why, and the password never shows.
    let state = wait_until("the auth failure", Duration::from_secs(20), || {
        let i = inputs(&api, "door");
        let errors = i["inputs"][0]["last_errors"].as_array()?.clone();
        (!errors.is_empty()).then_some(i)
    });
    let text = state.to_string();
    assert!(text.contains("401"), "{state:#}");
    assert!(!text.contains("wrong"), "the password leaked: {state:#}");
    let view = api.stream("door");
    assert_eq!(
        view["inputs"][0]["url"],
        format!("rtsp://****@127.0.0.1:{port}/cam")
    );
    api.patch(
        "/api/v1/streams/door",
        &json!({"inputs": [{ "url": format!("rtsp://viewer:s3cret@127.0.0.1:{port}/cam"), "rtsp_transport": "udp" }]}),
    )
    .ok(200);
    wait_active(&api, "door", 0, Duration::from_secs(20));
    assert_plays_hls(&server, "door", 2.0, 25.0);
}

#[test]
fn rtsp_camera_with_digest_auth() {
    let server = server();
    let api = Api::new(server.http);
    let port = free_port();
    let _cam = camera(&server, port, Some("digest:viewer:s3cret"));
    create(
        &api,
        "digest",
        json!([{ "url": format!("rtsp://viewer:s3cret@127.0.0.1:{port}/cam") }]),
    );
    wait_active(&api, "digest", 0, Duration::from_secs(20));
    assert_plays_hls(&server, "digest", 2.0, 25.0);
}

#[test]
fn srt_caller_pulls_from_srt_live_transmit() {
    let server = server();
    let api = Api::new(server.http);
    let udp_in = free_udp_addr();
    let srt_port = free_udp_addr().port();
    let mut slt = Command::new("srt-live-transmit");
    slt.args([
        "-q".to_owned(),
        format!("udp://127.0.0.1:{}", udp_in.port()),
        format!("srt://127.0.0.1:{srt_port}?mode=listener&latency=120"),
    ]);
    let _slt = spawn(&server, "srt-live-transmit", &mut slt);
    let _src = ts_sender(
        &server,
        "ffmpeg-udp",
        &format!("udp://{udp_in}?pkt_size=1316"),
    );
    create(
        &api,
        "studio",
        json!([{ "url": format!("srt://127.0.0.1:{srt_port}?latency=120") }]),
    );
    let state = wait_active(&api, "studio", 0, Duration::from_secs(30));
    assert_eq!(state["inputs"][0]["kind"], "srt");
    assert_plays_hls(&server, "studio", 2.0, Fixture::FPS);
}

#[test]
fn udp_and_http_mpegts_inputs() {
    let server = server();
    let api = Api::new(server.http);
    let udp = free_udp_addr();
    let _udp_src = ts_sender(&server, "ffmpeg-udp", &format!("udp://{udp}?pkt_size=1316"));
    let http_port = free_port();
    let _http_src = ts_sender(
        &server,
        "ffmpeg-http",
        &format!("http://127.0.0.1:{http_port}/feed.ts"),
    );
    create(&api, "udp", json!([{ "url": format!("udp://{udp}") }]));
    create(
        &api,
        "http",
        json!([{ "url": format!("http://127.0.0.1:{http_port}/feed.ts") }]),
    );
    wait_active(&api, "udp", 0, Duration::from_secs(20));
    wait_active(&api, "http", 0, Duration::from_secs(20));
    assert_plays_hls(&server, "udp", 2.0, Fixture::FPS);
    assert_plays_hls(&server, "http", 2.0, Fixture::FPS);
}

/// ffmpeg writing a live HLS rendition of the fixture into `dir` (TS or fMP4 segments).
fn hls_writer(server: &Server, dir: &Path, fmp4: bool) -> ChildGuard {
    std::fs::create_dir_all(dir).expect("create the HLS dir");
    let mut cmd = ffmpeg::ffmpeg();
    cmd.args(["-re", "-stream_loop", "-1", "-i"])
        .arg(Fixture::Small.path())
        .args([
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "6",
        ])
        .args(["-hls_flags", "delete_segments"]);
    if fmp4 {
        cmd.args(["-hls_segment_type", "fmp4"]);
    }
    cmd.arg(dir.join("index.m3u8"));
    spawn(
        server,
        if fmp4 {
            "ffmpeg-hls-fmp4"
        } else {
            "ffmpeg-hls-ts"
        },
        &mut cmd,
    )
}

#[test]
fn hls_pull_of_ts_and_fmp4_segments_from_a_plain_http_server() {
    let server = server();
    let api = Api::new(server.http);
    let root = server.dir().join("origin");
    let _ts = hls_writer(&server, &root.join("ts"), false);
    let _fmp4 = hls_writer(&server, &root.join("fmp4"), true);
    let port = free_port();
    let mut http = Command::new("python3");
    http.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(&root);
    let _http = spawn(&server, "http-server", &mut http);
    create(
        &api,
        "hlsts",
        json!([{ "url": format!("http://127.0.0.1:{port}/ts/index.m3u8") }]),
    );
    create(
        &api,
        "hlsfmp4",
        json!([{ "url": format!("http://127.0.0.1:{port}/fmp4/index.m3u8") }]),
    );
    let state = wait_active(&api, "hlsts", 0, Duration::from_secs(30));
    assert_eq!(state["inputs"][0]["kind"], "hls");
    wait_active(&api, "hlsfmp4", 0, Duration::from_secs(30));
    assert_plays_hls(&server, "hlsts", 3.0, Fixture::FPS);
    assert_plays_hls(&server, "hlsfmp4", 3.0, Fixture::FPS);
}

#[test]
fn rtmp_pull_from_nginx_rtmp_and_a_looped_file() {
    let server = server();
    let api = Api::new(server.http);
    let nginx = Nginx::start();
    let mut src = ffmpeg::publish_command(&Fixture::Small.path(), &nginx.url("origin"));
    let _src = spawn(&server, "publisher-nginx", &mut src);
    create(&api, "relay", json!([{ "url": nginx.url("origin") }]));
    let file = Fixture::Small.path();
    create(
        &api,
        "loop",
        json!([{ "url": format!("file://{}", file.display()) }]),
    );
    let relay = wait_active(&api, "relay", 0, Duration::from_secs(30));
    assert_eq!(relay["inputs"][0]["kind"], "rtmp");
    assert_eq!(
        relay["inputs"][0]["url"],
        format!(
            "rtmp://{}/live/****",
            nginx.url("x").split('/').nth(2).unwrap_or_default()
        )
    );
    wait_active(&api, "loop", 0, Duration::from_secs(20));
    assert_plays_hls(&server, "relay", 2.0, Fixture::FPS);
    // The file lasts 6 s: 8 s of output cross the loop with increasing timestamps.
    let (run, packets) = ffmpeg::packets(&server.mpegts_url("loop"), "%+8", None);
    assert!(run.stderr.trim().is_empty(), "{}", run.stderr);
    ffmpeg::assert_monotonic_dts("looped file", &packets);
    let span = |kind: &str| {
        let dts: Vec<f64> = packets
            .iter()
            .filter(|p| p.codec_type == kind)
            .filter_map(|p| p.dts)
            .collect();
        dts.last().unwrap_or(&0.0) - dts.first().unwrap_or(&0.0)
    };
    assert!(span("video") > 7.0, "video spans {} s", span("video"));
    assert_eq!(inputs(&api, "loop")["inputs"][0]["attempts"], 1);
}

#[test]
fn a_stream_with_pulled_inputs_refuses_encoders_unless_it_has_publish() {
    let server = server();
    let api = Api::new(server.http);
    let udp = free_udp_addr();
    create(&api, "pulled", json!([{ "url": format!("udp://{udp}") }]));
    let out = proc::run(
        ffmpeg::ffmpeg()
            .args(["-re", "-t", "2", "-i"])
            .arg(Fixture::Small.path())
            .args(["-c", "copy", "-f", "flv"])
            .arg(server.rtmp_url("pulled")),
        Duration::from_secs(20),
    );
    assert!(!out.success(), "publishing to a pulled stream was accepted");
    // With a publish:// input the encoder is one input among the others.
    api.patch(
        "/api/v1/streams/pulled",
        &json!({"inputs": [{"url": "publish://"}, {"url": format!("udp://{udp}")}]}),
    )
    .ok(200);
    let _enc = server.publish("pulled", Fixture::Small);
    let state = wait_active(&api, "pulled", 0, Duration::from_secs(20));
    assert_eq!(state["inputs"][0]["kind"], "publish");
    assert_plays_hls(&server, "pulled", 2.0, Fixture::FPS);
}

/// Seconds from `since` until `code`'s switch history has a record matching `pred`.
fn wait_switch(
    api: &Api,
    code: &str,
    what: &str,
    since: Instant,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> f64 {
    wait_until(what, timeout, || {
        let i = inputs(api, code);
        i["history"]
            .as_array()?
            .iter()
            .any(&pred)
            .then(|| since.elapsed().as_secs_f64())
    })
}

#[test]
fn failover_keeps_players_playing_and_fails_back() {
    let browser_slot = browser_ready();
    let server = server();
    let api = Api::new(server.http);
    let udp = free_udp_addr();
    let udp_url = format!("udp://{udp}?pkt_size=1316");
    let mut primary = ts_sender(&server, "primary", &udp_url);
    // A webhook file sink that takes only the input events of this stream.
    api.post(
        "/api/v1/hooks",
        &json!({"name": "inputs", "path": "inputs.jsonl", "events": ["input.*"],
                "streams": ["fo"], "batch_delay_ms": 100}),
    )
    .ok(201);
    create(
        &api,
        "fo",
        json!([
            { "url": format!("udp://{udp}"), "priority": 0 },
            { "url": format!("file://{}", Fixture::Small.path().display()), "priority": 1 }
        ]),
    );
    // The stream starts on whichever input delivers first (the file may win the race) and
    // settles on the primary within failback_after.
    wait_active(&api, "fo", 0, Duration::from_secs(20));
    // A push of the stream to another code of the same gateway: it restarts on each switch.
    api.patch(
        "/api/v1/streams/fo",
        &json!({"push": [{"url": server.rtmp_url("fo-copy")}]}),
    )
    .ok(200);
    let settled = inputs(&api, "fo")["history"].as_array().map_or(0, Vec::len);
    server.wait_playlist("fo", "three segments", Duration::from_secs(20), |p| {
        p.segments.len() >= 3
    });

    // Players: ffmpeg reading HLS and hls.js in Chromium, across both switches.
    let url = server.hls_url("fo");
    let reader = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg::decode(&url, 16.0, Duration::from_secs(60)))
    };
    let rtmp_reader = {
        let url = server.rtmp_url("fo");
        std::thread::spawn(move || ffmpeg::decode(&url, 14.0, Duration::from_secs(60)))
    };
    let push_connected = |api: &Api| {
        api.stream("fo")["runtime"]["pushes"][0]["connected_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let pushed_before = wait_until("the push to connect", Duration::from_secs(15), || {
        let at = push_connected(&api);
        (!at.is_empty()).then_some(at)
    });
    let browser = browser_slot.as_ref().map(|_| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/hlsplay.mjs");
        let url = url.clone();
        std::thread::spawn(move || {
            proc::run(
                Command::new("node").arg(script).arg(url).arg("18"),
                Duration::from_secs(90),
            )
        })
    });
    std::thread::sleep(Duration::from_secs(4));

    let killed = Instant::now();
    primary.stop(Duration::from_secs(1));
    let switched = wait_switch(
        &api,
        "fo",
        "the switch to the backup",
        killed,
        Duration::from_secs(10),
        |h| {
            h["to"] == 1
                && h["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("input 0 down"))
        },
    );
    // packet_timeout is 1 s; the backup runs hot, so its cached GOP follows at once.
    assert!(
        switched <= 3.0,
        "switched {switched:.1} s after the primary died"
    );
    wait_active(&api, "fo", 1, Duration::from_secs(5));
    // The push started again with the backup, as after a republish.
    wait_until("the push to reconnect", Duration::from_secs(10), || {
        (push_connected(&api) > pushed_before).then_some(())
    });
    server.wait_playlist("fo", "a discontinuity", Duration::from_secs(15), |p| {
        p.text.contains("#EXT-X-DISCONTINUITY")
    });

    std::thread::sleep(Duration::from_secs(2));
    let revived = Instant::now();
    // History times are RFC 3339 UTC with milliseconds: they order as strings.
    let revived_after = inputs(&api, "fo")["history"][settled]["at"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let _primary = ts_sender(&server, "primary-again", &udp_url);
    let failback = wait_switch(
        &api,
        "fo",
        "the failback",
        revived,
        Duration::from_secs(15),
        |h| {
            h["to"] == 0
                && h["reason"] == "failback"
                && h["at"]
                    .as_str()
                    .is_some_and(|at| at > revived_after.as_str())
        },
    );
    // failback_after is 3 s of health.
    assert!(
        failback >= 3.0,
        "failed back after {failback:.1} s: {:#}",
        inputs(&api, "fo")
    );

    let decoded = reader.join().expect("reader thread");
    decoded.assert_clean_except(
        "ffmpeg reading HLS across two switches",
        // A discontinuity restarts the decoder's timeline; ffmpeg says so.
        &[
            "Non-monotonous DTS",
            "non monotonically increasing dts",
            "Packet corrupt",
        ],
    );
    decoded.assert_duration("ffmpeg reading HLS across two switches", 16.0, 25.0);
    // RTMP players stay connected: the sequence headers come again and timestamps go on.
    let rtmp = rtmp_reader.join().expect("rtmp reader thread");
    rtmp.assert_clean_except(
        "ffmpeg playing RTMP across two switches",
        &[
            "Non-monotonous DTS",
            "non monotonically increasing dts",
            "Packet corrupt",
        ],
    );
    rtmp.assert_duration("ffmpeg playing RTMP across two switches", 14.0, 25.0);
    if let Some(b) = browser {
        let run = b.join().expect("browser thread");
        let report = run.json_report("hls.js");
        assert_eq!(report["ok"], true, "{report:#}");
        assert!(
            report["played"].as_f64().unwrap_or(0.0) >= 12.0,
            "{report:#}"
        );
        // A stall at a switch stays below packet_timeout + 2 s.
        assert!(
            report["longestStall"].as_f64().unwrap_or(99.0) < 3.0,
            "{report:#}"
        );
    }
    let history = inputs(&api, "fo")["history"].clone();
    let reasons: Vec<&str> = history
        .as_array()
        .map(|h| h.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons[0], "started", "{history:#}");
    assert_eq!(
        reasons.len(),
        settled + 2,
        "one switch each way: {history:#}"
    );
    assert!(reasons[settled].starts_with("input 0 down"), "{history:#}");
    assert_eq!(reasons[settled + 1], "failback", "{history:#}");

    // The same switches, and the primary going down, reached the webhook sink.
    let sink = server.dir().join("data/events/inputs.jsonl");
    let events: Vec<Value> = wait_until(
        "the input events in the sink",
        Duration::from_secs(5),
        || {
            let text = std::fs::read_to_string(&sink).ok()?;
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            let switched = events
                .iter()
                .filter(|e| e["type"] == "input.switched")
                .count();
            (switched == reasons.len()).then_some(events)
        },
    );
    let switches: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "input.switched")
        .filter_map(|e| e["data"]["reason"].as_str())
        .collect();
    assert_eq!(switches, reasons, "{events:#?}");
    let down = events
        .iter()
        .find(|e| e["type"] == "input.down")
        .unwrap_or_else(|| panic!("no input.down: {events:#?}"));
    assert_eq!(down["stream"], "fo");
    assert_eq!(down["data"]["index"], 0);
    assert!(
        events.iter().all(|e| e["type"] != "stream.started"),
        "the filter holds"
    );
}

#[test]
fn an_on_demand_camera_is_pulled_only_while_someone_watches() {
    let server = server();
    let api = Api::new(server.http);
    let port = free_port();
    let _cam = camera(&server, port, None);
    api.post(
        "/api/v1/streams",
        &json!({
            "code": "lazy",
            "inputs": [{ "url": format!("rtsp://127.0.0.1:{port}/cam") }],
            "failover": { "on_demand": true, "close_after_s": 2 }
        }),
    )
    .ok(201);
    std::thread::sleep(Duration::from_secs(2));
    let idle = inputs(&api, "lazy");
    assert_eq!(idle["inputs"][0]["state"], "stopped", "{idle:#}");
    assert_eq!(idle["inputs"][0]["attempts"], 0, "{idle:#}");
    assert_eq!(api.stream("lazy")["runtime"]["status"], "idle");

    // The first playlist request starts the pull and waits for it instead of a 404.
    let asked = Instant::now();
    let first = server.get("/live/lazy/index.m3u8");
    assert_eq!(first.status, 200, "{}", first.text());
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_plays_hls(&server, "lazy", 2.0, 25.0);

    // Nobody asks any more: after close_after the camera is let go.
    let state = wait_until("the pull to stop", Duration::from_secs(15), || {
        let i = inputs(&api, "lazy");
        (i["inputs"][0]["state"] == "stopped").then_some(i)
    });
    assert_eq!(
        state["history"].as_array().map(Vec::len),
        Some(2),
        "{state:#}"
    );
    assert_eq!(state["history"][1]["reason"], "on demand: no reader");
    wait_until("the stream to end", Duration::from_secs(10), || {
        (api.stream("lazy")["runtime"]["status"] == "idle").then_some(())
    });
}
