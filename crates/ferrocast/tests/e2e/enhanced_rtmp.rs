//! Enhanced RTMP ingest: HEVC, AV1 and Opus published by a current ffmpeg (Debian's 5.1 cannot
//! send them) and read back over every output that can carry them.
//!
//! The publisher is ffmpeg 9 from PyPI's `imageio-ffmpeg` wheel (a static build), which
//! `scripts/test` installs; readers are Debian's ffmpeg/ffprobe 5.1 where they understand the
//! container (TS, fMP4, RTP), and ffmpeg 9 for Enhanced RTMP and Enhanced FLV, which 5.1 cannot
//! parse (it copies to Matroska for ffprobe to read).

use crate::support::ffmpeg::{self, enhanced_ffmpeg};
use crate::support::proc::{ChildGuard, run};
use crate::support::server::{Server, free_addrs, free_udp_addr};
use crate::support::wait_until;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Fixtures made by ffmpeg 9: (stem, video args, audio args, size).
const HEVC_AAC: (&str, &[&str], &[&str], &str) = (
    "hevc-aac",
    &[
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-g",
        "60",
        "-keyint_min",
        "60",
        "-sc_threshold",
        "0",
        "-b:v",
        "1500k",
    ],
    &["-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k"],
    "1280x720",
);
const AV1_OPUS: (&str, &[&str], &[&str], &str) = (
    "av1-opus",
    &[
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-g",
        "60",
        "-svtav1-params",
        "keyint=60",
    ],
    &["-c:a", "libopus", "-ar", "48000", "-ac", "2", "-b:a", "96k"],
    "640x360",
);

/// The Enhanced FLV fixture, generated once per run with ffmpeg 9 (6 s, 30 fps, 2 s GOP).
fn fixture(
    ffmpeg9: &Path,
    recipe: (&str, &[&str], &[&str], &str),
    cell: &'static OnceLock<PathBuf>,
) -> PathBuf {
    cell.get_or_init(|| {
        let (stem, video, audio, size) = recipe;
        let dir = crate::support::scratch_root().join("fixtures");
        std::fs::create_dir_all(&dir).expect("create fixtures dir");
        let path = dir.join(format!("{stem}-v1.flv"));
        if path.exists() {
            return path;
        }
        let tmp = dir.join(format!("{stem}.tmp-{}.flv", std::process::id()));
        let mut cmd = Command::new(ffmpeg9);
        cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("testsrc2=size={size}:rate=30"),
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "6", "-pix_fmt", "yuv420p"])
            .args(video)
            .args(audio)
            .args(["-f", "flv"])
            .arg(&tmp);
        let out = run(&mut cmd, Duration::from_secs(240));
        assert!(out.success(), "generating {stem} failed:\n{}", out.stderr);
        std::fs::rename(&tmp, &path).expect("rename fixture");
        path
    })
    .clone()
}

/// Publishes `file` to `url` with ffmpeg 9, looped in real time, as an Enhanced RTMP client.
fn publish(server: &Server, ffmpeg9: &Path, file: &Path, code: &str) -> ChildGuard {
    let mut cmd = Command::new(ffmpeg9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", &server.rtmp_url(code)]);
    let log = server.dir().join(format!("publisher-{code}.log"));
    ChildGuard::spawn(&format!("ffmpeg 9 publisher {code}"), &mut cmd, &log)
}

/// Reads 2 s of `url` with ffmpeg 9 (`-c copy` to Matroska) and returns ffprobe 5.1's streams
/// of the copy: how an Enhanced RTMP player sees the stream.
fn streams_via_ffmpeg9(ffmpeg9: &Path, url: &str, dir: &Path, name: &str) -> Vec<Value> {
    let out_file = dir.join(format!("{name}.mkv"));
    let mut cmd = Command::new(ffmpeg9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i", url])
        .args(["-t", "2", "-c", "copy", "-f", "matroska"])
        .arg(&out_file);
    let out = run(&mut cmd, Duration::from_secs(30));
    assert!(out.success(), "ffmpeg 9 reading {url}:\n{}", out.stderr);
    let streams = ffmpeg::streams(out_file.to_str().expect("utf-8 path"));
    let decode = run(
        ffmpeg::ffmpeg()
            .arg("-i")
            .arg(&out_file)
            .args(["-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(
        decode.success() && decode.stderr.trim().is_empty(),
        "{name}: ffmpeg 5.1 decoding the copy of {url}:\n{}",
        decode.stderr
    );
    streams
}

/// Asserts a video stream of `codec` at `width`x`height` (and `profile` when given).
fn assert_video(
    what: &str,
    streams: &[Value],
    codec: &str,
    profile: Option<&str>,
    size: (u64, u64),
) {
    let v = ffmpeg::stream_of(streams, "video");
    assert_eq!(v["codec_name"], codec, "{what}: {v:#}");
    if let Some(p) = profile {
        assert_eq!(v["profile"], p, "{what}: {v:#}");
    }
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(size.0), Some(size.1)),
        "{what}: {v:#}"
    );
}

fn assert_audio(what: &str, streams: &[Value], codec: &str) {
    let a = ffmpeg::stream_of(streams, "audio");
    assert_eq!(a["codec_name"], codec, "{what}: {a:#}");
    assert_eq!(a["sample_rate"], "48000", "{what}: {a:#}");
}

/// HEVC + AAC from an Enhanced RTMP publisher plays over RTMP and HTTP-FLV (Enhanced, read
/// by ffmpeg 9), HLS over TS and fMP4, DASH, SRT and RTSP (read by ffmpeg 5.1), each with the
/// codec, profile and size the publisher sent; the runtime API names the codec.
#[test]
fn hevc_from_enhanced_rtmp_plays_over_every_output() {
    let Some(ffmpeg9) = enhanced_ffmpeg() else {
        return;
    };
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    let file = fixture(&ffmpeg9, HEVC_AAC, &CELL);
    let srt = free_udp_addr();
    let (rtsp, _) = free_addrs();
    let server = Server::builder()
        .set("srt.listen", srt)
        .set("rtsp.listen", rtsp)
        .start();
    let _publisher = publish(&server, &ffmpeg9, &file, "hevc");
    server.wait_live("hevc");

    let runtime = wait_until("the HEVC track in the API", Duration::from_secs(10), || {
        let s = crate::support::api::Api::new(server.http).stream("hevc");
        let t = s["runtime"]["tracks"].as_array()?.clone();
        (!t.is_empty()).then_some(t)
    });
    let video = runtime.iter().find(|t| t["kind"] == "video").unwrap();
    assert_eq!(video["codec"], "h265", "{video:#}");
    assert_eq!(video["profile"], "Main", "{video:#}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert!(
        video["outputs"].as_array().unwrap().len() == 9,
        "H.265 goes everywhere: {video:#}"
    );

    let size = (1280, 720);
    for (what, url) in [
        ("rtmp", server.rtmp_url("hevc")),
        ("http-flv", format!("http://{}/live/hevc.flv", server.http)),
    ] {
        let streams = streams_via_ffmpeg9(&ffmpeg9, &url, server.dir(), what);
        assert_video(what, &streams, "hevc", Some("Main"), size);
        assert_audio(what, &streams, "aac");
    }
    // The same HEVC published over SRT (MPEG-TS, stream type 0x24), as SRS users do: the
    // parameter sets in the stream become the config, and DASH (fMP4 hvc1) carries it.
    let mut cmd = Command::new(&ffmpeg9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(&file)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("srt://{srt}?streamid=publish:live/hevc-srt"));
    let log = server.dir().join("publisher-hevc-srt.log");
    let _srt_publisher = ChildGuard::spawn("ffmpeg 9 SRT publisher", &mut cmd, &log);
    let dash = format!("http://{}/live/hevc-srt/index.mpd", server.http);
    wait_until(
        "the SRT-published HEVC in DASH",
        Duration::from_secs(20),
        || (server.get("/live/hevc-srt/index.mpd").status == 200).then_some(()),
    );
    let streams = ffmpeg::streams(&dash);
    assert_video(
        "dash of srt ingest",
        &streams,
        "hevc",
        Some("Main"),
        (1280, 720),
    );
    assert_audio("dash of srt ingest", &streams, "aac");

    for (what, url) in [
        ("hls", server.hls_url("hevc")),
        (
            "cmaf hls",
            format!("http://{}/live/hevc/cmaf.m3u8", server.http),
        ),
        (
            "dash",
            format!("http://{}/live/hevc/index.mpd", server.http),
        ),
        ("srt", format!("srt://{srt}?streamid=live/hevc")),
        ("rtsp", format!("rtsp://{rtsp}/live/hevc")),
    ] {
        let streams = ffmpeg::streams(&url);
        assert_video(what, &streams, "hevc", Some("Main"), size);
        assert_audio(what, &streams, "aac");
        let decoded = ffmpeg::decode(&url, 2.0, Duration::from_secs(30));
        decoded.assert_clean(what);
        decoded.assert_duration(what, 2.0, 30.0);
    }
}

/// AV1 + Opus from an Enhanced RTMP publisher: DASH and CMAF HLS carry both (ffmpeg 5.1 reads
/// and decodes them, dash.js and Shaka play them in Chromium), RTMP plays them back to an
/// Enhanced RTMP client, RTSP sends both to ffmpeg 9, MPEG-TS over HTTP carries the Opus, and
/// the TS outputs leave AV1 out as the runtime API says.
#[test]
fn av1_and_opus_from_enhanced_rtmp_play_over_dash_and_rtmp() {
    let Some(ffmpeg9) = enhanced_ffmpeg() else {
        return;
    };
    // Taken before the server starts, so waiting for it never counts against the stream.
    let browser = crate::dash::browser_ready();
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    let file = fixture(&ffmpeg9, AV1_OPUS, &CELL);
    let (rtsp, _) = free_addrs();
    let server = Server::builder().set("rtsp.listen", rtsp).start();
    let _publisher = publish(&server, &ffmpeg9, &file, "av1");
    let mpd = format!("http://{}/live/av1/index.mpd", server.http);
    wait_until("the AV1 MPD", Duration::from_secs(20), || {
        (server.get("/live/av1/index.mpd").status == 200).then_some(())
    });

    let tracks =
        crate::support::api::Api::new(server.http).stream("av1")["runtime"]["tracks"].clone();
    let video = tracks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "video")
        .unwrap()
        .clone();
    assert_eq!(video["codec"], "av1", "{tracks:#}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    let skipped: Vec<&str> = video["skipped_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(skipped, ["hls", "srt", "ts"], "{video:#}");
    let audio = tracks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "audio")
        .unwrap()
        .clone();
    assert_eq!(
        (audio["codec"].as_str(), audio["channels"].as_u64()),
        (Some("opus"), Some(2))
    );
    // Stereo Opus rides in MPEG-TS too (private PES, "Opus" registration): every output but
    // HLS's TS segments, which HLS players could not decode, has it.
    assert_eq!(audio["skipped_by"], serde_json::json!(["hls"]), "{audio:#}");
    let ts_url = format!("http://{}/live/av1/mpegts", server.http);
    assert_audio("mpegts", &ffmpeg::streams(&ts_url), "opus");
    let out = crate::support::proc::run(
        ffmpeg::ffmpeg().args(["-i", &ts_url, "-t", "2", "-f", "null", "-"]),
        Duration::from_secs(30),
    );
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "ffmpeg decoding Opus from MPEG-TS over HTTP:\n{}",
        out.stderr
    );

    let size = (640, 360);
    for (what, url) in [
        ("dash", mpd.clone()),
        (
            "cmaf hls",
            format!("http://{}/live/av1/cmaf.m3u8", server.http),
        ),
    ] {
        let streams = ffmpeg::streams(&url);
        assert_video(what, &streams, "av1", Some("Main"), size);
        assert_audio(what, &streams, "opus");
        let decoded = ffmpeg::decode(&url, 2.0, Duration::from_secs(30));
        decoded.assert_clean(what);
        decoded.assert_duration(what, 2.0, 30.0);
    }
    let mpd_text = server.get("/live/av1/index.mpd").text();
    assert!(mpd_text.contains("codecs=\"av01.0."), "{mpd_text}");
    assert!(mpd_text.contains("codecs=\"opus\""), "{mpd_text}");

    let streams = streams_via_ffmpeg9(&ffmpeg9, &server.rtmp_url("av1"), server.dir(), "rtmp");
    assert_video("rtmp", &streams, "av1", None, size);
    assert_audio("rtmp", &streams, "opus");

    // RTSP: AV1 in the AOM RTP payload format (ffmpeg 9 depacketizes it) with RFC 7587 Opus.
    let streams = streams_via_ffmpeg9(
        &ffmpeg9,
        &format!("rtsp://{rtsp}/live/av1"),
        server.dir(),
        "rtsp",
    );
    assert_video("rtsp", &streams, "av1", None, size);
    assert_audio("rtsp", &streams, "opus");

    if browser.is_some() {
        for player in ["dashjs", "shaka"] {
            let report = crate::dash::play_sized(&server, "av1", player, 8, (640, 360));
            eprintln!("{player} (AV1 + Opus): {report}");
        }
    }
}

/// An Enhanced RTMP v2 multitrack publish, as ffmpeg 9 sends two video and two audio streams
/// (the second of each as track 1 of multitrack messages), plays as its default tracks on
/// every output: HEVC 320x240 and 48 kHz stereo AAC, with nothing of the 160x120 H.264 or
/// the 44.1 kHz mono track. The publisher's `colorInfo` metadata reaches RTMP and HTTP-FLV
/// players: the HEVC's own VUI says nothing of colour, so ffmpeg 9 can only learn its matrix
/// (BT.2020 non-constant) from the metadata the gateway passed on.
#[test]
fn multitrack_publish_plays_its_default_tracks_and_color_info_reaches_players() {
    let Some(ffmpeg9) = enhanced_ffmpeg() else {
        return;
    };
    let file = crate::support::scratch_root()
        .join("fixtures")
        .join(format!("multitrack-{}.flv", std::process::id()));
    std::fs::create_dir_all(file.parent().unwrap()).expect("fixtures dir");
    let mut make = Command::new(&ffmpeg9);
    make.args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100"])
        .args([
            "-t", "6", "-map", "0:v", "-map", "0:v", "-map", "1:a", "-map", "2:a",
        ])
        .args(["-pix_fmt", "yuv420p", "-g", "60"])
        .args(["-c:v:0", "libx265", "-preset", "ultrafast"])
        .args(["-x265-params", "log-level=error"])
        .args(["-color_primaries", "bt2020", "-color_trc", "smpte2084"])
        .args(["-colorspace", "bt2020nc"])
        // The SPS says "unspecified": the colour is only in the FLV colorInfo.
        .args([
            "-bsf:v:0",
            "hevc_metadata=colour_primaries=2:transfer_characteristics=2:matrix_coefficients=2",
        ])
        .args(["-c:v:1", "libx264", "-s:v:1", "160x120"])
        .args(["-c:a", "aac", "-ac:a:0", "2", "-ac:a:1", "1", "-f", "flv"])
        .arg(&file);
    let out = run(&mut make, Duration::from_secs(120));
    assert!(
        out.success(),
        "generating the multitrack FLV:\n{}",
        out.stderr
    );

    let server = Server::builder().start();
    let mut cmd = Command::new(&ffmpeg9);
    cmd.args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(["-re", "-stream_loop", "-1", "-i"])
        .arg(&file)
        .args([
            "-map",
            "0",
            "-c",
            "copy",
            "-f",
            "flv",
            &server.rtmp_url("mt"),
        ]);
    let log = server.dir().join("publisher-mt.log");
    let _publisher = ChildGuard::spawn("ffmpeg 9 multitrack publisher", &mut cmd, &log);
    server.wait_live("mt");

    for (what, url) in [
        ("rtmp", server.rtmp_url("mt")),
        ("http-flv", format!("http://{}/live/mt.flv", server.http)),
    ] {
        let out = run(
            Command::new(&ffmpeg9)
                .args(["-hide_banner", "-nostdin", "-i", &url])
                .args(["-t", "2", "-f", "null", "-"]),
            Duration::from_secs(30),
        );
        assert!(out.success(), "ffmpeg 9 reading {what}:\n{}", out.stderr);
        let listed = |kind: &str| -> Vec<&str> {
            // The input's streams, listed before the mapping and the output's.
            out.stderr
                .split("Stream mapping:")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| l.contains("Stream #0:") && l.contains(kind))
                .collect()
        };
        let (video, audio) = (listed(": Video: "), listed(": Audio: "));
        assert_eq!(video.len(), 1, "{what}: one video track\n{}", out.stderr);
        assert_eq!(audio.len(), 1, "{what}: one audio track\n{}", out.stderr);
        assert!(
            video[0].contains("hevc") && video[0].contains("320x240"),
            "{what}: {}",
            video[0]
        );
        assert!(
            video[0].contains("bt2020nc"),
            "{what}: colorInfo lost: {}",
            video[0]
        );
        assert!(
            audio[0].contains("48000 Hz") && audio[0].contains("stereo"),
            "{what}: {}",
            audio[0]
        );
    }
    for (what, url) in [
        ("hls", server.hls_url("mt")),
        ("dash", format!("http://{}/live/mt/index.mpd", server.http)),
    ] {
        let streams = ffmpeg::streams(&url);
        assert_eq!(streams.len(), 2, "{what}: {streams:#?}");
        assert_video(what, &streams, "hevc", Some("Main"), (320, 240));
        assert_audio(what, &streams, "aac");
        assert_eq!(ffmpeg::stream_of(&streams, "audio")["channels"], 2);
        let decoded = ffmpeg::decode(&url, 2.0, Duration::from_secs(30));
        decoded.assert_clean(what);
    }
    let _ = std::fs::remove_file(&file);
}
