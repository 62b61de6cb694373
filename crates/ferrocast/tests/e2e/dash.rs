//! DASH: MPD and segments over HTTP, content types and cache headers, 404s (unknown stream,
//! expired segment, `dash` protocol off), ffmpeg decoding, a republish, and dash.js / Shaka
//! Player in headless Chromium (`tests/browser/dash.mjs`).

use crate::gstreamer;
use crate::support::api::Api;
use crate::support::ffmpeg;
use crate::support::http;
use crate::support::proc::run;
use crate::support::{Fixture, HeavySlot, Server, heavy_slot, wait_until};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The MPD of `code` if it answers 200 and lists at least `video` video segments.
fn mpd(server: &Server, code: &str, video: usize) -> Option<String> {
    let r = server.get(&format!("/live/{code}/index.mpd"));
    let text = r.text();
    (r.status == 200 && video_segments(&text).len() >= video).then_some(text)
}

fn wait_mpd(server: &Server, code: &str, video: usize) -> String {
    wait_until(
        &format!("MPD of {code:?} with {video} video segments"),
        Duration::from_secs(40),
        || mpd(server, code, video),
    )
}

fn attr<'a>(text: &'a str, after: &str, name: &str) -> Option<&'a str> {
    let from = text.find(after)?;
    let rest = &text[from..];
    let start = rest.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = rest[start..].find('"')?;
    Some(&rest[start..start + end])
}

/// (period id, start times) of the video `SegmentTimeline` of the last period.
fn video_segments(text: &str) -> Vec<(String, u64)> {
    let Some(v) = text.rfind("contentType=\"video\"") else {
        return Vec::new();
    };
    let Some(media) = attr(text, &text[v..v + 20], "media") else {
        return Vec::new();
    };
    let period = media
        .strip_prefix("v-")
        .and_then(|m| m.strip_suffix("-$Time$.m4s"))
        .unwrap_or("")
        .to_owned();
    let body = &text[v..];
    let body = &body[..body.find("</SegmentTimeline>").unwrap_or(0)];
    let mut out = Vec::new();
    let mut t = 0u64;
    for s in body.split("<S ").skip(1) {
        let num = |n: &str| {
            s.split(&format!("{n}=\""))
                .nth(1)
                .and_then(|x| x.split('"').next())
                .and_then(|x| x.parse::<u64>().ok())
        };
        if let Some(explicit) = num("t") {
            t = explicit;
        }
        let d = num("d").unwrap_or(0);
        for _ in 0..=num("r").unwrap_or(0) {
            out.push((period.clone(), t));
            t += d;
        }
    }
    out
}

#[test]
fn dash_mpd_segments_headers_decoding_and_404s() {
    // A 4 s window: ffmpeg's live DASH reader skips to the window's start when it falls out
    // of it, and on a loaded 2-core machine a 2 s window cost it a whole segment.
    let server = Server::builder()
        .set("dash.segment_duration", 1)
        .set("dash.window", 4)
        .start();
    let _publisher = server.publish("dash", Fixture::Small);
    let text = wait_mpd(&server, "dash", 2);
    for needle in [
        "type=\"dynamic\"",
        "availabilityStartTime=",
        "publishTime=",
        "minimumUpdatePeriod=",
        "timeShiftBufferDepth=",
        "suggestedPresentationDelay=",
        "maxSegmentDuration=",
        "minBufferTime=",
        "codecs=\"avc1.",
        "codecs=\"mp4a.40.2\"",
        "width=\"320\" height=\"240\"",
        "frameRate=\"30\"",
        "<SegmentTimeline>",
        "urn:mpeg:dash:utc:http-iso:2014",
    ] {
        assert!(text.contains(needle), "MPD lacks {needle}:\n{text}");
    }
    assert_eq!(text.matches("<Period").count(), 1, "{text}");

    let r = server.get("/live/dash/index.mpd");
    assert_eq!(r.header("content-type"), Some("application/dash+xml"));
    assert!(r.header("cache-control").unwrap_or("").contains("no-cache"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    // The clock players sync to.
    let utc = attr(&text, "UTCTiming", "value").expect("UTCTiming value");
    assert!(utc.ends_with("/time"), "{utc}");
    let t = server.get("/time");
    assert_eq!(t.status, 200);
    assert_eq!(t.header("cache-control"), Some("no-cache"));
    let now = t.text();
    assert!(
        now.len() == 24 && now.ends_with('Z') && now.as_bytes()[19] == b'.',
        "/time answered {now:?}"
    );

    // Init and media segments: fMP4 boxes, right types, cacheable.
    let segs = video_segments(&text);
    let (period, time) = segs.last().cloned().expect("segments");
    for (path, ctype, first_box) in [
        (format!("init-v-{period}.mp4"), "video/mp4", b"ftyp"),
        (format!("init-a-{period}.mp4"), "audio/mp4", b"ftyp"),
        (format!("v-{period}-{time}.m4s"), "video/mp4", b"styp"),
    ] {
        let r = server.get(&format!("/live/dash/{path}"));
        assert_eq!(r.status, 200, "GET {path}");
        assert_eq!(r.header("content-type"), Some(ctype), "{path}");
        assert!(r.header("cache-control").unwrap_or("").contains("max-age"));
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(&r.body[4..8], first_box, "{path} starts with {first_box:?}");
    }

    // 404: unknown stream, unknown period, a time not on the timeline.
    for path in [
        "/live/nope/index.mpd".to_owned(),
        format!("/live/nope/v-{period}-{time}.m4s"),
        format!("/live/dash/init-v-{}.mp4", 1),
        format!("/live/dash/v-{period}-{}.m4s", time + 1),
        "/live/dash/x-1-2.m4s".to_owned(),
    ] {
        assert_eq!(server.get(&path).status, 404, "{path}");
    }

    // Decode 5 s of the live MPD: no error output, video and audio both present.
    let d = ffmpeg::decode(
        &format!("http://{}/live/dash/index.mpd", server.http),
        5.0,
        Duration::from_secs(40),
    );
    d.assert_clean("DASH decode");
    d.assert_duration("DASH decode", 5.0, Fixture::FPS);

    // Expired: the first segment leaves the window (4) and the few kept after it (3).
    let (first_period, first_time) = segs[0].clone();
    wait_until(
        "the first segment to expire",
        Duration::from_secs(30),
        || {
            let t = mpd(&server, "dash", 1)?;
            (video_segments(&t)[0].1 > first_time + 6 * 90_000).then_some(())
        },
    );
    assert_eq!(
        server
            .get(&format!("/live/dash/v-{first_period}-{first_time}.m4s"))
            .status,
        404,
        "expired segment"
    );
}

#[test]
fn dash_off_for_a_stream_is_404_and_switching_it_on_starts_it() {
    let server = Server::builder().set("dash.segment_duration", 1).start();
    let api = Api::new(server.http);
    api.put("streams/nodash", &json!({})).ok(201);
    api.patch("streams/nodash", &json!({"protocols": {"dash": false}}))
        .ok(200);
    let _publisher = server.publish("nodash", Fixture::Small);
    // HLS proves the stream is live and segmenting.
    server.wait_playlist("nodash", "2 segments", Duration::from_secs(30), |p| {
        p.segments.len() >= 2
    });
    assert_eq!(server.get("/live/nodash/index.mpd").status, 404);
    api.patch("streams/nodash", &json!({"protocols": {"dash": true}}))
        .ok(200);
    let text = wait_mpd(&server, "nodash", 1);
    let (period, time) = video_segments(&text)[0].clone();
    assert_eq!(
        server
            .get(&format!("/live/nodash/v-{period}-{time}.m4s"))
            .status,
        200
    );
    api.patch("streams/nodash", &json!({"protocols": {"dash": false}}))
        .ok(200);
    assert_eq!(server.get("/live/nodash/index.mpd").status, 404);
    assert_eq!(
        server
            .get(&format!("/live/nodash/v-{period}-{time}.m4s"))
            .status,
        404
    );
}

/// A republish within `end_grace` continues the presentation: same period (same codec
/// configuration), timeline going on, and ffmpeg decodes the stream after it.
#[test]
fn dash_republish_continues_the_timeline() {
    let server = Server::builder()
        .set("dash.segment_duration", 1)
        .set("dash.end_grace", 20)
        .start();
    let mut first = server.publish("again", Fixture::Small);
    let before = wait_mpd(&server, "again", 2);
    let (period, last_before) = video_segments(&before).last().cloned().expect("segments");
    first.stop();
    let _second = server.publish("again", Fixture::Small);
    let after = wait_until(
        "3 segments after the republish",
        Duration::from_secs(30),
        || {
            let t = mpd(&server, "again", 1)?;
            let n = video_segments(&t)
                .iter()
                .filter(|(_, s)| *s > last_before + 3 * 90_000)
                .count();
            (n >= 3).then_some(t)
        },
    );
    assert!(!after.contains("mediaPresentationDuration"), "{after}");
    let segs = video_segments(&after);
    assert!(segs.iter().all(|(p, _)| *p == period), "{after}");
    assert!(segs.windows(2).all(|w| w[0].1 < w[1].1), "{after}");
    // ffmpeg's DASH reader (dashdec) decodes a window spanning the republish only partly and
    // prints "non monotonically increasing dts" for the audio, although the audio timeline is
    // gapless and increasing (dash.js plays through it: see the browser test). Known gap;
    // here ffmpeg reads the stream once the window lies after the republish.
    let republish_at = segs
        .iter()
        .map(|(_, t)| *t)
        .find(|t| *t > last_before)
        .unwrap_or(last_before);
    wait_until(
        "the window to move past the republish",
        Duration::from_secs(30),
        || {
            let t = mpd(&server, "again", 1)?;
            (video_segments(&t)[0].1 > republish_at).then_some(())
        },
    );
    let d = ffmpeg::decode(
        &format!("http://{}/live/again/index.mpd", server.http),
        3.0,
        Duration::from_secs(30),
    );
    d.assert_clean("DASH decode after the republish");
    d.assert_duration("DASH decode after the republish", 3.0, Fixture::FPS);
}

pub(crate) fn browser_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/dash.mjs")
}

/// hls.js in Chromium on `url` for `seconds` (`tests/browser/hlsplay.mjs`: `mode` is one of
/// its modes, `bases` the servers its requests go to in turn, none for `url`'s own), within
/// `limit`: its report, named `what` in a failure.
pub(crate) fn hls_js(
    what: &str,
    url: &str,
    seconds: u32,
    mode: &str,
    bases: &[String],
    limit: Duration,
) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser/hlsplay.mjs");
    let mut node = Command::new("node");
    node.arg(script).arg(url).arg(seconds.to_string()).arg(mode);
    if !bases.is_empty() {
        node.arg(bases.join(","));
    }
    run(&mut node, limit).json_report(what)
}

/// The heavy-client slot when the browser tests can run, `None` when they cannot: without
/// `FERROCAST_REQUIRE_BROWSER` a missing piece skips them with a note, with it the test fails.
/// Hold the slot for the whole test and take it before the server starts.
pub(crate) fn browser_ready() -> Option<HeavySlot> {
    let dir = browser_script()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let missing: Vec<&str> = [
        (
            "node",
            Command::new("node").arg("--version").output().is_err(),
        ),
        (
            "/usr/bin/chromium",
            !std::path::Path::new("/usr/bin/chromium").exists(),
        ),
        (
            "tests/browser/node_modules (npm ci --prefix tests/browser)",
            !dir.join("node_modules/playwright-core").exists(),
        ),
    ]
    .into_iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| n)
    .collect();
    if missing.is_empty() {
        return Some(heavy_slot());
    }
    assert!(
        std::env::var_os("FERROCAST_REQUIRE_BROWSER").is_none(),
        "FERROCAST_REQUIRE_BROWSER is set but {missing:?} missing (scripts/test installs them)"
    );
    eprintln!("note: skipping a browser test: {missing:?} missing");
    None
}

fn play(server: &Server, code: &str, player: &str, secs: u32) -> String {
    play_sized(server, code, player, secs, (1280, 720))
}

/// Plays `code`'s MPD in `player` (`dashjs`, `shaka`) for `secs`, expecting `size` pictures;
/// returns the script's report.
pub(crate) fn play_sized(
    server: &Server,
    code: &str,
    player: &str,
    secs: u32,
    size: (u32, u32),
) -> String {
    let url = format!("http://{}/live/{code}/index.mpd", server.http);
    let out = run(
        Command::new("node").arg(browser_script()).args([
            &url,
            player,
            &secs.to_string(),
            &size.0.to_string(),
            &size.1.to_string(),
        ]),
        Duration::from_secs(u64::from(secs) + 90),
    );
    assert!(
        out.success(),
        "{player} did not play {url} cleanly:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    out.stdout
}

/// Runs `tests/browser/dash.mjs` on `url` in `player` for `secs` with its further arguments
/// (width, height, mode) and returns its JSON report, passing or not.
pub(crate) fn play_in_browser(url: &str, player: &str, secs: u32, rest: &[&str]) -> Value {
    let out = run(
        Command::new("node")
            .arg(browser_script())
            .args([url, player, &secs.to_string()])
            .args(rest),
        Duration::from_secs(u64::from(secs) + 90),
    );
    out.json_report(&format!("{player} on {url}"))
}

#[test]
fn dash_js_and_shaka_play_in_headless_chromium() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let server = Server::start();
    let _publisher = server.publish("web", Fixture::Hd720);
    wait_mpd(&server, "web", 2);
    for player in ["dashjs", "shaka"] {
        let report = play(&server, "web", player, 10);
        eprintln!("{player}: {report}");
    }
}

/// dash.js keeps playing (no error event, time advancing) while the publisher goes away
/// and comes back.
#[test]
fn dash_js_keeps_playing_across_a_republish() {
    let Some(_browser) = browser_ready() else {
        return;
    };
    let server = Server::builder().set("dash.end_grace", 20).start();
    let mut first = server.publish("web2", Fixture::Hd720);
    wait_mpd(&server, "web2", 2);
    std::thread::scope(|s| {
        let player = s.spawn(|| play(&server, "web2", "dashjs", 20));
        std::thread::sleep(Duration::from_secs(10));
        first.stop();
        let _second = server.publish("web2", Fixture::Hd720);
        let report = player.join().expect("player thread");
        eprintln!("dashjs across a republish: {report}");
    });
}

/// GStreamer's `dashdemux` (1.22, Debian 12) joining a stream that has run for a while. It
/// used to decode nothing for minutes: its live seek adds the start of the listed window to
/// the join time, so it waited for a segment as far in the future as the stream was old
/// (see `dash::MpdClient::GStreamer`), and it failed to fetch the protocol-relative
/// `UTCTiming` URL (`//host/time`).
#[test]
fn gstreamer_dashdemux_decodes_video_and_audio_within_10s_of_joining() {
    if !gstreamer::ready() {
        return;
    }
    // Defaults: 2 s segments, 6 listed.
    let server = Server::start();
    let _publisher = server.publish("gst", Fixture::Small);
    // Wait until the window starts 12 s into the stream: the old arithmetic would then have
    // kept GStreamer waiting longer than the 10 s it gets.
    wait_until(
        "the DASH window to slide past 12 s",
        Duration::from_secs(60),
        || {
            let t = mpd(&server, "gst", 1)?;
            (video_segments(&t)[0].1 >= 12 * 90_000).then_some(())
        },
    );
    let url = format!("http://{}/live/gst/index.mpd", server.http);
    let played = gstreamer::play(&url, 10, Some("dashdemux:3"));
    assert!(
        played.video >= 60 && played.audio >= 40,
        "GStreamer decoded {} video and {} audio buffers of {url} in 10 s:\n{}",
        played.video,
        played.audio,
        played.log
    );
    let clock = played.lines_with("Failed to fetch time");
    assert!(
        clock.is_empty(),
        "GStreamer could not read the clock: {clock:?}"
    );
    eprintln!(
        "gstreamer dash: {} video, {} audio buffers in 10 s",
        played.video, played.audio
    );
}

/// Low-latency DASH (`index-ll.mpd`): the segment being written is listed from its first part
/// on, with `availabilityTimeOffset` and a `ServiceDescription`; its request is answered with
/// chunked transfer, part by part while it is written, and the pieces make up exactly the
/// finished segment; dash.js plays it in its low-latency mode.
#[test]
fn low_latency_dash_sends_the_open_segment_part_by_part_and_dash_js_plays_it() {
    let browser = browser_ready();
    let server = Server::builder().set("dash.segment_duration", 1).start();
    let _publisher = server.publish("ll", Fixture::Hd720);
    wait_mpd(&server, "ll", 2);
    let ll_mpd = || {
        let r = server.get("/live/ll/index-ll.mpd");
        assert_eq!(r.status, 200, "index-ll.mpd");
        assert_eq!(r.header("content-type"), Some("application/dash+xml"));
        r.text()
    };
    let text = ll_mpd();
    for needle in [
        "availabilityTimeComplete=\"false\"",
        "availabilityTimeOffset=\"",
        "<ServiceDescription id=\"0\">",
        "<Latency target=\"1500\" min=\"750\" max=\"3000\"/>",
        "http://www.dashif.org/guidelines/low-latency-live-v5",
    ] {
        assert!(text.contains(needle), "LL MPD lacks {needle}:\n{text}");
    }

    // Catch a segment that has just begun, so most of it is still to be written.
    let before = video_segments(&ll_mpd()).last().cloned().expect("segments");
    let (generic, (period, time)) = wait_until(
        "the LL MPD to list a new open segment",
        Duration::from_secs(10),
        || {
            let generic = server.get("/live/ll/index.mpd").text();
            let last = video_segments(&ll_mpd()).last().cloned()?;
            (last != before).then_some((generic, last))
        },
    );
    assert!(
        !video_segments(&generic).contains(&(period.clone(), time)),
        "the open segment is listed in index.mpd too:\n{generic}"
    );
    let path = format!("/live/ll/v-{period}-{time}.m4s");
    let (pieces, first, last) = http::read_growing(server.http, &path);
    // 250 ms parts of a 1 s segment: the later ones arrive as they are cut.
    assert!(
        pieces.len() >= 3 && last - first >= Duration::from_millis(400),
        "{} pieces, the first after {first:?}, the last after {last:?}",
        pieces.len()
    );
    let whole = server.get(&path);
    assert_eq!(whole.status, 200);
    assert_eq!(
        whole.header("content-length"),
        Some(whole.body.len().to_string().as_str())
    );
    assert_eq!(
        pieces.concat(),
        whole.body,
        "the chunks make up the finished segment"
    );
    assert_eq!(&whole.body[4..8], b"styp");

    let Some(_browser) = browser else {
        return;
    };
    let url = format!("http://{}/live/ll/index-ll.mpd", server.http);
    let out = run(
        Command::new("node")
            .arg(browser_script())
            .args([&url, "dashjs", "15", "1280", "720"]),
        Duration::from_secs(120),
    );
    let report = out.json_report("dash.mjs on index-ll.mpd");
    eprintln!("dash.js on index-ll.mpd: {report}");
    assert!(
        out.success(),
        "dash.js did not play {url}: {report}\n{}",
        out.stderr
    );
    assert_eq!(report["lowLatencyMode"], true, "{report}");
    // dash.js aims at the ServiceDescription's 1.5 s; a busy 2-core machine may add some.
    let p50 = report["latencyP50"].as_f64().unwrap_or(99.0);
    assert!(p50 < 3.5, "dash.js live latency p50 {p50} s: {report}");
}
