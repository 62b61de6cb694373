//! HTTP-FLV and WS-FLV (`/live/<code>.flv`, plain or with a WebSocket Upgrade), played by
//! clients no one here wrote: ffmpeg/ffprobe, ffplay, and mpegts.js and flv.js in headless
//! Chromium. Also a slow reader beside a healthy one, a kick through the sessions API, a
//! republish under playing readers, and a source started on demand by an FLV viewer.

use crate::dash::browser_ready;
use crate::support::api::Api;
use crate::support::ffmpeg::{self, stream_of};
use crate::support::http;
use crate::support::proc::{self, ChildGuard, read_lossy};
use crate::support::{Fixture, HeavySlot, Server, wait_until};
use rtmp::flv_stream::{FlvReader, FlvTag, TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn flv_url(server: &Server, code: &str) -> String {
    format!("http://{}/live/{code}.flv", server.http)
}

fn ws_url(server: &Server, code: &str) -> String {
    format!("ws://{}/live/{code}.flv", server.http)
}

/// FLV tags from a body read piece by piece.
#[derive(Default)]
struct Tags {
    reader: FlvReader,
    head: Vec<u8>,
    tags: Vec<FlvTag>,
}

impl Tags {
    fn push(&mut self, data: &[u8]) {
        if self.head.len() < 13 {
            let n = (13 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
        }
        self.reader.push(data);
        while let Some(t) = self
            .reader
            .next_tag()
            .unwrap_or_else(|e| panic!("invalid FLV after {} tags: {e}", self.tags.len()))
        {
            self.tags.push(t);
        }
    }

    fn video(&self) -> impl Iterator<Item = &FlvTag> {
        self.tags.iter().filter(|t| t.tag_type == TAG_VIDEO)
    }
}

#[test]
fn http_flv_decodes_in_ffmpeg_from_a_keyframe_at_zero() {
    let server = Server::start();
    let _publisher = server.publish("flv", Fixture::Small);
    server.wait_live("flv");

    let mut s = http::open(server.http, "/live/flv.flv", Duration::from_secs(10))
        .expect("GET /live/flv.flv");
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("video/x-flv"));
    assert!(
        s.header("cache-control")
            .is_some_and(|v| v.contains("no-cache")),
        "{:?}",
        s.headers
    );
    assert_eq!(s.header("access-control-allow-origin"), Some("*"));
    assert!(
        s.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "{:?}",
        s.headers
    );
    let mut tags = Tags::default();
    while tags.tags.len() < 8 {
        let piece = s.next_piece().expect("read").expect("data");
        tags.push(&piece);
    }
    drop(s);
    // Header with audio and video, onMetaData, the sequence headers, then the GOP from its
    // keyframe at 0 ms.
    assert_eq!(&tags.head[..5], b"FLV\x01\x05");
    let kinds: Vec<u8> = tags.tags[..3].iter().map(|t| t.tag_type).collect();
    assert_eq!(kinds, [TAG_SCRIPT, TAG_VIDEO, TAG_AUDIO]);
    assert_eq!(tags.tags[1].body[..2], [0x17, 0], "AVC sequence header");
    assert_eq!(tags.tags[2].body[..2], [0xAF, 0], "AAC sequence header");
    let first = tags.video().nth(1).expect("a coded video tag");
    assert_eq!(
        first.body[..2],
        [0x17, 1],
        "the first picture is a keyframe"
    );
    assert_eq!(first.timestamp, 0);

    for path in ["/live/nobody.flv", "/live/flv.mp4", "/live/.flv"] {
        assert_eq!(server.get(path).status, 404, "{path}");
    }

    let url = flv_url(&server, "flv");
    let streams = ffmpeg::streams(&url);
    let v = stream_of(&streams, "video");
    assert_eq!(v["codec_name"], "h264", "{v:#}");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(320), Some(240))
    );
    let a = stream_of(&streams, "audio");
    assert_eq!(a["codec_name"], "aac", "{a:#}");
    assert_eq!(a["sample_rate"], "48000", "{a:#}");
    assert_eq!(a["channels"], 2, "{a:#}");

    let probe = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg::packets(&url, "%+#60", None))
    };
    let d = ffmpeg::decode(&url, 5.0, Duration::from_secs(40));
    d.assert_clean("HTTP-FLV decode");
    d.assert_duration("HTTP-FLV decode", 5.0, Fixture::FPS);
    let (out, packets) = probe.join().expect("probe thread");
    assert!(out.success(), "ffprobe of HTTP-FLV failed:\n{}", out.stderr);
    let first_video = packets
        .iter()
        .find(|p| p.codec_type == "video")
        .unwrap_or_else(|| panic!("no video packets:\n{}", out.stderr));
    assert!(first_video.key, "{first_video:?}");
    assert!(
        first_video.dts.is_some_and(|t| t < 0.1),
        "each viewer's clock starts near 0: {first_video:?}"
    );
    assert!(packets.iter().any(|p| p.codec_type == "audio"));
    ffmpeg::assert_monotonic_dts("HTTP-FLV", &packets);
}

/// ffplay (SDL's dummy drivers: no display, no sound card) plays with audio and video in
/// sync. Its `-t` never ends a live input, so it runs until the time limit.
#[test]
fn ffplay_plays_http_flv_in_sync() {
    if Command::new("ffplay").arg("-version").output().is_err() {
        eprintln!("note: skipping the ffplay test: ffplay is not on PATH");
        return;
    }
    let server = Server::start();
    let _publisher = server.publish("play", Fixture::Small);
    server.wait_live("play");
    let run = proc::run(
        Command::new("ffplay")
            .env("SDL_VIDEODRIVER", "dummy")
            .env("SDL_AUDIODRIVER", "dummy")
            .args(["-hide_banner", "-v", "error", "-stats", "-autoexit"])
            .arg(flv_url(&server, "play")),
        Duration::from_secs(8),
    );
    // Status lines: "  4.52 A-V:  0.011 fd=   0 aq=    0KB vq=    0KB sq=    0B f=0/0".
    let text = run.stderr.replace('\r', "\n");
    let stats: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let clock = w.next()?.parse::<f64>().ok()?;
            (w.next()? == "A-V:").then_some(())?;
            Some((clock, w.next()?.parse::<f64>().ok()?))
        })
        .collect();
    let is_status = |l: &str| l.contains(" fd=") && l.contains(" aq=");
    let errors: Vec<&str> = text
        .lines()
        // Status lines (" nan    :" before the first picture, then "A-V:").
        .filter(|l| !l.trim().is_empty() && !is_status(l))
        .collect();
    assert!(errors.is_empty(), "ffplay printed errors:\n{}", run.stderr);
    let &(clock, drift) = stats
        .last()
        .unwrap_or_else(|| panic!("ffplay showed no A-V status:\n{}", run.stderr));
    assert!(clock >= 4.0, "ffplay reached only {clock} s");
    assert!(drift.abs() < 0.1, "audio and video {drift} s apart");
}

fn flv_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/flvplay.mjs")
}

/// The heavy-client slot when the FLV players can run: the browser tests need mpegts.js and
/// flv.js too (`npm ci --prefix tests/browser`).
fn players_ready() -> Option<HeavySlot> {
    let slot = browser_ready()?;
    let modules = flv_script()
        .parent()
        .map(|d| d.join("node_modules"))
        .unwrap_or_default();
    let missing: Vec<&str> = ["mpegts.js", "flv.js"]
        .into_iter()
        .filter(|m| !modules.join(m).exists())
        .collect();
    if missing.is_empty() {
        return Some(slot);
    }
    assert!(
        std::env::var_os("FERROCAST_REQUIRE_BROWSER").is_none(),
        "FERROCAST_REQUIRE_BROWSER is set but {missing:?} missing (npm ci --prefix tests/browser)"
    );
    eprintln!("note: skipping the FLV browser test: {missing:?} missing");
    None
}

/// Plays `url` for `secs` with `player` (`mpegts` or `flvjs`); the report, which must say ok.
fn play(url: &str, player: &str, secs: u32) -> Value {
    let run = proc::run(
        Command::new("node")
            .arg(flv_script())
            .args([url, &secs.to_string(), player]),
        Duration::from_secs(u64::from(secs) + 60),
    );
    let report = run.json_report(&format!("{player} on {url}"));
    assert_eq!(report["ok"], true, "{player} on {url}: {report:#}");
    report
}

#[test]
fn mpegts_js_and_flv_js_play_http_flv_and_ws_flv() {
    let Some(_browser) = players_ready() else {
        return;
    };
    let server = Server::start();
    let _publisher = server.publish("web", Fixture::Small);
    server.wait_live("web");
    for player in ["mpegts", "flvjs"] {
        for url in [flv_url(&server, "web"), ws_url(&server, "web")] {
            let r = play(&url, player, 6);
            eprintln!("{player} {url}: {r}");
            let mi = &r["mediaInfo"];
            assert_eq!(mi["hasVideo"], true, "{r:#}");
            assert_eq!(mi["hasAudio"], true, "{r:#}");
            assert_eq!(
                (mi["width"].as_u64(), mi["height"].as_u64()),
                (Some(320), Some(240))
            );
            assert!(
                mi["videoCodec"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("avc1.")),
                "{r:#}"
            );
            assert_eq!(mi["audioCodec"], "mp4a.40.2", "{r:#}");
            assert!(r["played"].as_f64().unwrap_or(0.0) >= 5.0, "{r:#}");
            // 30 fps for 6 s, most of them shown.
            assert!(r["frames"].as_u64().unwrap_or(0) >= 120, "{r:#}");
            assert!(
                r["audioBytes"].as_u64().unwrap_or(0) > 0,
                "audio decoded: {r:#}"
            );
            assert!(r["longestStall"].as_f64().unwrap_or(99.0) < 1.0, "{r:#}");
        }
    }
}

/// A socket with a 4 KiB receive buffer: a reader that stops reading stalls the server's
/// writes within a few hundred KiB instead of the megabytes loopback's autotuning allows.
fn small_window_socket(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.set_recv_buffer_size(4096)?;
        let stream = s.connect(addr).await?.into_std()?;
        stream.set_nonblocking(false)?;
        Ok::<_, std::io::Error>(stream)
    })
    .expect("connect")
}

/// Removes HTTP/1.1 chunked framing from `raw` (the bytes after the response head); the
/// last chunk may be cut short.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap_or("x"), 16)
            .expect("chunk size line");
        raw = &raw[eol + 2..];
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        if take < size || size == 0 {
            break;
        }
        raw = &raw[(size + 2).min(raw.len())..];
    }
    out
}

/// A viewer that stops reading loses frames in the hub and resumes at a keyframe; ffmpeg
/// reading beside it decodes cleanly in real time, and the publisher carries on.
#[test]
fn a_slow_flv_reader_skips_ahead_and_disturbs_no_one() {
    // A short hub ring, so the stalled reader falls behind within the test.
    let server = Server::builder()
        .set("hub.reader_queue_frames", 64)
        .set("dash.enabled", false)
        .start();
    let api = Api::new(server.http);
    let mut publisher = server.publish("slow", Fixture::Hd720);
    server.wait_live("slow");

    let mut slow = small_window_socket(server.http);
    write!(
        slow,
        "GET /live/slow.flv HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.http
    )
    .expect("send the request");
    let opened = Instant::now();
    let url = flv_url(&server, "slow");
    let started = Instant::now();
    let d = ffmpeg::decode(&url, 8.0, Duration::from_secs(40));
    d.assert_clean("HTTP-FLV beside a stalled reader");
    d.assert_duration("HTTP-FLV beside a stalled reader", 8.0, Fixture::FPS);
    // The cached GOP arrives at once, then real time: a reader held up by the other would
    // take longer.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "8 s took {:?}",
        started.elapsed()
    );
    publisher.assert_running("beside a stalled FLV reader");

    // Loopback lets the server's send buffer grow to 4 MiB and hyper holds a few hundred KiB
    // more: 20 s of 720p (~330 KB/s) is more than both, so the hub ring overflows.
    std::thread::sleep(Duration::from_secs(20).saturating_sub(opened.elapsed()));

    // The stalled reader reads again: it lost frames and resumes on a keyframe.
    slow.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut raw = Vec::new();
    let until = Instant::now() + Duration::from_secs(4);
    let mut buf = vec![0u8; 1 << 16];
    while Instant::now() < until {
        match slow.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{:?}", &raw[..head_end]);
    let mut tags = Tags::default();
    tags.push(&dechunk(&raw[head_end..]));
    let video: Vec<&FlvTag> = tags.video().skip(1).collect();
    let gap = video
        .windows(2)
        .find(|w| w[1].timestamp > w[0].timestamp + 500)
        .unwrap_or_else(|| panic!("no gap in {} video tags", video.len()));
    assert_eq!(
        gap[1].body[0] >> 4,
        1,
        "after the gap ({} -> {} ms) the reader resumes at a keyframe",
        gap[0].timestamp,
        gap[1].timestamp
    );
    let dropped = api.stream("slow")["runtime"]["frames_dropped"]
        .as_u64()
        .unwrap_or(0);
    assert!(dropped > 0, "the hub counted no dropped frames");
    publisher.assert_running("after the slow reader resumed");
}

/// Sessions of protocol `flv` in the sessions API, by id.
fn flv_sessions(api: &Api) -> Vec<u64> {
    api.sessions("?protocol=flv")
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .collect()
}

#[test]
fn kicking_an_flv_reader_ends_its_response() {
    let server = Server::start();
    let api = Api::new(server.http);
    let mut publisher = server.publish("kick", Fixture::Small);
    server.wait_live("kick");

    let mut raw = http::open(server.http, "/live/kick.flv", Duration::from_secs(10))
        .expect("GET /live/kick.flv");
    assert_eq!(raw.status, 200);
    raw.next_piece().expect("first piece").expect("data");
    let raw_id = wait_until("the raw reader's session", Duration::from_secs(10), || {
        let ids = flv_sessions(&api);
        (ids.len() == 1).then(|| ids[0])
    });
    let progress = server.dir().join("flv-reader.progress");
    let mut reader = ChildGuard::spawn(
        "FLV reader",
        ffmpeg::ffmpeg()
            .args([
                "-i",
                &flv_url(&server, "kick"),
                "-f",
                "null",
                "-",
                "-nostats",
            ])
            .arg("-progress")
            .arg(&progress),
        &server.dir().join("flv-reader.log"),
    );
    wait_until(
        "the ffmpeg reader to decode",
        Duration::from_secs(20),
        || (ffmpeg::parse_progress(&read_lossy(&progress)).0 > 0).then_some(()),
    );
    let ids = flv_sessions(&api);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let session = api
        .sessions("?protocol=flv")
        .into_iter()
        .find(|s| s["id"] == raw_id)
        .expect("listed");
    assert_eq!(session["stream"], "kick");
    assert_eq!(session["role"], "reader");
    assert!(session["bytes"].as_u64() > Some(0), "{session:#}");
    assert_eq!(
        api.stream("kick")["runtime"]["readers"],
        json!({"flv": 2}),
        "readers count"
    );

    // Kicked: the chunked body ends with its terminating chunk; ffmpeg keeps decoding.
    assert_eq!(api.delete(&format!("sessions/{raw_id}")).status, 204);
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match raw.next_piece() {
            Ok(Some(_)) => assert!(Instant::now() < until, "still receiving after the kick"),
            Ok(None) => break,
            Err(e) => panic!("kicked HTTP-FLV body did not end cleanly: {e}"),
        }
    }
    let before = ffmpeg::parse_progress(&read_lossy(&progress)).0;
    wait_until("ffmpeg to decode on", Duration::from_secs(10), || {
        (ffmpeg::parse_progress(&read_lossy(&progress)).0 > before + 30).then_some(())
    });
    assert!(reader.is_running(), "ffmpeg stopped:\n{}", reader.log());

    // Kick ffmpeg's session: its input ends and it exits cleanly.
    let other = flv_sessions(&api);
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(api.delete(&format!("sessions/{}", other[0])).status, 204);
    let status = reader
        .wait_timeout(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("ffmpeg still reading 15 s after its kick"));
    assert!(status.success(), "{status}:\n{}", reader.log());
    assert!(flv_sessions(&api).is_empty());
    publisher.assert_running("after both FLV readers were kicked");
}

/// ffmpeg over HTTP-FLV and mpegts.js over WS-FLV keep playing while the publisher goes
/// and comes back: the sequence headers come again and the timestamps go on. When it stays
/// away, the response ends cleanly after the republish grace.
#[test]
fn flv_readers_keep_playing_across_a_republish() {
    let browser_slot = players_ready();
    let server = Server::builder().set("dash.enabled", false).start();
    let mut first = server.publish("again", Fixture::Small);
    server.wait_live("again");

    let url = flv_url(&server, "again");
    let reader = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg::decode(&url, 14.0, Duration::from_secs(60)))
    };
    let browser = browser_slot.as_ref().map(|_| {
        let url = ws_url(&server, "again");
        std::thread::spawn(move || play(&url, "mpegts", 16))
    });
    std::thread::sleep(Duration::from_secs(6));
    first.stop();
    std::thread::sleep(Duration::from_secs(1));
    let mut second = server.publish("again", Fixture::Small);

    let d = reader.join().expect("reader thread");
    d.assert_clean("ffmpeg reading HTTP-FLV across a republish");
    d.assert_duration(
        "ffmpeg reading HTTP-FLV across a republish",
        14.0,
        Fixture::FPS,
    );
    if let Some(b) = browser {
        let r = b.join().expect("browser thread");
        eprintln!("mpegts.js over WS-FLV across a republish: {r}");
        assert!(r["played"].as_f64().unwrap_or(0.0) >= 11.0, "{r:#}");
        // The publisher was away about a second, plus its start-up.
        assert!(r["longestStall"].as_f64().unwrap_or(99.0) < 5.0, "{r:#}");
    }

    // The publisher leaves for good: after the grace (10 s) the body ends cleanly.
    let mut raw = http::open(server.http, "/live/again.flv", Duration::from_secs(20))
        .expect("GET /live/again.flv");
    raw.next_piece().expect("first piece").expect("data");
    second.stop();
    let left = Instant::now();
    loop {
        match raw.next_piece() {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("HTTP-FLV body did not end cleanly: {e}"),
        }
    }
    let waited = left.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(16),
        "the body ended {waited:?} after the publisher left"
    );
    assert_eq!(server.get("/live/again.flv").status, 404);
}

/// A stream whose source starts on demand: the first FLV viewer starts it and waits for it
/// instead of a 404.
#[test]
fn an_flv_viewer_starts_an_on_demand_source() {
    let server = Server::builder().set("dash.enabled", false).start();
    let api = Api::new(server.http);
    api.post(
        "/api/v1/streams",
        &json!({
            "code": "lazy",
            "inputs": [{ "url": format!("file://{}", Fixture::Small.path().display()) }],
            "failover": { "on_demand": true, "close_after_s": 2 }
        }),
    )
    .ok(201);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(api.stream("lazy")["runtime"]["status"], "idle");
    let asked = Instant::now();
    let d = ffmpeg::decode(&flv_url(&server, "lazy"), 3.0, Duration::from_secs(30));
    d.assert_clean("HTTP-FLV of an on-demand stream");
    d.assert_duration("HTTP-FLV of an on-demand stream", 3.0, Fixture::FPS);
    assert!(asked.elapsed() < Duration::from_secs(15));
}
