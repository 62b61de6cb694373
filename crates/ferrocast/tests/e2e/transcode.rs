//! Renditions: a 3-rung ladder (source, 480p, 360p) from a 720p publisher, as a multivariant
//! playlist and one DASH AdaptationSet (hls.js, dash.js and Shaka in Chromium), as streams of
//! their own over HLS and RTMP and pushed by rung, with segments aligned across the ladder;
//! the ffmpeg child killed and brought back without disturbing the source; and a gateway
//! without ffmpeg saying so while the source plays on.

use crate::support::api::Api;
use crate::support::ffmpeg::{self, Fixture};
use crate::support::server::{Playlist, Server, free_addrs, free_udp_addr};
use crate::support::{proc, wait_until};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

fn ladder() -> Value {
    json!({"enabled": true, "profiles": [{"name": "source"}, {"name": "480p"}, {"name": "360p"}]})
}

fn runtime(api: &Api, code: &str) -> Value {
    api.stream(code)["runtime"]["transcode"].clone()
}

/// The media playlist at `path`, with each segment's program date (ms) by sequence number.
fn dated(server: &Server, path: &str) -> (Playlist, HashMap<u64, String>) {
    let text = server.get(path).text();
    let p = Playlist::parse(&text);
    let mut dates = HashMap::new();
    let mut date: Option<String> = None;
    let mut seq = p.media_sequence.unwrap_or(0);
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date = Some(d.to_owned());
        } else if !line.is_empty() && !line.starts_with('#') {
            if let Some(d) = date.take() {
                dates.insert(seq, d);
            }
            seq += 1;
        }
    }
    (p, dates)
}

/// The ffmpeg children of `server`'s ladders (their sockets are under its private dir).
fn ladder_children(server_pid: u32) -> Vec<u32> {
    let out = proc::run(
        std::process::Command::new("pgrep")
            .args(["-f", &format!("ferrocast-transcode-{server_pid}/")]),
        Duration::from_secs(5),
    );
    out.stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_ladder_is_a_master_playlist_of_aligned_renditions_that_survives_its_ffmpeg() {
    // Taken first: the ladder's two x264 encodes are as heavy as a browser.
    let browser = crate::dash::browser_ready();
    let srt = free_udp_addr();
    let (rtsp, _) = free_addrs();
    let mut server = Server::builder()
        .set("srt.listen", srt)
        .set("rtsp.listen", rtsp)
        .start();
    let api = Api::new(server.http);
    // An opaque red square drawn at the top right of every rung.
    let logo = server.dir().join("logo.png");
    let made = proc::run(
        ffmpeg::ffmpeg()
            .args([
                "-f",
                "lavfi",
                "-i",
                "color=c=red:s=64x64",
                "-frames:v",
                "1",
                "-y",
            ])
            .arg(&logo),
        Duration::from_secs(20),
    );
    assert!(made.success(), "{}", made.stderr);
    let mut transcode = ladder();
    transcode["watermark"] =
        json!({"path": logo, "position": "top-right", "opacity": 1.0, "margin": 16});
    // The 360p rung is also pushed, back to this gateway under another code.
    let push = json!([{"url": server.rtmp_url("copy360"), "rendition": "360p"}]);
    api.put(
        "streams/abr",
        &json!({"name": "abr", "transcode": transcode, "push": push}),
    )
    .ok(201);
    let _publisher = server.publish("abr", Fixture::Hd720);
    server.wait_live("abr");

    // The multivariant playlist, read by an independent parser, lists every rung.
    let master = wait_until("three variants", Duration::from_secs(40), || {
        let text = server.get("/live/abr/index.m3u8").text();
        (text.matches("#EXT-X-STREAM-INF").count() == 3).then_some(text)
    });
    let parsed = match m3u8_rs::parse_playlist_res(master.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a multivariant playlist: {other:?}\n{master}"),
    };
    let want = [
        ("media.m3u8", 1280, 720, 1_000_000u64, 8_000_000u64),
        ("../abr_480p/index.m3u8", 854, 480, 500_000, 4_000_000),
        ("../abr_360p/index.m3u8", 640, 360, 250_000, 2_500_000),
    ];
    assert_eq!(parsed.variants.len(), 3, "{master}");
    for (v, (uri, w, h, min_bps, max_bps)) in parsed.variants.iter().zip(want) {
        assert_eq!(v.uri, uri, "{master}");
        let res = v.resolution.expect("RESOLUTION");
        assert_eq!((res.width, res.height), (w, h), "{master}");
        assert_eq!(
            v.codecs.as_deref(),
            Some(if h == 720 {
                "avc1.64001f,mp4a.40.2"
            } else if h == 480 {
                "avc1.4d401f,mp4a.40.2"
            } else {
                "avc1.4d401e,mp4a.40.2"
            }),
            "{master}"
        );
        assert!(
            (min_bps..=max_bps).contains(&v.bandwidth),
            "{uri}: BANDWIDTH {} in {master}",
            v.bandwidth
        );
        let avg = v.average_bandwidth.expect("AVERAGE-BANDWIDTH");
        assert!(avg <= v.bandwidth, "{master}");
        let fps = v.frame_rate.expect("FRAME-RATE");
        assert!((fps - 30.0).abs() < 0.1, "{master}");
    }

    // Each rung is a stream of its own: HLS and RTMP by its suffixed code.
    for (code, w, h) in [("abr_480p", 854, 480), ("abr_360p", 640, 360)] {
        for url in [
            format!("http://{}/live/{code}/index.m3u8", server.http),
            server.rtmp_url(code),
        ] {
            let streams = ffmpeg::streams(&url);
            let v = ffmpeg::stream_of(&streams, "video");
            assert_eq!(v["codec_name"], "h264", "{url}");
            assert_eq!(
                (v["width"].as_u64(), v["height"].as_u64()),
                (Some(w), Some(h)),
                "{url}"
            );
            assert_eq!(
                ffmpeg::stream_of(&streams, "audio")["codec_name"],
                "aac",
                "{url}"
            );
        }
    }

    // ... and over SRT, RTSP and MPEG-TS over HTTP.
    for url in [
        format!("srt://{srt}?streamid=live/abr_360p"),
        format!("rtsp://{rtsp}/live/abr_360p"),
        format!("http://{}/live/abr_360p/mpegts", server.http),
    ] {
        let streams = ffmpeg::streams(&url);
        let v = ffmpeg::stream_of(&streams, "video");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(360)),
            "{url}"
        );
    }

    // The watermark, in decoded pixels of the 480p rung: the red square's centre (1232, 48)
    // at 1280x720 is (821, 32) at 854x480.
    let pixel = server.dir().join("pixel.rgb");
    let out = proc::run(
        ffmpeg::ffmpeg()
            .args(["-v", "error", "-i"])
            .arg(server.rtmp_url("abr_480p"))
            .args([
                "-frames:v",
                "1",
                "-vf",
                "crop=8:8:817:28,scale=1:1",
                "-f",
                "rawvideo",
            ])
            .args(["-pix_fmt", "rgb24", "-y"])
            .arg(&pixel),
        Duration::from_secs(20),
    );
    let rgb = std::fs::read(&pixel).unwrap_or_default();
    assert!(
        rgb.len() == 3 && rgb[0] > 200 && rgb[1] < 60 && rgb[2] < 60,
        "not the red watermark: {rgb:?} ({})",
        out.stderr
    );

    let pushed = ffmpeg::streams(&server.rtmp_url("copy360"));
    let v = ffmpeg::stream_of(&pushed, "video");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360)),
        "the pushed rung"
    );

    // Segments line up: the same sequence number is the same instant, the same length, in
    // every rung.
    let (source, source_dates) = dated(&server, "/live/abr/media.m3u8");
    let mut common = 0;
    for rung in ["abr_480p", "abr_360p"] {
        let (p, dates) = dated(&server, &format!("/live/{rung}/index.m3u8"));
        for s in &p.segments {
            if let Some(src) = source.segments.iter().find(|x| x.seq == s.seq) {
                common += 1;
                assert!(
                    (src.duration - s.duration).abs() < 0.05,
                    "{rung} #{}: {} s against the source's {} s\n{}\n{}",
                    s.seq,
                    s.duration,
                    src.duration,
                    source.text,
                    p.text
                );
                let (a, b) = (source_dates.get(&s.seq), dates.get(&s.seq));
                assert!(
                    a.is_some() && a == b,
                    "{rung} #{} dated {b:?}, the source {a:?}:\n{}\n{}",
                    s.seq,
                    source.text,
                    p.text
                );
            }
        }
    }
    assert!(common >= 2, "no common segments:\n{}", source.text);

    // hls.js plays the ladder and switches level on request: lowest, middle, highest.
    if browser.is_some() {
        let report = crate::dash::hls_js(
            "hls.js",
            &format!("http://{}/live/abr/index.m3u8", server.http),
            14,
            "abr",
            &[],
            Duration::from_secs(120),
        );
        assert_eq!(report["ok"], true, "{report:#}");
        assert_eq!(report["levels"], 3, "{report:#}");
        let switched: Vec<u64> = report["switched"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert!(
            switched.contains(&2) && switched.contains(&1) && switched.ends_with(&[0]),
            "{report:#}"
        );
        let heights: Vec<u64> = report["heights"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        for h in [360, 480, 720] {
            assert!(
                heights.contains(&h),
                "the video showed {heights:?}: {report:#}"
            );
        }
        assert!(
            report["longestStall"].as_f64().unwrap_or(99.0) < 4.0,
            "{report:#}"
        );

        // dash.js and Shaka see the three rungs as Representations of one video
        // AdaptationSet, and play the lowest when told to.
        for player in ["dashjs", "shaka"] {
            let run = proc::run(
                std::process::Command::new("node")
                    .arg(crate::dash::browser_script())
                    .arg(format!("http://{}/live/abr/index.mpd", server.http))
                    .args([player, "8", "", "", "lowest"]),
                Duration::from_secs(120),
            );
            let report = run.json_report(player);
            assert_eq!(report["ok"], true, "{player}: {report:#}");
            assert_eq!(
                report["videoRepresentations"],
                json!([360, 480, 720]),
                "{player}: {report:#}"
            );
            let shown = report["heightsShown"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(shown.contains(&json!(360)), "{player}: {report:#}");
        }
    }
    // ffmpeg's DASH reader sees them too.
    let mpd = format!("http://{}/live/abr/index.mpd", server.http);
    let streams = ffmpeg::streams(&mpd);
    let sizes: Vec<_> = streams
        .iter()
        .filter(|s| s["codec_type"] == "video")
        .map(|s| {
            (
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(sizes, [(1280, 720), (854, 480), (640, 360)], "{streams:#?}");

    // HLS over CMAF has the ladder too: cmaf.m3u8 lists every rung's Low-Latency video
    // playlist with the source's audio, and each of those reports where the others end.
    let cmaf = server.get("/live/abr/cmaf.m3u8").text();
    let parsed = match m3u8_rs::parse_playlist_res(cmaf.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a multivariant playlist: {other:?}\n{cmaf}"),
    };
    let uris: Vec<&str> = parsed.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "cmaf-v.m3u8",
            "../abr_480p/cmaf-v.m3u8",
            "../abr_360p/cmaf-v.m3u8"
        ],
        "{cmaf}"
    );
    assert!(
        parsed
            .variants
            .iter()
            .all(|v| v.audio.as_deref() == Some("audio")),
        "{cmaf}"
    );
    assert!(cmaf.contains("URI=\"cmaf-a.m3u8\""), "{cmaf}");
    for (path, others) in [
        ("/live/abr/cmaf-v.m3u8", ["abr_480p", "abr_360p"]),
        ("/live/abr_480p/cmaf-v.m3u8", ["abr", "abr_360p"]),
    ] {
        let text = server.get(path).text();
        for other in others {
            let report = text
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "#EXT-X-RENDITION-REPORT:URI=\"../{other}/cmaf-v.m3u8\",LAST-MSN="
                    ))
                })
                .unwrap_or_else(|| panic!("{path} does not report {other}:\n{text}"));
            assert!(report.contains(",LAST-PART="), "{report}");
        }
    }
    let out = proc::run(
        ffmpeg::ffmpeg().args([
            "-i",
            &format!("http://{}/live/abr/cmaf.m3u8", server.http),
            "-map",
            "0:v:2",
            "-t",
            "2",
            "-f",
            "null",
            "-",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.success(),
        "ffmpeg on the CMAF ladder's third rung: {}",
        out.stderr
    );

    let rt = runtime(&api, "abr");
    assert_eq!(rt["state"], "running", "{rt:#}");
    assert_eq!(rt["encoder"], "libx264", "{rt:#}");
    assert_eq!(rt["renditions"].as_array().map(Vec::len), Some(2), "{rt:#}");
    assert_eq!(rt["renditions"][0]["code"], "abr_480p", "{rt:#}");
    assert_eq!(rt["renditions"][0]["live"], true, "{rt:#}");

    // A reader of the source while the ffmpeg child is killed: it decodes on, cleanly.
    let reader = std::thread::spawn({
        let url = server.rtmp_url("abr");
        move || ffmpeg::decode(&url, 8.0, Duration::from_secs(40))
    });
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.process().pid();
    let children = ladder_children(pid);
    assert_eq!(children.len(), 1, "one ffmpeg per ladder: {children:?}");
    proc::run(
        std::process::Command::new("kill").args(["-9", &children[0].to_string()]),
        Duration::from_secs(5),
    );
    let rt = wait_until("the ladder back", Duration::from_secs(30), || {
        let rt = runtime(&api, "abr");
        (rt["restarts"] == 1 && rt["state"] == "running").then_some(rt)
    });
    assert!(
        rt["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exited")),
        "{rt:#}"
    );
    let decoded = reader.join().expect("reader");
    decoded.assert_clean("the source while its ladder restarted");
    decoded.assert_duration("the source while its ladder restarted", 8.0, Fixture::FPS);
    let last = Playlist::parse(&server.get("/live/abr_480p/index.m3u8").text()).last_seq();
    wait_until("new 480p segments", Duration::from_secs(20), || {
        (Playlist::parse(&server.get("/live/abr_480p/index.m3u8").text()).last_seq() > last)
            .then_some(())
    });
    let v = ffmpeg::stream_of(&ffmpeg::streams(&server.rtmp_url("abr_360p")), "video").clone();
    assert_eq!(v["height"], 360);

    // Nobody else may publish a rung's code.
    let out = proc::run(
        ffmpeg::publish_command(&Fixture::Small.path(), &server.rtmp_url("abr_480p"))
            .args(["-t", "2"]),
        Duration::from_secs(20),
    );
    assert!(
        !out.success(),
        "a publisher took a rendition's code:\n{}",
        out.stderr
    );

    // A new ladder while live: the child restarts with it, the old rungs end, the master
    // playlist follows.
    api.patch(
        "streams/abr",
        &json!({"push": [], "transcode": {"profiles": [{"name": "source"}, {"name": "240p"}]}}),
    )
    .ok(200);
    let rt = wait_until("the new ladder", Duration::from_secs(30), || {
        let rt = runtime(&api, "abr");
        (rt["state"] == "running"
            && rt["renditions"].as_array().map(Vec::len) == Some(1)
            && rt["renditions"][0]["live"] == true)
            .then_some(rt)
    });
    assert_eq!(rt["renditions"][0]["code"], "abr_240p", "{rt:#}");
    assert_eq!(rt["restarts"], 0, "a new task: {rt:#}");
    wait_until("480p gone", Duration::from_secs(10), || {
        let r = api.get("streams/abr_480p");
        (r.status == 404 || !r.text.contains("\"status\":\"live\"")).then_some(())
    });
    let master = wait_until("two variants", Duration::from_secs(20), || {
        let text = server.get("/live/abr/index.m3u8").text();
        (text.matches("#EXT-X-STREAM-INF").count() == 2 && text.contains("RESOLUTION=426x240"))
            .then_some(text)
    });
    assert!(master.contains("../abr_240p/index.m3u8"), "{master}");
}

#[test]
fn without_ffmpeg_the_ladder_says_so_and_the_source_plays_on() {
    let server = Server::builder()
        .set("transcode.ffmpeg", "/nonexistent/ffmpeg")
        .start();
    let api = Api::new(server.http);
    api.put(
        "streams/noff",
        &json!({"name": "noff", "transcode": ladder()}),
    )
    .ok(201);
    let _publisher = server.publish("noff", Fixture::Small);
    server.wait_live("noff");
    let rt = wait_until("the error", Duration::from_secs(20), || {
        let rt = runtime(&api, "noff");
        rt["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("ffmpeg not found"))
            .then_some(rt)
    });
    assert_eq!(rt["state"], "restarting", "{rt:#}");
    assert!(
        server.log().contains("ffmpeg not found"),
        "{}",
        server.log()
    );
    // The master playlist lists the source alone, and it plays.
    let master = wait_until("the source listed", Duration::from_secs(20), || {
        let text = server.get("/live/noff/index.m3u8").text();
        text.contains("media.m3u8").then_some(text)
    });
    assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 1, "{master}");
    let decoded = ffmpeg::decode(
        &format!("http://{}/live/noff/index.m3u8", server.http),
        3.0,
        Duration::from_secs(30),
    );
    decoded.assert_clean("the source without its ladder");
}
