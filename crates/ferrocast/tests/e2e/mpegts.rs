//! MPEG-TS over HTTP (`/live/<code>/mpegts`).

use crate::support::ffmpeg;
use crate::support::http;
use crate::support::proc::{ChildGuard, read_lossy};
use crate::support::{Fixture, Server, wait_until};
use std::time::Duration;

#[test]
fn mpegts_decodes_and_starts_on_a_keyframe() {
    let server = Server::start();
    let _publisher = server.publish("ts", Fixture::Small);
    server.wait_live("ts");

    let mut s = http::open(server.http, "/live/ts/mpegts", Duration::from_secs(10))
        .expect("GET /live/ts/mpegts");
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("video/mp2t"), "content type");
    assert!(
        s.header("cache-control").unwrap_or("").contains("no-store")
            || s.header("cache-control").unwrap_or("").contains("no-cache"),
        "a live stream must not be cached: {:?}",
        s.header("cache-control")
    );
    let piece = s
        .next_piece()
        .expect("read the first body piece")
        .expect("the body has data");
    assert_eq!(
        piece[0], 0x47,
        "the body does not start with a TS sync byte"
    );
    drop(s);

    assert_eq!(
        server.get("/live/nobody/mpegts").status,
        404,
        "code that is not live"
    );

    let url = server.mpegts_url("ts");
    let probe = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg::packets(&url, "%+#60", None))
    };
    let d = ffmpeg::decode(&url, 5.0, Duration::from_secs(40));
    d.assert_clean("MPEG-TS decode");
    d.assert_duration("MPEG-TS decode", 5.0, Fixture::FPS);

    let (out, packets) = probe.join().expect("probe thread");
    assert!(out.success(), "ffprobe of MPEG-TS failed:\n{}", out.stderr);
    let first_video = packets
        .iter()
        .find(|p| p.codec_type == "video")
        .unwrap_or_else(|| panic!("no video packets over MPEG-TS:\n{}", out.stderr));
    assert!(
        first_video.key,
        "first video packet over MPEG-TS is not a keyframe: {first_video:?}"
    );
    assert!(
        packets.iter().any(|p| p.codec_type == "audio"),
        "no audio packets over MPEG-TS"
    );
    ffmpeg::assert_monotonic_dts("MPEG-TS", &packets);
}

/// When the publisher leaves, the chunked response ends with its terminating chunk and a
/// reading ffmpeg exits 0.
#[test]
fn mpegts_response_ends_cleanly_when_the_publisher_stops() {
    let server = Server::start();
    let mut publisher = server.publish("end", Fixture::Small);
    server.wait_live("end");

    let progress = server.dir().join("ts-reader.progress");
    let mut reader = ChildGuard::spawn(
        "MPEG-TS reader",
        ffmpeg::ffmpeg()
            .args([
                "-i",
                &server.mpegts_url("end"),
                "-f",
                "null",
                "-",
                "-nostats",
            ])
            .arg("-progress")
            .arg(&progress),
        &server.dir().join("ts-reader.log"),
    );
    let mut raw = http::open(server.http, "/live/end/mpegts", Duration::from_secs(10))
        .expect("GET /live/end/mpegts");
    assert_eq!(raw.status, 200);
    assert!(
        raw.header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked")),
        "a live MPEG-TS response should be chunked: {:?}",
        raw.headers
    );
    // Both readers are receiving before the publisher goes.
    raw.next_piece().expect("first piece").expect("data");
    wait_until(
        "the ffmpeg reader to decode frames",
        Duration::from_secs(20),
        || (ffmpeg::parse_progress(&read_lossy(&progress)).0 > 0).then_some(()),
    );

    publisher.stop();

    let status = reader
        .wait_timeout(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("ffmpeg still reading MPEG-TS 15 s after the publisher left"));
    assert!(
        status.success(),
        "MPEG-TS reader failed ({status}):\n{}",
        reader.log()
    );
    assert!(
        reader.log().trim().is_empty(),
        "MPEG-TS reader printed errors:\n{}",
        reader.log()
    );

    let mut bytes = 0usize;
    loop {
        match raw.next_piece() {
            Ok(Some(p)) => bytes += p.len(),
            Ok(None) => break,
            Err(e) => panic!("MPEG-TS response did not end cleanly after {bytes} more bytes: {e}"),
        }
    }
    assert_eq!(
        server.get("/live/end/mpegts").status,
        404,
        "code no longer live"
    );
}

/// Open-Streamer's path and proxy header: `/<code>/mpegts` serves the same stream, and the
/// endless body tells nginx in front not to buffer it.
#[test]
fn open_streamer_mpegts_path_and_no_proxy_buffering() {
    let server = Server::start();
    let _publisher = server.publish("os", Fixture::Small);
    server.wait_live("os");
    for path in ["/os/mpegts", "/live/os/mpegts"] {
        let mut s = http::open(server.http, path, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(s.status, 200, "{path}");
        assert_eq!(s.header("content-type"), Some("video/mp2t"), "{path}");
        assert_eq!(s.header("x-accel-buffering"), Some("no"), "{path}");
        let piece = s.next_piece().expect("read").expect("data");
        assert_eq!(piece[0], 0x47, "{path}: not TS");
    }
    assert_eq!(server.get("/nobody/mpegts").status, 404);
    let url = format!("http://{}/os/mpegts", server.http);
    let d = ffmpeg::decode(&url, 3.0, Duration::from_secs(40));
    d.assert_clean("Open-Streamer MPEG-TS path");
}

/// Open-Streamer's namespaced codes (`region/north/news`, up to 128 characters): created over
/// its unescaped API path, published over RTMP as `live/<code>`, and played over every
/// protocol by the same code.
#[test]
fn open_streamer_namespaced_codes_on_every_protocol() {
    use crate::support::api::Api;
    use crate::support::server::{free_addrs, free_udp_addr};
    use serde_json::json;

    let srt = free_udp_addr();
    let rtsp = free_addrs().0;
    let server = Server::builder()
        .set("srt.listen", srt)
        .set("rtsp.listen", rtsp)
        .start();
    let api = Api::new(server.http);
    let code = "region/north/news";
    // Open-Streamer's upsert, with the code's slashes as they are.
    let r = api.post(&format!("streams/{code}"), &json!({"name": "North news"}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["code"], code, "{}", r.text);
    let r = api.get(&format!("streams/{code}"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "North news");
    // Escaped works too; a doubled or trailing slash is not a code.
    assert_eq!(api.get("streams/region%2Fnorth%2Fnews").status, 200);
    let bad = api.post("streams/a//b", &json!({}));
    assert_eq!(bad.status, 400, "{}", bad.text);
    // Its console sends fields this API has no use for (and GET's `runtime` back): dropped
    // with a warning, not refused; a known field of the wrong type still is.
    let r = api.post(
        &format!("streams/{code}"),
        &json!({"name": "North", "playback_policy": "public", "runtime": {"status": "idle"},
                "push": [{"url": "rtmp://127.0.0.1:9/live/k", "enabled": false, "flag": 1}]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["name"], "North", "{}", r.text);
    server.wait_log("ignored unknown fields", Duration::from_secs(5));
    let r = api.post(&format!("streams/{code}"), &json!({"name": 5}));
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"]["field"], "name", "{}", r.text);

    // ffmpeg splits rtmp://host/live/region/north/news into app `live/region/north` and name
    // `news`.
    let _publisher = server.publish(code, Fixture::Small);
    server.wait_live(code);
    let live = api.stream(code);
    assert_eq!(live["runtime"]["status"], "live", "{live:#}");

    let srt_url = format!("srt://{srt}?streamid=live/{code}");
    let rtsp_url = format!("rtsp://{rtsp}/live/{code}");
    let flv_url = format!("http://{}/live/{code}.flv", server.http);
    let os_ts = format!("http://{}/{code}/mpegts", server.http);
    for url in [
        server.rtmp_url(code),
        server.hls_url(code),
        server.mpegts_url(code),
        os_ts,
        flv_url,
        srt_url,
        rtsp_url,
    ] {
        ffmpeg::decode(&url, 2.0, Duration::from_secs(40)).assert_clean(&url);
    }
    let s = http::open(
        server.http,
        &format!("/{code}/mpegts"),
        Duration::from_secs(10),
    )
    .expect("GET the namespaced mpegts path");
    assert_eq!(s.status, 200);
    assert_eq!(s.header("x-accel-buffering"), Some("no"));
}
